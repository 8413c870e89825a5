"""posediff-bench's tracking rows: the model stage of a tracked object (warm start from its
previous pose, `TrackerConfig.warm_steps` steps from `warm_t0`) against the model's default
cold start, same objects, same backend, timed alternately in one run so load hits both.

Also what the tracker adds per object (association, camera motion, filter), timed on the
same objects with the model call excluded.

`--estimate-every K`: the model stage per tracked object per frame when still objects are
re-estimated only every K-th frame (TrackerConfig.estimate_every, the node's default) against
the cold default every frame: a Tracker plays the same still frame (its depth image gives the
camera's motion) and each frame's cold call and tracked step alternate; means over the frames,
since the tracked frames' cost alternates by design.
"""

from __future__ import annotations

import time

import numpy as np

from posediff_ros.runtime.base import WarmStart
from posediff_ros.tracking import Observation, Tracker, TrackerConfig


def _p50(ms: list[float]) -> float:
    return float(np.percentile(ms, 50))


def tracked_cost(backend, inputs: dict[int, tuple[np.ndarray, np.ndarray]], repeats: int,
                 warmup: int = 2) -> list[dict]:
    """Per object count: model-stage ms per object, cold default vs warm, and the tracker's
    own ms per object. inputs: {objects: (points, class ids)} (bench.frame_points)."""
    cfg = TrackerConfig()
    rows = []
    for b, (pts, cls) in sorted(inputs.items()):
        cold = backend.predict(pts, cls)  # the previous poses of a track: the cold estimates
        warm = WarmStart(cold.rotation, cold.translation, cfg.warm_t0, cfg.warm_steps)
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        for k in range(warmup + repeats):
            for name, start in (("cold", None), ("warm", warm)):
                t0 = time.perf_counter()
                backend.predict(pts, cls, *([] if start is None else [start]))
                if k >= warmup:
                    times[name].append(1e3 * (time.perf_counter() - t0))
        rows.append({"objects": b, "cold_ms_per_object": _p50(times["cold"]) / b,
                     "warm_ms_per_object": _p50(times["warm"]) / b,
                     "ratio": _p50(times["warm"]) / _p50(times["cold"]),
                     "tracker_ms_per_object": _tracker_ms(pts, cls, cold, repeats) / b,
                     "cold_steps": backend.settings.steps, "warm_steps": cfg.warm_steps,
                     "warm_t0": cfg.warm_t0})
    return rows


def _tracker_ms(pts, cls, poses, repeats: int) -> float:
    """p50 ms of Tracker.step over a frame, the model call replaced by the given poses."""
    tracker = Tracker()
    obs = [Observation(k + 1, int(c), p) for k, (p, c) in enumerate(zip(pts, cls, strict=True))]
    ms = []
    for k in range(repeats + 2):
        t0 = time.perf_counter()
        tracker.step(obs, lambda p, c, w: poses, stamp=k / 15)
        if k >= 2:
            ms.append(1e3 * (time.perf_counter() - t0))
    return _p50(ms)


def coasting_cost(backend, inputs: dict[int, tuple[np.ndarray, np.ndarray]], depth, K,
                  every: int, frames: int, warmup: int = 6) -> list[dict]:
    """Per object count: mean model-stage ms per object per frame, the cold default every
    frame vs tracking with estimate_every `every` (warm start off, as in the node)."""
    rows = []
    for b, (pts, cls) in sorted(inputs.items()):
        tracker = Tracker(TrackerConfig(warm_start=False, estimate_every=every))
        obs = [Observation(k + 1, int(c), p) for k, (p, c) in enumerate(zip(pts, cls,
                                                                              strict=True))]
        cold_ms, tracked_ms, step_ms = [], [], []
        for k in range(warmup + frames):
            if k == warmup:  # the tracks' first estimates are not the steady state
                start = (tracker.stats.coasted, tracker.stats.objects)
            t0 = time.perf_counter()
            backend.predict(pts, cls)
            cold = 1e3 * (time.perf_counter() - t0)
            model = [0.0]

            def predict(p, c, w, model=model):
                t1 = time.perf_counter()
                out = backend.predict(p, c)
                model[0] += 1e3 * (time.perf_counter() - t1)
                return out

            t0 = time.perf_counter()
            tracker.step(obs, predict, k / 15, depth=depth, K=K)
            step = 1e3 * (time.perf_counter() - t0)
            if k >= warmup:
                cold_ms.append(cold)
                tracked_ms.append(model[0])
                step_ms.append(step - model[0])
        rows.append({"objects": b, "estimate_every": every,
                     "cold_ms_per_object": float(np.mean(cold_ms)) / b,
                     "tracked_ms_per_object": float(np.mean(tracked_ms)) / b,
                     "ratio": float(np.sum(tracked_ms) / np.sum(cold_ms)),
                     "tracker_ms_per_frame": float(np.median(step_ms)),
                     "estimated_share": 1 - (tracker.stats.coasted - start[0])
                     / max(tracker.stats.objects - start[1], 1)})
    return rows


