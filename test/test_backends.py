"""Backends behind load_backend: onnxruntime and the fused torch module agree with the torch
backend, settings change at run time, missing packages/devices fall back with one log line.
GPU and TensorRT tests skip with the reason on machines without them."""

import importlib.util
import logging
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import gpu_checks
import numpy as np
import pytest
import reference
import torch
from gpu_checks import CLASSES, assert_poses_close, assert_within, clouds, tolerance

from posediff_ros.model.posenet import (
    ModelFileError,
    PoseNet,
    PoseNetConfig,
    load_model,
    save_model,
)
from posediff_ros.runtime import BACKENDS, load_backend
from posediff_ros.runtime.base import SamplerSettings
from posediff_ros.runtime.fallback import chain

torch.set_num_threads(1)
HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def private_cache(cache, monkeypatch):
    monkeypatch.setenv("POSEDIFF_CACHE", str(cache))


@pytest.fixture(scope="module")
def model_json(tmp_path_factory):
    """A saved model whose score head is non-zero (a fresh one's sampler does nothing)."""
    return gpu_checks.moving_model(tmp_path_factory.mktemp("model"))


FIELDS = ("rotation", "translation", "size", "score")


def max_diff(a, b) -> float:
    """Max abs difference of pose, size, score and covariance (for "these differ" checks)."""
    err = max(float(np.abs(getattr(a, f) - getattr(b, f)).max()) for f in FIELDS)
    if a.covariance is not None:
        err = max(err, float(np.abs(a.covariance - b.covariance).max()))
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


@contextmanager
def graph_outputs():
    """The raw outputs (export.OUTPUTS) of every onnxruntime / fused-module call made inside."""
    from posediff_ros.runtime import fused_backend, onnx_backend

    seen: list[dict] = []
    real = onnx_backend.to_pose_batch

    def spy(out, *args):
        seen.append(dict(out))
        return real(out, *args)

    onnx_backend.to_pose_batch = fused_backend.to_pose_batch = spy
    try:
        yield seen
    finally:
        onnx_backend.to_pose_batch = fused_backend.to_pose_batch = real


def torch_samples(model, settings: SamplerSettings, points, class_ids):
    """Per-sample poses (B, N, 3, 3), (B, N, 3) by the torch backend's own path
    (PoseNet.sample_poses on the same noise draw), as float64 numpy."""
    from posediff_ros.model.posenet import pose_to_camera
    from posediff_ros.runtime.postprocess import make_noise

    s = settings
    with torch.no_grad():
        cond, centroid, scale = model.condition(torch.from_numpy(points),
                                                torch.from_numpy(class_ids))
        noise = torch.from_numpy(make_noise(s, len(points)))
        x = model.sample_poses(cond, noise, s)
        rot, trans = pose_to_camera(x, centroid, scale)
    return rot.double().numpy(), trans.double().numpy()


def reference_score(raw: dict, out) -> np.ndarray:
    """The agreement score by its definition (numpy, float64) from the graph's regression
    pose and the backend's pose: exp(-angle of the y axes / 20 deg) exp(-|dt| / (0.5 s))."""
    a = out.rotation[:, :, 1].astype(np.float64)
    b = raw["reg_rotation"][:, :, 1].astype(np.float64)
    # atan2, not arccos: arccos of a rounded cosine near 1 is off by ~sqrt(rounding)
    angle = np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1))
    dt = np.linalg.norm(out.translation.astype(np.float64) - raw["reg_translation"], axis=-1)
    return np.exp(-np.degrees(angle) / 20.0) * np.exp(-dt / raw["point_scale"] / 0.5)


