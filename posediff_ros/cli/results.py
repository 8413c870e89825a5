"""posediff-results: measure the model on the held-out test cache, save every measurement as
JSON (docs/results/), and generate docs/RESULTS.md + plots from those saved files only.

  posediff-results measure --model models/posediff_default.json --test data/cache_test
  posediff-results collect-runs runs/ablation_joint runs/ablation_scratch
  posediff-results tune --model models/posediff_default.json --val data/cache_val
  posediff-results symmetric --model models/posediff_default.json --test data/cache_test
  posediff-results hypotheses --model models/posediff_default.json --test data/cache_test
  posediff-results splits --models old=OLD.json new=NEW.json --splits ood=data/cache_ood ...
  posediff-results averaging --model models/posediff_default.json --splits id=data/cache_test ...
  posediff-results report            # docs/results/*.json -> docs/RESULTS.md, docs/images/*.png
                                     (cli/results_report.py)

Accuracy is per object (ground-truth masks, every object paired with its ground truth): the
share of objects within each threshold, averaged over the six classes; 3D IoU is the correct
one (posediff_ros.metrics, legacy=False).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..metrics import accuracy_table, object_errors
from ..model.baseline import GenPoseBaseline
from ..model.posenet import PoseNet, camera_samples_in_batches, load_model, pose_to_camera
from ..model.rotation import mean_rotation, rot6d_to_matrix
from ..model.sampler import SamplerSettings
from .results_report import RESULTS, SELECTION_RULE, report
from .train import load_split

# --- evaluation on the test cache ---------------------------------------------------------


def load_test(path: str, limit: int, num_points: int, shards: str = ""):
    """The test objects (first `limit`; shards "a:b" picks held-out shards of a cache)."""
    c = load_split(path, limit, shards)
    return {"points": c.points[:, :num_points].float(), "class_ids": c.class_ids,
            "rotations": c.rotations.double().numpy(),
            "translations": c.translations.double().numpy(), "sizes": c.sizes.double().numpy(),
            "handle_visible": c.handle_visible.numpy(), "seeds": c.seeds,
            "source": f"{path}" + (f" shards {shards}" if shards else "")}


@dataclass
class Conditioned:
    """Test objects through the encoder once: what every sampler setting starts from."""

    test: dict
    cond: torch.Tensor
    cent: torch.Tensor
    scale: torch.Tensor
    size: torch.Tensor  # the regression head's box size, metres
    reg: torch.Tensor  # the regression head's 9-D pose, normalised frame

    def __len__(self) -> int:
        return len(self.cond)

    def first(self, n: int) -> Conditioned:
        return Conditioned(self.test, self.cond[:n], self.cent[:n], self.scale[:n],
                           self.size[:n], self.reg[:n])


@torch.no_grad()
def condition_all(model: PoseNet, test: dict, batch: int = 256) -> Conditioned:
    conds, cents, scales, sizes, regs = [], [], [], [], []
    for s in range(0, len(test["class_ids"]), batch):
        cond, c, sc = model.condition(test["points"][s:s + batch], test["class_ids"][s:s + batch])
        reg = model.regress(cond)
        conds.append(cond), cents.append(c), scales.append(sc)
        sizes.append(sc[:, None] * reg["size"])
        regs.append(torch.cat([reg["rot6d"], reg["offset"]], -1))
    cat = torch.cat
    return Conditioned(test, cat(conds), cat(cents), cat(scales), cat(sizes), cat(regs))


def table_of(test: dict, rot, trans, size, n: int | None = None) -> dict:
    n = n or len(rot)
    err = object_errors(np.asarray(rot, np.float64), np.asarray(trans, np.float64),
                        test["rotations"][:n], test["translations"][:n], test["class_ids"][:n],
                        test["handle_visible"][:n], np.asarray(size, np.float64),
                        test["sizes"][:n])
    return accuracy_table(err)


@torch.no_grad()
def sample_batched(model, cond, cent, scale, reg, settings: SamplerSettings, seed=0, batch=512):
    """One pose per object: the sample (num_samples == 1) or the mean of num_samples."""
    rots, transs = [], []
    for r, t in camera_samples_in_batches(model, cond, cent, scale, reg, settings, seed, batch):
        rots.append(mean_rotation(r, dim=1)), transs.append(t.mean(1))
    return torch.cat(rots), torch.cat(transs)


@torch.no_grad()
def baseline_batched(model, cond, cent, scale, baseline: GenPoseBaseline, seed=0, batch=64):
    """The GenPose-style baseline's pose of every object, in batches (its 50 hypotheses per
    object are memory-hungry)."""
    g = torch.Generator().manual_seed(seed)
    rots, transs = [], []
    for s in range(0, len(cond), batch):
        sl = slice(s, s + batch)
        r, t = baseline.sample(model, cond[sl], cent[sl], scale[sl], g)
        rots.append(r), transs.append(t)
    return torch.cat(rots), torch.cat(transs)


@torch.no_grad()
def latency_ms(model, test, fn, n: int = 20) -> float:
    """Median wall time of encoder + `fn` for one object at a time (batch 1), milliseconds."""
    times = []
    for k in range(n + 2):  # the first two are warm-up
        i = k % len(test["class_ids"])
        pts, cls = test["points"][i:i + 1], test["class_ids"][i:i + 1]
        t0 = time.perf_counter()
        cond, c, sc = model.condition(pts, cls)
        reg = model.regress(cond)
        fn(cond, c, sc, torch.cat([reg["rot6d"], reg["offset"]], -1))
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[2:])


def environment() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def sample_row(model, data: Conditioned, setting: SamplerSettings, latency_n: int = 20,
               timed: bool = True) -> dict:
    """Accuracy (and latency) of one pose per object sampled with `setting`."""
    r, t = sample_batched(model, data.cond, data.cent, data.scale, data.reg, setting)
    row = {"table": table_of(data.test, r, t, data.size, len(data)), "objects": len(data)}
    if timed:
        row["ms"] = latency_ms(model, data.test, lambda c, ce, s, rr: sample_batched(
            model, c, ce, s, rr, setting), n=latency_n)
    return row


def nocs_rows(model, data: Conditioned, baseline: GenPoseBaseline, baseline_objects: int):
    """(a): the regression head, one scaled sample from the stored start and from noise, one
    unscaled sample, and the GenPose-style baseline."""
    sd, n = model.cfg.sampler, len(data)
    r_reg = rot6d_to_matrix(data.reg[:, :6])
    t_reg = data.cent + data.scale[:, None] * data.reg[:, 6:]
    rows = {"regression head": {
        "table": table_of(data.test, r_reg, t_reg, data.size),
        "ms": latency_ms(model, data.test, lambda *a: None), "objects": n}}
    desc = f"{sd.solver}, {sd.steps} steps, {sd.w_schedule} w_max {sd.w_max:g}"
    for init in dict.fromkeys([sd.init, "noise"]):  # the stored default first
        default = " = the model's stored default" if init == sd.init else ""
        rows[f"one scaled sample from {init} ({desc}){default}"] = {
            **sample_row(model, data, sd.override(init=init)), "init": init}
    unscaled = sd.override(w_schedule="none", w_max=1.0, init="noise")
    rows[f"one unscaled sample from noise ({sd.solver}, {sd.steps} steps)"] = sample_row(
        model, data, unscaled)
    few = data.first(min(baseline_objects, n))
    base = lambda c, ce, s, r: baseline_batched(model, c, ce, s, baseline)  # noqa: E731
    rb, tb = base(few.cond, few.cent, few.scale, few.reg)
    rows[baseline.describe()] = {"table": table_of(few.test, rb, tb, few.size, len(few)),
                                 "ms": latency_ms(model, few.test, base, n=5),
                                 "objects": len(few)}
    return rows


def ablation_settings(sd: SamplerSettings) -> list[tuple[dict, SamplerSettings, bool]]:
    """(c): (row label fields, setting, timed) for w schedules x steps, TSR's sigma_d,
    second-order solvers, w_max, and the regression start."""
    out = []
    for schedule in ("exponential", "linear", "constant", "tsr", "none"):
        for steps in (1, 2, 4, 8, 16):
            out.append(({"solver": "euler", "schedule": schedule, "steps": steps},
                        sd.override(steps=steps, solver="euler", w_schedule=schedule,
                                    init="noise"), True))
    for tsr_sd in (0.2, 0.5, 1.0):  # TSR's data spread decides when its scaling sets in
        for steps in (4, 8):
            out.append(({"solver": "euler", "schedule": f"tsr sigma_d={tsr_sd:g}",
                         "steps": steps},
                        sd.override(steps=steps, solver="euler", w_schedule="tsr",
                                    init="noise", tsr_sigma_d=tsr_sd), False))
    for solver in ("heun", "dpm2"):
        for steps in (2, 4):
            out.append(({"solver": solver, "schedule": "exponential", "steps": steps},
                        sd.override(steps=steps, solver=solver, w_schedule="exponential",
                                    init="noise"), True))
    for w_max in (2.0, 8.0):
        out.append(({"solver": "euler", "schedule": "exponential", "steps": sd.steps},
                    sd.override(solver="euler", w_schedule="exponential", w_max=w_max,
                                init="noise"), False))
    out.append(({"solver": "euler", "schedule": sd.w_schedule, "steps": sd.steps,
                 "init": "regression"}, sd.override(solver="euler", init="regression"), False))
    return out


def ablation_rows(model, data: Conditioned) -> list[dict]:
    rows = []
    for label, setting, timed in ablation_settings(model.cfg.sampler):
        row = sample_row(model, data, setting, latency_n=10, timed=timed)
        rows.append({**label, "w_max": setting.w_max, "table": row["table"],
                     **({"ms": row["ms"]} if timed else {})})
    return rows


def cmd_measure(args) -> None:
    """(a) the NOCS table and (c) the sampler ablation on the test cache."""
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    test = load_test(args.test, args.limit, model.cfg.num_points, args.test_shards)
    data = condition_all(model, test)
    rows = nocs_rows(model, data, GenPoseBaseline(steps=args.baseline_steps),
                     args.baseline_objects)
    save_json({"model": str(args.model), "test_cache": test["source"],
               "test_seeds": test["seeds"], "objects": len(data), "iou": "correct (not legacy)",
               "rows": rows, "training": model.cfg.training.get("command"),
               "environment": environment(), **({"note": args.note} if args.note else {})},
              RESULTS / "nocs_table.json")
    few = data.first(min(args.ablation_objects, len(data)))
    save_json({"model": str(args.model), "objects": len(few), "rows": ablation_rows(model, few),
               "tsr_sigma_d": model.cfg.sampler.tsr_sigma_d, "environment": environment()},
              RESULTS / "sampler_ablation.json")


# --- sampler defaults chosen on the validation split (never on the test set) -----------------


def cmd_tune(args) -> None:
    """Grid over init x w schedule x w_max x steps on validation objects; the best (by
    10d5cm + 5d2cm, mean over classes) becomes the model's stored sampler default."""
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    val = load_test(args.val, args.limit, model.cfg.num_points, args.val_shards)
    data = condition_all(model, val)
    rows = []
    for init in ("noise", "regression"):
        for schedule in ("exponential", "linear", "constant", "tsr"):
            for w_max in (2.0, 4.0, 8.0, 16.0):
                for steps in (4, 8):
                    setting = model.cfg.sampler.override(
                        steps=steps, solver="euler", w_schedule=schedule, w_max=w_max,
                        init=init)
                    m = sample_row(model, data, setting, timed=False)["table"]["mean"]
                    rows.append({"init": init, "schedule": schedule, "w_max": w_max,
                                 "steps": steps, "10d5cm": m["10d5cm"], "5d2cm": m["5d2cm"],
                                 "IoU50": m["IoU50"]})
    best = max(rows, key=lambda r: r["10d5cm"] + r["5d2cm"])
    raw = json.loads(Path(args.model).read_text())
    raw["sampler"].update(init=best["init"], w_schedule=best["schedule"], w_max=best["w_max"],
                          steps=best["steps"], solver="euler")
    raw.setdefault("notes", {})["sampler_selection"] = {
        "split": val["source"], "objects": len(val["class_ids"]),
        "rule": SELECTION_RULE, "best": best}
    Path(args.model).write_text(json.dumps(raw, indent=2) + "\n")
    save_json({"model": str(args.model), "split": val["source"], "rule": SELECTION_RULE,
               "rows": rows, "best": best}, RESULTS / "sampler_selection.json")


