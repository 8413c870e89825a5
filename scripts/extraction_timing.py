"""Point extraction as the node runs it, this checkout beside another one, in one run.

Renders frames once with this checkout's synthetic camera (640x480, the scenes
`posediff-bench --node` streams: 16UC1 depth in mm, mono8 instance mask, 0 = background),
then times, per frame, in a separate process per checkout (its code first on PYTHONPATH):
  conversion = the node's reads of the depth and mask messages (convert.py of that checkout);
  extraction = Pipeline.extract (every object of the frame -> its point set).
Checkouts alternate (this, other, this, other, ...) so that load changes hit both alike.

  .venv/bin/python scripts/extraction_timing.py --compare old=/tmp/old-checkout \
      --json docs/bench/extraction_timing.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def render(path: Path, objects: list[int], frames: int, seed: int) -> None:
    """frames scenes per object count into one .npz (depth, mask, class per mask id, K)."""
    import threading

    from posediff_ros.ros.synthetic_camera import render_ring, scaled_k

    out = {}
    for n in objects:
        scenes: list = []
        render_ring(frames, seed, n, 640, 480, scenes, threading.Event())
        for k, s in enumerate(scenes):
            out[f"{n}_{k}_depth"] = s.depth
            out[f"{n}_{k}_mask"] = np.where(s.mask == 255, 0, s.mask).astype(np.uint8)
            out[f"{n}_{k}_classes"] = np.array([[i.instance_id, i.class_id]
                                                for i in s.instances], np.int64).reshape(-1, 2)
    np.savez(path, K=scaled_k(640, 480), **out)


class _Points:
    """What Pipeline.extract needs of a backend."""

    num_points = 256


def time_frames(path: Path, repeats: int) -> dict:
    """Per object count: conversion and extraction ms per frame (p50 over frames x repeats),
    objects extracted per frame, extraction ms per object."""
    from posediff_ros.pipeline import Pipeline, PipelineConfig
    from posediff_ros.ros import convert

    data = np.load(path)
    K = data["K"]
    depth_of = getattr(convert, "depth_image", convert.depth_to_metres)  # before issue 15: float
    pipeline = Pipeline(_Points(), PipelineConfig())
    groups: dict[int, list[str]] = {}
    for key in data.files:
        if key.endswith("_depth"):
            n, k, _ = key.split("_")
            groups.setdefault(int(n), []).append(f"{n}_{k}")
    res = {}
    for n, keys in sorted(groups.items()):
        conv, ext, found = [], [], []
        msgs = [(convert.numpy_to_image(data[f"{k}_depth"], "16UC1"),
                 convert.numpy_to_image(data[f"{k}_mask"], "mono8"),
                 {int(i): int(c) for i, c in data[f"{k}_classes"]}) for k in keys]
        for r in range(repeats + 1):
            for depth_msg, mask_msg, classes in msgs:
                t0 = time.perf_counter()
                depth, mask = depth_of(depth_msg), convert.mask_to_numpy(mask_msg)
                t1 = time.perf_counter()
                usable, _ = pipeline.extract(depth, mask, K, classes, 0)
                t2 = time.perf_counter()
                if r:  # the first round warms up
                    conv.append(1e3 * (t1 - t0))
                    ext.append(1e3 * (t2 - t1))
                    found.append(len(usable))
        per_object = [e / max(f, 1) for e, f in zip(ext, found, strict=True)]
        res[n] = {"conversion_ms": float(np.median(conv)), "extraction_ms": float(np.median(ext)),
                  "objects_per_frame": float(np.mean(found)),
                  "extraction_ms_per_object": float(np.median(per_object))}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", action="append", default=[], help="NAME=DIR (repeatable)")
    ap.add_argument("--objects", default="1,3,6,12")
    ap.add_argument("--frames", type=int, default=4, help="scenes per object count")
    ap.add_argument("--repeats", type=int, default=25, help="timed passes over the scenes")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the checkouts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--time", default=None, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.time:
        print(json.dumps(time_frames(Path(args.time), args.repeats)))
        return 0
    variants = [("this", REPO)] + [tuple(c.split("=", 1)) for c in args.compare]
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames.npz"
        render(frames, [int(x) for x in args.objects.split(",")], args.frames, args.seed)
        runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
        load_start = os.getloadavg()
        for _ in range(args.rounds):
            for name, root in variants:
                out = subprocess.run(
                    [sys.executable, __file__, "--time", str(frames), "--repeats",
                     str(args.repeats)], env={**os.environ, "PYTHONPATH": str(root)},
                    cwd=root, check=True, capture_output=True, text=True).stdout
                runs[name].append(json.loads(out.strip().splitlines()[-1]))
    res = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
           "config": {k: v for k, v in vars(args).items() if k not in ("json", "time")},
           "variants": {name: str(root) for name, root in variants},
           # per variant and object count: the median over the rounds
           "results": {name: {n: {k: float(np.median([r[n][k] for r in rs])) for k in rs[0][n]}
                              for n in rs[0]} for name, rs in runs.items()}}
    print(json.dumps(res["results"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