def assert_covariance_of_samples(cov, rot, trans) -> None:
    """A backend's covariance is the float64 covariance (reference.pose_covariance) of its
    own samples. The samples are float32 rotations, orthonormal to e = max|R^T R - I|; the
    backend's log map takes them as they are, scipy projects them first, which moves each
    rotation vector by <= pi e; so |dC| <= 2 max|v| pi e N / (N - 1) (+ float64 rounding)."""
    for b in range(len(cov)):
        want = reference.pose_covariance(rot[b], trans[b])
        r = np.asarray(rot[b], np.float64)
        e = np.abs(r.transpose(0, 2, 1) @ r - np.eye(3)).max()
        n = len(r)
        vmax = np.sqrt(np.diag(want).max() * (n - 1))  # bound on any |v| component
        tol = 2 * vmax * np.pi * e * n / (n - 1) + 1e-12 * max(1.0, np.abs(want).max())
        assert_within(f"covariance of object {b}", cov[b], want, tol)


@pytest.mark.parametrize("name,options", [("onnxruntime", {}), ("onnxruntime", {"split": True}),
                                          ("torch-fused", {})])
@pytest.mark.parametrize("settings", [SamplerSettings(seed=1),
                                      SamplerSettings(steps=3, solver="heun", num_samples=6,
                                                      init="regression", seed=2)],
                         ids=["default", "heun-6samples"])
def test_backend_matches_torch(model_json, name, options, settings):
    """Direct outputs (per-sample poses of the graph) and the PoseBatch against the torch
    backend, within the float32 bound of fp32.py; covariances against float64 numpy."""
    model = load_model(model_json)
    ref = load_backend("torch", model_json, settings=settings)
    be = load_backend(name, model_json, settings=settings, **options)
    assert be.name == name and be.num_points == ref.num_points
    pts = clouds(5, be.num_points)
    with graph_outputs() as raw:
        out = be.predict(pts, CLASSES)
    want = ref.predict(pts, CLASSES)
    rot_s, trans_s = torch_samples(model, settings, pts, CLASSES)
    tol = tolerance(model, settings, pts)
    assert_within("samples_rotation", raw[-1]["samples_rotation"], rot_s, tol.normalised)
    assert_within("samples_translation", raw[-1]["samples_translation"], trans_s,
                  tol.translation)
    # the mean of N samples moves by at most the chordal mean's conditioning times theirs
    cond = max(reference.chordal_mean(r)[1] for r in rot_s)
    assert_within("rotation", out.rotation, want.rotation, cond * tol.normalised)
    assert_within("translation", out.translation, want.translation, tol.translation)
    assert_within("size", out.size, want.size, tol.size)
    assert_within("score", out.score, want.score, cond * tol.score)
    assert_within("score by its definition", out.score, reference_score(raw[-1], out),
                  cond * tol.score)
    assert (out.covariance is None) == (settings.num_samples == 1)
    if settings.num_samples == 1:
        assert out.samples_rotation is None and want.samples_rotation is None
    else:  # every sample, the ones the mean pose was made of (hypotheses cluster them)
        assert out.samples_rotation.shape == (5, settings.num_samples, 3, 3)
        assert_within("PoseBatch samples_rotation", out.samples_rotation,
                      want.samples_rotation, tol.normalised)
        assert_within("PoseBatch samples_translation", out.samples_translation,
                      want.samples_translation, tol.translation)
        assert_covariance_of_samples(out.covariance, raw[-1]["samples_rotation"],
                                     raw[-1]["samples_translation"])
        assert_covariance_of_samples(want.covariance, rot_s.astype(np.float32),
                                     trans_s.astype(np.float32))
    if options.get("split"):
        assert set(out.timings_ms) == {"encoder", "sampler"}


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_parity_under_other_cpu_kernels(capability):
    """The parity tests again with torch forced to another kernel set (ATEN_CPU_CAPABILITY),
    so AVX2-only and non-SIMD summation orders are exercised on any x86 machine."""
    if os.environ.get("ATEN_CPU_CAPABILITY") == capability:
        pytest.skip(f"this run already uses ATEN_CPU_CAPABILITY={capability}")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         # launch_testing imports every test module of the folder to look for launch tests
         "-p", "no:launch_testing", "-p", "no:launch_ros",
         # onnxruntime against torch: the fused module runs the same ATen kernels as torch
         "-k", "(test_backend_matches_torch and onnxruntime-options0) or "
               "test_torch_kernels_in_use",
         str(Path(__file__)), f"--capability={capability}"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\b3 passed", proc.stdout) and "failed" not in proc.stdout, proc.stdout