# --- (d) symmetric objects: 50 samples early and late, with and without scaling ---------------


@torch.no_grad()
def cmd_symmetric(args) -> None:
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    test = load_test(args.test, 0, model.cfg.num_points, args.test_shards)
    cls, hv = test["class_ids"].numpy(), test["handle_visible"]
    picks = {"bottle": int(np.flatnonzero(cls == 1)[0]),
             "mug, handle hidden": int(np.flatnonzero((cls == 6) & ~hv)[0])}
    out = {"model": str(args.model), "steps": args.steps, "samples": 50, "objects": {}}
    for label, i in picks.items():
        cond, cent, scale = model.condition(test["points"][i:i + 1], test["class_ids"][i:i + 1])
        r_gt = torch.from_numpy(test["rotations"][i]).float()
        entry = {"index": i}
        for schedule in ("none", "exponential"):
            seen = {}
            noise = torch.randn(1, 50, 9, generator=torch.Generator().manual_seed(0))

            def keep(d, seen=seen):
                seen[d["i"]] = d["denoised"].clone()

            x = model.sample_poses(cond, noise, steps=args.steps, solver="euler",
                                   w_schedule=schedule, init="noise", callback=keep)
            for when, xx in (("early", seen[1]), ("final", x)):
                r, _ = pose_to_camera(xx, cent, scale)
                rel = r_gt.T @ r[0]  # sample rotation in the ground-truth object frame
                # where the sample's y axis (tilt) and x axis (yaw about y) point
                tilt = torch.rad2deg(torch.acos(rel[:, 1, 1].clamp(-1, 1)))
                yaw = torch.rad2deg(torch.atan2(-rel[:, 2, 0], rel[:, 0, 0]))
                entry[f"{schedule}/{when}"] = {"tilt_deg": tilt.tolist(), "yaw_deg": yaw.tolist()}
        out["objects"][label] = entry
    save_json(out, RESULTS / "symmetric_samples.json")


