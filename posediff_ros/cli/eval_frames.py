"""posediff-eval: NOCS-protocol evaluation of a model on REAL275 / CAMERA25 / synthetic /
HouseCat6D frames, with ground-truth masks (so it measures pose, not detection).

    posediff-eval --data DIR [--model PATH] [--backend torch] [--device cpu] [--legacy-iou]
                  [--out DIR] [--max-frames N] [--segmentation mask|boxes]
                  [--subsets K] [--samples S] [--no-reject-outliers] [--seed N]

Prints and writes <out>/eval.md and <out>/eval.json: the frame-level NOCS mAP table (per
class + mean; columns IoU25, IoU50, IoU75, 5d2cm, 5d5cm, 10d2cm, 10d5cm, 10d10cm) and the
per-object accuracy table, and states which 3D IoU was used (correct / legacy NOCS).
The core, `evaluate_frames(frames, predict_fn)`, is shared with training and the benchmark.
`--subsets K` / `--samples S` turn on test-time averaging as the node's `average_subsets` does
(averaging.py): K point subsets x S samples per object, the largest agreeing mode averaged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posediff_ros.averaging import subset_groups
from posediff_ros.data.nocs import Frame
from posediff_ros.data.points import frame_objects
from posediff_ros.metrics import COLUMNS, FramePoses, accuracy_table, nocs_map, object_errors
from posediff_ros.runtime.base import PoseBatch

PredictFn = Callable[[np.ndarray, np.ndarray], PoseBatch]  # (B,P,3) points, (B,) class ids

IOU_NAMES = {
    False: "correct 3D IoU (axis-aligned bounds per axis over the 8 box corners)",
    True: "legacy NOCS 3D IoU (bounds per corner over x, y, z, as in the original NOCS / "
    "SPD evaluation code)",
}
MASK_NOTE = (
    "Object points are cut from the depth with the GROUND-TRUTH instance masks (no detector), "
    "one prediction per object; objects with too few valid depth points get no prediction "
    "and count as misses in the mAP."
)
BOXES_NOTE = (
    "Object points are cut from the depth inside the tight 2D box of each GROUND-TRUTH "
    "instance mask (a perfect box detector; data/boxes.py removes the table plane and the "
    "background, as the node does with segmentation: boxes), one prediction per object; "
    "objects with too few valid depth points get no prediction and count as misses in the mAP."
)


@dataclass
class EvalConfig:
    n_points: int = 1024  # points per object (a backend's num_points overrides it)
    min_points: int = 32
    depth_range: tuple[float, float] = (0.1, 3.0)
    seed: int = 0  # point subsampling
    legacy_iou: bool = False
    # test-time averaging (averaging.py) when subsets > 1 or samples > 1: K point subsets per
    # object, each with the backend's S samples (samples: its num_samples, set by the caller)
    subsets: int = 1
    samples: int = 1
    reject_outliers: bool = True
    use_iou_matches_for_pose: bool = True  # NOCS/SPD protocol for the pose columns
    segmentation: str = "mask"  # mask: ground-truth masks; boxes: their 2D boxes only


@dataclass
class EvalResults:
    map_table: dict[str, dict[str, float]]  # frame-level NOCS mAP, percent
    accuracy_table: dict[str, dict[str, float]]  # per-object accuracies, percent
    legacy_iou: bool
    num_frames: int
    num_objects: int  # ground-truth objects
    num_predicted: int
    dropped: dict[str, str] = field(default_factory=dict)  # "<frame>#<id>" -> reason
    predict_ms_per_frame: float = float("nan")
    info: dict[str, str] = field(default_factory=dict)  # data, model, backend, ...
    segmentation: str = "mask"

    @property
    def note(self) -> str:
        return BOXES_NOTE if self.segmentation == "boxes" else MASK_NOTE

    def to_json(self) -> str:
        def clean(x):
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            return x

        d = asdict(self)
        d["iou"] = IOU_NAMES[self.legacy_iou]
        d["columns"] = list(COLUMNS)
        d["note"] = self.note
        return json.dumps(clean(d), indent=2)

    def to_markdown(self) -> str:
        lines = ["# posediff-eval", ""]
        lines += [f"- {k}: {v}" for k, v in self.info.items()]
        lines += [
            f"- 3D IoU: {IOU_NAMES[self.legacy_iou]}",
            f"- frames: {self.num_frames}, objects: {self.num_objects}, predicted: "
            f"{self.num_predicted}, dropped (too few points): {len(self.dropped)}",
            f"- inference: {self.predict_ms_per_frame:.1f} ms per frame (batched per frame)",
            f"- {self.note}",
            "",
            "## NOCS mAP (frame level, greedy matching by score, VOC AP), percent",
            "",
            *_table(self.map_table),
            "",
            "Pose columns: only detections matched to a ground truth at 3D IoU > 0.1 "
            "(NOCS/SPD protocol).",
            "",
            "## Per-object accuracy (percent of objects within the threshold)",
            "",
            *_table(self.accuracy_table, extra=("rot_median_deg", "trans_median_cm")),
        ]
        if self.dropped:
            lines += ["", "## Dropped objects", ""]
            lines += [f"- {k}: {v}" for k, v in list(self.dropped.items())[:50]]
            if len(self.dropped) > 50:
                lines.append(f"- ... and {len(self.dropped) - 50} more")
        return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.1f}"
    return str(v)


def _table(table: dict[str, dict[str, float]], extra: tuple[str, ...] = ()) -> list[str]:
    cols = (*COLUMNS, *extra, "n")
    out = ["| class | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.items():
        out.append(f"| {name} | " + " | ".join(_fmt(row.get(c, float("nan"))) for c in cols) + " |")
    return out


def evaluate_frames(
    frames: Iterable[Frame], predict_fn: PredictFn, config: EvalConfig | None = None
) -> EvalResults:
    """Cut each frame's objects with its ground-truth masks (data/points.py), predict them in
    one batch per frame, and score them with both the frame-level mAP and the per-object
    accuracies (metrics.py)."""
    cfg = config or EvalConfig()
    rng = np.random.default_rng(cfg.seed)
    frame_poses: list[FramePoses] = []
    paired: dict[str, list[np.ndarray]] = {k: [] for k in
                                           ("R", "t", "size", "R_gt", "t_gt", "size_gt", "c", "hv")}
    dropped: dict[str, str] = {}
    n_frames = n_objects = n_pred = 0
    predict_s = 0.0
    for frame in frames:
        n_frames += 1
        insts = {i.instance_id: i for i in frame.instances}
        n_objects += len(insts)
        mask = frame.mask if cfg.segmentation == "mask" else cut_with_boxes(frame)
        objs = frame_objects(
            frame.depth, mask, frame.K, np.repeat(list(insts), cfg.subsets), cfg.n_points,
            rng, min_points=cfg.min_points, depth_range=cfg.depth_range,
        )  # fmt: skip
        for iid, why in objs.dropped.items():
            dropped[f"{frame.name}#{iid}"] = why
        ids, points = subset_groups(objs.ids, objs.points, cfg.subsets)
        gts = [insts[i] for i in ids.tolist()]
        cids = np.array([g.class_id for g in gts], dtype=np.int64)
        if gts:
            t0 = time.perf_counter()
            pred = predict(predict_fn, points, cids, cfg)
            predict_s += time.perf_counter() - t0
        else:
            z = np.zeros
            pred = PoseBatch(z((0, 3, 3)), z((0, 3)), z((0, 3)), z(0))
        n_pred += len(gts)
        all_gt = frame.instances
        frame_poses.append(
            FramePoses(
                gt_class_ids=np.array([g.class_id for g in all_gt], dtype=np.int64),
                gt_R=np.array([g.rotation for g in all_gt]).reshape(-1, 3, 3),
                gt_t=np.array([g.translation for g in all_gt]).reshape(-1, 3),
                gt_size=np.array([g.size for g in all_gt]).reshape(-1, 3),
                gt_handle_visible=np.array([g.handle_visible for g in all_gt], dtype=bool),
                pred_class_ids=cids,
                pred_R=np.asarray(pred.rotation, np.float64).reshape(-1, 3, 3),
                pred_t=np.asarray(pred.translation, np.float64).reshape(-1, 3),
                pred_size=np.asarray(pred.size, np.float64).reshape(-1, 3),
                pred_scores=np.asarray(pred.score, np.float64).reshape(-1),
            )
        )
        if gts:
            paired["R"].append(np.asarray(pred.rotation).reshape(-1, 3, 3))
            paired["t"].append(np.asarray(pred.translation).reshape(-1, 3))
            paired["size"].append(np.asarray(pred.size).reshape(-1, 3))
            paired["R_gt"].append(np.array([g.rotation for g in gts]))
            paired["t_gt"].append(np.array([g.translation for g in gts]))
            paired["size_gt"].append(np.array([g.size for g in gts]))
            paired["c"].append(cids)
            paired["hv"].append(np.array([g.handle_visible for g in gts], dtype=bool))
    if paired["c"]:
        p = {k: np.concatenate(v) for k, v in paired.items()}
        errs = object_errors(p["R"], p["t"], p["R_gt"], p["t_gt"], p["c"], p["hv"],
                             p["size"], p["size_gt"], cfg.legacy_iou)
        acc = accuracy_table(errs)
    else:
        acc = {}
    maps = nocs_map(frame_poses, cfg.legacy_iou, cfg.use_iou_matches_for_pose)
    return EvalResults(
        map_table=maps,
        accuracy_table=acc,
        legacy_iou=cfg.legacy_iou,
        num_frames=n_frames,
        num_objects=n_objects,
        num_predicted=n_pred,
        dropped=dropped,
        predict_ms_per_frame=1e3 * predict_s / max(n_frames, 1),
        segmentation=cfg.segmentation,
    )


def predict(predict_fn: PredictFn, points: np.ndarray, class_ids: np.ndarray,
            cfg: EvalConfig) -> PoseBatch:
    """One pose per object: the backend's, or averaged over subsets x samples."""
    if cfg.subsets == 1 and cfg.samples == 1:
        return predict_fn(points, class_ids)
    from posediff_ros.averaging import AveragingConfig, predict_averaged

    config = AveragingConfig(subsets=cfg.subsets, reject_outliers=cfg.reject_outliers)
    return predict_averaged(predict_fn, points, class_ids, config)[0]