def coasting_markdown(rows: list[dict], backend: str) -> list[str]:
    if not rows:
        return []
    lines = ["", f"Tracked still objects re-estimated every K-th frame ({backend} backend; "
             "`estimate_every`, warm start off): mean model-stage ms per object per frame "
             "against the default cold start every frame, alternating in one run; the "
             "tracker's own ms per frame (association, ICP camera motion, filter):", "",
             "| objects | K | cold ms/object | tracked ms/object | tracked / cold | "
             "objects estimated | tracker ms/frame |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['objects']} | {r['estimate_every']} | {r['cold_ms_per_object']:.2f}"
                     f" | {r['tracked_ms_per_object']:.2f} | {r['ratio']:.2f} | "
                     f"{100 * r['estimated_share']:.0f} % | {r['tracker_ms_per_frame']:.1f} |")
    return lines


def markdown(rows: list[dict], backend: str) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    lines = ["", f"Tracked objects ({backend} backend; posediff_node with tracking on): the model "
             f"stage of a warm start ({r0['warm_steps']} steps from t0 {r0['warm_t0']:g}, from "
             f"the previous pose) against the default cold start ({r0['cold_steps']} steps), "
             "ms per object (p50), and the tracker's own work per object (association, camera "
             "motion, filter):", "",
             "| objects | cold ms/object | warm ms/object | warm / cold | tracker ms/object |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['objects']} | {r['cold_ms_per_object']:.2f} | "
                     f"{r['warm_ms_per_object']:.2f} | {r['ratio']:.2f} | "
                     f"{r['tracker_ms_per_object']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Only these rows (posediff-bench includes them in its full run):
    python -m posediff_ros.cli.bench_tracking [--model M] [--objects 1,3,6] [--json PATH]"""
    import argparse
    import json
    import os
    from pathlib import Path

    import torch

    from posediff_ros.data.points import frame_objects
    from posediff_ros.data.synthetic import render_scene
    from posediff_ros.runtime import DEFAULT_MODEL, load_backend

    ap = argparse.ArgumentParser(prog="python -m posediff_ros.cli.bench_tracking")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--objects", default="1,3,6")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--estimate-every", default="",
                    help="comma list of K: also the re-estimate-every-K rows (e.g. 2,3)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    backend = load_backend(args.backend, args.model)
    rng = np.random.default_rng(0)
    frame = render_scene(rng, num_objects=6)  # a tabletop like posediff-bench's
    ids = [g.instance_id for g in frame.instances]
    objs = frame_objects(frame.depth, frame.mask, frame.K, ids, backend.num_points, rng)
    classes = {g.instance_id: g.class_id for g in frame.instances}
    inputs = {}
    for b in (int(x) for x in args.objects.split(",")):
        pick = np.arange(b) % len(objs.ids)  # more objects than the frame shows: reused
        inputs[b] = (objs.points[pick], np.array([classes[int(i)] for i in objs.ids[pick]]))
    rows = tracked_cost(backend, inputs, args.repeats)
    coasting = [r for k in args.estimate_every.split(",") if k
                for r in coasting_cost(backend, inputs, frame.depth, frame.K, int(k),
                                       args.repeats)]
    print("\n".join(markdown(rows, args.backend) + coasting_markdown(coasting, args.backend)))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "threads": args.threads,
                                               "backend": args.backend,
                                               "load_avg": list(os.getloadavg()),
                                               "rows": rows, "estimate_every": coasting},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
