"""Image sequences with ground truth per frame, for tracking: a static table seen by a still,
orbiting or hand-held camera, or an object picked up and put down elsewhere.

Kinds (`KINDS`):
  static      fixed camera; every frame is a fresh draw of the depth sensor's noise
  orbit       the camera circles the table at constant speed (15-30 deg/s), bobbing a little
  handheld    the camera near one viewpoint: slow drift (~2 cm, ~2 deg) plus a 4-9 Hz tremor
  pick_place  a hand-held camera; one object is lifted, carried to a free spot (turning on the
              way) and put down; the others stay where they are

Scenes, cameras and rendering are data/synthetic.py's (`make_scene`, `look_at`,
`render_frame`); this module only moves the camera and the objects between frames.
Object identity: object k of the scene has mask id k + 1 in every frame (a segmenter that
tracks); `shuffle_mask_ids` renumbers them per frame (one that does not).

On disk (`write_sequence` / `read_sequence`): <out>/<name>/sequence.json (kind, seed, rate,
intrinsics, per frame the camera pose and each visible object's ground truth) and
<out>/<name>/frames.npz (depth uint16 mm, mask uint8 with 255 = background, per frame).

    posediff-sequences --out data/sequences_test --seed 4000000 --per-kind 2 --frames 45
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posediff_ros.data.synthetic import (
    BACKGROUND,
    Camera,
    InstanceGT,
    Scene,
    look_at,
    make_scene,
    render_frame,
)
from posediff_ros.geometry import REAL275_K

KINDS = ("static", "orbit", "handheld", "pick_place")
FORMAT = "posediff-sequence-1"


@dataclass
class Viewpoint:
    """Where a camera looks from: world position, the point it looks at, roll (rad)."""

    position: np.ndarray
    target: np.ndarray
    roll: float = 0.0


@dataclass
class SequenceFrame:
    index: int
    stamp: float  # seconds from the first frame
    depth: np.ndarray  # (H, W) uint16 mm
    mask: np.ndarray  # (H, W) uint8 mask ids, BACKGROUND = none
    instances: list[InstanceGT]  # visible objects; instance_id = object identity (k + 1)
    moving: dict[int, bool]  # instance id -> moved in the world since the previous frame
    world_from_camera: np.ndarray  # (4, 4)
    color: np.ndarray | None = None  # (H, W, 3) uint8, when rendered with colour
    K: np.ndarray | None = None  # (3, 3) intrinsics


@dataclass
class Sequence:
    name: str
    kind: str
    seed: int
    rate: float  # frames per second
    K: np.ndarray
    width: int
    height: int
    frames: list[SequenceFrame] = field(default_factory=list)


# --- camera paths ---------------------------------------------------------------------------


def base_viewpoint(rng: np.random.Generator, distance=(0.6, 1.0), elevation_deg=(25, 50)):
    """A viewpoint like synthetic.sample_camera's (azimuth any, looking down at the table)."""
    d = rng.uniform(*distance)
    el = np.deg2rad(rng.uniform(*elevation_deg))
    az = rng.uniform(0, 2 * np.pi)
    target = np.array([rng.normal(0, 0.03), rng.uniform(0.0, 0.04), rng.normal(0, 0.03)])
    return d, el, az, target


def _orbit_position(target, d, el, az) -> np.ndarray:
    return target + d * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])


def _wander(rng: np.random.Generator, times: np.ndarray, amplitude: float, freqs) -> np.ndarray:
    """(len(times), 3) smooth random motion: a sum of sinusoids with random phase/direction,
    each of `amplitude` (m or rad) at frequencies in `freqs` (Hz)."""
    out = np.zeros((len(times), 3))
    for f in rng.uniform(*freqs, size=3):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        out += amplitude * np.sin(2 * np.pi * f * times[:, None] + rng.uniform(0, 2 * np.pi)) \
            * direction
    return out / np.sqrt(3)


def camera_path(kind: str, rng: np.random.Generator, times: np.ndarray) -> list[Viewpoint]:
    """One viewpoint per time (s). Hand-held motion: drift ~2 cm and ~1 deg below 0.5 Hz,
    tremor ~1.5 mm and ~0.3 deg at 4-9 Hz (a hand holding a camera still-ish)."""
    d, el, az, target = base_viewpoint(rng)
    if kind == "orbit":
        speed = np.deg2rad(rng.uniform(15, 30)) * rng.choice([-1, 1])
        bob = np.deg2rad(4) * np.sin(2 * np.pi * 0.2 * times + rng.uniform(0, 2 * np.pi))
        return [Viewpoint(_orbit_position(target, d, el + b, az + speed * t), target)
                for t, b in zip(times, bob, strict=True)]
    base = _orbit_position(target, d, el, az)
    if kind == "static":
        return [Viewpoint(base, target, 0.0)] * len(times)
    if kind not in ("handheld", "pick_place"):
        raise ValueError(f"unknown sequence kind {kind!r}; known: {', '.join(KINDS)}")
    drift = _wander(rng, times, 0.02, (0.1, 0.5))
    tremor = _wander(rng, times, 0.0015, (4.0, 9.0))
    # the aim wanders too: ~1 deg slowly, ~0.3 deg tremor at the viewing distance
    aim = _wander(rng, times, d * np.deg2rad(1.0), (0.1, 0.5)) \
        + _wander(rng, times, d * np.deg2rad(0.3), (4.0, 9.0))
    roll = _wander(rng, times, np.deg2rad(1.0), (0.1, 0.5))[:, 0]
    return [Viewpoint(base + drift[i] + tremor[i], target + aim[i], float(roll[i]))
            for i in range(len(times))]


