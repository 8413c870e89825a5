"""Backends behind load_backend: onnxruntime and the fused torch module agree with the torch
backend, settings change at run time, missing packages/devices fall back with one log line.
GPU and TensorRT tests skip with the reason on machines without them."""

import importlib.util
import logging
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from posediff_ros.model.posenet import ModelFileError, PoseNet, PoseNetConfig, save_model
from posediff_ros.runtime import BACKENDS, load_backend
from posediff_ros.runtime.base import SamplerSettings
from posediff_ros.runtime.fallback import chain

torch.set_num_threads(1)
HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
needs_trt = pytest.mark.skipif(not (HAS_CUDA and HAS_TRT),
                               reason="TensorRT needs the tensorrt package and a CUDA device")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def private_cache(cache, monkeypatch):
    monkeypatch.setenv("POSEDIFF_CACHE", str(cache))


@pytest.fixture(scope="module")
def model_json(tmp_path_factory):
    """A saved model whose score head is non-zero (a fresh one's sampler does nothing)."""
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig())
    for head in (model.score_head.rot_head, model.score_head.trans_head):
        torch.nn.init.normal_(head[-1].weight, std=0.05)
    return save_model(model, tmp_path_factory.mktemp("model") / "m.json")


def clouds(b: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.04, (b, p, 3)) + [0.05, -0.02, 0.7]).astype(np.float32)


CLASSES = np.array([1, 3, 6, 2, 5])
FIELDS = ("rotation", "translation", "size", "score")


def max_diff(a, b) -> float:
    """Max abs difference of pose, size and score; the covariance relative to its largest
    entry (a random network's samples scatter widely, and the log map near pi amplifies
    float32 rounding in absolute terms)."""
    err = max(float(np.abs(getattr(a, f) - getattr(b, f)).max()) for f in FIELDS)
    if a.covariance is not None:
        rel = np.abs(a.covariance - b.covariance).max() / max(1.0, np.abs(b.covariance).max())
        err = max(err, float(rel))
    return err


@contextmanager
def runtime_log():
    """Records of the posediff_ros.runtime logger. (Not caplog: the ROS launch pytest plugin
    installs a logger class that does not propagate to the root logger.)"""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("posediff_ros.runtime")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("name,options", [("onnxruntime", {}), ("onnxruntime", {"split": True}),
                                          ("torch-fused", {})])
@pytest.mark.parametrize("settings", [SamplerSettings(seed=1),
                                      SamplerSettings(steps=3, solver="heun", num_samples=6,
                                                      init="regression", seed=2)],
                         ids=["default", "heun-6samples"])
def test_backend_matches_torch(model_json, name, options, settings):
    ref = load_backend("torch", model_json, settings=settings)
    be = load_backend(name, model_json, settings=settings, **options)
    assert be.name == name and be.num_points == ref.num_points
    pts = clouds(5, be.num_points)
    out, want = be.predict(pts, CLASSES), ref.predict(pts, CLASSES)
    assert (out.covariance is None) == (settings.num_samples == 1)
    assert max_diff(out, want) < 1e-4
    if settings.num_samples == 1:
        assert out.samples_rotation is None and want.samples_rotation is None
    else:  # every sample, the ones the mean pose was made of (hypotheses cluster them)
        assert out.samples_rotation.shape == (5, settings.num_samples, 3, 3)
        assert np.abs(out.samples_rotation - want.samples_rotation).max() < 1e-4
        assert np.abs(out.samples_translation - want.samples_translation).max() < 1e-4
        assert np.allclose(out.samples_translation.mean(axis=1), out.translation, atol=1e-6)
    if options.get("split"):
        assert set(out.timings_ms) == {"encoder", "sampler"}


def test_onnx_configure_at_run_time(model_json, cache):
    be = load_backend("onnxruntime", model_json)
    pts = clouds(3, be.num_points, seed=4)
    first = be.predict(pts, CLASSES[:3])
    for s in (SamplerSettings(steps=7, w_schedule="linear"), SamplerSettings(seed=9)):
        be.configure(s)
        out = be.predict(pts, CLASSES[:3])
        assert max_diff(out, load_backend("torch", model_json, settings=s).predict(
            pts, CLASSES[:3])) < 1e-4
        assert max_diff(out, first) > 1e-5
    # a graph per setting, exported once into the cache dir
    assert len(list((cache / "onnx").glob("m.euler7-linear*.onnx"))) == 1
    with pytest.raises(ValueError):
        be.configure(SamplerSettings(solver="rk4"))


def test_uses_a_graph_shipped_beside_the_model(model_json, tmp_path, monkeypatch):
    from posediff_ros.cli.export import main as export_main

    monkeypatch.setenv("POSEDIFF_CACHE", str(tmp_path / "empty"))
    export_main(["--model", str(model_json), "--steps", "5"])
    shipped = list((model_json.parent / "onnx").glob("m.euler5-*.onnx"))
    assert len(shipped) == 1
    be = load_backend("onnxruntime", model_json, settings=SamplerSettings(steps=5))
    assert be.graph_paths(be.settings) == shipped
    assert not (tmp_path / "empty" / "onnx").exists()  # nothing exported on the fly