def cut_with_boxes(frame: Frame) -> np.ndarray:
    """The frame's instance mask as box input gives it: each object cut out of the depth
    inside the 2D box of its ground-truth mask (same instance ids, 0 = none)."""
    from posediff_ros.data.boxes import boxes_from_instance_mask, masks_from_boxes
    from posediff_ros.geometry import depth_to_metres

    ids = [i.instance_id for i in frame.instances]
    boxes = boxes_from_instance_mask(frame.mask, ids, [i.class_id for i in frame.instances])
    cut = masks_from_boxes(depth_to_metres(frame.depth), frame.K, boxes)
    return np.asarray([0, *ids], np.int32)[cut]


def load_frames(data: str | Path, max_frames: int | None = None, dataset: str = "auto"):
    """Frames of a data folder: REAL275 / CAMERA25 / synthetic layout, or HouseCat6D."""
    from posediff_ros.data import housecat6d, nocs

    if dataset == "housecat6d" or (dataset == "auto" and housecat6d.is_housecat6d(data)):
        return housecat6d.iter_frames(data, max_frames), "housecat6d"
    return nocs.iter_frames(data, max_frames), "nocs"


def averaging_info(cfg: EvalConfig) -> str:
    if cfg.subsets == 1 and cfg.samples == 1:
        return "off (one subset, one sample per object)"
    how = "largest agreeing mode" if cfg.reject_outliers else "plain mean of all"
    return f"{cfg.subsets} point subsets x {cfg.samples} samples per object, {how}"