def test_torch_kernels_in_use(request):
    """The kernel set torch runs with is the one asked for (torch ignores an unknown value)."""
    want = request.config.getoption("--capability")
    if want is None:
        pytest.skip("only in the forced-capability runs (test_parity_under_other_cpu_kernels)")
    assert torch.backends.cpu.get_cpu_capability() == want.upper()


def test_onnx_configure_at_run_time(model_json, cache):
    be = load_backend("onnxruntime", model_json)
    pts = clouds(3, be.num_points, seed=4)
    first = be.predict(pts, CLASSES[:3])
    for s in (SamplerSettings(steps=7, w_schedule="linear"), SamplerSettings(seed=9)):
        be.configure(s)
        out = be.predict(pts, CLASSES[:3])
        want = load_backend("torch", model_json, settings=s).predict(pts, CLASSES[:3])
        assert_poses_close(out, want, model_json, s, pts)
        assert max_diff(out, first) > 1e-3
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


# --- GPU paths (gpu_checks.py; skipped without a GPU, and run by scripts/gpu_check.sh) -----


def run_gpu_check(check, *args) -> None:
    try:
        check(*args)
    except gpu_checks.Skip as why:
        pytest.skip(str(why))


def test_cuda_matches_cpu(model_json):
    run_gpu_check(gpu_checks.cuda_matches_cpu, model_json)


@pytest.mark.parametrize("b", [1, 3, 6, 50])
def test_cuda_graphs_match_eager(model_json, b):
    run_gpu_check(gpu_checks.cuda_graphs_match_eager, model_json, b)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_autocast_stays_close(model_json, amp):
    run_gpu_check(gpu_checks.autocast_stays_close, model_json, amp)


def test_onnxruntime_cuda_provider(model_json):
    run_gpu_check(gpu_checks.onnxruntime_cuda_provider, model_json)


def test_tensorrt_engine_parity_and_cache(model_json, tmp_path):
    run_gpu_check(gpu_checks.tensorrt_engine_parity_and_cache, model_json, tmp_path)


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
        assert_poses_close(be.predict(pts, CLASSES[:2]), ref.predict(pts, CLASSES[:2]), path,
                           be.settings, pts)


def test_int8_backend_quantizes_the_encoder_only(model_json, cache):
    """onnxruntime-int8: the encoder's matrix products run on integers (dynamic quantization),
    the regression and score heads' stay float; the graph goes to the cache; its poses differ
    from float32's by quantisation error only (bundled-model accuracy: test_accuracy.py), and
    a missing onnxruntime falls back through plain onnxruntime to torch."""
    import onnx

    be = load_backend("onnxruntime-int8", model_json)
    assert be.name == "onnxruntime-int8"
    (path,) = be.graph_paths(be.settings)
    assert path.parent == cache / "onnx" and path.name.endswith(".int8r7pc-encoder.onnx")
    nodes = onnx.load(str(path)).graph.node
    floats = [n.name for n in nodes if n.op_type in ("MatMul", "Gemm")]
    assert any(n.op_type == "MatMulInteger" for n in nodes)
    per_point = ("/encoder/encoder/local", "/encoder/encoder/trunk")  # the FLOPs; emb: per object
    assert not [name for name in floats if name.startswith(per_point)]
    assert [name for name in floats if name.startswith("/sampler/score_head")]
    pts = clouds(3, be.num_points, seed=4)
    out = be.predict(pts, CLASSES[:3])
    ref = load_backend("onnxruntime", model_json).predict(pts, CLASSES[:3])
    assert 0 < max_diff(out, ref) < 0.1
    assert chain("onnxruntime-int8") == ["onnxruntime-int8", "onnxruntime", "torch"]