def test_empty_batch_everywhere(model_json):
    for name in ("onnxruntime", "torch-fused"):
        be = load_backend(name, model_json)
        assert be.predict(np.zeros((0, be.num_points, 3), np.float32),
                          np.zeros(0, np.int64)).rotation.shape == (0, 3, 3)


@pytest.mark.skipif(HAS_CUDA and HAS_TRT, reason="TensorRT is available here: no fallback")
def test_tensorrt_falls_back_with_one_log_line(model_json):
    with runtime_log() as lines:
        be = load_backend("tensorrt", model_json, device="cuda", max_objects=8)
    assert be.name == "onnxruntime"
    assert len(lines) == 1 and "tensorrt" in lines[0].getMessage()
    assert be.predict(clouds(2, be.num_points), CLASSES[:2]).rotation.shape == (2, 3, 3)


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present: no fallback to the CPU")
def test_cuda_falls_back_to_cpu_with_one_log_line(model_json):
    with runtime_log() as lines:
        be = load_backend("torch", model_json, device="cuda")
    assert be.device.type == "cpu"
    assert len(lines) == 1 and "CUDA" in lines[0].getMessage()


def test_errors_that_are_not_missing_packages_still_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tflite", "random")
    with pytest.raises(ModelFileError):
        load_backend("onnxruntime", tmp_path / "absent.json")
    assert chain("tensorrt") == ["tensorrt", "onnxruntime", "torch"]
    assert {"torch", "torch-fused", "onnxruntime", "tensorrt"} <= set(BACKENDS)


# --- GPU paths (skipped here: no GPU on the development machine) --------------------------


@needs_cuda
@pytest.mark.parametrize("b", [1, 3, 6])
def test_cuda_graphs_match_eager(model_json, b):
    s = SamplerSettings(seed=3)
    eager = load_backend("torch-fused", model_json, device="cuda", settings=s)
    graphs = load_backend("torch-fused", model_json, device="cuda", settings=s,
                          cuda_graphs=True)
    pts = clouds(b, eager.num_points)
    for _ in range(2):  # capture, then replay
        assert max_diff(graphs.predict(pts, CLASSES[:b] if b <= 5 else np.tile(CLASSES, 2)[:b]),
                        eager.predict(pts, CLASSES[:b] if b <= 5 else np.tile(CLASSES, 2)[:b])
                        ) < 1e-4


@needs_cuda
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_autocast_stays_close(model_json, amp):
    s = SamplerSettings(seed=3)
    ref = load_backend("torch", model_json, settings=s).predict(clouds(3, 256), CLASSES[:3])
    out = load_backend("torch-fused", model_json, device="cuda", settings=s,
                       amp=amp).predict(clouds(3, 256), CLASSES[:3])
    assert np.abs(out.translation - ref.translation).max() < 5e-3  # metres


@needs_cuda
def test_onnxruntime_cuda_provider(model_json):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime build has no CUDA provider ({ort.get_available_providers()})")
    be = load_backend("onnxruntime", model_json, device="cuda", settings=SamplerSettings(seed=1))
    assert be.provider == "CUDAExecutionProvider"
    ref = load_backend("torch", model_json, settings=SamplerSettings(seed=1))
    pts = clouds(4, be.num_points)
    assert max_diff(be.predict(pts, CLASSES[:4]), ref.predict(pts, CLASSES[:4])) < 1e-3


@needs_trt
def test_tensorrt_engine_parity_and_cache(model_json, tmp_path):
    s = SamplerSettings(seed=1)
    be = load_backend("tensorrt", model_json, device="cuda", settings=s, max_objects=8,
                      cache_dir=tmp_path)
    assert be.name == "tensorrt"
    engine = be.engine_path(s)
    stamp = engine.stat().st_mtime_ns
    ref = load_backend("torch", model_json, settings=s)
    for b in (1, 5):
        pts = clouds(b, be.num_points)
        assert max_diff(be.predict(pts, CLASSES[:b]), ref.predict(pts, CLASSES[:b])) < 1e-3
    again = load_backend("tensorrt", model_json, device="cuda", settings=s, max_objects=8,
                         cache_dir=tmp_path)
    assert again.engine_path(s) == engine and engine.stat().st_mtime_ns == stamp  # reused


def test_defaults_come_from_the_model_file(tmp_path):
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig())
    model.cfg.sampler = model.cfg.sampler.override(steps=3, init="regression")
    path = save_model(model, tmp_path / "r.json")
    ref = load_backend("torch", path)
    for name in ("onnxruntime", "torch-fused"):
        be = load_backend(name, path)
        assert (be.settings.steps, be.settings.init) == (3, "regression")
        pts = clouds(2, be.num_points)
        assert max_diff(be.predict(pts, CLASSES[:2]), ref.predict(pts, CLASSES[:2])) < 1e-4
