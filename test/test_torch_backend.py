"""Torch backend through load_backend: shapes, timings, seeds, settings, covariance."""

import numpy as np
import pytest
import torch

from posediff_ros.model.posenet import PoseNet, PoseNetConfig, save_model
from posediff_ros.runtime import BACKENDS, DEFAULT_MODEL, load_backend
from posediff_ros.runtime.base import SamplerSettings

torch.set_num_threads(1)


def clouds(b: int, p: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.04, (b, p, 3)) + [0.05, -0.02, 0.7]).astype(np.float32)


def test_random_backend_predicts_valid_poses():
    be = load_backend("torch", "random")
    assert be.name == "torch" and be.num_points == 256
    out = be.predict(clouds(3), np.array([1, 3, 6]))
    assert out.rotation.shape == (3, 3, 3) and out.translation.shape == (3, 3)
    assert out.size.shape == (3, 3) and out.score.shape == (3,) and out.covariance is None
    rtr = out.rotation @ out.rotation.transpose(0, 2, 1)
    np.testing.assert_allclose(rtr, np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-5)
    assert ((out.score >= 0) & (out.score <= 1)).all()
    assert set(out.timings_ms) == {"encoder", "sampler"}
    # translation is an offset from the centroid in units of the cloud's radius
    assert np.abs(out.translation - clouds(3).mean(1)).max() < 0.5


def test_seeded_predictions_repeat_and_seeds_differ():
    be = load_backend("torch", "random", settings=SamplerSettings(seed=3))
    a = be.predict(clouds(2), np.array([2, 5]))
    b = be.predict(clouds(2), np.array([2, 5]))
    np.testing.assert_array_equal(a.rotation, b.rotation)
    be.configure(SamplerSettings(seed=4))
    c = be.predict(clouds(2), np.array([2, 5]))
    assert not np.array_equal(a.translation, c.translation) or not np.array_equal(
        a.rotation, c.rotation)


def test_num_samples_gives_covariance():
    be = load_backend("torch", "random", settings=SamplerSettings(num_samples=16, steps=2))
    out = be.predict(clouds(2), np.array([1, 4]))
    assert out.covariance.shape == (2, 6, 6)
    np.testing.assert_allclose(out.covariance, out.covariance.transpose(0, 2, 1), atol=1e-6)
    assert (np.linalg.eigvalsh(out.covariance.astype(np.float64)) > -1e-6).all()


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm2"])
@pytest.mark.parametrize("init", ["noise", "regression"])
def test_every_solver_and_init(solver, init):
    be = load_backend("torch", "random", settings=SamplerSettings(solver=solver, init=init))
    out = be.predict(clouds(1), np.array([3]))
    assert np.isfinite(out.rotation).all() and np.isfinite(out.translation).all()


def test_bad_settings_and_names():
    be = load_backend("torch", "random")
    for bad in (SamplerSettings(solver="rk4"), SamplerSettings(w_schedule="x"),
                SamplerSettings(init="prior"), SamplerSettings(steps=0)):
        with pytest.raises(ValueError):
            be.configure(bad)
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tflite", "random")
    assert "torch" in BACKENDS and DEFAULT_MODEL.name == "posediff_default.json"


def test_empty_batch():
    out = load_backend("torch", "random").predict(np.zeros((0, 256, 3), np.float32),
                                                  np.zeros(0, np.int64))
    assert out.rotation.shape == (0, 3, 3)


def test_loads_a_saved_model(tmp_path):
    torch.manual_seed(0)
    model = PoseNet(PoseNetConfig(num_points=128, feat_dim=64, emb_dim=8, hidden=32))
    path = save_model(model, tmp_path / "small.json")
    be = load_backend("torch", path)
    assert be.num_points == 128
    out = be.predict(clouds(2, 128), np.array([1, 2]))
    assert out.rotation.shape == (2, 3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    cpu = load_backend("torch", "random").predict(clouds(2), np.array([1, 6]))
    gpu = load_backend("torch", "random", device="cuda").predict(clouds(2), np.array([1, 6]))
    np.testing.assert_allclose(cpu.translation, gpu.translation, atol=1e-3)
