"""Torch backend through load_backend: shapes, timings, seeds, settings, covariance."""

import numpy as np
import pytest
import reference
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
    np.testing.assert_array_equal(out.covariance, out.covariance.transpose(0, 2, 1))
    # positive semi-definite up to float32 rounding of the stored entries
    eig = np.linalg.eigvalsh(out.covariance.astype(np.float64))
    assert (eig > -4 * 2.0**-24 * np.abs(out.covariance).max()).all()


def spread_samples(n: int, spread_deg: float, seed: int):
    """n rotations about a random mean, angles up to spread_deg (near 180: the log map's
    hard case), and translations with a different spread per axis (cm scale)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    mean = Rotation.random(random_state=seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.radians(spread_deg) * rng.uniform(0.2, 1.0, (n, 1))
    rot = (Rotation.from_rotvec(axes * angles) * mean).as_matrix()
    trans = rng.normal(0, [0.01, 0.02, 0.04], (n, 3)) + [0.1, -0.1, 0.8]
    return rot, trans


@pytest.mark.parametrize("spread_deg", [3.0, 60.0, 177.0])
def test_pose_covariance_matches_numpy_float64(spread_deg):
    """Against scipy's rotation vectors and numpy in float64: order (x, y, z, rot x, rot y,
    rot z), unbiased (N - 1). Float32 samples carry 2^-24 relative rounding; the covariance
    of vectors of size <= pi moves by <= 2 pi * (a few) * 2^-24 from it."""
    from posediff_ros.runtime.postprocess import mean_pose, pose_covariance

    rot, trans = spread_samples(12, spread_deg, seed=int(spread_deg))
    r32, t32 = rot[None].astype(np.float32), trans[None].astype(np.float32)
    got = pose_covariance(r32, t32, *mean_pose(r32, t32))[0]
    want = reference.pose_covariance(r32[0].astype(np.float64), t32[0].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=0, atol=2 * np.pi * 16 * 2.0**-24)
    # translation block first, with the per-axis spreads (m^2) that were drawn
    assert np.diag(got)[:3] == pytest.approx(np.var(t32[0], axis=0, ddof=1), rel=1e-5)


def test_agreement_score_matches_numpy_float64():
    """exp(-angle between the y axes / 20 deg) * exp(-|dt| / (0.5 scale)), computed here with
    numpy from the definition: postprocess's (numpy) and the graph's (torch) copies."""
    from scipy.spatial.transform import Rotation

    from posediff_ros.runtime.postprocess import agreement_score

    rng = np.random.default_rng(3)
    r_a = Rotation.random(6, random_state=1).as_matrix()
    r_b = (Rotation.from_rotvec(rng.normal(0, 0.2, (6, 3))) * Rotation.from_matrix(r_a))
    r_b = r_b.as_matrix()
    t_a = rng.normal(0, 0.03, (6, 3)) + [0, 0, 0.7]
    t_b = t_a + rng.normal(0, 0.01, (6, 3))
    scale = rng.uniform(0.03, 0.08, 6)
    cos = np.clip(np.einsum("bi,bi->b", r_a[:, :, 1], r_b[:, :, 1]), -1, 1)
    want = (np.exp(-np.degrees(np.arccos(cos)) / 20.0)
            * np.exp(-np.linalg.norm(t_a - t_b, axis=1) / scale / 0.5))
    got = agreement_score(r_a, t_a, r_b, t_b, scale)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # the same formula traced into the exported graph (torch ops), in float64
    from posediff_ros.runtime.graph import agreement_score as graph_score

    traced = graph_score(*(torch.tensor(a) for a in (r_a, t_a, r_b, t_b, scale))).numpy()
    np.testing.assert_allclose(traced, want, rtol=1e-9)
    assert 0.01 < want.min() and want.max() < 0.95  # not saturated: a wrong scale shows


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