def camera_at(view: Viewpoint, K: np.ndarray, width: int, height: int) -> Camera:
    R, t = look_at(np.asarray(view.position, float), np.asarray(view.target, float), view.roll)
    return Camera(np.asarray(K, np.float64), width, height, R, t)


# --- object motion (pick and place) ---------------------------------------------------------


@dataclass
class PickPlace:
    """Object `index` leaves its spot at `start` s, is lifted by `lift` m, carried to
    `goal` (x, z) turning by `turn` rad, and put down at `start + duration` s."""

    index: int
    start: float
    duration: float
    goal: np.ndarray
    lift: float = 0.12
    turn: float = 0.0

    def pose(self, origin: np.ndarray, yaw0: float, t: float) -> tuple[np.ndarray, float]:
        """World position and yaw of the object at time t."""
        u = np.clip((t - self.start) / self.duration, 0.0, 1.0)
        # thirds: lift, carry, lower; smooth-step within each
        up = _smooth(np.clip(3 * u, 0, 1)) - _smooth(np.clip(3 * u - 2, 0, 1))
        across = _smooth(np.clip(3 * u - 1, 0, 1))
        pos = origin.copy()
        pos[[0, 2]] = (1 - across) * origin[[0, 2]] + across * self.goal
        pos[1] = origin[1] + self.lift * up
        return pos, yaw0 + self.turn * across

    def moving(self, t_prev: float, t: float) -> bool:
        return bool(t > self.start and t_prev < self.start + self.duration)


def _smooth(u):
    return u * u * (3 - 2 * u)


def plan_pick_place(scene: Scene, rng: np.random.Generator, duration_s: float) -> PickPlace:
    """Move one object to a free spot 15-30 cm away, in the middle third of the sequence."""
    k = int(rng.integers(len(scene.objects)))
    obj = scene.objects[k]
    reach = 0.5 * np.hypot(obj.shape.extents[0], obj.shape.extents[2])
    goal = obj.position[[0, 2]]
    for _ in range(200):
        step = rng.uniform(0.15, 0.3) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)),
                                                   np.sin(a)])
        cand = obj.position[[0, 2]] + step
        if np.all(np.abs(cand) < 0.35) and all(
                np.hypot(*(cand - o.position[[0, 2]]))
                > reach + 0.5 * np.hypot(o.shape.extents[0], o.shape.extents[2]) + 0.01
                for j, o in enumerate(scene.objects) if j != k):
            goal = cand
            break
    return PickPlace(k, start=duration_s / 3, duration=duration_s / 3, goal=goal,
                     turn=float(rng.uniform(-1.0, 1.0)))


# --- sequences ------------------------------------------------------------------------------


def generate_sequence(kind: str, seed: int, frames: int = 45, rate: float = 15.0,
                      num_objects: int | None = None, K: np.ndarray = REAL275_K,
                      width: int = 640, height: int = 480, with_color: bool = False,
                      name: str | None = None) -> Sequence:
    """Render a whole sequence (about 0.3-1 s per 640x480 frame)."""
    return Sequence(name or f"{kind}_{seed}", kind, seed, rate, np.asarray(K, np.float64),
                    width, height, list(iter_sequence(kind, seed, frames, rate, num_objects, K,
                                                      width, height, with_color)))


