"""posediff-bench: latency, throughput, memory and accuracy of the few-step pipeline per
backend, side by side with the GenPose-style baseline, on the same machine in the same run.

Stages of one frame (what the node does): points = masked depth -> per-object point sets
(data/points.py, a real rendered frame); encoder = centring + encoder + regression head;
sampler = the score-scaled few-step sampler (ours) or 50 hypotheses x a many-step PF-ODE +
selection (baseline); frame = all of it, timed end to end. For every backend, object count
and step count: p50/p90/p99, objects/s, peak RSS (and CUDA memory on a GPU). Accuracy of ours
(per step count) and of the baseline on a fixed held-out cache, next to the speed, so the
speed ratio is read at known accuracy. Writes JSON + a Markdown table and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.cache import build_shard, load_cache
from ..data.points import frame_objects
from ..data.synthetic import BACKGROUND, make_scene, render_frame, sample_camera
from ..metrics import accuracy_table, object_errors
from ..model.baseline import GenPoseBaseline
from ..model.posenet import RANDOM, PoseNet, load_any
from ..runtime import load_backend
from ..runtime.fused_backend import FusedTorchBackend
from ..runtime.graph_cache import ModelSource
from ..runtime.onnx_backend import OnnxBackend
from ..runtime.torch_backend import TorchBackend

# fp32 (non-tensor-core) peaks, FLOP/s, for the achieved-fraction column on a GPU
GPU_PEAK_FP32 = {"H100 SXM": 67e12, "H100 PCIe": 51e12, "H100": 67e12, "H200": 67e12,
                 "A100": 19.5e12, "L4": 30.3e12, "A10": 31.2e12, "RTX 4090": 82.6e12,
                 "Orin": 5.3e12}


@dataclass
class BenchConfig:
    model: str = "random"
    backends: list[str] = field(default_factory=lambda: [
        "torch", "onnxruntime", "onnxruntime-int8", "torch-fused"])
    device: str = "cpu"
    objects: list[int] = field(default_factory=lambda: [1, 3, 6, 12])
    steps: list[int] = field(default_factory=lambda: [2, 4, 8])
    repeats: int = 30
    warmup: int = 3
    baseline_hypotheses: int = GenPoseBaseline.hypotheses  # model/baseline.py
    baseline_steps: int = GenPoseBaseline.steps
    baseline_keep: float = GenPoseBaseline.keep
    baseline_repeats: int = 5
    test_cache: str | None = None
    accuracy_objects: int = 600
    threads: int | None = 1  # intra-op threads (torch and onnxruntime); the node's default
    seed: int = 0
    quick: bool = False
    cuda_graphs: bool = False
    amp: str | None = None

    @classmethod
    def quick_config(cls, **kw) -> BenchConfig:
        """Seconds: every code path once, small numbers."""
        base = dict(objects=[1, 3], steps=[2], repeats=3, warmup=1, baseline_hypotheses=8,
                    baseline_steps=10, baseline_repeats=2, accuracy_objects=12, quick=True)
        base.update(kw)
        return cls(**base)


# --- measurement helpers --------------------------------------------------------------------


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "n": int(len(a))}


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0), so each backend's peak
    is its own; silently a no-op elsewhere (then peaks are cumulative)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def count_flops(fn) -> int:
    """Matmul FLOPs of one call (torch's FlopCounterMode: mm/addmm/bmm/conv; elementwise ops,
    norms and the SVD are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn()
    return int(fc.get_total_flops())


def gpu_peak(name: str) -> float | None:
    return next((v for k, v in GPU_PEAK_FP32.items() if k in name), None)


# --- inputs: a rendered frame and the held-out test objects ---------------------------------


@dataclass
class RenderedFrame:
    depth: np.ndarray  # (H, W) float metres
    mask: np.ndarray  # (H, W) instance ids
    K: np.ndarray
    ids: list[int]  # visible instance ids
    classes: dict[int, int]  # instance -> NOCS class


def render_bench_frame(seed: int = 0) -> RenderedFrame:
    """One synthetic tabletop frame with six objects (640x480, noisy depth)."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        frame = render_frame(make_scene(rng, num_objects=6), sample_camera(rng), rng,
                             with_color=False, with_coord=False)
        inst = [i for i in frame.instances if i.visible_pixels >= 400]
        if len(inst) >= 3:
            break
    return RenderedFrame(frame.depth.astype(np.float32) / 1000.0, frame.mask, frame.K,
                 [i.instance_id for i in inst], {i.instance_id: i.class_id for i in inst})


def frame_points(frame: RenderedFrame, b: int, num_points: int, rng: np.random.Generator):
    """Points of b objects (instances reused cyclically when b > visible ones), as the node
    extracts them: (b, P, 3) float32, (b,) class ids."""
    ids = [frame.ids[i % len(frame.ids)] for i in range(b)]
    found = frame_objects(frame.depth, frame.mask, frame.K, ids, num_points, rng,
                          min_points=32, background=BACKGROUND)
    return found.points, np.array([frame.classes[int(i)] for i in ids], np.int64)


def load_test_set(path: str | None, n: int, num_points: int):
    """First n objects of a cache (points cut to the model's P, as train.py evaluates), or
    n objects generated now from the test seed range when no cache is given."""
    if path and list(Path(path).glob("shard_*.npz")):
        c = load_cache(path)
        src = f"{path} (first {min(n, len(c))} of {len(c)} objects)"
        d = {k: getattr(c, k)[:n] for k in ("points", "class_ids", "rotations", "translations",
                                            "sizes", "handle_visible")}
    else:
        d = build_shard(2_000_000, n, num_points)
        src = f"generated now: build_shard(seed=2000000, {n} objects)"
    d["points"] = np.ascontiguousarray(d["points"][:, :num_points], np.float32)
    return d, src


def accuracy(rot, trans, size, test) -> dict:
    err = object_errors(rot, trans, test["rotations"], test["translations"], test["class_ids"],
                        test["handle_visible"], size, test["sizes"])
    table = accuracy_table(err)
    mean, every = table["mean"], table["all"]
    return {"class_mean": {k: round(v, 2) for k, v in mean.items() if k != "n"},
            "rot_median_deg": round(every["rot_median_deg"], 2),
            "trans_median_cm": round(every["trans_median_cm"], 3), "n": every["n"]}


# --- the run --------------------------------------------------------------------------------


class _NoBar:
    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def _bar(total: int, desc: str, quiet: bool):
    if quiet:  # no tqdm needed (scripts/gpu_check.sh runs where only torch & co. exist)
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="run", leave=False)


def _time(fn, repeats: int, warmup: int, device: str) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def machine_info(device: str) -> dict:
    import onnxruntime

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "load_avg_start": os.getloadavg()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


@dataclass
class Inputs:
    """What every measurement of a run shares: the model, its frame and point sets."""

    model: PoseNet
    frame: RenderedFrame
    points: dict[int, tuple[np.ndarray, np.ndarray]]  # objects -> (points, class ids)
    rng: np.random.Generator  # point subsampling of the whole-frame timings

    def frame_points(self, b: int):
        return frame_points(self.frame, b, self.model.cfg.num_points, self.rng)


_FLOPS: dict[tuple, dict[str, int]] = {}  # counted once per process (shapes, not precision)


def model_flops(cfg: BenchConfig, inputs: Inputs, baseline: GenPoseBaseline) -> dict[str, int]:
    """Matmul FLOPs per object (B = 1): the encoder stage, our sampler per step count, the
    baseline's sampler."""
    key = (cfg.model, tuple(cfg.steps), min(cfg.objects), baseline.hypotheses, baseline.steps)
    if key not in _FLOPS:
        _FLOPS[key] = _count_model_flops(cfg, inputs, baseline)
    return dict(_FLOPS[key])


def _count_model_flops(cfg: BenchConfig, inputs: Inputs, baseline: GenPoseBaseline
                       ) -> dict[str, int]:
    model = inputs.model.cpu()
    pts, cls = inputs.points[min(cfg.objects)]
    pts, cls = torch.as_tensor(pts[:1]), torch.as_tensor(cls[:1])
    with torch.no_grad():
        cond, _, _ = model.condition(pts, cls)
    flops = {"encoder": count_flops(lambda: model.regress(model.condition(pts, cls)[0]))}
    for k in cfg.steps:
        flops[f"sampler_{k}"] = count_flops(lambda k=k: model.sample_poses(
            cond, torch.zeros(1, 1, 9), steps=k))
    flops["baseline_sampler"] = count_flops(lambda: model.sample_poses(
        cond, torch.zeros(1, baseline.hypotheses, 9), baseline.settings(model.cfg.sampler)))
    return flops


def speed(row: dict, objects: int) -> dict:
    """objects/s and frames/s from the frame p50."""
    row["objects_per_s"] = objects / (row["frame_ms"]["p50"] / 1e3)
    row["frames_per_s"] = 1e3 / row["frame_ms"]["p50"]
    return row


def stage_times(cfg: BenchConfig, staged, pts, cls) -> dict[str, list[float]]:
    """Encoder and sampler times from a backend's own timers (torch, split onnxruntime)."""
    stage = {"encoder": [], "sampler": []}
    for _ in range(cfg.warmup):
        staged.predict(pts, cls)
    for _ in range(cfg.repeats):
        t = staged.predict(pts, cls).timings_ms
        stage["encoder"].append(t["encoder"])
        stage["sampler"].append(t["sampler"])
    return stage


def ours_row(cfg: BenchConfig, inputs: Inputs, asked: str, be, staged, b: int, k: int,
             flops: int, peak: float | None) -> dict:
    """One backend at k steps on b objects: points, stages, model call, whole frame."""
    pts, cls = inputs.points[b]
    model_ms = _time(lambda: be.predict(pts, cls), cfg.repeats, cfg.warmup, cfg.device)
    stage = (stage_times(cfg, staged, pts, cls) if staged is not be or be.name == "torch"
             else {"encoder": [], "sampler": []})
    frame_ms = _time(lambda: be.predict(*inputs.frame_points(b)), cfg.repeats, cfg.warmup,
                     cfg.device)
    points_ms = _time(lambda: inputs.frame_points(b), cfg.repeats, cfg.warmup, "cpu")
    row = speed({"method": "ours", "backend": be.name, "asked": asked, "steps": k, "objects": b,
                 "points_ms": percentiles(points_ms),
                 "encoder_ms": percentiles(stage["encoder"]) if stage["encoder"] else None,
                 "sampler_ms": percentiles(stage["sampler"]) if stage["sampler"] else None,
                 "model_ms": percentiles(model_ms), "frame_ms": percentiles(frame_ms),
                 "peak_rss_mb": round(peak_rss_mb(), 1), "flops_per_object": flops}, b)
    if str(cfg.device).startswith("cuda") and torch.cuda.is_available():
        row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if peak:
            row["fraction_of_peak"] = flops * b / (row["model_ms"]["p50"] / 1e3) / peak
    return row


def measure_ours(cfg: BenchConfig, inputs: Inputs, flops: dict, peak: float | None, bar
                 ) -> tuple[list[dict], dict[str, str]]:
    """Rows of ours per backend x steps x objects, and the backend each name loaded (after
    fallback)."""
    rows, loaded = [], {}
    on_gpu = str(cfg.device).startswith("cuda") and torch.cuda.is_available()
    for name in cfg.backends:
        for k in cfg.steps:
            s = inputs.model.cfg.sampler.override(steps=k, seed=cfg.seed)
            reset_peak_rss()
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            be = load_backend(name, cfg.model, device=cfg.device, settings=s,
                              cuda_graphs=cfg.cuda_graphs, amp=cfg.amp, threads=cfg.threads)
            loaded[name] = be.name
            staged = be
            if be.name == "onnxruntime":  # per-stage times need the split graphs
                staged = load_backend(name, cfg.model, device=cfg.device, settings=s,
                                      split=True, threads=cfg.threads)
            for b in cfg.objects:
                rows.append(ours_row(cfg, inputs, name, be, staged, b, k,
                                     flops["encoder"] + flops[f"sampler_{k}"], peak))
                bar.update(1)
    return rows, loaded


def baseline_row(cfg: BenchConfig, inputs: Inputs, baseline: GenPoseBaseline, b: int,
                 flops: int) -> dict:
    """The baseline (torch, the same model) on b objects: encoder, sampler, whole frame."""
    model, dev = inputs.model, cfg.device
    pts, cls = (torch.as_tensor(a, device=dev) for a in inputs.points[b])
    reset_peak_rss()
    enc_ms, smp_ms = [], []
    for i in range(cfg.warmup + cfg.baseline_repeats):
        _sync(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            cond, centroid, scale = model.condition(pts, cls)
            model.regress(cond)
        _sync(dev)
        t1 = time.perf_counter()
        baseline.sample(model, cond, centroid, scale, torch.Generator().manual_seed(cfg.seed))
        _sync(dev)
        if i >= cfg.warmup:
            enc_ms.append((t1 - t0) * 1e3)
            smp_ms.append((time.perf_counter() - t1) * 1e3)
    frame_ms = _time(lambda: baseline.predict(model, *inputs.frame_points(b), cfg.seed),
                     cfg.baseline_repeats, 0, dev)
    return speed({"method": "baseline", "backend": "torch", "asked": "torch",
                  "steps": baseline.steps, "hypotheses": baseline.hypotheses, "objects": b,
                  "points_ms": None, "encoder_ms": percentiles(enc_ms),
                  "sampler_ms": percentiles(smp_ms), "model_ms": None,
                  "frame_ms": percentiles(frame_ms), "peak_rss_mb": round(peak_rss_mb(), 1),
                  "flops_per_object": flops}, b)


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """Every measurement of a run, in one dict (the JSON written by --json)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    info = machine_info(cfg.device)
    model = load_any(cfg.model)
    info["model_sampler_defaults"] = asdict(model.cfg.sampler)
    if cfg.model != RANDOM:
        info["model_weights_sha256"] = json.loads(Path(cfg.model).read_text()).get(
            "weights_sha256")
    frame, rng = render_bench_frame(cfg.seed), np.random.default_rng(cfg.seed)
    points = {b: frame_points(frame, b, model.cfg.num_points, rng) for b in cfg.objects}
    inputs = Inputs(model, frame, points, rng)
    baseline = GenPoseBaseline(cfg.baseline_hypotheses, cfg.baseline_steps,
                               keep=cfg.baseline_keep)
    flops = model_flops(cfg, inputs, baseline)
    peak = gpu_peak(info.get("gpu", "")) if "gpu" in info else None
    bar = _bar(len(cfg.backends) * len(cfg.steps) * len(cfg.objects) + len(cfg.objects),
               "bench", not progress)
    rows, loaded = measure_ours(cfg, inputs, flops, peak, bar)
    inputs.model = model.to(cfg.device)
    for b in cfg.objects:
        rows.append(baseline_row(cfg, inputs, baseline, b,
                                 flops["encoder"] + flops["baseline_sampler"]))
        bar.update(1)
    bar.close()
    default_steps = model.cfg.sampler.steps
    from .bench_tracking import tracked_cost  # tracked objects: warm vs cold, same run

    # the tracked-object costs (torch) and a settings change (onnxruntime) run in fp32 whatever
    # --amp says: measured in the fp32 run only (gpu_check runs fp32, bf16, fp16)
    tracking = [] if cfg.amp else tracked_cost(
        load_backend("torch", cfg.model, device=cfg.device,
                     settings=model.cfg.sampler.override(seed=cfg.seed)), points, cfg.repeats)
    result = {"config": asdict(cfg), "machine": info, "backends_loaded": loaded,
              "tracking": tracking,
              "flops_per_object": flops, "rows": rows,
              "accuracy": run_accuracy(cfg, model, baseline, progress),
              "ratios": ratios(rows, cfg),
              "configure_ms": None if cfg.amp else measure_configure(model.cpu(), default_steps,
                                                                     cfg.threads),
              "seconds": round(time.time() - started, 1),
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "default_steps": default_steps, "baseline": baseline.describe()}
    info["load_avg_end"] = os.getloadavg()
    result["targets"] = check_targets(result, default_steps)
    return result


def measure_configure(model, steps: int, threads: int | None) -> dict:
    """What a run-time change of sampler settings costs the onnxruntime backend (the graph
    bakes them): first time (export + parity check + session), from the on-disk cache
    (session only), and back to a setting already loaded (a dict lookup)."""
    import tempfile

    stored = model.cfg.sampler.override(steps=steps)
    new = stored.override(steps=steps + 3)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        a = OnnxBackend(ModelSource.of_network(model), settings=stored,
                        threads=threads, cache_dir=tmp)
        t0 = time.perf_counter()
        a.configure(new)
        out["export_and_load_ms"] = (time.perf_counter() - t0) * 1e3
        path = a.graph_paths(new)[0]
        out["onnx_mb"] = round(path.stat().st_size / 1e6, 2)
        b = OnnxBackend(ModelSource.of_network(model), settings=stored,
                        threads=threads, cache_dir=tmp)
        t0 = time.perf_counter()
        b.configure(new)
        out["load_cached_ms"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        b.configure(stored)
        out["switch_loaded_ms"] = (time.perf_counter() - t0) * 1e3
    return out


def run_accuracy(cfg: BenchConfig, model, baseline: GenPoseBaseline, progress: bool) -> dict:
    """Ours at every step count (torch backend, the other float32 backends match it to < 1e-4;
    under --amp the fused module in that precision, whose poses are the ones timed) and the
    baseline (float32), on the same held-out objects."""
    test, src = load_test_set(cfg.test_cache, cfg.accuracy_objects, model.cfg.num_points)
    out = {"test_set": src, "ours": {}, "baseline": None}
    chunk = 24
    n = len(test["class_ids"])
    bar = _bar(len(cfg.steps) + 1, "accuracy", not progress)
    for k in cfg.steps:
        settings = model.cfg.sampler.override(steps=k, seed=cfg.seed)
        be = (FusedTorchBackend(model, cfg.device, settings, amp=cfg.amp) if cfg.amp
              else TorchBackend(model, cfg.device, settings))
        parts = [be.predict(test["points"][i:i + chunk], test["class_ids"][i:i + chunk])
                 for i in range(0, n, chunk)]
        out["ours"][str(k)] = accuracy(np.concatenate([p.rotation for p in parts]),
                                       np.concatenate([p.translation for p in parts]),
                                       np.concatenate([p.size for p in parts]), test)
        bar.update(1)
    parts = [baseline.predict(model, test["points"][i:i + chunk],
                              test["class_ids"][i:i + chunk], cfg.seed)
             for i in range(0, n, chunk)]
    out["baseline"] = accuracy(*[np.concatenate([p[j] for p in parts]) for j in range(3)], test)
    bar.update(1)
    bar.close()
    return out


def ratios(rows: list[dict], cfg: BenchConfig) -> list[dict]:
    """ours / baseline per backend, steps and objects (p50): sampler stage and whole frame.
    < 1 means ours is cheaper; speed-up = 1 / ratio."""
    base = {r["objects"]: r for r in rows if r["method"] == "baseline"}
    out = []
    for r in rows:
        if r["method"] != "ours" or r["objects"] not in base:
            continue
        b = base[r["objects"]]
        item = {"backend": r["backend"], "steps": r["steps"], "objects": r["objects"],
                "frame": r["frame_ms"]["p50"] / b["frame_ms"]["p50"]}
        if r["sampler_ms"]:
            item["sampler"] = r["sampler_ms"]["p50"] / b["sampler_ms"]["p50"]
        out.append(item)
    return out


def check_targets(res: dict, model_steps: int) -> dict:
    """The issue's targets, evaluated on this run: default backend (torch) at the model's
    default step count (or the nearest one benchmarked)."""
    dflt = min(res["config"]["steps"], key=lambda s: abs(s - model_steps))
    pick = [r for r in res["rows"] if r["method"] == "ours" and r["backend"] == "torch"
            and r["steps"] == dflt and r["objects"] == 3]
    rat = [x for x in res["ratios"] if x["backend"] == "torch" and x["steps"] == dflt]
    t = {"steps": dflt}
    if pick:
        t["fps_3_objects"] = round(pick[0]["frames_per_s"], 1)
        t["fps_3_objects_met"] = pick[0]["frames_per_s"] >= 10
    if rat:
        t["sampler_speedup_min"] = round(min(1 / x["sampler"] for x in rat if "sampler" in x), 1)
        t["frame_speedup_min"] = round(min(1 / x["frame"] for x in rat), 1)
        t["sampler_50x_met"] = t["sampler_speedup_min"] >= 50
        t["frame_4x_met"] = t["frame_speedup_min"] >= 4
    acc = res["accuracy"]
    ours = acc["ours"].get(str(dflt))
    if ours and acc["baseline"]:
        keys = ("5d2cm", "5d5cm", "10d2cm", "10d5cm", "IoU50")
        t["accuracy_delta"] = {c: round(ours["class_mean"][c] - acc["baseline"]["class_mean"][c],
                                        2) for c in keys}
        t["equal_or_better_accuracy"] = all(v >= -1.0 for v in t["accuracy_delta"].values())
    return t


# --- report ---------------------------------------------------------------------------------


def _f(x, nd=1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}"


def _pp(stat) -> str:
    return "-" if not stat else f"{stat['p50']:.1f} / {stat['p90']:.1f} / {stat['p99']:.1f}"


def latency_lines(res: dict) -> list[str]:
    cfg, m = res["config"], res["machine"]
    lines = [f"Run {res['date_utc']} UTC, {res['seconds']} s. Model: `{cfg['model']}`; device "
             f"`{cfg['device']}`; {m['cpu']} ({m['cores']} cores), torch {m['torch']} "
             f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}"
             + (f", GPU {m['gpu']}" if m.get("gpu") else "") + ".",
             f"Load average at start {tuple(round(x, 2) for x in m['load_avg_start'])}, at end "
             f"{tuple(round(x, 2) for x in m['load_avg_end'])}."
             + (" (quick mode: tiny repeat counts, not a measurement)" if cfg["quick"] else ""),
             "",
             "Latency in ms as p50 / p90 / p99. points = masked depth -> point sets; encoder = "
             "normalisation + encoder + regression head; sampler = few-step sampler (ours) or "
             f"the baseline's hypotheses + selection ({res['baseline']}, model/baseline.py); "
             "frame = all, timed end to end. fps and objects/s from the frame p50.", "",
             "| method | backend | steps | objects | points | encoder | sampler | model | "
             "frame | fps | obj/s | peak RSS MB | GFLOP/obj |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['backend']} | {r['steps']} | {r['objects']} | "
            f"{_pp(r['points_ms'])} | {_pp(r['encoder_ms'])} | {_pp(r['sampler_ms'])} | "
            f"{_pp(r['model_ms'])} | {_pp(r['frame_ms'])} | {_f(r['frames_per_s'])} | "
            f"{_f(r['objects_per_s'])} | {_f(r['peak_rss_mb'], 0)} | "
            f"{r['flops_per_object'] / 1e9:.3f} |")
    lines += ["", "Ours / baseline (p50; < 1 is cheaper; speed-up in brackets):", "",
              "| backend | steps | objects | sampler | frame |", "|---|---|---|---|---|"]
    for x in res["ratios"]:
        s = x.get("sampler")
        lines.append(f"| {x['backend']} | {x['steps']} | {x['objects']} | "
                     + (f"{s:.4f} ({1 / s:.0f}x)" if s else "-")
                     + f" | {x['frame']:.3f} ({1 / x['frame']:.1f}x) |")
    return lines


def accuracy_lines(res: dict) -> list[str]:
    cfg, acc = res["config"], res["accuracy"]
    cols = ("IoU25", "IoU50", "IoU75", "5d2cm", "5d5cm", "10d2cm", "10d5cm")
    lines = ["", f"Accuracy (class mean, %, correct 3D IoU; per object with ground-truth "
                 f"masks) on {acc['test_set']}:", "",
             "| method | " + " | ".join(cols) + " | rot median deg | trans median cm |",
             "|---" * (len(cols) + 3) + "|"]
    precision = f", {cfg['amp']}" if cfg.get("amp") else ""
    entries = [(f"ours, {k} steps{precision}", a) for k, a in acc["ours"].items()]
    entries.append((f"baseline {cfg['baseline_hypotheses']}x{cfg['baseline_steps']}",
                    acc["baseline"]))
    for label, a in entries:
        lines.append(f"| {label} | " + " | ".join(_f(a["class_mean"][c]) for c in cols)
                     + f" | {_f(a['rot_median_deg'])} | {_f(a['trans_median_cm'], 2)} |")
    return lines


def cost_lines(res: dict) -> list[str]:
    """FLOPs, the cost of a run-time settings change, the targets, the GPU's peak fraction."""
    fl = res["flops_per_object"]
    lines = ["", "Matmul FLOPs per object (torch FlopCounterMode): encoder "
                 f"{fl['encoder'] / 1e6:.1f} M; " + "; ".join(
                     f"sampler {k.split('_')[1]} steps {v / 1e6:.2f} M" for k, v in fl.items()
                     if k.startswith("sampler_"))
             + f"; baseline sampler {fl['baseline_sampler'] / 1e6:.0f} M.", ""]
    c = res.get("configure_ms")
    if c:
        lines += [f"Changing sampler settings at run time, onnxruntime backend (graph "
                  f"{c['onnx_mb']} MB): first time (export + parity check + load) "
                  f"{c['export_and_load_ms']:.0f} ms;"
                  f" from the cache {c['load_cached_ms']:.0f} ms; back to a loaded setting "
                  f"{c['switch_loaded_ms']:.2f} ms.", ""]
    t = res["targets"]
    lines.append(f"Targets (torch backend, {t['steps']} steps): " + "; ".join(
        f"{k} = {v}" for k, v in t.items() if k != "steps"))
    if any("fraction_of_peak" in r for r in res["rows"]):
        lines += ["", "Achieved fraction of fp32 peak (model stage): " + ", ".join(
            f"{r['backend']}/{r['steps']}/{r['objects']}: {r['fraction_of_peak']:.2e}"
            for r in res["rows"] if "fraction_of_peak" in r)]
    return lines


def markdown(res: dict) -> str:
    from .bench_tracking import markdown as tracking_lines

    return "\n".join(latency_lines(res) + accuracy_lines(res) + cost_lines(res)
                     + tracking_lines(res.get("tracking", []), "torch")) + "\n"


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else argv
    if "--node" in argv:  # the real node over DDS: ros/node_bench.py
        from ..ros.node_bench import main as node_bench

        return node_bench([a for a in argv if a != "--node"])
    from ..runtime import DEFAULT_MODEL

    ap = argparse.ArgumentParser(prog="posediff-bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL) if DEFAULT_MODEL.is_file()
                    else "random", help="model JSON or 'random' (default: %(default)s)")
    ap.add_argument("--backends", default=None,
                    help="comma list (default: torch,onnxruntime,torch-fused, + tensorrt on "
                         "a GPU with TensorRT)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--objects", default=None, help="comma list, default 1,3,6,12")
    ap.add_argument("--steps", default=None, help="comma list, default 2,4,8")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--baseline-hypotheses", type=int)
    ap.add_argument("--baseline-steps", type=int)
    ap.add_argument("--test-cache", default=None,
                    help="held-out cache dir (default: data/cache_test if present, else "
                         "objects generated from the test seed range)")
    ap.add_argument("--accuracy-objects", type=int)
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for torch and onnxruntime (default 1, as the node; "
                         "0 = the libraries' defaults)")
    ap.add_argument("--cuda-graphs", action="store_true")
    ap.add_argument("--amp", choices=["fp16", "bf16"],
                    help="autocast the fused module; leaves out the fp32-only sections "
                         "(tracked objects, run-time settings change)")
    ap.add_argument("--quick", action="store_true", help="seconds; for the test suite")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--markdown", default=None, help="write the Markdown report here")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    kw: dict = {"model": a.model, "device": a.device, "threads": a.threads or None,
                "cuda_graphs": a.cuda_graphs, "amp": a.amp}
    if a.backends:
        kw["backends"] = a.backends.split(",")
    elif str(a.device).startswith("cuda") and torch.cuda.is_available():
        kw["backends"] = ["torch", "onnxruntime", "torch-fused", "tensorrt"]
    for name, val in (("objects", a.objects), ("steps", a.steps)):
        if val:
            kw[name] = [int(x) for x in val.split(",")]
    for name in ("repeats", "baseline_hypotheses", "baseline_steps", "accuracy_objects"):
        if getattr(a, name) is not None:
            kw[name] = getattr(a, name)
    repo_test = Path(__file__).resolve().parents[2] / "data" / "cache_test"
    kw["test_cache"] = a.test_cache or (str(repo_test) if repo_test.is_dir() else None)
    cfg = BenchConfig.quick_config(**kw) if a.quick else BenchConfig(**kw)
    res = run_bench(cfg, progress=not a.no_progress)
    md = markdown(res)
    print(md)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(md)


if __name__ == "__main__":
    sys.exit(main())
