"""Pose hypotheses (SE(3) clustering with class symmetry) on constructed sample sets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff_ros.geometry import (
    axis_angle_to_matrix,
    matrix_to_rotation_vector,
    random_rotations,
    rotation_about_y,
    rotation_error_deg,
)
from posediff_ros.hypotheses import ClusterConfig, cluster_poses, object_hypotheses

MUG, BOTTLE, LAPTOP = 6, 1, 5
# an object seen from a camera: tilted toward the camera, 0.7 m in front of it
R_VIEW = axis_angle_to_matrix(np.array([1.0, 0.0, 0.0]), np.deg2rad(-30))
T0 = np.array([0.05, -0.02, 0.7])


def yaw_group(yaw_deg: float, n: int, rng, spread_deg: float = 3.0, trans_sd: float = 0.002):
    """n samples about one pose: the object turned by yaw about its own up axis, with small
    random rotations (spread_deg) and translation noise."""
    base = R_VIEW @ rotation_about_y(np.deg2rad(yaw_deg))
    jitter = [axis_angle_to_matrix(rng.standard_normal(3), np.deg2rad(spread_deg)
                                   * rng.standard_normal()) for _ in range(n)]
    rot = np.stack([j @ base for j in jitter])
    trans = T0 + trans_sd * rng.standard_normal((n, 3))
    return rot, trans


def two_yaw_modes(rng, yaws=(0.0, 150.0), counts=(12, 6)):
    groups = [yaw_group(y, n, rng) for y, n in zip(yaws, counts, strict=True)]
    rot = np.concatenate([g[0] for g in groups])
    trans = np.concatenate([g[1] for g in groups])
    order = rng.permutation(len(rot))  # interleaved, as samples come out of the sampler
    return rot[order], trans[order]


def yaw_of(rotation: np.ndarray) -> float:
    """Yaw (deg) of a pose relative to R_VIEW, about the object's up axis."""
    rel = R_VIEW.T @ rotation
    return float(np.rad2deg(np.arctan2(rel[0, 2], rel[0, 0])))


def test_two_yaw_modes_are_kept_apart_heaviest_first():
    rot, trans = two_yaw_modes(np.random.default_rng(0))
    modes = object_hypotheses(rot, trans, MUG)
    assert [m.count for m in modes] == [12, 6]
    assert [m.weight for m in modes] == pytest.approx([12 / 18, 6 / 18], abs=1e-12)
    # each mode's mean sits on its own yaw (the average of both would be near 50 deg);
    # 3 deg jitter over >= 6 samples moves a mean by ~1-2 deg
    assert abs(yaw_of(modes[0].rotation)) < 4.0
    assert abs(yaw_of(modes[1].rotation) - 150.0) < 4.0
    for m in modes:
        assert np.allclose(m.rotation @ m.rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(m.rotation) == pytest.approx(1.0, abs=1e-9)
        assert np.linalg.norm(m.translation - T0) < 0.005
        # the covariance describes one mode (a few degrees), not the gap between modes
        assert np.rad2deg(np.sqrt(np.trace(m.covariance[3:, 3:]))) < 12.0


def test_symmetric_classes_collapse_to_one_mode():
    rot, trans = two_yaw_modes(np.random.default_rng(1), yaws=(0.0, 180.0), counts=(9, 9))
    for cls, handle_visible in ((BOTTLE, None), (2, None), (4, None), (MUG, False)):
        (mode,) = object_hypotheses(rot, trans, cls, handle_visible=handle_visible)
        assert mode.weight == 1.0 and mode.count == 18
        # up axis kept (the samples' up axes agree within their jitter)
        assert rotation_error_deg(mode.rotation, R_VIEW, symmetric=True) < 3.0
        # members turned onto one yaw before averaging: the spread is the jitter only (a
        # plain average of yaw 0 and 180 would give rotation vectors of ~180 deg)
        assert np.rad2deg(np.sqrt(np.trace(mode.covariance[3:, 3:]))) < 12.0
    # a mug whose handle may be visible (unknown in the node) keeps both yaws
    assert len(object_hypotheses(rot, trans, MUG)) == 2
    assert len(object_hypotheses(rot, trans, MUG, handle_visible=True)) == 2


def test_translation_separates_modes():
    rng = np.random.default_rng(2)
    rot, trans = yaw_group(0.0, 10, rng)
    far = trans + np.where(np.arange(10) < 5, 0.0, 0.12)[:, None] * np.array([1.0, 0, 0])
    assert [m.count for m in cluster_poses(rot, far)] == [5, 5]
    near = trans + np.where(np.arange(10) < 5, 0.0, 0.01)[:, None] * np.array([1.0, 0, 0])
    assert [m.count for m in cluster_poses(rot, near)] == [10]


def test_covariance_layout_and_frame():
    """Members exp(+-d_i) R0, t0 +- e_i: the mean is exactly (R0, t0) and the covariance is
    exactly that of the vectors (e_i, d_i), in (x, y, z, rot x, rot y, rot z) order with the
    rotations about the camera axes (left perturbations)."""
    rng = np.random.default_rng(3)
    r0 = random_rotations(1, rng)[0]
    d = np.deg2rad(2.0) * rng.standard_normal((4, 3))
    e = 0.003 * rng.standard_normal((4, 3))
    d, e = np.concatenate([d, -d]), np.concatenate([e, -e])
    rot = np.stack([axis_angle_to_matrix(v, np.linalg.norm(v)) @ r0 for v in d])
    (mode,) = cluster_poses(rot, T0 + e)
    assert np.allclose(mode.rotation, r0, atol=1e-12)
    assert np.allclose(mode.translation, T0, atol=1e-12)
    v = np.concatenate([e, d], axis=1)
    assert np.allclose(mode.covariance, v.T @ v / (len(v) - 1), rtol=0, atol=1e-12)


def test_single_sample_and_truncation():
    rng = np.random.default_rng(4)
    rot, trans = yaw_group(0.0, 1, rng)
    (mode,) = cluster_poses(rot, trans)
    assert mode.weight == 1.0 and mode.covariance is None
    assert np.allclose(mode.rotation, rot[0]) and np.allclose(mode.translation, trans[0])
    groups = [yaw_group(y, n, rng) for y, n in ((0, 3), (90, 7), (180, 2), (270, 5))]
    rot = np.concatenate([g[0] for g in groups])
    trans = np.concatenate([g[1] for g in groups])
    top = object_hypotheses(rot, trans, LAPTOP, max_hypotheses=2)
    assert [m.count for m in top] == [7, 5]
    assert abs(yaw_of(top[0].rotation) - 90) < 5 and abs(abs(yaw_of(top[1].rotation)) - 90) < 5
    assert len(object_hypotheses(rot, trans, LAPTOP, max_hypotheses=0)) == 4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64), st.integers(0, 2**31 - 1), st.booleans())
