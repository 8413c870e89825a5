"""posediff-results: measure the model on the held-out test cache, save every measurement as
JSON (docs/results/), and generate docs/RESULTS.md + plots from those saved files only.

  posediff-results evaluate --model models/posediff_default.json --test data/cache_test
  posediff-results collect-runs runs/ablation_joint runs/ablation_scratch
  posediff-results tune --model models/posediff_default.json --val data/cache_val
  posediff-results symmetric --model models/posediff_default.json --test data/cache_test
  posediff-results report            # docs/results/*.json -> docs/RESULTS.md, docs/images/*.png

Accuracy is per object (ground-truth masks, every object paired with its ground truth): the
share of objects within each threshold, averaged over the six classes; 3D IoU is the correct
one (posediff_ros.metrics, legacy=False).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..categories import BY_ID, NAMES
from ..metrics import accuracy_table, object_errors
from ..model.baseline import GenPoseBaseline
from ..model.posenet import PoseNet, load_model, pose_to_camera
from ..model.rotation import mean_rotation
from ..model.sampler import SamplerSettings

RESULTS = Path("docs/results")
IMAGES = Path("docs/images")
TABLE_COLUMNS = ("IoU25", "IoU50", "IoU75", "5d2cm", "5d5cm", "10d2cm", "10d5cm")


# --- evaluation on the test cache ---------------------------------------------------------


def load_test(path: str, limit: int, num_points: int, shards: str = ""):
    """The test objects (first `limit`; shards "a:b" picks held-out shards of a cache)."""
    from .train import load_split

    c = load_split(path, limit, shards)
    return {"points": c.points[:, :num_points].float(), "class_ids": c.class_ids,
            "rotations": c.rotations.double().numpy(),
            "translations": c.translations.double().numpy(), "sizes": c.sizes.double().numpy(),
            "handle_visible": c.handle_visible.numpy(), "seeds": c.seeds,
            "source": f"{path}" + (f" shards {shards}" if shards else "")}


@torch.no_grad()
def condition_all(model: PoseNet, test: dict, batch: int = 256):
    conds, cents, scales, sizes, regs = [], [], [], [], []
    for s in range(0, len(test["class_ids"]), batch):
        cond, c, sc = model.condition(test["points"][s:s + batch], test["class_ids"][s:s + batch])
        reg = model.regress(cond)
        conds.append(cond), cents.append(c), scales.append(sc)
        sizes.append(sc[:, None] * reg["size"])
        regs.append(torch.cat([reg["rot6d"], reg["offset"]], -1))
    cat = torch.cat
    return cat(conds), cat(cents), cat(scales), cat(sizes), cat(regs)


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
    g = torch.Generator().manual_seed(seed)
    rots, transs = [], []
    for s in range(0, len(cond), batch):
        sl = slice(s, s + batch)
        noise = torch.randn(len(cond[sl]), settings.num_samples, 9, generator=g)
        x = model.sample_poses(cond[sl], noise, settings,
                               {"rot6d": reg[sl, :6], "offset": reg[sl, 6:]})
        r, t = pose_to_camera(x, cent[sl], scale[sl])
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


def cmd_evaluate(args) -> None:
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    sd = model.cfg.sampler
    test = load_test(args.test, args.limit, model.cfg.num_points, args.test_shards)
    n = len(test["class_ids"])
    cond, cent, scale, size, reg = condition_all(model, test)
    rows = {}
    from ..model.rotation import rot6d_to_matrix

    r_reg = rot6d_to_matrix(reg[:, :6])
    t_reg = cent + scale[:, None] * reg[:, 6:]
    rows["regression head"] = {
        "table": table_of(test, r_reg, t_reg, size),
        "ms": latency_ms(model, test, lambda *a: None), "objects": n}
    desc = f"{sd.solver}, {sd.steps} steps, {sd.w_schedule} w_max {sd.w_max:g}"
    for init in dict.fromkeys([sd.init, "noise"]):  # the stored default first
        one = lambda c, ce, s, r, i=init: sample_batched(  # noqa: E731
            model, c, ce, s, r, sd.override(init=i))
        r1, t1 = one(cond, cent, scale, reg)
        default = " = the model's stored default" if init == sd.init else ""
        rows[f"one scaled sample from {init} ({desc}){default}"] = {
            "table": table_of(test, r1, t1, size), "ms": latency_ms(model, test, one),
            "objects": n, "init": init}
    unscaled = sd.override(w_schedule="none", w_max=1.0, init="noise")
    r0, t0 = sample_batched(model, cond, cent, scale, reg, unscaled)
    rows[f"one unscaled sample from noise ({sd.solver}, {sd.steps} steps)"] = {
        "table": table_of(test, r0, t0, size), "objects": n,
        "ms": latency_ms(model, test, lambda c, ce, s, r: sample_batched(
            model, c, ce, s, r, unscaled))}
    nb = min(args.baseline_objects, n)
    baseline = GenPoseBaseline(steps=args.baseline_steps)
    base = lambda c, ce, s, r: baseline_batched(model, c, ce, s, baseline)  # noqa: E731
    rb, tb = base(cond[:nb], cent[:nb], scale[:nb], reg[:nb])
    rows[baseline.describe()] = {"table": table_of(test, rb, tb, size[:nb], nb),
                                 "ms": latency_ms(model, test, base, n=5), "objects": nb}
    out = {"model": str(args.model), "test_cache": test["source"], "test_seeds": test["seeds"],
           "objects": n, "iou": "correct (not legacy)", "rows": rows,
           "training": model.cfg.training.get("command"), "environment": environment()}
    save_json(out, RESULTS / "nocs_table.json")

    # (c) sampler ablation: schedules x steps, one sample, Euler
    ablation = []
    ns = min(args.ablation_objects, n)
    for schedule in ("exponential", "linear", "constant", "tsr", "none"):
        for steps in (1, 2, 4, 8, 16):
            setting = sd.override(steps=steps, solver="euler", w_schedule=schedule,
                                  init="noise")
            r, t = sample_batched(model, cond[:ns], cent[:ns], scale[:ns], reg[:ns], setting)
            fn = lambda c, ce, s, rr, st=setting: sample_batched(  # noqa: E731
                model, c, ce, s, rr, st)
            ablation.append({"solver": "euler", "schedule": schedule, "steps": steps,
                             "w_max": sd.w_max, "table": table_of(test, r, t, size[:ns], ns),
                             "ms": latency_ms(model, test, fn, n=10)})
    for tsr_sd in (0.2, 0.5, 1.0):  # TSR's data spread decides when its scaling sets in
        for steps in (4, 8):
            setting = sd.override(steps=steps, solver="euler", w_schedule="tsr", init="noise",
                                  tsr_sigma_d=tsr_sd)
            r, t = sample_batched(model, cond[:ns], cent[:ns], scale[:ns], reg[:ns], setting)
            ablation.append({"solver": "euler", "schedule": f"tsr sigma_d={tsr_sd:g}",
                             "steps": steps, "w_max": sd.w_max,
                             "table": table_of(test, r, t, size[:ns], ns)})
    for solver in ("heun", "dpm2"):
        for steps in (2, 4):
            setting = sd.override(steps=steps, solver=solver, w_schedule="exponential",
                                  init="noise")
            r, t = sample_batched(model, cond[:ns], cent[:ns], scale[:ns], reg[:ns], setting)
            fn = lambda c, ce, s, rr, st=setting: sample_batched(  # noqa: E731
                model, c, ce, s, rr, st)
            ablation.append({"solver": solver, "schedule": "exponential", "steps": steps,
                             "w_max": sd.w_max, "table": table_of(test, r, t, size[:ns], ns),
                             "ms": latency_ms(model, test, fn, n=10)})
    for w_max in (2.0, 8.0):
        setting = sd.override(solver="euler", w_schedule="exponential", w_max=w_max,
                              init="noise")
        r, t = sample_batched(model, cond[:ns], cent[:ns], scale[:ns], reg[:ns], setting)
        ablation.append({"solver": "euler", "schedule": "exponential", "steps": sd.steps,
                         "w_max": w_max, "table": table_of(test, r, t, size[:ns], ns)})
    r, t = sample_batched(model, cond[:ns], cent[:ns], scale[:ns], reg[:ns],
                          sd.override(solver="euler", init="regression"))
    ablation.append({"solver": "euler", "schedule": sd.w_schedule, "steps": sd.steps,
                     "w_max": sd.w_max, "init": "regression",
                     "table": table_of(test, r, t, size[:ns], ns)})
    save_json({"model": str(args.model), "objects": ns, "rows": ablation,
               "tsr_sigma_d": sd.tsr_sigma_d,
               "environment": environment()}, RESULTS / "sampler_ablation.json")


# --- sampler defaults chosen on the validation split (never on the test set) -----------------


def cmd_tune(args) -> None:
    """Grid over init x w schedule x w_max x steps on validation objects; the best (by
    10d5cm + 5d2cm, mean over classes) becomes the model's stored sampler default."""
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    val = load_test(args.val, args.limit, model.cfg.num_points, args.val_shards)
    cond, cent, scale, size, reg = condition_all(model, val)
    rows = []
    for init in ("noise", "regression"):
        for schedule in ("exponential", "linear", "constant", "tsr"):
            for w_max in (2.0, 4.0, 8.0, 16.0):
                for steps in (4, 8):
                    setting = model.cfg.sampler.override(
                        steps=steps, solver="euler", w_schedule=schedule, w_max=w_max,
                        init=init)
                    r, t = sample_batched(model, cond, cent, scale, reg, setting)
                    m = table_of(val, r, t, size)["mean"]
                    rows.append({"init": init, "schedule": schedule, "w_max": w_max,
                                 "steps": steps, "10d5cm": m["10d5cm"], "5d2cm": m["5d2cm"],
                                 "IoU50": m["IoU50"]})
    best = max(rows, key=lambda r: r["10d5cm"] + r["5d2cm"])
    raw = json.loads(Path(args.model).read_text())
    raw["sampler"].update(init=best["init"], w_schedule=best["schedule"], w_max=best["w_max"],
                          steps=best["steps"], solver="euler")
    raw.setdefault("notes", {})["sampler_selection"] = {
        "split": val["source"], "objects": len(val["class_ids"]),
        "rule": "max 10d5cm + 5d2cm (mean over classes)", "best": best}
    Path(args.model).write_text(json.dumps(raw, indent=2) + "\n")
    save_json({"model": str(args.model), "split": val["source"], "rows": rows, "best": best},
              RESULTS / "sampler_selection.json")


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


