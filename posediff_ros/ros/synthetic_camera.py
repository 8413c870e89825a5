"""synthetic_camera: publishes generated tabletop scenes like an RGB-D camera plus a segmenter,
with ground truth, so the whole pipeline runs without hardware.

Publishes (relative names, all with the same stamp per frame, frame_id = `frame_id`):
  depth (16UC1 mm), color (rgb8), camera_info, mask (mono8 instance ids, 0 = background),
  detections (Detection2DArray: id = mask id, class_id = NOCS name, 2D box),
  ground_truth (Detection3DArray of the true poses, same conventions as object_poses; a mug
  has a second result, class_id HANDLE_VISIBLE, score 1.0 when its handle is visible and 0.0
  when hidden: the NOCS protocol then ignores its rotation about y).
Rendering is slow (up to ~1 s a frame), so a ring of `ring_size` scenes is rendered in a
background thread at start and replayed at `rate` Hz with fresh stamps; the rendered frames
are kept in the cache dir (cache_dir.py), named by the render settings and the generator's
code, and loaded from there by the next camera with the same settings. With `orbit_step_deg`
> 0 the camera moves instead: one scene seen from `ring_size` viewpoints on a circle around the
table, `orbit_step_deg` apart, replayed back and forth once all are rendered (on a static
scene a frame paired with another frame's mask looks right; on a moving camera it does not).

`sequence` (static | orbit | handheld | pick_place, data/sequences.py) plays a moving sequence
of `sequence_frames` frames instead, once all are rendered, in order and again from the start;
ground-truth ids are then the same physical object in every frame (tracking tests, the demo).
Mask ids are the object ids (a segmenter that tracks) unless `shuffle_mask_ids`.
"""

import dataclasses
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    Detection3DArray,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
)

from posediff_ros.cache_dir import PACKAGE, default_cache_dir, source_digest
from posediff_ros.categories import BY_ID, class_id
from posediff_ros.ros import convert, messages
from posediff_ros.ros.run import run_node

PARAMETERS = {
    "rate": (5.0, "frames per second"),
    "num_objects": (0, "objects per scene (at most 20; fewer when they do not fit on the "
                       "table); 0 = random 2-6"),
    "ring_size": (4, "distinct scenes rendered at start and replayed"),
    "seed": (0, "scene generator seed"),
    "frame_id": ("camera_color_optical_frame", "frame_id of every message"),
    "width": (640, "image width"),
    "height": (480, "image height"),
    "class_names": ([""], "detections name classes like a detector: ['mug:cup', 'can:tin can']"),
    "orbit_step_deg": (0.0, "> 0: one scene, the camera orbiting the table by this many "
                            "degrees per frame; 0: ring_size static scenes"),
    "sequence": ("", "play a sequence: static | orbit | handheld | pick_place; empty = "
                     "ring_size scenes (or orbit_step_deg)"),
    "sequence_frames": (45, "frames of the sequence"),
    "shuffle_mask_ids": (False, "renumber the masks every frame, like a segmenter that does "
                                "not track (ground_truth keeps each object's own id)"),
}


def scaled_k(width: int, height: int) -> np.ndarray:
    """The REAL275 camera (640x480) scaled to another image size."""
    from posediff_ros.geometry import REAL275_K

    K = np.array(REAL275_K, dtype=np.float64)
    K[0] *= width / 640
    K[1] *= height / 480
    return K


@dataclass
class ReplayFrame:
    """What the camera replays of a rendered frame (data.synthetic.SceneFrame and
    data.sequences.SequenceFrame carry more): what a cached frame is loaded as."""

    depth: np.ndarray  # (H, W) uint16 mm
    color: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 ids, 255 = background
    K: np.ndarray  # (3, 3)
    instances: list  # data.synthetic.InstanceGT


def _instance_dict(g) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v
            for k, v in dataclasses.asdict(g).items()}


