"""Per-object pose smoothing on SE(3): a constant-velocity Kalman filter whose gain weighs each
new estimate by its uncertainty.

State: pose (R, t) in the camera frame, linear velocity v and angular velocity w (camera
frame, per second), and a 12x12 covariance over the error [dt, dtheta, dv, dw], where the
rotation error is a left perturbation R_true = exp(dtheta) R (camera-frame axes, the order of
geometry_msgs/PoseWithCovariance: x, y, z, rot x, rot y, rot z). Process noise is white
acceleration (`accel` m/s^2, `angular_accel` rad/s^2): it says how fast the apparent motion
of an object may change (a hand-held camera shakes; a tripod does not).

A y-symmetric object (bottle, bowl, can) has no defined rotation about its y axis: each
estimate is first turned about its own y axis to the predicted rotation, so the filter never
sees (or averages over) that arbitrary angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posediff_ros.geometry import align_symmetric_rotation


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) -> rotation matrix (Rodrigues)."""
    w = np.asarray(w, np.float64)
    angle = float(np.linalg.norm(w))
    K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    if angle < 1e-9:
        return np.eye(3) + K
    return np.eye(3) + np.sin(angle) / angle * K + (1 - np.cos(angle)) / angle**2 * K @ K


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> rotation vector (3,), angle in [0, pi]."""
    R = np.asarray(R, np.float64)
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-6:
        return v / 2
    if np.pi - angle < 1e-3:  # near pi sin -> 0: the axis from the symmetric part,
        # (R + R^T) / 2 = cos I + (1 - cos) a a^T
        B = ((R + R.T) / 2 - cos * np.eye(3)) / (1 - cos)
        axis = B[np.argmax(np.diag(B))]
        axis = axis / np.linalg.norm(axis)
        return angle * axis * (np.sign(axis @ v) or 1.0)
    return angle / (2 * np.sin(angle)) * v


@dataclass
class FilterNoise:
    """Process noise of the constant-velocity model (std of white acceleration). Small: the
    tracker moves each track by the camera's motion first (egomotion.py), so what is left is
    the object's own motion, none for an object standing on a table (tuned on validation
    sequences: accel and angular_accel on seeds 5,000,000+, the initial spreads on
    7,100,000+ (data/sequences_val_v2); docs/RESULTS.md)."""

    accel: float = 0.01  # m/s^2
    angular_accel: float = 0.03  # rad/s^2
    # velocity spread assumed when a track starts. Small: the camera's motion is taken out
    # between frames (ICP on the depth image), and an object that is being moved is followed
    # by its centroid (predict's `shift`), so what is left of a still object's velocity is
    # the estimates' noise, which a wide start (0.1 m/s, 0.5 rad/s) let into the velocity and
    # on into every prediction: jitter p95 7.6 -> 6.0 mm, 4.2 -> 2.3 deg on the validation
    # sequences (docs/RESULTS.md)
    initial_speed: float = 0.005  # m/s
    initial_turn_rate: float = 0.02  # rad/s
    # an object that moved on its own (picked up) since the last frame: extra pose spread
    moved_translation: float = 0.01  # m
    moved_rotation: float = 0.1  # rad
    # squared Mahalanobis distance (3 dof) beyond which an estimate is down-weighted: 95 %
    # of estimates that fit the model stay below 7.8
    robust_chi2: float = 7.8


_POSE, _VEL = np.arange(6), np.arange(6, 12)  # the diagonals of the state's blocks


class PoseFilter:
    """One object's filter. `update` takes an estimate with its 6x6 covariance and returns
    the filtered pose; `predict` moves the state to a new time."""

    def __init__(self, rotation, translation, covariance, noise: FilterNoise | None = None,
                 symmetric: bool = False):
        self.noise = noise or FilterNoise()
        self.symmetric = symmetric
        self.reset(rotation, translation, covariance)

    def reset(self, rotation, translation, covariance) -> None:
        """Start again from one estimate (velocity unknown: zero with a wide spread)."""
        self.R = np.asarray(rotation, np.float64).copy()
        self.t = np.asarray(translation, np.float64).copy()
        self.v = np.zeros(3)
        self.w = np.zeros(3)
        self.P = np.zeros((12, 12))
        self.P[:6, :6] = covariance
        self.P[6:9, 6:9] = np.eye(3) * self.noise.initial_speed**2
        self.P[9:, 9:] = np.eye(3) * self.noise.initial_turn_rate**2

    def predict(self, dt: float, shift: np.ndarray | None = None, motion=None,
                moved: bool = False) -> None:
        """Advance by dt seconds. `shift`: a displacement (m) measured by other means (the
        move of the object's point centroid), added to the position as it is. `motion`: the
        camera's own motion (egomotion.CameraMotion), applied to the whole state, its
        uncertainty added to the pose's. `moved`: the object moved on its own (its pose is
        less certain by FilterNoise.moved_*)."""
        dt = max(float(dt), 0.0)
        if moved:
            self.P[:3, :3] += np.eye(3) * self.noise.moved_translation**2
            self.P[3:6, 3:6] += np.eye(3) * self.noise.moved_rotation**2
        if motion is not None:
            Rm = motion.R
            self.R, self.t = Rm @ self.R, Rm @ self.t + motion.t
            self.v, self.w = Rm @ self.v, Rm @ self.w
            G = np.kron(np.eye(4), Rm)  # the four 3-vectors of the error state turn along
            self.P = G @ self.P @ G.T
            self.P[:3, :3] += np.eye(3) * motion.sigma_t**2
            self.P[3:6, 3:6] += np.eye(3) * motion.sigma_r**2
        self.t = self.t + self.v * dt + (0.0 if shift is None else np.asarray(shift))
        self.R = so3_exp(self.w * dt) @ self.R
        # P <- F P F^T + Q with F = [[I, dt I], [0, I]] (pose, velocity blocks of 6), in
        # place by blocks; Q: white acceleration of std q per axis, q^2 [[dt^3/3, dt^2/2],
        # [dt^2/2, dt]] on each (pose, velocity) pair
        P, q2 = self.P, np.repeat([self.noise.accel**2, self.noise.angular_accel**2], 3)
        B = P[:6, 6:].copy()
        P[:6, :6] += dt * (B + B.T) + dt * dt * P[6:, 6:]
        P[:6, 6:] += dt * P[6:, 6:]
        P[_POSE, _POSE] += q2 * dt**3 / 3
        P[_POSE, _VEL] += q2 * dt**2 / 2
        P[6:, :6] = P[:6, 6:].T
        P[_VEL, _VEL] += q2 * dt

    def innovation(self, rotation, translation) -> tuple[np.ndarray, np.ndarray]:
        """The estimate (symmetry-aligned rotation) and its difference to the state (6,)."""
        R = np.asarray(rotation, np.float64)
        if self.symmetric:
            R = align_symmetric_rotation(R, self.R)
        return R, np.concatenate([np.asarray(translation) - self.t, so3_log(R @ self.R.T)])

    def mahalanobis2(self, rotation, translation, covariance) -> float:
        """Squared Mahalanobis distance of an estimate from the prediction (chi^2, 6 dof)."""
        _, y = self.innovation(rotation, translation)
        return float(y @ np.linalg.solve(self.P[:6, :6] + covariance, y))

    def update(self, rotation, translation, covariance) -> tuple[np.ndarray, np.ndarray]:
        """Fuse one estimate (6x6 covariance over x, y, z, rot x, y, z); returns (R, t).
        Robust: an estimate further from the prediction than `robust_chi2` (per block, 3 dof)
        counts as less certain in proportion (Huber), so a single wild estimate - which a
        category-level model gives now and then - moves the pose a little, not by its
        Kalman share; a real move keeps pulling and is followed within a few frames."""
        _, y = self.innovation(rotation, translation)
        Rm = np.array(covariance, np.float64)
        S = self.P[:6, :6] + Rm
        for b in (slice(0, 3), slice(3, 6)):
            d2 = float(y[b] @ np.linalg.solve(S[b, b], y[b]))
            if d2 > self.noise.robust_chi2:
                Rm[b, b] *= d2 / self.noise.robust_chi2
        S = self.P[:6, :6] + Rm
        K = np.linalg.solve(S, self.P[:6, :]).T  # P H^T S^-1 with H = [I 0]
        dx = K @ y
        self.t = self.t + dx[:3]
        self.R = so3_exp(dx[3:6]) @ self.R
        self.v = self.v + dx[6:9]
        self.w = self.w + dx[9:12]
        self.P = self.P - K @ self.P[:6, :]
        self.P = (self.P + self.P.T) / 2
        return self.R.copy(), self.t.copy()

    @property
    def covariance(self) -> np.ndarray:
        """6x6 covariance of the filtered pose."""
        return self.P[:6, :6].copy()