def main(argv: list[str] | None = None) -> int:
    if "--sequence" in (sys.argv[1:] if argv is None else argv):  # tracking on sequences
        from posediff_ros.cli.evaluate_sequence import main as sequence_main

        return sequence_main(argv)
    ap = argparse.ArgumentParser(prog="posediff-eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data folder (REAL275 layout or HouseCat6D)")
    ap.add_argument("--model", default=None,
                    help="model JSON (default: the bundled models/posediff_default.json); "
                         "'random' = untrained network, to test the plumbing")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--legacy-iou", action="store_true",
                    help="use the original NOCS code's 3D IoU (per-corner bounds bug)")
    ap.add_argument("--out", default=None, help="output folder (default: runs/eval/<data name>)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--dataset", choices=("auto", "nocs", "housecat6d"), default="auto")
    ap.add_argument("--min-points", type=int, default=EvalConfig.min_points)
    ap.add_argument("--seed", type=int, default=0, help="point subsets and sampler noise")
    ap.add_argument("--subsets", type=int, default=1,
                    help="test-time averaging: K point subsets per object (1 = off)")
    ap.add_argument("--samples", type=int, default=1,
                    help="sampler samples per subset (the backend's num_samples)")
    ap.add_argument("--no-reject-outliers", action="store_true",
                    help="averaging: the plain mean of all hypotheses, no agreement rejection")
    ap.add_argument("--segmentation", choices=("mask", "boxes"), default="mask",
                    help="mask: cut objects with the ground-truth masks; boxes: with their 2D "
                         "boxes only (the node's segmentation: boxes)")
    args = ap.parse_args(argv)

    from posediff_ros.runtime import DEFAULT_MODEL, load_backend

    model = args.model or str(DEFAULT_MODEL)
    if model != "random" and not Path(model).is_file():
        print(f"posediff-eval: model file {model} not found. Train one with posediff-train, "
              f"or pass --model PATH (or --model random to test the plumbing).", file=sys.stderr)
        return 2
    data = Path(args.data)
    if not data.is_dir():
        print(f"posediff-eval: data folder {data} does not exist", file=sys.stderr)
        return 2
    if args.subsets < 1 or args.samples < 1:
        print("posediff-eval: --subsets and --samples must be >= 1", file=sys.stderr)
        return 2
    backend = load_backend(args.backend, model, device=args.device)
    backend.configure(backend.settings.override(num_samples=args.samples, seed=args.seed))
    frames, kind = load_frames(data, args.max_frames, args.dataset)
    cfg = EvalConfig(n_points=backend.num_points, min_points=args.min_points, seed=args.seed,
                     legacy_iou=args.legacy_iou, segmentation=args.segmentation,
                     subsets=args.subsets, samples=args.samples,
                     reject_outliers=not args.no_reject_outliers)
    try:
        from tqdm import tqdm

        frames = tqdm(frames, desc="eval", unit="frame", total=args.max_frames, file=sys.stderr)
    except ImportError:  # tqdm is a dependency; progress is optional
        pass
    res = evaluate_frames(frames, backend.predict, cfg)
    if res.num_frames == 0:
        print(f"posediff-eval: no frames with ground truth found under {data}", file=sys.stderr)
        return 1
    res.info = {"data": f"{data} ({kind} layout)", "model": model,
                "backend": f"{args.backend} on {args.device}", "points per object":
                str(cfg.n_points), "seed": str(args.seed), "segmentation": args.segmentation,
                "averaging": averaging_info(cfg)}
    out = Path(args.out) if args.out else Path("runs") / "eval" / data.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    md = res.to_markdown()
    (out / "eval.md").write_text(md)
    (out / "eval.json").write_text(res.to_json())
    print(md)
    print(f"wrote {out / 'eval.md'} and {out / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