def save_frames(path: Path, frames: list) -> None:
    """Frames (anything with ReplayFrame's fields) into one compressed .npz, atomically."""
    arrays = {f"{name}_{k}": getattr(f, name) for k, f in enumerate(frames)
              for name in ("depth", "color", "mask", "K")}
    instances = [[_instance_dict(g) for g in f.instances] for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # another camera may race
    np.savez_compressed(tmp, instances=np.array(json.dumps(instances)), **arrays)
    os.replace(tmp, path)


def load_frames(path: Path) -> list[ReplayFrame]:
    from posediff_ros.data.synthetic import InstanceGT

    with np.load(path, allow_pickle=False) as data:
        out = []
        for k, items in enumerate(json.loads(str(data["instances"]))):
            instances = [InstanceGT(**{**g, **{a: np.array(g[a]) for a in
                                                ("rotation", "translation", "size")}})
                         for g in items]
            out.append(ReplayFrame(*(data[f"{n}_{k}"] for n in ("depth", "color", "mask", "K")),
                                   instances))
    return out


def rendered(render: Callable, args: tuple, out: list, stop: threading.Event) -> None:
    """render(*args, out, stop), or its frames from the cache dir when an earlier camera
    rendered them with the same arguments and the same generator code (data/, this file) and
    numpy; what is rendered here is saved there (once complete) for the next one."""
    digest = source_digest([*(PACKAGE / "data").glob("*.py"), Path(__file__)],
                           render.__name__, repr(args), np.__version__)
    path = default_cache_dir() / "camera" / f"{render.__name__}-{digest}.npz"
    if path.is_file():
        try:
            out.extend(load_frames(path))
            return
        except (OSError, ValueError, KeyError, TypeError):  # unreadable: render it again
            pass
    render(*args, out, stop)
    if not stop.is_set():
        try:
            save_frames(path, out)
        except OSError:  # a read-only or full cache: the next camera renders too
            pass


def render_ring(count: int, seed: int, num_objects: int, width: int, height: int, out: list,
                stop: threading.Event) -> None:
    """Render scenes into `out` one by one (a list shared with the publisher). More than six
    objects get a table area and a camera distance grown with their number, so they fit."""
    from posediff_ros.data.synthetic import make_scene, render_frame, render_scene, sample_camera

    rng, K = np.random.default_rng(seed), scaled_k(width, height)
    for _ in range(count):
        if stop.is_set():
            return
        if num_objects <= 6:
            out.append(render_scene(rng, K=K, width=width, height=height,
                                    num_objects=num_objects or None))
            continue
        grow = np.sqrt(num_objects / 6.0)
        scene = make_scene(rng, num_objects, spread=0.3 * grow)
        camera = sample_camera(rng, K, width=width, height=height,
                               distance=(0.7 * grow, 1.0 * grow), elevation_deg=(45, 65))
        out.append(render_frame(scene, camera, rng))


def render_orbit(count: int, step_deg: float, seed: int, num_objects: int, width: int,
                 height: int, out: list, stop: threading.Event) -> None:
    """One scene seen from `count` viewpoints `step_deg` apart on a circle around the table
    (0.7 m away, 40 degrees down), rendered into `out` one by one."""
    from posediff_ros.data.synthetic import Camera, look_at, make_scene, render_frame

    rng = np.random.default_rng(seed)
    scene = make_scene(rng, num_objects or None)
    target = np.array([0.0, 0.03, 0.0])
    elevation, distance = np.deg2rad(40.0), 0.7
    start = rng.uniform(0, 2 * np.pi)
    for k in range(count):
        if stop.is_set():
            return
        az = start + np.deg2rad(step_deg) * k
        position = target + distance * np.array([np.cos(elevation) * np.cos(az),
                                                 np.sin(elevation),
                                                 np.cos(elevation) * np.sin(az)])
        R, t = look_at(position, target)
        out.append(render_frame(scene, Camera(scaled_k(width, height), width, height, R, t),
                                rng))


def render_sequence(kind: str, frames: int, seed: int, num_objects: int, rate: float,
                    width: int, height: int, out: list, stop: threading.Event) -> None:
    """Render a sequence's frames into `out` one by one; intrinsics scaled to the image."""
    from posediff_ros.data.sequences import iter_sequence

    for frame in iter_sequence(kind, seed, frames, rate, num_objects or None,
                               scaled_k(width, height), width, height, with_color=True):
        if stop.is_set():
            return
        out.append(frame)


def camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.k = [float(v) for v in np.asarray(K).ravel()]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = [float(v) for v in P.ravel()]
    return info


def detections_2d(header: Header, mask: np.ndarray, instances,
                  names: dict[str, str] | None = None) -> Detection2DArray:
    """Boxes and classes like a detector's; `names` renames NOCS classes (e.g. mug -> cup)."""
    out = Detection2DArray(header=header)
    for inst in instances:
        v, u = np.nonzero(mask == inst.instance_id)
        if len(u) == 0:
            continue  # fully occluded: a segmenter would not report it
        det = Detection2D(header=header, id=str(inst.instance_id))
        det.results = [ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(
            class_id=(names or {}).get(BY_ID[inst.class_id].name, BY_ID[inst.class_id].name),
            score=1.0))]
        det.bbox.center.position.x = float(u.min() + u.max()) / 2
        det.bbox.center.position.y = float(v.min() + v.max()) / 2
        det.bbox.size_x = float(u.max() - u.min() + 1)
        det.bbox.size_y = float(v.max() - v.min() + 1)
        out.detections.append(det)
    return out


HANDLE_VISIBLE = "handle_visible"  # class_id of a ground-truth mug's second result


def ground_truth(header: Header, instances) -> Detection3DArray:
    out = Detection3DArray(header=header)
    for g in instances:
        det = messages.detection(header, g.instance_id, g.class_id, g.rotation, g.translation,
                                 g.size, 1.0)
        if g.class_id == class_id("mug"):
            det.results.append(ObjectHypothesisWithPose(
                hypothesis=ObjectHypothesis(class_id=HANDLE_VISIBLE,
                                            score=1.0 if g.handle_visible else 0.0),
                pose=det.results[0].pose))
        out.detections.append(det)
    return out


