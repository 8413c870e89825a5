"""Covariance calibration: the uncertainty published with each pose, fitted on held-out
objects so that about 68 / 95 / 99.7 % of the true errors fall within 1 / 2 / 3 sigma.

One sample (num_samples 1) has no spread: the covariance is a per-class prior, the spread of
the model's own errors on held-out data (translation along the camera axes, rotation about
the object's axes; a symmetric object's rotation about its y axis is unobservable and gets
the variance of a uniform angle, pi^2 / 3). Several samples: their covariance is scaled by a
per-class factor (the raw spread of a few-step sampler is far too small: samples agree with
each other more than with the truth).

Covariance layout everywhere: geometry_msgs/PoseWithCovariance, 6x6 over (x, y, z, rot x,
rot y, rot z) in the camera frame, rotations as a left perturbation R_true = exp(e) R_est.

The fitted values live in a JSON file beside the model (`<model>.covariance.json`, written by
`posediff-calibrate`), so a retrained model is recalibrated by running that command again.
Without such a file no spread is claimed: the first element is -1 ("not estimated", the
convention of sensor_msgs/Imu) when there is no sample covariance.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posediff_ros.categories import BY_ID
from posediff_ros.geometry import align_symmetric_rotation

FORMAT = "posediff-covariance-1"
UNIFORM_ANGLE_VAR = np.pi**2 / 3  # variance of an angle uniform on [-pi, pi]
SIGMA_LEVELS = (1, 2, 3)
GAUSS_COVERAGE = {1: 68.27, 2: 95.45, 3: 99.73}  # percent of a normal within k sigma
NOT_ESTIMATED = -1.0


@dataclass
class ClassCalibration:
    translation_sigma: list[float]  # m along camera x, y, z
    rotation_sigma: list[float]  # rad about the object's x, y, z (y: unobservable if symmetric)
    sample_scale: float = 1.0  # std factor applied to a sample covariance
    objects: int = 0  # held-out objects it was fitted on


@dataclass
class CovarianceCalibration:
    classes: dict[str, ClassCalibration]
    model: str = ""  # the model file it was measured on
    model_sha256: str = ""  # of its weights: a retrained model needs a new calibration
    data: str = ""  # the held-out objects it was fitted on
    format: str = FORMAT
    notes: dict = field(default_factory=dict)

    def covariance(self, class_id: int, rotation: np.ndarray,
                   sample: np.ndarray | None = None) -> np.ndarray | None:
        """Calibrated 6x6 covariance of one estimate (None: class not calibrated)."""
        c = self.classes.get(BY_ID[class_id].name)
        if c is None:
            return None
        if sample is not None:
            return np.asarray(sample, np.float64) * c.sample_scale**2
        return prior_covariance(c, rotation)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CovarianceCalibration:
        raw = json.loads(Path(path).read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        raw["classes"] = {k: ClassCalibration(**v) for k, v in raw["classes"].items()}
        return cls(**raw)


def calibration_path(model_path: str | Path) -> Path:
    """models/x.json -> models/x.covariance.json"""
    p = Path(model_path)
    return p.with_name(p.stem + ".covariance.json")


def load_for_model(model_path: str | Path) -> CovarianceCalibration | None:
    """The calibration stored beside a model, or None when there is none or it was measured
    on other weights (a retrained model: its errors are not the old one's; warns)."""
    path = calibration_path(model_path)
    if not path.is_file():
        return None
    calib = CovarianceCalibration.load(path)
    model_json = Path(model_path)
    weights = json.loads(model_json.read_text()).get("weights_sha256", "") \
        if model_json.is_file() else ""
    if weights and calib.model_sha256 and weights != calib.model_sha256:
        warnings.warn(f"{path} was measured on other weights than {model_json} "
                      f"({calib.model_sha256[:12]} vs {weights[:12]}): not used; re-run "
                      "posediff-calibrate", stacklevel=2)
        return None
    return calib


def prior_covariance(c: ClassCalibration, rotation: np.ndarray) -> np.ndarray:
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.diag(np.square(c.translation_sigma))
    R = np.asarray(rotation, np.float64)
    cov[3:, 3:] = R @ np.diag(np.square(c.rotation_sigma)) @ R.T  # object axes -> camera
    return cov


def not_estimated() -> np.ndarray:
    """The 6x6 covariance that says "not estimated": -1 in the first element, zeros else
    (the convention sensor_msgs/Imu documents; zeros would read as a perfectly known pose)."""
    cov = np.zeros((6, 6))
    cov[0, 0] = NOT_ESTIMATED
    return cov


def is_estimated(cov: np.ndarray | None) -> bool:
    return cov is not None and np.asarray(cov).ravel()[0] >= 0


def published_covariance(calibration: CovarianceCalibration | None, class_id: int,
                         rotation: np.ndarray, sample: np.ndarray | None) -> np.ndarray:
    """What goes into the message: calibrated when a calibration exists; else the raw sample
    covariance, or not_estimated() without samples."""
    if calibration is not None:
        cov = calibration.covariance(class_id, rotation, sample)
        if cov is not None:
            return cov
    return not_estimated() if sample is None else np.asarray(sample, np.float64)


# --- errors, fitting, coverage ---------------------------------------------------------------


def pose_errors(R, t, R_gt, t_gt, class_ids, handle_visible=None):
    """Per object: translation error along the camera axes (m, est - true) and rotation error
    about the object's axes (rad; zero about y for a symmetric object), (N, 3) each."""
    from posediff_ros.metrics import symmetric_mask
    from posediff_ros.tracking.smoothing import so3_log

    sym = symmetric_mask(class_ids, handle_visible)
    R = np.where(sym[:, None, None], align_symmetric_rotation(R, R_gt), R)
    e_t = np.asarray(t, np.float64) - t_gt
    # left error exp(e_cam) = R R_gt^T; in object axes e_obj = R_gt^T e_cam
    e_r = np.stack([R_gt[i].T @ so3_log(R[i] @ R_gt[i].T) for i in range(len(R))]) \
        if len(R) else np.zeros((0, 3))
    return e_t, e_r, sym


def _sigma(values: np.ndarray, floor: float) -> float:
    """The k = 1 sigma of |values| as the 68.27th percentile (robust to the heavy tail of
    category-level errors: a RMS would be set by a few flipped objects)."""
    return max(float(np.percentile(np.abs(values), GAUSS_COVERAGE[1])), floor)


def fit(R, t, R_gt, t_gt, class_ids, handle_visible=None, sample_cov=None,
        data: str = "") -> CovarianceCalibration:
    """Per-class prior sigmas and sample-covariance scale from held-out estimates."""
    e_t, e_r, sym = pose_errors(R, t, R_gt, t_gt, class_ids, handle_visible)
    classes = {}
    for cid in sorted(set(np.asarray(class_ids).tolist())):
        sel = np.asarray(class_ids) == cid
        symmetric = BY_ID[cid].y_symmetric
        rot = [_sigma(e_r[sel, a], 1e-3) for a in range(3)]
        if symmetric:
            rot[1] = float(np.sqrt(UNIFORM_ANGLE_VAR))
        c = ClassCalibration([_sigma(e_t[sel, a], 1e-4) for a in range(3)], rot,
                             objects=int(sel.sum()))
        if sample_cov is not None:
            z = normalised_errors(e_t[sel], e_r[sel], np.asarray(R_gt)[sel], sym[sel],
                                  sample_cov=np.asarray(sample_cov)[sel])
            c.sample_scale = _sigma(z, 1e-6)
        classes[BY_ID[cid].name] = c
    return CovarianceCalibration(classes, data=data)


def normalised_errors(e_t, e_r, rotations, sym, calibration: CovarianceCalibration | None = None,
                      class_ids=None, sample_cov=None) -> np.ndarray:
    """Each error component divided by its reported sigma (translation along camera axes,
    rotation about object axes), the symmetry axis of symmetric objects left out; flat.
    `rotations`: the estimated ones (what the published covariance is built with)."""
    out = []
    for i in range(len(e_t)):
        if sample_cov is not None and calibration is None:
            cov = np.asarray(sample_cov[i], np.float64)
        else:
            s = None if sample_cov is None else sample_cov[i]
            cov = calibration.covariance(int(class_ids[i]), rotations[i], s)
        sig_t = np.sqrt(np.clip(np.diag(cov[:3, :3]), 1e-18, None))
        rot_obj = rotations[i].T @ cov[3:, 3:] @ rotations[i]  # back to the object axes
        sig_r = np.sqrt(np.clip(np.diag(rot_obj), 1e-18, None))
        axes = [0, 2] if sym[i] else [0, 1, 2]
        out += list(e_t[i] / sig_t) + list(e_r[i, axes] / sig_r[axes])
    return np.asarray(out)


def coverage(z: np.ndarray) -> dict[str, float]:
    """Percent of normalised errors within 1, 2, 3 sigma."""
    return {f"{k}sigma": float(100 * np.mean(np.abs(z) <= k)) if len(z) else float("nan")
            for k in SIGMA_LEVELS}