def test_weights_sum_to_one_and_modes_are_sorted(n, seed, symmetric):
    rng = np.random.default_rng(seed)
    rot = random_rotations(n, rng)
    trans = T0 + 0.05 * rng.standard_normal((n, 3))
    modes = cluster_poses(rot, trans, symmetric)
    assert sum(m.count for m in modes) == n
    assert sum(m.weight for m in modes) == pytest.approx(1.0, abs=1e-12)
    assert all(a.count >= b.count for a, b in zip(modes, modes[1:], strict=False))


def test_separation_sets_what_counts_as_one_mode():
    rot, trans = two_yaw_modes(np.random.default_rng(5), yaws=(0.0, 40.0), counts=(8, 8))
    assert len(cluster_poses(rot, trans, config=ClusterConfig(rotation_deg=20.0))) == 2
    assert len(cluster_poses(rot, trans, config=ClusterConfig(rotation_deg=90.0))) == 1
    with pytest.raises(ValueError):
        ClusterConfig(rotation_deg=0.0)
    with pytest.raises(ValueError, match="NOCS class"):
        object_hypotheses(rot, trans, 7)


@pytest.mark.parametrize("angle_deg", [0.0, 1e-7, 0.5, 45.0, 179.0, 179.9999])
def test_rotation_vector_round_trip(angle_deg):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    v = matrix_to_rotation_vector(axis_angle_to_matrix(axis, np.deg2rad(angle_deg)))
    assert np.allclose(v, axis * np.deg2rad(angle_deg), atol=1e-9)


def test_a_ring_of_yaws_is_not_chained_into_one_mode():
    """Samples every 10 deg from 0 to 180 deg of yaw: neighbours are close, the ends are not.
    Average linkage caps a mode's span (a uniform arc of span S has a mean pairwise angle of
    S / 3, so S <= 3 x 20 deg); single linkage would chain all 19 into one 180-deg mode."""
    yaws = np.arange(0.0, 181.0, 10.0)
    rot = np.stack([R_VIEW @ rotation_about_y(np.deg2rad(y)) for y in yaws])
    trans = np.repeat(T0[None], len(yaws), axis=0)
    modes = object_hypotheses(rot, trans, MUG)
    assert len(modes) >= 3
    # std of a uniform arc is S / sqrt(12): <= 60 / 3.46 = 17.3 deg
    for m in (m for m in modes if m.count > 1):
        assert np.rad2deg(np.sqrt(np.trace(m.covariance[3:, 3:]))) <= 17.4 + 1e-6
