"""Pose network: rotations, shapes, save/load round trip and every load error."""

import json

import numpy as np
import pytest
import torch

from posediff_ros.model.posenet import (
    FORMAT_VERSION,
    ModelFileError,
    PoseNet,
    PoseNetConfig,
    load_model,
    save_model,
)
from posediff_ros.model.rotation import (
    canonical_symmetric,
    geodesic_angle,
    log_map,
    matrix_to_rot6d,
    mean_rotation,
    rot6d_to_matrix,
    y_axis_angle,
)

torch.set_num_threads(1)


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return rot6d_to_matrix(torch.randn(n, 6, generator=g))


def small_cfg(**kw) -> PoseNetConfig:
    return PoseNetConfig(num_points=64, feat_dim=64, emb_dim=8, hidden=32, **kw)


def test_rot6d_round_trip_and_orthonormal():
    r = random_rotations(50)
    eye = torch.eye(3).expand(50, 3, 3)
    torch.testing.assert_close(r.transpose(1, 2) @ r, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(r), torch.ones(50), atol=1e-5, rtol=0)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(r)), r, atol=1e-5, rtol=0)


def test_gram_schmidt_keeps_the_y_axis():
    x = torch.randn(20, 6)
    r = rot6d_to_matrix(x)
    torch.testing.assert_close(r[:, :, 1], x[:, 3:] / x[:, 3:].norm(dim=-1, keepdim=True))


def test_angles_and_log_map():
    a = torch.tensor(0.3)
    rz = torch.tensor([[a.cos(), -a.sin(), 0], [a.sin(), a.cos(), 0], [0, 0, 1]])[None]
    eye = torch.eye(3)[None]
    assert geodesic_angle(eye, rz).item() == pytest.approx(0.3, abs=1e-5)
    assert y_axis_angle(eye, rz).item() == pytest.approx(0.3, abs=1e-5)
    torch.testing.assert_close(log_map(rz), torch.tensor([[0.0, 0.0, 0.3]]), atol=1e-5, rtol=0)
    r = random_rotations(1)
    torch.testing.assert_close(mean_rotation(r.expand(5, 3, 3)), r[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 1e-3, 0.5, 1.5, 2.5, 3.0, 3.09, 3.14, 3.1415])
def test_log_map_against_float64_at_every_angle(angle):
    """float32 rotation vectors against scipy's in float64, up to pi: the error stays at
    float32 rounding of the matrix entries (a few 2^-24 times the angle's conditioning, 1 here)
    also near pi, where acos(trace) lost ~sqrt(2^-24) = 2e-4."""
    from scipy.spatial.transform import Rotation

    g = torch.Generator().manual_seed(int(angle * 1000))
    axes = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64),
                                         dim=-1)
    r64 = torch.tensor(Rotation.from_rotvec((axes * angle).numpy()).as_matrix())
    r32 = r64.float()
    want = Rotation.from_matrix(r32.double().numpy()).as_rotvec()  # of the rounded matrices
    got = log_map(r32).double().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * 2.0**-24 * max(angle, 1.0))
    np.testing.assert_allclose(log_map(r64).numpy(), (axes * angle).numpy(), rtol=0, atol=1e-14)


def test_canonical_symmetric_keeps_y_and_faces_the_camera():
    r = random_rotations(10, seed=3)
    t = torch.randn(10, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.0])
    sym = torch.tensor([True] * 5 + [False] * 5)
    rc = canonical_symmetric(r, t, sym)
    torch.testing.assert_close(rc[:, :, 1], r[:, :, 1])  # the symmetry axis is untouched
    torch.testing.assert_close(rc[5:], r[5:])
    to_cam = -t[:5] / t[:5].norm(dim=-1, keepdim=True)
    # x axis of the canonical pose is the best x for facing the camera among rotations about y
    best = (rc[:5, :, 0] * to_cam).sum(-1)
    for a in torch.linspace(0, 6.2, 16):
        ry = torch.tensor([[a.cos(), 0, a.sin()], [0, 1, 0], [-a.sin(), 0, a.cos()]])
        assert ((r[:5] @ ry)[:, :, 0] * to_cam).sum(-1).le(best + 1e-5).all()


