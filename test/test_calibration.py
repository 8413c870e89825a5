"""Covariance calibration (calibration.py): fitted sigmas, coverage, frames, the -1 convention."""

import numpy as np
import pytest

from posediff_ros import calibration as cal
from posediff_ros.geometry import random_rotations
from posediff_ros.tracking.smoothing import so3_exp

CAMERA, CAN = 3, 4


def _draw(rng, n, class_id, sig_t, sig_r):
    """Estimates whose errors are normal with known sigmas: translation along the camera axes,
    rotation about the object's own axes."""
    R_gt = random_rotations(n, rng)
    t_gt = rng.uniform(-0.2, 0.2, (n, 3)) + [0, 0, 0.8]
    e_obj = rng.normal(0, sig_r, (n, 3))
    # R = exp(e_cam) R_gt with e_cam = R_gt e_obj, i.e. R = R_gt exp(e_obj)
    R = np.stack([R_gt[i] @ so3_exp(e_obj[i]) for i in range(n)])
    t = t_gt + rng.normal(0, sig_t, (n, 3))
    return R, t, R_gt, t_gt, np.full(n, class_id)


def test_fit_recovers_the_sigmas_and_covers_like_a_normal():
    """Different sigmas per axis and rotated objects: a fit that mixed up camera and object
    axes (R vs R^T) or took the wrong quantile misses 68/95/99.7 on fresh draws."""
    rng = np.random.default_rng(0)
    sig_t, sig_r = np.array([0.002, 0.004, 0.01]), np.array([0.01, 0.05, 0.02])
    calib = cal.fit(*_draw(rng, 3000, CAMERA, sig_t, sig_r))
    c = calib.classes["camera"]
    assert np.allclose(c.translation_sigma, sig_t, rtol=0.08)
    assert np.allclose(c.rotation_sigma, sig_r, rtol=0.08)
    R, t, R_gt, t_gt, cls = _draw(rng, 3000, CAMERA, sig_t, sig_r)
    e_t, e_r, sym = cal.pose_errors(R, t, R_gt, t_gt, cls)
    cover = cal.coverage(cal.normalised_errors(e_t, e_r, R, sym, calib, cls))
    # 18000 components: the standard error of a coverage is < 0.4 points
    assert cover["1sigma"] == pytest.approx(68.27, abs=2.5)
    assert cover["2sigma"] == pytest.approx(95.45, abs=1.5)
    assert cover["3sigma"] == pytest.approx(99.73, abs=0.5)


def test_symmetric_axis_is_unobservable_not_an_error():
    """A can's estimate turned at random about its y axis: no error counted about y, and the
    prior there is the variance of a uniform angle."""
    rng = np.random.default_rng(1)
    R, t, R_gt, t_gt, cls = _draw(rng, 500, CAN, np.full(3, 0.003), np.full(3, 0.02))
    spin = np.stack([so3_exp([0, a, 0]) for a in rng.uniform(-np.pi, np.pi, len(R))])
    calib = cal.fit(R @ spin, t, R_gt, t_gt, cls)
    c = calib.classes["can"]
    assert c.rotation_sigma[1] == pytest.approx(np.sqrt(cal.UNIFORM_ANGLE_VAR))
    assert c.rotation_sigma[0] == pytest.approx(0.02, rel=0.15)


def test_published_covariance_in_camera_axes_and_not_estimated():
    c = cal.ClassCalibration([0.001, 0.002, 0.003], [0.01, 0.5, 0.02])
    calib = cal.CovarianceCalibration({"camera": c})
    R = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])  # object x, y, z along camera y, z, x
    cov = cal.published_covariance(calib, CAMERA, R, None)
    assert np.allclose(np.diag(cov)[:3], np.square([0.001, 0.002, 0.003]))
    # about camera x, y, z = about object z, x, y (R^T instead of R would give y, z, x)
    assert np.allclose(np.diag(cov)[3:], np.square([0.02, 0.01, 0.5]))
    # a class without calibration and no samples: the sensor_msgs/Imu "not estimated" mark
    none = cal.published_covariance(calib, CAN, R, None)
    assert none[0, 0] == -1 and not none.ravel()[1:].any()
    sample = np.eye(6) * 1e-6
    c.sample_scale = 3.0
    assert np.allclose(cal.published_covariance(calib, CAMERA, R, sample), 9 * sample)
    assert np.allclose(cal.published_covariance(None, CAMERA, R, sample), sample)


def test_save_load_round_trip(tmp_path):
    calib = cal.CovarianceCalibration({"mug": cal.ClassCalibration([1, 2, 3], [4, 5, 6], 2.0, 7)},
                                      model="m.json", model_sha256="ab")
    path = calib.save(tmp_path / "m.covariance.json")
    assert cal.calibration_path(tmp_path / "m.json") == path
    assert cal.load_for_model(tmp_path / "m.json") == calib
    assert cal.load_for_model(tmp_path / "other.json") is None


def test_calibration_of_other_weights_is_not_used(tmp_path):
    calib = cal.CovarianceCalibration({"mug": cal.ClassCalibration([1, 2, 3], [4, 5, 6])},
                                      model="m.json", model_sha256="ab")
    calib.save(tmp_path / "m.covariance.json")
    (tmp_path / "m.json").write_text('{"weights_sha256": "ab"}')
    assert cal.load_for_model(tmp_path / "m.json") == calib
    (tmp_path / "m.json").write_text('{"weights_sha256": "cd"}')  # retrained
    with pytest.warns(UserWarning, match="other weights"):
        assert cal.load_for_model(tmp_path / "m.json") is None
