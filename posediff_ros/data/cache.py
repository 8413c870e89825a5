"""Training cache: per-object point sets from rendered synthetic frames, in npz shards.

Layout of a cache directory:
    shard_XXXXX.npz  points float16 (N, P, 3) camera-frame metres; class_ids int64 (N,);
                     rotations float32 (N, 3, 3) camera-from-object; translations float32
                     (N, 3) metres; sizes float32 (N, 3) bbox extents metres; handle_visible
                     bool (N,); seed int64 () the shard's seed
    meta.json        generator version, seed base, shard size, P, counts

Shard k is generated from seed base + k alone, so building is resumable (existing shards are
skipped) and sets built with far-apart bases (train 0, val 1_000_000, test 2_000_000, the
out-of-distribution test 5_000_000) never share a seed. Every object is a new random shape
(distinct shapes beat repeated views). `ood` builds the out-of-distribution split: shape
parameters, camera placement, sensor settings and segmentation errors from widened ranges
(docs/DATA.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from posediff_ros.data.points import object_points
from posediff_ros.data.sensor import draw_settings
from posediff_ros.data.synthetic import GENERATOR_VERSION, make_scene, render_frame, sample_camera

FIELDS = ("points", "class_ids", "rotations", "translations", "sizes", "handle_visible")
MIN_VISIBLE_PIXELS = 64  # objects covering fewer pixels are skipped (a detector misses them)


@dataclass
class SegmentationErrors:
    """How a real instance mask is wrong: edges eroded or dilated (dilation pulls in table,
    background and neighbour points), a ragged boundary, small misalignments, and a part cut
    away (an occluder the segmenter did not see, or a missed part)."""

    p_erode: float = 0.3
    p_dilate: float = 0.35
    max_erode: int = 3  # pixels
    max_dilate: int = 4
    p_ragged: float = 0.4  # boundary moved in and out by a smooth random field
    ragged_px: float = 2.0  # ... up to this many pixels
    p_shift: float = 0.25
    max_shift: int = 3
    p_cut: float = 0.15  # a disc of the mask removed
    max_cut: float = 0.35  # ... at most this share of the mask

    def widened(self) -> SegmentationErrors:
        """Out-of-distribution: larger and more frequent errors."""
        return SegmentationErrors(0.35, 0.4, 5, 7, 0.6, 3.5, 0.35, 5, 0.25, 0.5)


def _ragged(crop: np.ndarray, px: float, rng: np.random.Generator) -> np.ndarray:
    """Move the boundary by a smooth field of up to `px` pixels (signed distance + field)."""
    inside = ndimage.distance_transform_edt(crop)
    outside = ndimage.distance_transform_edt(~crop)
    sdf = np.where(crop, inside - 0.5, 0.5 - outside)
    field = ndimage.gaussian_filter(rng.standard_normal(crop.shape), 3.0)
    field *= px / max(np.abs(field).max(), 1e-9)
    out = sdf + field > 0
    return out if out.sum() >= 0.3 * crop.sum() else crop


def _cut(crop: np.ndarray, max_share: float, rng: np.random.Generator) -> np.ndarray:
    """Remove a disc centred on a random boundary pixel, at most `max_share` of the mask."""
    edge = crop & ~ndimage.binary_erosion(crop)
    rows, cols = np.nonzero(edge)
    if len(rows) == 0:
        return crop
    i = rng.integers(len(rows))
    area = crop.sum() * rng.uniform(0.3, 1.0) * max_share
    radius = np.sqrt(2.0 * area / np.pi)  # about half the disc lies inside the mask
    yy, xx = np.ogrid[: crop.shape[0], : crop.shape[1]]
    out = crop & ((yy - rows[i]) ** 2 + (xx - cols[i]) ** 2 > radius**2)
    return out if out.sum() >= 0.4 * crop.sum() else crop


def perturb_mask(mask: np.ndarray, rng: np.random.Generator,
                 cfg: SegmentationErrors | None = None) -> np.ndarray:
    """A plausibly wrong copy of a bool instance mask (work happens in its bounding box)."""
    cfg = cfg or SegmentationErrors()
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return mask
    pad = max(cfg.max_dilate, cfg.max_shift, int(np.ceil(cfg.ragged_px))) + 2
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    crop = mask[r0:r1, c0:c1]
    u = rng.random()
    if u < cfg.p_erode:
        eroded = ndimage.binary_erosion(crop, iterations=int(rng.integers(1, cfg.max_erode + 1)))
        crop = eroded if eroded.sum() >= 0.3 * crop.sum() else crop
    elif u < cfg.p_erode + cfg.p_dilate:
        crop = ndimage.binary_dilation(crop, iterations=int(rng.integers(1, cfg.max_dilate + 1)))
    if rng.random() < cfg.p_ragged:
        crop = _ragged(crop, rng.uniform(0.5, 1.0) * cfg.ragged_px, rng)
    if rng.random() < cfg.p_cut:
        crop = _cut(crop, cfg.max_cut, rng)
    if rng.random() < cfg.p_shift:
        dy, dx = rng.integers(-cfg.max_shift, cfg.max_shift + 1, size=2)
        crop = np.roll(crop, (int(dy), int(dx)), axis=(0, 1))
    out = np.zeros_like(mask)
    out[r0:r1, c0:c1] = crop
    return out


OOD_FACTORS = ("shapes", "camera", "sensor", "masks")


def build_shard(seed: int, n_objects: int, n_points: int = 1024, ood: bool | str = False,
                class_weights: tuple[float, ...] | None = None) -> dict[str, np.ndarray]:
    """`n_objects` training samples from frames rendered with generator seed `seed`; `ood`:
    True draws everything from the widened out-of-distribution ranges, one of OOD_FACTORS
    only that factor (to see which one a model does not generalise over); `class_weights`
    (6, NOCS order): how often each class is put in a scene (default: equally)."""
    if ood not in (True, False, *OOD_FACTORS):
        raise ValueError(f"ood must be a bool or one of {OOD_FACTORS}, not {ood!r}")
    wide = {f: ood is True or ood == f for f in OOD_FACTORS}
    rng = np.random.default_rng(seed)
    seg = SegmentationErrors().widened() if wide["masks"] else SegmentationErrors()
    out: dict[str, list] = {k: [] for k in FIELDS}
    while len(out["class_ids"]) < n_objects:
        scene = make_scene(rng, class_weights=class_weights, ood=wide["shapes"])
        cam = sample_camera(rng, ood=wide["camera"])
        frame = render_frame(scene, cam, rng, noise=draw_settings(rng, ood=wide["sensor"]),
                             with_color=False, with_coord=False)
        for inst in frame.instances:
            if len(out["class_ids"]) >= n_objects or inst.visible_pixels < MIN_VISIBLE_PIXELS:
                continue
            m = perturb_mask(frame.mask == inst.instance_id, rng, seg)
            res = object_points(frame.depth, m, frame.K, n_points, rng)
            if not res:
                continue
            out["points"].append(res.points.astype(np.float16))
            out["class_ids"].append(inst.class_id)
            out["rotations"].append(inst.rotation)
            out["translations"].append(inst.translation)
            out["sizes"].append(inst.size)
            out["handle_visible"].append(inst.handle_visible)
    return {
        "points": np.stack(out["points"]).astype(np.float16),
        "class_ids": np.asarray(out["class_ids"], dtype=np.int64),
        "rotations": np.stack(out["rotations"]).astype(np.float32),
        "translations": np.stack(out["translations"]).astype(np.float32),
        "sizes": np.stack(out["sizes"]).astype(np.float32),
        "handle_visible": np.asarray(out["handle_visible"], dtype=bool),
        "seed": np.asarray(seed, dtype=np.int64),
    }


def shard_path(out_dir: str, k: int) -> str:
    return os.path.join(out_dir, f"shard_{k:05d}.npz")


def _build_one(args: tuple) -> tuple[int, int]:
    """(out_dir, k, seed, n, n_points[, ood[, class_weights]]) -> (k, objects written)."""
    out_dir, k, seed, n, n_points, *rest = args
    ood, class_weights = (*rest, False, None)[:2]
    path = shard_path(out_dir, k)
    data = build_shard(seed, n, n_points, ood, class_weights)
    tmp = os.path.join(out_dir, f"tmp{os.getpid()}_{k:05d}.npz")  # not matched by shard_*
    np.savez(tmp, **data)
    os.replace(tmp, path)  # atomic: a shard file is either complete or absent
    return k, len(data["class_ids"])


def write_meta(out_dir: str, seed: int, shard_size: int, n_points: int,
               ood: bool | str = False, class_weights: tuple | None = None) -> dict:
    """meta.json from the shards on disk (so it is right after any resumed build)."""
    shards = sorted(glob.glob(os.path.join(out_dir, "shard_*.npz")))
    counts, class_counts = {}, np.zeros(7, dtype=np.int64)
    for p in shards:
        with np.load(p) as z:
            counts[os.path.basename(p)] = int(len(z["class_ids"]))
            class_counts += np.bincount(z["class_ids"], minlength=7)
    ks = [int(os.path.basename(p)[6:11]) for p in shards]
    meta = {
        "generator_version": GENERATOR_VERSION,
        "ood": ood,
        **({"class_weights": list(class_weights)} if class_weights else {}),
        "seed_base": seed,
        "seed_range": [seed + min(ks), seed + max(ks)] if ks else [],
        "shard_size": shard_size,
        "num_points": n_points,
        "num_objects": int(sum(counts.values())),
        "num_shards": len(shards),
        "class_counts": {str(c): int(class_counts[c]) for c in range(1, 7)},
        "shards": counts,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def build_cache(out_dir: str, objects: int, seed: int = 0, workers: int = 2,
                shard_size: int = 500, n_points: int = 1024, progress: bool = True,
                ood: bool | str = False, class_weights: tuple | None = None) -> dict:
    """Build (or complete) a cache of `objects` samples; returns the meta dict."""
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f)
        weights = list(class_weights) if class_weights else None
        settings = (seed, shard_size, n_points, ood, GENERATOR_VERSION, weights)
        if (old["seed_base"], old["shard_size"], old["num_points"], old.get("ood", False),
                old.get("generator_version"), old.get("class_weights")) != settings:
            raise ValueError(f"{out_dir} was built with other settings: {old}")
    n_shards = -(-objects // shard_size)
    jobs = []
    for k in range(n_shards):
        n = min(shard_size, objects - k * shard_size)
        if not os.path.exists(shard_path(out_dir, k)):
            jobs.append((out_dir, k, seed + k, n, n_points, ood, class_weights))
    write_meta(out_dir, seed, shard_size, n_points, ood, class_weights)
    from tqdm import tqdm

    bar = tqdm(total=sum(j[3] for j in jobs), unit="obj", disable=not progress)
    t0 = time.time()
    if workers <= 1:
        for j in jobs:
            bar.update(_build_one(j)[1])
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for i, (_, n) in enumerate(pool.imap_unordered(_build_one, jobs)):
                bar.update(n)
                if i % 10 == 9:  # keep meta.json current while a long build runs
                    write_meta(out_dir, seed, shard_size, n_points, ood, class_weights)
    bar.close()
    meta = write_meta(out_dir, seed, shard_size, n_points, ood, class_weights)
    if progress and jobs:
        done = sum(j[3] for j in jobs)
        dt = time.time() - t0
        print(f"{done} objects in {dt:.1f} s ({done / dt:.1f} objects/s, {workers} workers)")
    return meta


@dataclass
class TrainingCache:
    points: np.ndarray  # (N, P, 3) float16, camera frame, metres
    class_ids: np.ndarray  # (N,) int64, NOCS 1..6
    rotations: np.ndarray  # (N, 3, 3) float32, camera-from-object
    translations: np.ndarray  # (N, 3) float32, metres
    sizes: np.ndarray  # (N, 3) float32, bbox extents, metres
    handle_visible: np.ndarray  # (N,) bool
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.class_ids)


def load_cache(cache_dir: str, max_shards: int | None = None) -> TrainingCache:
    """Stack every complete shard of a cache directory (in shard order)."""
    paths = sorted(glob.glob(os.path.join(cache_dir, "shard_*.npz")))[:max_shards]
    if not paths:
        raise FileNotFoundError(f"no shard_*.npz in {cache_dir}")
    parts: dict[str, list] = {k: [] for k in FIELDS}
    for p in paths:
        with np.load(p) as z:
            for k in FIELDS:
                parts[k].append(z[k])
    meta = {}
    meta_path = os.path.join(cache_dir, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    return TrainingCache(**{k: np.concatenate(v) for k, v in parts.items()}, meta=meta)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build a per-object training cache (npz shards).")
    ap.add_argument("--out", required=True, help="cache directory")
    ap.add_argument("--objects", type=int, required=True, help="total objects wanted")
    ap.add_argument("--seed", type=int, default=0, help="seed base: shard k uses seed + k")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--points", type=int, default=1024, help="points per object (P)")
    ap.add_argument("--ood", action="store_true",
                    help="out-of-distribution split: widened shape, camera, sensor and "
                         "segmentation ranges (docs/DATA.md)")
    ap.add_argument("--ood-only", choices=OOD_FACTORS, default=None,
                    help="widen only this factor (diagnosis of which one a model fails on)")
    ap.add_argument("--class-weights", default="",
                    help="6 comma-separated weights (bottle,bowl,camera,can,laptop,mug): how "
                         "often each class is put in a scene; default equal")
    a = ap.parse_args(argv)
    weights = tuple(float(w) for w in a.class_weights.split(",")) if a.class_weights else None
    if weights is not None and len(weights) != 6:
        ap.error("--class-weights needs 6 numbers")
    meta = build_cache(a.out, a.objects, a.seed, a.workers, a.shard_size, a.points,
                       ood=a.ood_only or a.ood, class_weights=weights)
    print(f"{a.out}: {meta['num_objects']} objects in {meta['num_shards']} shards")


if __name__ == "__main__":
    main()
