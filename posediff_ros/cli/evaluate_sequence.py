"""posediff-eval --sequence: tracking vs per-frame estimation on image sequences written by
posediff-sequences (static, orbiting, hand-held camera; pick and place).

    posediff-eval --sequence DIR [--model PATH] [--modes per-frame,tracking]
                  [--mask-ids shuffled|stable] [--warm-t0 T] [--warm-steps N] [--raw]
                  [--out DIR]

Prints and writes <out>/sequence_eval.md and .json: per mode the NOCS accuracies of the
published poses, jitter p50/p95 (mm, deg), id switches, re-initialisations and the model
cost per object; definitions in posediff_ros/tracking/evaluation.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from posediff_ros.tracking.evaluation import MODES, ModeRun, run_sequence, summary

COLUMNS = ("10d5cm", "5d2cm", "IoU50")


def evaluate(seq_dirs: list[Path], backend, modes: list[str], mask_ids: str,
             tracker_config, seed: int = 0, calibration=None, progress=print) -> list[dict]:
    """Each mode over every sequence, with the same point subsampling in every mode (the
    pipeline's seed), so differences come from the method."""
    from posediff_ros.data.sequences import read_sequence
    from posediff_ros.pipeline import Pipeline, PipelineConfig
    from posediff_ros.tracking import Tracker

    cold_steps = backend.settings.steps
    results = []
    for mode in modes:
        run = ModeRun(mode)
        tracker = None if mode == "per-frame" else Tracker(mode_config(tracker_config, mode))
        for n, folder in enumerate(seq_dirs):
            seq = read_sequence(folder)
            pipeline = Pipeline(backend, PipelineConfig(seed=seed + n, depth_range=(0.1, 3.0)),
                                calibration)
            run_sequence(seq, pipeline, pipeline.predict, run, tracker, mask_ids, seed + n,
                         cold_steps)
            progress(f"{mode}: {seq.name} done ({len(run.records)} objects so far)")
        results.append(summary(run))
    return results


def mode_config(config, mode: str):
    """The tracker configuration of a mode: tracking, tracking-warm, tracking-every-K."""
    cfg = dataclasses.replace(config, warm_start=mode == "tracking-warm" and config.warm_start)
    if mode.startswith("tracking-every-"):
        cfg.estimate_every = int(mode.rsplit("-", 1)[1])
    elif mode not in ("tracking", "tracking-warm"):
        raise ValueError(f"unknown mode {mode!r}: per-frame, tracking, tracking-warm or "
                         "tracking-every-K")
    return cfg


def to_markdown(results: list[dict], info: dict) -> str:
    lines = ["# posediff-eval --sequence", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| mode | " + " | ".join(COLUMNS) + " | jitter mm p50/p95 | jitter deg p50/p95"
              " | id switches | re-inits | model ms/object | model passes/object | net evals/object"
              " | objects |",
              "|---" * (len(COLUMNS) + 9) + "|"]
    for r in results:
        acc = r["accuracy"]
        lines.append(
            f"| {r['mode']} | " + " | ".join(_f(acc.get(c)) for c in COLUMNS)
            + f" | {_f(r['jitter_mm_p50'], 2)} / {_f(r['jitter_mm_p95'], 2)}"
            f" | {_f(r['jitter_deg_p50'], 2)} / {_f(r['jitter_deg_p95'], 2)}"
            f" | {r['id_switches']} | {r['reinit_total']} | {_f(r['model_ms_per_object'], 2)}"
            f" | {_f(r['model_objects_per_object'], 2)}"
            f" | {_f(r['network_evaluations_per_object'], 2)} | {r['objects']} |")
    lines += ["", "Per sequence kind (jitter p95 mm / deg, id switches, 10d5cm, model passes):",
              ""]
    for r in results:
        for kind, k in r["by_kind"].items():
            lines.append(f"- {r['mode']}, {kind}: {_f(k['jitter_mm_p95'], 2)} mm / "
                         f"{_f(k['jitter_deg_p95'], 2)} deg, {k['id_switches']} id switches, "
                         f"10d5cm {_f(k['accuracy'].get('10d5cm'))}, model passes/object "
                         f"{_f(k.get('model_objects_per_object'), 2)}")
    return "\n".join(lines) + "\n"


def _f(v, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _set_field(cfg, item: str) -> None:
    """--set noise.accel=0.02: the field's own type (a tuple from a comma list)."""
    path, _, value = item.partition("=")
    *parents, name = path.split(".")
    for parent in parents:
        cfg = getattr(cfg, parent)
    old = getattr(cfg, name)  # AttributeError names an unknown field
    if isinstance(old, bool):
        new = value.lower() in ("1", "true", "yes")
    elif isinstance(old, tuple):
        new = tuple(type(old[0])(v) for v in value.split(","))
    else:
        new = type(old)(value)
    setattr(cfg, name, new)


def tracker_config(args, backend_warm_start: bool):
    """The TrackerConfig the options ask for (the defaults, the node's, otherwise)."""
    from posediff_ros.tracking import TrackerConfig

    cfg = TrackerConfig(smoothing=not args.raw,
                        warm_start=not args.no_warm_start and backend_warm_start)
    for name in ("warm_t0", "warm_steps", "warm_from", "reinit_period", "estimate_every"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.camera_motion = not args.no_camera_motion
    cfg.depth_odometry = not args.no_depth_odometry
    for name in ("robust_chi2", "accel", "angular_accel"):
        if getattr(args, name) is not None:
            setattr(cfg.noise, name, getattr(args, name))
    for item in args.set:
        _set_field(cfg, item)
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="posediff-eval --sequence",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequence", required=True, help="a sequence folder or a folder of them")
    ap.add_argument("--model", default=None)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--mask-ids", choices=("shuffled", "stable"), default="shuffled",
                    help="shuffled: the segmenter renumbers its masks every frame")
    ap.add_argument("--warm-t0", type=float, default=None)
    ap.add_argument("--warm-steps", type=int, default=None)
    ap.add_argument("--no-warm-start", action="store_true",
                    help="tracking-warm as tracking (a backend without warm start does this)")
    ap.add_argument("--warm-from", choices=("raw", "filtered"), default=None)
    ap.add_argument("--reinit-period", type=int, default=None)
    ap.add_argument("--no-camera-motion", action="store_true",
                    help="tracks not moved by the fitted camera motion between frames")
    ap.add_argument("--no-depth-odometry", action="store_true",
                    help="the camera's motion from the objects' centroids, not ICP on the depth")
    ap.add_argument("--estimate-every", type=int, default=None,
                    help="re-estimate still, confidently tracked objects every N frames")
    ap.add_argument("--robust-chi2", type=float, default=None)
    ap.add_argument("--accel", type=float, default=None, help="filter process noise (m/s^2)")
    ap.add_argument("--angular-accel", type=float, default=None,
                    help="filter process noise (rad/s^2)")
    ap.add_argument("--raw", action="store_true", help="tracking without smoothing")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="any TrackerConfig field, nested with dots (noise.accel=0.02, "
                         "odometry.sigma_translation=0.0005); repeatable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1, the node's default; 0 = torch's default)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--results", default=None,
                    help="also write the JSON here (docs/results/tracking.json feeds RESULTS.md)")
    args = ap.parse_args(argv)

    from posediff_ros.data.sequences import list_sequences
    from posediff_ros.runtime import DEFAULT_MODEL, load_backend

    seq_dirs = list_sequences(args.sequence)
    if not seq_dirs:
        print(f"posediff-eval: no sequences (sequence.json) under {args.sequence}; write some "
              "with posediff-sequences", file=sys.stderr)
        return 2
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    model = args.model or str(DEFAULT_MODEL)
    from posediff_ros.calibration import load_for_model

    backend = load_backend(args.backend, model, device=args.device)
    calibration = load_for_model(model) if model != "random" else None
    cfg = tracker_config(args, backend.warm_start)
    modes = [m for m in args.modes.split(",") if m]
    results = evaluate(seq_dirs, backend, modes, args.mask_ids, cfg, args.seed, calibration,
                       progress=lambda s: print(s, file=sys.stderr))
    import platform

    import torch

    info = {"command": "posediff-eval " + " ".join(sys.argv[1:] if argv is None else argv),
            "sequences": f"{args.sequence} ({len(seq_dirs)} sequences)", "model": model,
            "backend": f"{args.backend} on {args.device}", "mask ids": args.mask_ids,
            "tracker": str(cfg), "covariance calibration": "loaded" if calibration else "none",
            "environment": f"torch {torch.__version__} on {platform.machine()} CPU, "
                           f"{torch.get_num_threads()} thread(s), shared with other jobs"}
    out = Path(args.out) if args.out else Path("runs") / "eval_sequence" / Path(
        args.sequence).resolve().name
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(results, info)
    (out / "sequence_eval.md").write_text(md)
    (out / "sequence_eval.json").write_text(json.dumps({"info": info, "results": results},
                                                       indent=2, default=str) + "\n")
    if args.results:
        Path(args.results).write_text((out / "sequence_eval.json").read_text())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