def cmd_hypotheses(args) -> None:
    """(e) top-1 vs top-k accuracy of the pose hypotheses and their cost (results_hypotheses)."""
    from .results_hypotheses import measure

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    test = load_test(args.test, args.limit, model.cfg.num_points, args.test_shards)
    c = condition_all(model, test)
    out = measure(model, test, c.cond, c.cent, c.scale, c.reg, args.samples, args.top_k)
    save_json({"model": str(args.model), "test_cache": test["source"],
               "objects": len(test["class_ids"]), **out, "environment": environment()},
              RESULTS / "hypotheses.json")


def cmd_averaging(args) -> None:
    """(h) accuracy vs cost of test-time averaging over point subsets / samples on each test
    split (results_averaging): docs/results/averaging.json."""
    from .results_averaging import measure

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    card = json.loads(Path(args.model).read_text())
    out = {"model": str(args.model), "model_name": args.model_name or str(args.model),
           "weights_sha256": card.get("weights_sha256", ""), "splits": {}}
    for name, path in _named(args.splits).items():
        test = load_test(path, args.limit, 10**9, args.test_shards)  # every cached point
        test.update(points=test["points"].numpy(), class_ids=test["class_ids"].numpy())
        print(f"averaging: {name} ({path}), {len(test['class_ids'])} objects", file=sys.stderr)
        out["splits"][name] = {"test_cache": test["source"], "test_seeds": test["seeds"],
                               "objects": len(test["class_ids"]),
                               **measure(model, test, args.repeats)}
    save_json({**out, "environment": environment(), **({"note": args.note} if args.note else {})},
              RESULTS / "averaging.json")


