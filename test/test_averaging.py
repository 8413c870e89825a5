"""Test-time averaging (averaging.py): outlier rejection by agreement, the symmetric mean,
the score as tie-breaker, and the B x K row layout of a backend's batch."""

import numpy as np
import pytest

from posediff_ros.averaging import AveragingConfig, average_batch, average_hypotheses
from posediff_ros.geometry import axis_angle_to_matrix, rotation_about_y, rotation_error_deg
from posediff_ros.runtime.base import PoseBatch

CAMERA, BOTTLE = 3, 1
R0 = axis_angle_to_matrix(np.array([0.3, 1.0, -0.2]), 0.9)
T0 = np.array([0.05, -0.03, 0.7])


def _near(rng, n, deg=2.0, R=R0, t=T0):
    """n hypotheses around (R, t): rotations tilted by <= `deg`, translations by ~1 mm."""
    axes = rng.normal(size=(n, 3))
    small = np.stack([axis_angle_to_matrix(a, np.radians(deg) * rng.uniform(0, 1))
                      for a in axes])
    return R @ small, t + rng.normal(0, 0.001, (n, 3))


def test_outlier_rejected_where_the_plain_mean_is_pulled_off():
    """7 agreeing hypotheses of a camera and 2 turned 90 deg about the up axis (width and
    depth confused): the kept mode's mean is within the agreeing ones' 2 deg spread; the
    plain chordal mean of all 9 is pulled atan(2/7) = 16 deg towards them."""
    rng = np.random.default_rng(0)
    r, t = _near(rng, 9)
    r[[2, 6]] = r[[2, 6]] @ rotation_about_y(np.pi / 2)
    sizes = np.tile([0.1, 0.08, 0.06], (9, 1))
    sizes[[2, 6]] = [0.3, 0.3, 0.3]
    avg = average_hypotheses(r, t, sizes, np.full(9, 0.8), CAMERA)
    assert avg.kept == 7 and avg.total == 9 and len(avg.hypotheses) == 2
    assert rotation_error_deg(avg.rotation, R0) < 2.0
    np.testing.assert_allclose(avg.size, [0.1, 0.08, 0.06])  # the outliers' sizes left out
    assert avg.covariance is not None and np.all(np.linalg.eigvalsh(avg.covariance) > -1e-12)
    plain = average_hypotheses(r, t, sizes, np.full(9, 0.8), CAMERA,
                               AveragingConfig(reject_outliers=False))
    assert plain.kept == 9 and rotation_error_deg(plain.rotation, R0) > 10.0


def test_symmetric_class_agrees_over_turns_about_its_axis():
    """A bottle's hypotheses turned arbitrarily about its up axis all agree (one mode, all
    kept) and their mean up axis beats the hypotheses' average error (averaging ~ 1/sqrt(N));
    treated as asymmetric they would not even cluster together."""
    rng = np.random.default_rng(1)
    r, t = _near(rng, 16, deg=4.0)
    r = r @ rotation_about_y(rng.uniform(0, 2 * np.pi, 16))
    avg = average_hypotheses(r, t, np.full((16, 3), 0.1), np.full(16, 0.5), BOTTLE)
    assert avg.kept == 16 and len(avg.hypotheses) == 1
    single = rotation_error_deg(r, R0, symmetric=True).mean()
    assert rotation_error_deg(avg.rotation, R0, symmetric=True) < 0.6 * single
    as_camera = average_hypotheses(r, t, np.full((16, 3), 0.1), np.full(16, 0.5), CAMERA)
    assert as_camera.kept < 16


def test_tie_goes_to_the_higher_agreement_score():
    """Two subsets that disagree (one hypothesis each): the one whose diffusion and regression
    poses agreed better (higher score) is kept."""
    r = np.stack([R0, R0 @ rotation_about_y(np.pi)])
    t = np.stack([T0, T0])
    sizes = np.full((2, 3), 0.1)
    first = average_hypotheses(r, t, sizes, np.array([0.9, 0.2]), CAMERA)
    second = average_hypotheses(r, t, sizes, np.array([0.2, 0.9]), CAMERA)
    assert rotation_error_deg(first.rotation, r[0]) < 1e-6 and first.score == 0.9
    assert rotation_error_deg(second.rotation, r[1]) < 1e-6 and second.score == 0.9
    assert first.covariance is None and first.kept == 1


def test_batch_rows_are_objects_times_subsets_with_their_samples():
    """Object b's K subsets are rows b*K..b*K+K-1 and each row's S samples belong to it: two
    objects in different places come out in their own places, with their own sizes."""
    rng = np.random.default_rng(2)
    b, k, s = 2, 3, 4
    R1 = rotation_about_y(1.0)
    T1 = np.array([-0.2, 0.1, 1.1])
    rot = np.zeros((b * k, s, 3, 3))
    trans = np.zeros((b * k, s, 3))
    for row in range(b * k):
        R, t = (R0, T0) if row < k else (R1, T1)
        rot[row], trans[row] = _near(rng, s, R=R, t=t)
    size = np.repeat([[0.1, 0.1, 0.1], [0.3, 0.2, 0.1]], k, axis=0)
    poses = PoseBatch(rot[:, 0], trans[:, 0], size, np.full(b * k, 0.7), None,
                      samples_rotation=rot, samples_translation=trans)
    out = average_batch(poses, np.array([CAMERA, CAMERA]), AveragingConfig(subsets=k))
    assert [(o.total, o.kept) for o in out] == [(k * s, k * s)] * 2  # all agree
    assert rotation_error_deg(out[0].rotation, R0) < 2.0
    assert rotation_error_deg(out[1].rotation, R1) < 2.0
    assert np.linalg.norm(out[1].translation - T1) < 0.002
    np.testing.assert_allclose(out[1].size, [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="objects x"):
        average_batch(poses, np.array([CAMERA]), AveragingConfig(subsets=k))
    with pytest.raises(ValueError):
        AveragingConfig(subsets=0)
