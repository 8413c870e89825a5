"""A training cache from data sets on disk (REAL275 / CAMERA25 layout, HouseCat6D), mixed with
generated objects at a chosen ratio: what `posediff-cache --dataset DIR` builds, and what
`posediff-train --init MODEL` fine-tunes a model on.

The shards have the format of data/cache.py, so training reads them unchanged. The points are
extracted as the node extracts them (data/points.object_points with the node's depth range and
minimum point count, on the object's mask after the same segmentation-error augmentation as
the generated cache). Poses come from each frame's gt pickle, or, where there is none (the
REAL275 and CAMERA25 training sets), from a similarity fit to its NOCS map (data/nocs.py).

Shards 0..R-1 hold the data sets' objects, `frames_per_shard` frames each, in the sorted frame
order of each data set in turn; shards R.. hold generated objects, as many as make them
`generated_fraction` of the cache. Shard k is built from seed base + k alone, so a build is
resumable (existing shards are skipped) and repeatable.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posediff_ros.categories import BY_ID
from posediff_ros.data import housecat6d, nocs
from posediff_ros.data.cache import (
    FIELDS,
    MIN_VISIBLE_PIXELS,
    build_shard,
    perturb_mask,
    shard_path,
    write_meta,
)
from posediff_ros.data.points import object_points
from posediff_ros.pipeline import PipelineConfig

NODE = PipelineConfig()  # the node's extraction defaults (depth range, minimum points)


@dataclass(frozen=True)
class FrameRef:
    """One frame of a data set on disk."""

    kind: str  # "nocs" (REAL275 / CAMERA25 / posediff-generate) or "housecat6d"
    root: str
    scene: str  # scene folder
    frame: str  # frame id


def dataset_frames(root: str, stride: int = 1, max_frames: int = 0) -> list[FrameRef]:
    """Every `stride`-th frame of a data set folder (at most `max_frames`; 0 = all), sorted.
    The layout is recognised from the files (HouseCat6D: */labels/*_label.pkl)."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"data set folder {root} does not exist")
    kind = "housecat6d" if housecat6d.is_housecat6d(root) else "nocs"
    listed = (housecat6d if kind == "housecat6d" else nocs).list_frames(root)
    refs = [FrameRef(kind, str(root), str(scene), frame) for scene, frame in listed[::stride]]
    if not refs:
        raise FileNotFoundError(f"no REAL275/CAMERA25 (*_meta.txt) or HouseCat6D frames "
                                f"(*/rgb/*.png with labels/) under {root}")
    return refs[:max_frames] if max_frames else refs


def load_frame(ref: FrameRef) -> nocs.Frame | None:
    if ref.kind == "housecat6d":
        return housecat6d.load_frame(Path(ref.scene), ref.frame)
    return nocs.load_frame(ref.root, Path(ref.scene), ref.frame)


def frame_samples(frame: nocs.Frame, n_points: int, rng: np.random.Generator,
                  mask_errors: bool = True) -> list[dict]:
    """One training sample per NOCS-class object of a frame with enough points."""
    out = []
    for inst in frame.instances:
        mask = frame.mask == inst.instance_id
        if inst.class_id not in BY_ID or mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        if mask_errors:
            mask = perturb_mask(mask, rng)
        found = object_points(frame.depth, mask, frame.K, n_points, rng,
                              depth_range=NODE.depth_range, min_points=NODE.min_points)
        if found:
            out.append({"points": found.points.astype(np.float16), "class_ids": inst.class_id,
                        "rotations": inst.rotation, "translations": inst.translation,
                        "sizes": inst.size, "handle_visible": inst.handle_visible})
    return out


def dataset_shard(refs: list[FrameRef], seed: int, n_points: int = 1024,
                  mask_errors: bool = True) -> dict[str, np.ndarray]:
    """The objects of some frames, as one shard (data/cache.py's fields)."""
    rng = np.random.default_rng(seed)
    samples = []
    for ref in refs:
        frame = load_frame(ref)
        if frame is not None:
            samples += frame_samples(frame, n_points, rng, mask_errors)
    dtypes = {"points": np.float16, "class_ids": np.int64, "rotations": np.float32,
              "translations": np.float32, "sizes": np.float32, "handle_visible": bool}
    shard = {k: np.asarray([s[k] for s in samples], dtype=dtypes[k]) for k in FIELDS}
    if not samples:  # shapes of an empty shard, so that shards concatenate
        shard.update(points=np.zeros((0, n_points, 3), np.float16),
                     rotations=np.zeros((0, 3, 3), np.float32),
                     translations=np.zeros((0, 3), np.float32), sizes=np.zeros((0, 3), np.float32))
    shard["seed"] = np.asarray(seed, dtype=np.int64)
    return shard


def _save(out_dir: str, k: int, data: dict) -> int:
    tmp = os.path.join(out_dir, f"tmp{os.getpid()}_{k:05d}.npz")  # not matched by shard_*
    np.savez(tmp, **data)
    os.replace(tmp, shard_path(out_dir, k))  # atomic: a shard is either complete or absent
    return len(data["class_ids"])


def _build_job(job: tuple) -> int:
    """("data", out_dir, k, seed, n_points, refs, mask_errors) or
    ("generated", out_dir, k, seed, n_points, n_objects)."""
    kind, out_dir, k, seed, n_points, *rest = job
    if kind == "data":
        refs, mask_errors = rest
        return _save(out_dir, k, dataset_shard(refs, seed, n_points, mask_errors))
    return _save(out_dir, k, build_shard(seed, rest[0], n_points))


def _run(jobs: list[tuple], workers: int) -> int:
    if workers <= 1 or len(jobs) <= 1:
        return sum(_build_job(j) for j in jobs)
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        return sum(pool.imap_unordered(_build_job, jobs))


def _count(out_dir: str, shards: range) -> int:
    total = 0
    for k in shards:
        with np.load(shard_path(out_dir, k)) as z:
            total += len(z["class_ids"])
    return total


@dataclass
class DatasetCacheSettings:
    datasets: tuple[str, ...]  # data set folders, in this order
    generated_fraction: float = 0.0  # share of generated objects in the cache, [0, 1)
    seed: int = 0  # shard k uses seed + k
    frames_per_shard: int = 20
    frame_stride: int = 1  # every n-th frame (neighbouring video frames are near-duplicates)
    max_frames: int = 0  # per data set, after the stride; 0 = all
    shard_size: int = 500  # generated objects per shard
    n_points: int = 1024
    mask_errors: bool = True  # segmentation-error augmentation of the data sets' masks too

    def record(self) -> dict:
        return {"datasets": [os.path.abspath(d) for d in self.datasets],
                "generated_fraction": self.generated_fraction, "seed": self.seed,
                "frames_per_shard": self.frames_per_shard, "frame_stride": self.frame_stride,
                "max_frames": self.max_frames, "shard_size": self.shard_size,
                "n_points": self.n_points, "mask_errors": self.mask_errors}


def _claim(out_dir: str, cfg: DatasetCacheSettings) -> None:
    """Record the settings before the first shard (so that an interrupted build resumes), and
    refuse to extend a cache that was built with other settings."""
    path = os.path.join(out_dir, "meta.json")
    if not os.path.exists(path):
        if any(Path(out_dir).glob("shard_*.npz")):
            raise ValueError(f"{out_dir} holds shards but no meta.json; use a new folder")
        with open(path, "w") as f:
            json.dump({"dataset_cache": cfg.record()}, f, indent=1)
        return
    with open(path) as f:
        old = json.load(f).get("dataset_cache")
    if old != cfg.record():
        raise ValueError(f"{out_dir} was built with other settings: {old}")


def build_dataset_cache(out_dir: str, cfg: DatasetCacheSettings, workers: int = 2,
                        progress: bool = True) -> dict:
    """Build (or complete) the cache; returns its meta dict (data/cache.py's, plus
    "dataset_cache": the settings and "sources": which shards hold what)."""
    if not 0.0 <= cfg.generated_fraction < 1.0:
        raise ValueError(f"generated_fraction must be in [0, 1), not {cfg.generated_fraction}")
    os.makedirs(out_dir, exist_ok=True)
    _claim(out_dir, cfg)
    t0 = time.time()
    jobs, sources, k = [], [], 0
    for root in cfg.datasets:
        refs = dataset_frames(root, cfg.frame_stride, cfg.max_frames)
        first = k
        for i in range(0, len(refs), cfg.frames_per_shard):
            if not os.path.exists(shard_path(out_dir, k)):
                jobs.append(("data", out_dir, k, cfg.seed + k, cfg.n_points,
                             refs[i:i + cfg.frames_per_shard], cfg.mask_errors))
            k += 1
        sources.append({"source": os.path.abspath(root), "kind": refs[0].kind,
                        "frames": len(refs), "shards": [first, k - 1]})
    _run(jobs, workers)
    n_data = _count(out_dir, range(k))
    f = cfg.generated_fraction
    n_gen = int(round(n_data * f / (1.0 - f)))
    jobs, first = [], k
    for i in range(0, n_gen, cfg.shard_size):
        if not os.path.exists(shard_path(out_dir, k)):
            jobs.append(("generated", out_dir, k, cfg.seed + k, cfg.n_points,
                         min(cfg.shard_size, n_gen - i)))
        k += 1
    if n_gen:
        sources.append({"source": "generated", "objects": n_gen, "shards": [first, k - 1]})
    _run(jobs, workers)
    meta = write_meta(out_dir, cfg.seed, cfg.shard_size, cfg.n_points)
    meta.update(dataset_cache=cfg.record(), sources=sources, data_set_objects=n_data,
                generated_objects=n_gen)
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    if progress:
        print(f"{n_data} data set objects + {n_gen} generated in {k} shards "
              f"({time.time() - t0:.1f} s)")
    return meta


def main(argv: list[str] | None = None) -> None:
    """posediff-cache --dataset DIR [--dataset DIR2 ...] --out OUT [options]"""
    ap = argparse.ArgumentParser(
        prog="posediff-cache --dataset",
        description="A training cache from REAL275 / CAMERA25 (NOCS layout) or HouseCat6D "
                    "folders, mixed with generated objects (npz shards, data/cache.py format).")
    ap.add_argument("--dataset", action="append", required=True,
                    help="a data set folder; repeat for several")
    ap.add_argument("--out", required=True, help="cache directory")
    ap.add_argument("--generated-fraction", type=float, default=0.0,
                    help="share of generated objects in the cache, 0 <= f < 1 (0.5: as many "
                         "generated as data set objects)")
    ap.add_argument("--seed", type=int, default=0, help="seed base: shard k uses seed + k")
    ap.add_argument("--frames-per-shard", type=int, default=20)
    ap.add_argument("--frame-stride", type=int, default=1,
                    help="every n-th frame (neighbouring video frames are near-duplicates)")
    ap.add_argument("--max-frames", type=int, default=0, help="per data set (0 = all)")
    ap.add_argument("--shard-size", type=int, default=500, help="generated objects per shard")
    ap.add_argument("--points", type=int, default=1024, help="points per object (P)")
    ap.add_argument("--no-mask-errors", action="store_true",
                    help="no segmentation-error augmentation of the data sets' masks")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    cfg = DatasetCacheSettings(tuple(a.dataset), a.generated_fraction, a.seed,
                               a.frames_per_shard, a.frame_stride, a.max_frames, a.shard_size,
                               a.points, not a.no_mask_errors)
    meta = build_dataset_cache(a.out, cfg, a.workers)
    print(f"{a.out}: {meta['num_objects']} objects in {meta['num_shards']} shards")