# --- training-curve ablation runs --------------------------------------------------------


def _named(pairs: list[str]) -> dict[str, str]:
    """["name=path", ...] -> {name: path}."""
    out = {}
    for p in pairs:
        name, _, path = p.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=PATH, got {p!r}")
        out[name] = path
    return out


def cmd_splits(args) -> None:
    """(g) Each model's stored default (one sample) and regression head on each test split
    (in and out of distribution), per class: docs/results/splits.json."""
    torch.set_num_threads(args.threads)
    models, splits = _named(args.models), _named(args.splits)
    out = {"models": models, "splits": {}, "note": args.note, "environment": environment()}
    for split, path in splits.items():
        meta_path = Path(path) / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        entry = {"path": path, "generator": meta.get("generator_version"),
                 "ood": meta.get("ood", False), "results": {}}
        for name, model_path in models.items():
            model = load_model(model_path)
            data = condition_all(model, load_test(path, args.limit, model.cfg.num_points))
            r, t = sample_batched(model, data.cond, data.cent, data.scale, data.reg,
                                  model.cfg.sampler)
            r_reg = rot6d_to_matrix(data.reg[:, :6])
            t_reg = data.cent + data.scale[:, None] * data.reg[:, 6:]
            entry["results"][name] = {
                "sample": table_of(data.test, r, t, data.size),
                "regression": table_of(data.test, r_reg, t_reg, data.size),
                "sampler": model.cfg.sampler.tag()}
            entry["objects"], entry["seeds"] = len(data), data.test["seeds"]
        out["splits"][split] = entry
    save_json(out, RESULTS / "splits.json")