class SyntheticCamera(Node):
    def __init__(self, **kwargs):
        super().__init__("synthetic_camera", **kwargs)
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text,
                                                                      read_only=True))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if p["rate"] <= 0 or p["ring_size"] < 1 or not 0 <= p["num_objects"] <= 20:
            raise ValueError("need rate > 0, ring_size >= 1, 0 <= num_objects <= 20")
        from posediff_ros.data.sequences import KINDS

        if p["sequence"] and (p["sequence"] not in KINDS or p["sequence_frames"] < 1):
            raise ValueError(f"sequence must be one of {KINDS} with sequence_frames >= 1")
        self.frame_id = p["frame_id"]
        self.shuffle_seed = p["seed"] if p["shuffle_mask_ids"] else None
        self.class_names = dict(e.split(":", 1) for e in p["class_names"] if ":" in e)
        qos = qos_profile_sensor_data
        self.pubs = {
            "depth": self.create_publisher(Image, "depth", qos),
            "color": self.create_publisher(Image, "color", qos),
            "camera_info": self.create_publisher(CameraInfo, "camera_info", qos),
            "mask": self.create_publisher(Image, "mask", qos),
            "detections": self.create_publisher(Detection2DArray, "detections", qos),
            "ground_truth": self.create_publisher(Detection3DArray, "ground_truth", 10),
        }
        self.frames: list = []
        self.prepared: list = []  # per frame: messages without header, built once
        self.index = 0
        self.published = 0
        self.stop = threading.Event()
        size = (p["num_objects"], p["width"], p["height"])
        self.orbit = p["orbit_step_deg"] > 0
        self.ring_size = p["ring_size"]
        self.sequence_frames = p["sequence_frames"] if p["sequence"] else 0
        if p["sequence"]:
            job = render_sequence, (p["sequence"], p["sequence_frames"], p["seed"],
                                    p["num_objects"], p["rate"], *size[1:])
        elif self.orbit:
            job = render_orbit, (p["ring_size"], p["orbit_step_deg"], p["seed"], *size)
        else:
            job = render_ring, (p["ring_size"], p["seed"], *size)
        self.renderer = threading.Thread(target=rendered, daemon=True,
                                         args=(*job, self.frames, self.stop))
        self.renderer.start()
        self.timer = self.create_timer(1.0 / p["rate"], self._tick)
        what = f"sequence {p['sequence']}" if p["sequence"] else f"{p['ring_size']} scenes"
        self.get_logger().info(f"rendering {what}, publishing at {p['rate']} Hz")

    def _prepare(self, frame, index: int) -> dict:
        mask, segmented = frame.mask, frame.instances
        if self.shuffle_seed is not None:  # the same renumbering on every replay of a frame
            from posediff_ros.data.sequences import shuffle_mask_ids

            mask, identity = shuffle_mask_ids(frame, np.random.default_rng(
                (self.shuffle_seed, index)))
            new_id = {old: new for new, old in identity.items()}
            segmented = [dataclasses.replace(g, instance_id=new_id[g.instance_id])
                         for g in frame.instances]
        mask = np.where(mask == 255, 0, mask).astype(np.uint8)
        return {
            "depth": convert.numpy_to_image(frame.depth, "16UC1"),
            "color": convert.numpy_to_image(frame.color, "rgb8"),
            "mask": convert.numpy_to_image(mask, "mono8"),
            # built once per scene; only the headers change per tick
            "detections": detections_2d(Header(), mask, segmented, self.class_names),
            "ground_truth": ground_truth(Header(), frame.instances),
        }

    def _tick(self) -> None:
        while len(self.prepared) < len(self.frames):
            self.prepared.append(self._prepare(self.frames[len(self.prepared)],
                                               len(self.prepared)))
        if not self.prepared or (self.orbit and len(self.prepared) < self.ring_size) \
                or len(self.prepared) < self.sequence_frames:
            return  # an orbit or a sequence starts once all its frames are there
        n = len(self.prepared)
        if self.orbit and n > 1:  # back and forth along the arc, never a jump
            i = self.index % (2 * n - 2)
            i = i if i < n else 2 * n - 2 - i
        else:
            i = self.index % n
        self.index += 1
        frame, msgs = self.frames[i], self.prepared[i]
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        for name in ("depth", "color", "mask", "detections", "ground_truth"):
            msgs[name].header = header
        for det in msgs["detections"].detections + msgs["ground_truth"].detections:
            det.header = header
        height, width = frame.depth.shape
        # what the pose node needs first, the large optional colour image last: a burst
        # larger than the transport's buffers (e.g. Fast DDS' 512 KB shared-memory segment)
        # loses its tail on a loaded machine
        self.pubs["camera_info"].publish(camera_info(frame.K, width, height, header))
        self.pubs["detections"].publish(msgs["detections"])
        self.pubs["mask"].publish(msgs["mask"])
        self.pubs["depth"].publish(msgs["depth"])
        self.pubs["ground_truth"].publish(msgs["ground_truth"])
        self.pubs["color"].publish(msgs["color"])
        self.published += 1


def main(args: list[str] | None = None) -> int:
    return run_node(SyntheticCamera, "synthetic_camera", args,
                    cleanup=lambda node: node.stop.set(), startup_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
