"""The GPU checks, as plain functions (no pytest): test_backends.py runs them under pytest,
scripts/gpu_check.sh runs them on a bare CUDA machine without pytest. Each compares a GPU
path with the CPU torch backend within the bound of fp32.py (or its reduced-precision form),
and returns nothing or raises AssertionError; `Skip` says why a check cannot run here."""

from pathlib import Path

import numpy as np
import torch
from fp32 import Tolerance, parity_tolerance

from posediff_ros.model.posenet import PoseNet, PoseNetConfig, load_model, save_model
from posediff_ros.model.sampler import SamplerSettings
from posediff_ros.runtime import load_backend

CLASSES = np.array([1, 3, 6, 2, 5])


class Skip(Exception):
    """The check cannot run on this machine (the message says why)."""


def moving_model(directory: Path) -> Path:
    """A saved model whose score head is non-zero (a fresh one's sampler does nothing)."""
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig())
    for head in (model.score_head.rot_head, model.score_head.trans_head):
        torch.nn.init.normal_(head[-1].weight, std=0.05)
    return save_model(model, Path(directory) / "m.json")


def clouds(b: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.04, (b, p, 3)) + [0.05, -0.02, 0.7]).astype(np.float32)


def tolerance(model, settings: SamplerSettings, points, precision: str = "fp32") -> Tolerance:
    centroid = points.mean(1)
    radius = np.sqrt(((points - centroid[:, None]) ** 2).sum(-1).mean(-1))
    return parity_tolerance(model, settings.steps, settings.solver, points.shape[1],
                            float(radius.max()), float(np.linalg.norm(centroid, axis=-1).max()),
                            precision)


def assert_within(name: str, got, want, tol: float) -> None:
    err = float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())
    assert err <= tol, f"{name}: max |difference| {err:.2e} > tolerance {tol:.2e}"


def assert_poses_close(out, want, model_json, settings, points, precision="fp32") -> None:
    """One-sample PoseBatches of two backends agree within the fp32.py bound."""
    tol = tolerance(load_model(model_json), settings, points, precision)
    assert_within("rotation", out.rotation, want.rotation, tol.normalised)
    assert_within("translation", out.translation, want.translation, tol.translation)
    assert_within("size", out.size, want.size, tol.size)
    assert_within("score", out.score, want.score, tol.score)


def _need_cuda() -> None:
    if not torch.cuda.is_available():
        raise Skip("no CUDA device on this machine")


def cuda_matches_cpu(model_json: Path) -> None:
    """The torch backend on CUDA (fp32 matmuls: torch leaves TF32 off) against the CPU."""
    _need_cuda()
    s = SamplerSettings(seed=1)
    pts = clouds(4, 256)
    cpu = load_backend("torch", model_json, settings=s).predict(pts, CLASSES[:4])
    gpu = load_backend("torch", model_json, device="cuda", settings=s).predict(pts, CLASSES[:4])
    assert_poses_close(gpu, cpu, model_json, s, pts)


def cuda_graphs_match_eager(model_json: Path, b: int) -> None:
    _need_cuda()
    s = SamplerSettings(seed=3)
    eager = load_backend("torch-fused", model_json, device="cuda", settings=s)
    graphs = load_backend("torch-fused", model_json, device="cuda", settings=s,
                          cuda_graphs=True)
    pts, cls = clouds(b, eager.num_points), np.resize(CLASSES, b)
    for _ in range(2):  # capture, then replay (padded to a bucket: other kernel shapes)
        assert_poses_close(graphs.predict(pts, cls), eager.predict(pts, cls), model_json, s, pts)


def autocast_stays_close(model_json: Path, amp: str) -> None:
    _need_cuda()
    s = SamplerSettings(seed=3)
    pts = clouds(3, 256)
    ref = load_backend("torch", model_json, settings=s).predict(pts, CLASSES[:3])
    out = load_backend("torch-fused", model_json, device="cuda", settings=s,
                       amp=amp).predict(pts, CLASSES[:3])
    tol = tolerance(load_model(model_json), s, pts, amp)
    assert_within("translation", out.translation, ref.translation, tol.translation)
    assert_within("rotation", out.rotation, ref.rotation, tol.normalised)


def onnxruntime_cuda_provider(model_json: Path) -> None:
    _need_cuda()
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"onnxruntime build has no CUDA provider ({ort.get_available_providers()})")
    s = SamplerSettings(seed=1)
    be = load_backend("onnxruntime", model_json, device="cuda", settings=s)
    assert be.provider == "CUDAExecutionProvider"
    ref = load_backend("torch", model_json, settings=s)
    pts = clouds(4, be.num_points)
    # onnxruntime's CUDA provider may run matmuls in TF32 (its use_tf32 option)
    assert_poses_close(be.predict(pts, CLASSES[:4]), ref.predict(pts, CLASSES[:4]), model_json,
                       s, pts, "tf32")


def tensorrt_engine_parity_and_cache(model_json: Path, cache_dir: Path) -> None:
    _need_cuda()
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT needs the tensorrt package (not installed here)")
    s = SamplerSettings(seed=1)
    be = load_backend("tensorrt", model_json, device="cuda", settings=s, max_objects=8,
                      cache_dir=cache_dir)
    assert be.name == "tensorrt"
    engine = be.engine_path(s)
    stamp = engine.stat().st_mtime_ns
    ref = load_backend("torch", model_json, settings=s)
    for b in (1, 5):
        pts = clouds(b, be.num_points)
        # TensorRT may pick TF32 tactics for fp32 layers
        assert_poses_close(be.predict(pts, CLASSES[:b]), ref.predict(pts, CLASSES[:b]),
                           model_json, s, pts, "tf32")
    again = load_backend("tensorrt", model_json, device="cuda", settings=s, max_objects=8,
                         cache_dir=cache_dir)
    assert again.engine_path(s) == engine and engine.stat().st_mtime_ns == stamp  # reused


def all_checks(model_json: Path, scratch: Path) -> dict[str, callable]:
    """name -> zero-argument check, every GPU check with its parameters."""
    checks = {"cuda_matches_cpu": lambda: cuda_matches_cpu(model_json),
              "onnxruntime_cuda_provider": lambda: onnxruntime_cuda_provider(model_json),
              "tensorrt_engine_parity_and_cache":
                  lambda: tensorrt_engine_parity_and_cache(model_json, scratch / "trt")}
    for b in (1, 3, 6, 50):
        checks[f"cuda_graphs_match_eager[{b}]"] = lambda b=b: cuda_graphs_match_eager(model_json, b)
    for amp in ("fp16", "bf16"):
        checks[f"autocast_stays_close[{amp}]"] = lambda a=amp: autocast_stays_close(model_json, a)
    return checks