def cmd_collect_runs(args) -> None:
    """Copy the eval records of finished training runs into docs/results/runs.json."""
    runs = {}
    for d in args.runs:
        log = [json.loads(x) for x in (Path(d) / "log.jsonl").read_text().splitlines()]
        state = json.loads((Path(d) / "ckpt.json").read_text())
        runs[Path(d).name] = {"mode": state["config"]["mode"], "config": state["config"],
                              "command": state.get("command"),
                              "evals": [r for r in log if r["kind"] == "eval"],
                              "train": [r for r in log if r["kind"] == "train"][-1]}
    save_json({"runs": runs, "note": args.note}, RESULTS / args.name)


def cmd_collect_eval(args) -> None:
    """Keep the headline numbers of posediff-eval runs (eval.json) in docs/results/: the
    (f) section, box input vs mask input."""
    runs = {}
    for path in args.evals:
        d = json.loads(Path(path).read_text())
        runs[d.get("segmentation", "mask")] = {
            "per_object": d["accuracy_table"]["mean"], "map": d["map_table"]["mean"],
            "objects": d["num_objects"], "predicted": d["num_predicted"],
            "frames": d["num_frames"], "info": d["info"], "note": d["note"]}
    save_json({"runs": runs, "note": args.note}, RESULTS / args.name)


def save_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


# --- the report ------------------------------------------------------------------------------