@pytest.mark.parametrize("encoder", ["pointnet", "pointnet2"])
def test_forward_shapes(encoder):
    cfg = small_cfg(encoder=encoder)
    torch.manual_seed(0)
    model = PoseNet(cfg).eval()
    for head in (model.score_head.rot_head, model.score_head.trans_head):
        torch.nn.init.normal_(head[-1].weight, std=0.1)  # a zero head leaves x where it starts
    pts = torch.randn(3, 300, 3) * 0.05 + torch.tensor([0.0, 0.0, 0.7])
    out = model(pts, torch.tensor([1, 3, 6]))
    assert out["rot6d"].shape == (3, 6) and out["offset"].shape == (3, 3)
    assert out["size"].shape == (3, 3) and out["centroid"].shape == (3, 3)
    noise = torch.randn(3, 5, 9, generator=torch.Generator().manual_seed(1))
    x = model.sample_poses(out["cond"], noise, steps=3)
    assert x.shape == (3, 5, 9) and torch.isfinite(x).all()
    start = model.sde.sigma(model.cfg.sampler.t_start) * noise
    assert (x - start).abs().amax(-1).min() > 1e-2  # every sample was moved by the sampler
    # objects and samples are independent: one object alone gives its rows of the batch
    alone = model.sample_poses(out["cond"][1:2], noise[1:2], steps=3)
    torch.testing.assert_close(alone, x[1:2], atol=1e-5, rtol=0)


def test_score_head_starts_at_zero():
    model = PoseNet(small_cfg())
    cond = torch.randn(2, 64 + 8 + 4)
    s = model.score_head(torch.randn(2, 9), torch.tensor([0.3, 0.7]),
                         model.score_head.project(cond))
    assert torch.equal(s, torch.zeros_like(s))


def test_unknown_encoder_is_rejected():
    with pytest.raises(ValueError, match="unknown encoder"):
        PoseNet(small_cfg(encoder="nope"))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = PoseNet(small_cfg())
    path = save_model(model, tmp_path / "m.json", training={"command": "test"})
    return model, path


def test_save_load_round_trip(saved):
    model, path = saved
    loaded = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    raw = json.loads(path.read_text())
    assert raw["format_version"] == FORMAT_VERSION and raw["training"]["command"] == "test"
    assert raw["weights"] == "m.safetensors" and len(raw["weights_sha256"]) == 64
    pts = torch.randn(2, 64, 3) + torch.tensor([0.0, 0.0, 1.0])
    cls = torch.tensor([2, 5])
    torch.testing.assert_close(model.eval()(pts, cls)["rot6d"], loaded(pts, cls)["rot6d"])


def test_load_missing_config(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing.json")


def test_load_missing_weights(saved):
    _, path = saved
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"m\.safetensors.*does not exist"):
        load_model(path)


def test_load_truncated_weights(saved):
    _, path = saved
    w = path.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(path)


def test_load_truncated_weights_without_hash(saved):
    _, path = saved
    raw = json.loads(path.read_text())
    raw.pop("weights_sha256")
    path.write_text(json.dumps(raw))
    w = path.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_model(path)


def test_load_wrong_version(saved):
    _, path = saved
    raw = json.loads(path.read_text())
    raw["format_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match="format_version 99"):
        load_model(path)


def test_load_bad_json(saved):
    _, path = saved
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)


def test_load_wrong_shape(saved):
    _, path = saved
    raw = json.loads(path.read_text())
    raw["feat_dim"] = 128  # weights were saved for 64
    raw.pop("weights_sha256")
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match="does not fit"):
        load_model(path)


def test_config_without_weights_gives_a_fresh_model(saved):
    _, path = saved
    raw = json.loads(path.read_text())
    raw["weights"] = None
    path.write_text(json.dumps(raw))
    model = load_model(path)
    assert model.cfg.feat_dim == 64