def iter_sequence(kind: str, seed: int, frames: int = 45, rate: float = 15.0,
                  num_objects: int | None = None, K: np.ndarray = REAL275_K, width: int = 640,
                  height: int = 480, with_color: bool = False) -> Iterator[SequenceFrame]:
    """The frames of a sequence one by one (for a camera that plays while rendering)."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, num_objects if num_objects else int(rng.integers(3, 7)))
    times = np.arange(frames) / rate
    path = camera_path(kind, rng, times)
    move = plan_pick_place(scene, rng, times[-1] if frames > 1 else 1.0) \
        if kind == "pick_place" else None
    origin = [(o.position.copy(), o.yaw) for o in scene.objects]
    for i, (t, view) in enumerate(zip(times, path, strict=True)):
        moving = {k + 1: False for k in range(len(scene.objects))}
        if move is not None:
            obj = scene.objects[move.index]
            obj.position, obj.yaw = move.pose(*origin[move.index], t)
            moving[move.index + 1] = i > 0 and move.moving(times[i - 1], t)
        cam = camera_at(view, K, width, height)
        frame = render_frame(scene, cam, rng, with_color=with_color, with_coord=False)
        world_from_camera = np.eye(4)
        world_from_camera[:3, :3] = cam.R_cw.T
        world_from_camera[:3, 3] = -cam.R_cw.T @ cam.t_cw
        yield SequenceFrame(i, float(t), frame.depth, frame.mask, frame.instances,
                            {g.instance_id: moving[g.instance_id] for g in frame.instances},
                            world_from_camera, frame.color if with_color else None, frame.K)


def shuffle_mask_ids(frame: SequenceFrame, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The frame's mask with its ids renumbered at random (a segmenter without tracking), and
    {new mask id: object identity}."""
    ids = [g.instance_id for g in frame.instances]
    new = rng.permutation(np.arange(1, len(ids) + 1))
    lut = np.arange(256, dtype=np.uint8)
    for old, n in zip(ids, new, strict=True):
        lut[old] = n
    return lut[frame.mask], {int(n): old for old, n in zip(ids, new, strict=True)}


# --- files ----------------------------------------------------------------------------------


def _instance_json(g: InstanceGT, moving: bool) -> dict:
    return {"id": g.instance_id, "class_id": g.class_id, "rotation": g.rotation.tolist(),
            "translation": g.translation.tolist(), "size": g.size.tolist(),
            "handle_visible": g.handle_visible, "visible_pixels": g.visible_pixels,
            "moving": moving}


def write_sequence(seq: Sequence, out: str | Path) -> Path:
    folder = Path(out) / seq.name
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "frames.npz", depth=np.stack([f.depth for f in seq.frames]),
                        mask=np.stack([f.mask for f in seq.frames]))
    meta = {"format": FORMAT, "name": seq.name, "kind": seq.kind, "seed": seq.seed,
            "rate": seq.rate, "K": seq.K.tolist(), "width": seq.width, "height": seq.height,
            "background": BACKGROUND,
            "frames": [{"stamp": f.stamp, "world_from_camera": f.world_from_camera.tolist(),
                        "objects": [_instance_json(g, f.moving[g.instance_id])
                                    for g in f.instances]} for f in seq.frames]}
    (folder / "sequence.json").write_text(json.dumps(meta) + "\n")
    return folder


def read_sequence(folder: str | Path) -> Sequence:
    folder = Path(folder)
    meta = json.loads((folder / "sequence.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}/sequence.json is not a {FORMAT} file")
    with np.load(folder / "frames.npz") as arrays:  # each access decompresses: once
        depth, mask = arrays["depth"], arrays["mask"]
    seq = Sequence(meta["name"], meta["kind"], meta["seed"], meta["rate"], np.array(meta["K"]),
                   meta["width"], meta["height"])
    for i, f in enumerate(meta["frames"]):
        insts = [InstanceGT(o["id"], o["class_id"], np.array(o["rotation"]),
                            np.array(o["translation"]), np.array(o["size"]),
                            o["handle_visible"], visible_pixels=o["visible_pixels"])
                 for o in f["objects"]]
        seq.frames.append(SequenceFrame(i, f["stamp"], depth[i], mask[i],
                                        insts, {o["id"]: o["moving"] for o in f["objects"]},
                                        np.array(f["world_from_camera"]), K=seq.K))
    return seq


def list_sequences(root: str | Path) -> list[Path]:
    """Sequence folders under `root` (or `root` itself when it is one), sorted."""
    root = Path(root)
    if (root / "sequence.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/sequence.json"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="posediff-sequences", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {KINDS}")
    ap.add_argument("--per-kind", type=int, default=2, help="sequences of each kind")
    ap.add_argument("--frames", type=int, default=45)
    ap.add_argument("--rate", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=4_000_000,
                    help="sequence n of a kind uses seed + 1000 * kind index + n (held out: "
                         "training, validation and test data use seeds < 4,000,000)")
    args = ap.parse_args(argv)
    for kind in args.kinds.split(","):
        for n in range(args.per_kind):
            seed = args.seed + 1000 * KINDS.index(kind) + n
            name = f"{kind}_{seed}"
            if (Path(args.out) / name / "sequence.json").is_file():
                print(f"{name}: exists, skipped")  # resumable
                continue
            start = time.time()
            seq = generate_sequence(kind, seed, args.frames, args.rate, name=name)
            write_sequence(seq, args.out)
            print(f"{name}: {len(seq.frames)} frames in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