def cmd_report(args) -> None:
    """docs/RESULTS.md + plots from the saved JSON files (cli/results_report.py)."""
    Path(args.out).write_text(report(RESULTS))
    print(f"wrote {args.out}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posediff-results", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", aliases=["evaluate"],
                       help="NOCS table (a) and sampler ablation (c) on the test set")
    m.add_argument("--model", default="models/posediff_default.json")
    m.add_argument("--test", default="data/cache_test")
    m.add_argument("--test_shards", default="", help='"a:b": only shards a..b-1 of --test')
    m.add_argument("--limit", type=int, default=0, help="first N test objects (0 = all)")
    m.add_argument("--baseline_objects", type=int, default=1000)
    m.add_argument("--baseline_steps", type=int, default=GenPoseBaseline.steps)
    m.add_argument("--ablation_objects", type=int, default=3000)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--note", default="", help="how the machine was shared (into the report)")
    s = sub.add_parser("symmetric", help="(d) 50 samples of a bottle and a hidden-handle mug")
    s.add_argument("--model", default="models/posediff_default.json")
    s.add_argument("--test", default="data/cache_test")
    s.add_argument("--test_shards", default="")
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--threads", type=int, default=1)
    h = sub.add_parser("hypotheses", help="(e) top-1 vs top-k accuracy of the pose modes")
    h.add_argument("--model", default="models/posediff_default.json")
    h.add_argument("--test", default="data/cache_test")
    h.add_argument("--test_shards", default="")
    h.add_argument("--limit", type=int, default=0)
    h.add_argument("--samples", type=int, default=16, help="samples per object (num_samples)")
    h.add_argument("--top_k", type=int, default=3)
    h.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("averaging", help="(h) accuracy vs cost of test-time averaging")
    a.add_argument("--model", default="models/posediff_default.json")
    a.add_argument("--model_name", default="", help="what the report calls the model")
    a.add_argument("--splits", nargs="+", default=["test=data/cache_test"],
                   help="NAME=CACHE test splits, each measured on its own")
    a.add_argument("--test_shards", default="")
    a.add_argument("--limit", type=int, default=0)
    a.add_argument("--repeats", type=int, default=5, help="new subsets and noise each")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--note", default="", help="how the machine was shared (into the report)")
    t = sub.add_parser("tune", help="choose the stored sampler defaults on validation data")
    t.add_argument("--model", default="models/posediff_default.json")
    t.add_argument("--val", default="data/cache_val")
    t.add_argument("--val_shards", default="")
    t.add_argument("--limit", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("collect-runs", help="(b) copy eval logs of training runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--name", default="runs.json")
    c.add_argument("--note", default="", help="how the runs were set up (goes into the report)")
    v = sub.add_parser("collect-eval", help="(f) keep posediff-eval runs (mask vs boxes)")
    v.add_argument("evals", nargs="+", help="eval.json files of posediff-eval")
    v.add_argument("--name", default="segmentation.json")
    v.add_argument("--note", default="", help="which data, which commands (into the report)")
    sp = sub.add_parser("splits", help="(g) models x test splits (in/out of distribution)")
    sp.add_argument("--models", nargs="+", required=True, help="NAME=MODEL_JSON ...")
    sp.add_argument("--splits", nargs="+", required=True, help="NAME=CACHE_DIR ...")
    sp.add_argument("--limit", type=int, default=0, help="first N objects of each split")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--note", default="", help="goes into the report under the heading")
    r = sub.add_parser("report", help="docs/results/*.json -> docs/RESULTS.md + plots")
    r.add_argument("--out", default="docs/RESULTS.md")
    return p


COMMANDS = {"measure": cmd_measure, "evaluate": cmd_measure, "symmetric": cmd_symmetric,
            "tune": cmd_tune, "collect-runs": cmd_collect_runs, "report": cmd_report,
            "hypotheses": cmd_hypotheses, "collect-eval": cmd_collect_eval,
            "splits": cmd_splits, "averaging": cmd_averaging}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    COMMANDS[args.cmd](args)


if __name__ == "__main__":
    main()