# --- training-curve ablation runs --------------------------------------------------------


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


def save_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


# --- plots with pillow (matplotlib is not installed) ------------------------------------------

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
           (140, 86, 75), (23, 190, 207)]


def line_plot(path: Path, series: dict, xlabel: str, ylabel: str, title: str,
              ylim=(0.0, 100.0), size=(720, 440)) -> None:
    """series: name -> (xs, ys). A plain line plot with axes, ticks and a legend."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 70, size[0] - 20, 40, size[1] - 60
    xs_all = [x for xs, _ in series.values() for x in xs] or [0, 1]
    x0, x1 = min(xs_all), max(xs_all) if max(xs_all) > min(xs_all) else min(xs_all) + 1
    y0, y1 = ylim
    px = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    py = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    d.rectangle([left, top, right, bottom], outline="black")
    for k in range(6):
        yv = y0 + k * (y1 - y0) / 5
        d.line([left - 4, py(yv), left, py(yv)], fill="black")
        d.text((left - 40, py(yv) - 6), f"{yv:.0f}", fill="black")
        d.line([left, py(yv), right, py(yv)], fill=(230, 230, 230))
        xv = x0 + k * (x1 - x0) / 5
        d.line([px(xv), bottom, px(xv), bottom + 4], fill="black")
        d.text((px(xv) - 15, bottom + 8), f"{xv:.3g}", fill="black")
    d.text((left + (right - left) // 2 - 60, bottom + 30), xlabel, fill="black")
    d.text((8, top - 16), ylabel, fill="black")
    d.text((left + 10, 4), title, fill="black")
    for j, (name, (xs, ys)) in enumerate(series.items()):
        c = COLOURS[j % len(COLOURS)]
        pts = [(px(x), py(max(y0, min(y1, y)))) for x, y in zip(xs, ys, strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=c, width=2)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=c)
        d.line([right - 230, top + 12 + 16 * j, right - 210, top + 12 + 16 * j], fill=c, width=3)
        d.text((right - 205, top + 6 + 16 * j), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def scatter_grid(path: Path, panels: list[tuple[str, list, list]], cols: int = 4) -> None:
    """panels: (title, yaw_deg list, tilt_deg list); yaw in [-180, 180] x tilt in [0, 180]
    (tilt grows downward)."""
    from PIL import Image, ImageDraw

    w, h, pad = 250, 200, 30
    rows = math.ceil(len(panels) / cols)
    img = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + 2 * pad) + pad), "white")
    d = ImageDraw.Draw(img)
    for k, (title, yaw, tilt) in enumerate(panels):
        ox = pad + (k % cols) * (w + pad)
        oy = pad + (k // cols) * (h + 2 * pad) + 10
        d.rectangle([ox, oy, ox + w, oy + h], outline="black")
        d.line([ox + w / 2, oy, ox + w / 2, oy + h], fill=(220, 220, 220))
        d.text((ox, oy - 22), title, fill="black")
        d.text((ox, oy + h + 3), "-180", fill="black")
        d.text((ox + w - 22, oy + h + 3), "180", fill="black")
        d.text((ox + w / 2 - 30, oy + h + 3), "yaw error", fill="black")
        d.text((ox + 3, oy + 3), "tilt 0", fill="black")
        d.text((ox + 3, oy + h - 14), "tilt 180", fill="black")
        for a, b in zip(yaw, tilt, strict=True):
            x = ox + (a + 180) / 360 * w
            y = oy + min(b, 180) / 180 * h
            d.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(214, 39, 40))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# --- report ----------------------------------------------------------------------------


def fmt_row(name: str, row: dict, cols=TABLE_COLUMNS) -> str:
    return "| " + name + " | " + " | ".join(f"{row[c]:.1f}" for c in cols) + " |"


def cmd_report(args) -> None:
    lines = ["# Results", "",
             "Generated by `posediff-results report` from the JSON files in docs/results/ "
             "(written by real runs of `posediff-results evaluate|symmetric|collect-runs`); "
             "do not edit by hand.", "",
             "Protocol: synthetic held-out test cache (scenes from seeds disjoint from "
             "training), ground-truth masks, one prediction per object, accuracy = % of "
             "objects within the threshold, mean over the six classes. 3D IoU: the correct "
             "box-bounds IoU (not the legacy NOCS code). Symmetric: bottle, bowl, can, and mug "
             "with hidden handle (rotation error about the y axis only).", ""]
    nocs_path = RESULTS / "nocs_table.json"
    if nocs_path.exists():
        nocs = json.loads(nocs_path.read_text())
        env = nocs["environment"]
        lines += ["## (a) NOCS metrics on the test set", "",
                  f"Model `{nocs['model']}`, test cache `{nocs['test_cache']}` (seeds "
                  f"{nocs['test_seeds']}), {nocs['objects']} objects; ms per object = median "
                  f"latency of encoder + sampling for one object (batch 1), torch "
                  f"{env['torch']} on CPU, {env['threads']} threads, measured while other jobs "
                  f"shared the 2 cores. Trained with `{nocs['training']}`.", "",
                  "| method (mean over classes) | " + " | ".join(TABLE_COLUMNS)
                  + " | ms/object | objects |",
                  "|---" * (len(TABLE_COLUMNS) + 3) + "|"]
        for name, row in nocs["rows"].items():
            lines.append(fmt_row(name, row["table"]["mean"]) + f" {row['ms']:.1f} | "
                         f"{row['objects']} |")
        names = list(nocs["rows"])
        reg_t = nocs["rows"][names[0]]["table"]
        sample_t = nocs["rows"][names[1]]["table"]  # the stored default
        noise_name = next((k for k in names[1:] if k.startswith("one scaled sample from noise")),
                          names[1])
        noise_t = nocs["rows"][noise_name]["table"]
        lines += ["", "Per class, 10d5cm / 5d2cm: the stored default sample, the scaled sample "
                  "from noise (the diffusion head on its own), the regression head:", "",
                  "| class | default 10d5cm | default 5d2cm | from-noise 10d5cm | "
                  "from-noise 5d2cm | regression 10d5cm | regression 5d2cm | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in [*NAMES, "mean"]:
            if c in sample_t:
                s, z, r = sample_t[c], noise_t[c], reg_t[c]
                lines.append(f"| {c} | {s['10d5cm']:.1f} | {s['5d2cm']:.1f} | "
                             f"{z['10d5cm']:.1f} | {z['5d2cm']:.1f} | {r['10d5cm']:.1f} | "
                             f"{r['5d2cm']:.1f} | {r.get('n', '')} |")
        lines += ["", "Stored default vs regression head: " + verdict(sample_t["mean"],
                                                                  reg_t["mean"]),
                  "", "Scaled sample from noise vs regression head: "
                  + verdict(noise_t["mean"], reg_t["mean"]), "",
                  targets_text(sample_t["mean"]), ""]
    runs_path = RESULTS / "runs.json"
    if runs_path.exists():
        runs_file = json.loads(runs_path.read_text())
        runs = runs_file["runs"]
        series, series_t = {}, {}
        for name, r in runs.items():
            ev = r["evals"]
            label = f"{r['mode']} seed {r['config']['seed']}"
            series[f"{label}: sample"] = ([e["step"] for e in ev],
                                          [e["sample/10d5cm"] for e in ev])
            series_t[f"{label}: sample"] = ([e["elapsed_s"] / 60 for e in ev],
                                            [e["sample/10d5cm"] for e in ev])
            if r["mode"] == "joint":
                series[f"{label}: regression head"] = (
                    [e["step"] for e in ev], [e["regression/10d5cm"] for e in ev])
            del name
        line_plot(IMAGES / "joint_vs_scratch.png", series, "training step",
                  "10d5cm, mean over classes (%)", "joint (pre-trained) vs from scratch",
                  size=(760, 500))
        line_plot(IMAGES / "joint_vs_scratch_time.png", series_t, "wall time (min)",
                  "10d5cm (%)", "joint vs from scratch at equal compute (1 thread each)")
        lines += ["## (b) Joint training (with regression pre-training) vs from scratch", ""]
        lines += ["Short runs at equal compute: each joint/scratch pair ran at the same time, "
                  "one CPU thread each, with the same step schedule and wall-clock limit, on a "
                  "subset of the training cache; validation on held-out shards. Few seeds (the "
                  "calibration notes that the seed spread is large), so small gaps are not "
                  "significant. "
                  + runs_file.get("note", ""), "",
                  "![accuracy vs steps](images/joint_vs_scratch.png)", "",
                  "![accuracy vs time](images/joint_vs_scratch_time.png)", "",
                  "| run | command | steps | minutes | sample 10d5cm | sample 5d2cm | "
                  "regression 10d5cm |", "|---|---|---|---|---|---|---|"]
        for name, r in runs.items():
            e = r["evals"][-1]
            lines.append(f"| {name} ({r['mode']}) | `{r['command']}` | {e['step']} | "
                         f"{e['elapsed_s'] / 60:.1f} | {e['sample/10d5cm']:.1f} | "
                         f"{e['sample/5d2cm']:.1f} | {e['regression/10d5cm']:.1f} |")
        by_mode: dict[str, list] = {}
        for r in runs.values():
            by_mode.setdefault(r["mode"], []).append(r["evals"][-1])
        parts = []
        for mode, evs in by_mode.items():
            acc = [e["sample/10d5cm"] for e in evs]
            each = ", ".join(f"{a:.1f}" for a in acc)
            parts.append(f"{mode}: sample 10d5cm {np.mean(acc):.1f} (runs: {each}), 5d2cm "
                         f"{np.mean([e['sample/5d2cm'] for e in evs]):.1f}")
        summary = "; ".join(parts)
        lines += ["", "(In the from-scratch runs the regression head is untrained, so its "
                  "column is meaningless there.)", "",
                  f"At the end of the equal budget, mean over seeds: {summary}. The joint runs "
                  "spend their first 600 steps on regression only, so their diffusion head has "
                  "had fewer denoising steps at the same wall time; their regression head is "
                  "the better single-shot predictor in these runs.", ""]
    main_path = RESULTS / "main_run.json"
    if main_path.exists():
        main_file = json.loads(main_path.read_text())
        runs = main_file["runs"]
        for name, r in runs.items():
            ev = r["evals"]
            line_plot(IMAGES / "training_curve.png",
                      {"one sample 10d5cm": ([e["step"] for e in ev],
                                             [e["sample/10d5cm"] for e in ev]),
                       "regression head 10d5cm": ([e["step"] for e in ev],
                                                  [e["regression/10d5cm"] for e in ev]),
                       "one sample 5d2cm": ([e["step"] for e in ev],
                                            [e["sample/5d2cm"] for e in ev])},
                      "training step", "% (validation, mean over classes)",
                      f"bundled model training ({name}), phase 2 from step "
                      f"{r['config']['phase1_steps']}")
            lines += ["## Training of the bundled model", "",
                      f"`{r['command']}`: {ev[-1]['step'] if ev else '?'} steps in "
                      f"{(ev[-1]['elapsed_s'] / 60) if ev else 0:.0f} min; validation curve "
                      "(600 objects of data/cache_val; one 4-step Euler sample, exponential "
                      "w_t, w_max 4). " + main_file.get("note", ""), "",
                      "![training curve](images/training_curve.png)", ""]
    abl_path = RESULTS / "sampler_ablation.json"
    if abl_path.exists():
        abl = json.loads(abl_path.read_text())
        lines += ["## (c) Sampler ablation (one sample)", "",
                  f"{abl['objects']} test objects; ms = median latency per object (batch 1, "
                  "encoder included).", "",
                  "TSR without a suffix uses the model's stored sigma_d "
                  f"({abl.get('tsr_sigma_d', '?')}).", "",
                  "| solver | w schedule | w_max | steps | init | 10d5cm | 5d2cm | 10d2cm | "
                  "IoU50 | ms/object |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in abl["rows"]:
            m = r["table"]["mean"]
            ms = f"{r['ms']:.1f}" if "ms" in r else "-"
            lines.append(f"| {r['solver']} | {r['schedule']} | {r['w_max']:g} | {r['steps']} | "
                         f"{r.get('init', 'noise')} | {m['10d5cm']:.1f} | {m['5d2cm']:.1f} | "
                         f"{m['10d2cm']:.1f} | {m['IoU50']:.1f} | {ms} |")
        euler = [r for r in abl["rows"] if r["solver"] == "euler" and "ms" in r]
        series = {}
        for r in euler:
            xs, ys = series.setdefault(r["schedule"], ([], []))
            xs.append(math.log2(r["steps"]))
            ys.append(r["table"]["mean"]["10d5cm"])
        line_plot(IMAGES / "sampler_ablation.png", series, "log2(steps)", "10d5cm (%)",
                  "one sample, Euler: w_t schedule x steps")
        lines += ["", "![sampler ablation](images/sampler_ablation.png)", ""]
    sel_path = RESULTS / "sampler_selection.json"
    if sel_path.exists():
        sel = json.loads(sel_path.read_text())
        b = sel["best"]
        lines += ["## Sampler defaults stored with the model", "",
                  f"Chosen on validation objects ({sel['split']}), never on the test set, by "
                  "max 10d5cm + 5d2cm over a grid of init x w schedule x w_max x steps (Euler, "
                  f"one sample): init={b['init']}, w_schedule={b['schedule']}, "
                  f"w_max={b['w_max']:g}, steps={b['steps']} (validation 10d5cm "
                  f"{b['10d5cm']:.1f}, 5d2cm {b['5d2cm']:.1f}). Best five:", "",
                  "| init | schedule | w_max | steps | 10d5cm | 5d2cm | IoU50 |",
                  "|---|---|---|---|---|---|---|"]
        top = sorted(sel["rows"], key=lambda r: -(r["10d5cm"] + r["5d2cm"]))[:5]
        for r in top:
            lines.append(f"| {r['init']} | {r['schedule']} | {r['w_max']:g} | {r['steps']} | "
                         f"{r['10d5cm']:.1f} | {r['5d2cm']:.1f} | {r['IoU50']:.1f} |")
        lines.append("")
    sym_path = RESULTS / "symmetric_samples.json"
    if sym_path.exists():
        sym = json.loads(sym_path.read_text())
        panels = []
        for label, e in sym["objects"].items():
            for key in ("none/early", "none/final", "exponential/early", "exponential/final"):
                sched, when = key.split("/")
                title = f"{label}: {'scaled' if sched != 'none' else 'unscaled'}, {when}"
                panels.append((title, e[key]["yaw_deg"], e[key]["tilt_deg"]))
        scatter_grid(IMAGES / "symmetric_samples.png", panels)
        lines += ["## (d) Symmetric objects: 50 samples", "",
                  f"{sym['samples']} samples from 50 noises, {sym['steps']} Euler steps; "
                  "'early' = the denoised estimate after the first step, 'final' = the end "
                  "point. Each dot is one sample's rotation relative to the ground truth: "
                  "x = yaw error about the object's y axis (-180..180 deg), y = tilt of its y "
                  "axis (0..180 deg, downward). Bottle: yaw is meaningless (symmetric), tilt "
                  "should be small. Mug with hidden handle: the yaw is genuinely ambiguous.", "",
                  "![symmetric samples](images/symmetric_samples.png)", ""]
        for label, e in sym["objects"].items():
            parts = []
            for key in ("none/final", "exponential/final"):
                tilt = np.asarray(e[key]["tilt_deg"])
                yaw = np.asarray(e[key]["yaw_deg"])
                parts.append(f"{key.split('/')[0]}: tilt median {np.median(tilt):.1f} deg, "
                             f"yaw spread (circular std) {circ_std(yaw):.0f} deg")
            lines.append(f"- {label}: " + "; ".join(parts))
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def circ_std(deg: np.ndarray) -> float:
    a = np.deg2rad(deg)
    r = np.hypot(np.cos(a).mean(), np.sin(a).mean())
    return float(np.rad2deg(np.sqrt(-2 * np.log(max(r, 1e-12)))))


def verdict(sample: dict, reg: dict) -> str:
    d = {c: sample[c] - reg[c] for c in ("10d5cm", "5d2cm", "IoU50")}
    if all(abs(v) < 1.0 for v in d.values()):
        return ("**The regression head alone is as good as the diffusion sample** here "
                f"(differences {', '.join(f'{k} {v:+.1f}' for k, v in d.items())} points).")
    if d["10d5cm"] < 0 and d["5d2cm"] < 0:
        return ("**The regression head alone is better than the diffusion sample** here "
                f"({', '.join(f'{k} {v:+.1f}' for k, v in d.items())} points, sample minus "
                "regression).")
    return ("The diffusion sample differs from the regression head by "
            f"{', '.join(f'{k} {v:+.1f}' for k, v in d.items())} points (sample minus "
            "regression; IoU uses the regression head's size in both).")


def targets_text(m: dict) -> str:
    goals = (("10d5cm", 80), ("5d2cm", 50), ("IoU50", 80))
    parts = [f"{c} {m[c]:.1f} (target >= {g}: {'met' if m[c] >= g else 'NOT met'})"
             for c, g in goals]
    return "Targets (one sample, mean over classes): " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="posediff-results", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="NOCS table (a) and sampler ablation (c) on the test set")
    e.add_argument("--model", default="models/posediff_default.json")
    e.add_argument("--test", default="data/cache_test")
    e.add_argument("--test_shards", default="", help='"a:b": only shards a..b-1 of --test')
    e.add_argument("--limit", type=int, default=0, help="first N test objects (0 = all)")
    e.add_argument("--baseline_objects", type=int, default=1000)
    e.add_argument("--baseline_steps", type=int, default=50)
    e.add_argument("--ablation_objects", type=int, default=3000)
    e.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("symmetric", help="(d) 50 samples of a bottle and a hidden-handle mug")
    s.add_argument("--model", default="models/posediff_default.json")
    s.add_argument("--test", default="data/cache_test")
    s.add_argument("--test_shards", default="")
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--threads", type=int, default=1)
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
    r = sub.add_parser("report", help="docs/results/*.json -> docs/RESULTS.md + plots")
    r.add_argument("--out", default="docs/RESULTS.md")
    args = p.parse_args(argv)
    commands = {"evaluate": cmd_evaluate, "symmetric": cmd_symmetric, "tune": cmd_tune,
                "collect-runs": cmd_collect_runs, "report": cmd_report}
    commands[args.cmd](args)


_ = BY_ID  # re-exported for readers of the per-class tables
if __name__ == "__main__":
    main()
