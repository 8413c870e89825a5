"""The camera's own motion between two frames, from the objects that stayed where they were.

Static objects all move the same way in the camera frame when the camera moves: a rigid fit
(Kabsch) of their point centroids, previous frame -> this frame, measures that motion with
the centroids' noise averaged over the objects. Objects the fit does not explain (residual
beyond `inlier`) are being moved (picked up): the fit is redone without them. Fewer than
three objects, or objects almost on a line, give no estimate (rotation about the line is
unobservable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CameraMotion:
    R: np.ndarray  # (3, 3) p_now = R p_before + t, camera frame
    t: np.ndarray  # (3,)
    inliers: np.ndarray  # (N,) bool: objects the motion explains (they stayed put)
    sigma_t: float  # m: std of the motion's effect at an object (translation)
    sigma_r: float  # rad: std of the motion's rotation


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rotation and translation with dst ~= R src + t (Kabsch)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s))
    d = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ np.diag([1.0, 1.0, d]) @ Vt
    return R, mu_d - R @ mu_s


def camera_motion(before: np.ndarray, now: np.ndarray, inlier: float = 0.01,
                  min_spread: float = 0.03, noise_floor: float = 5e-4) -> CameraMotion | None:
    """Rigid motion of (N, 3) centroids, robust to objects that moved on their own."""
    if len(before) < 3:
        return None
    keep = np.ones(len(before), bool)
    for _ in range(2):  # fit, drop what it does not explain, fit again
        if keep.sum() < 3 or _spread(before[keep]) < min_spread:
            return None
        R, t = rigid_fit(before[keep], now[keep])
        residual = np.linalg.norm(before @ R.T + t - now, axis=1)
        keep = residual < max(inlier, 3 * float(np.median(residual)))
    if keep.sum() < 3:
        return None
    n = int(keep.sum())
    # the fit averages the centroids' noise: std of one centroid ~ rms residual (with the
    # 6 fitted parameters taken out), the motion's ~ that / sqrt(n)
    rms = np.sqrt(np.sum(residual[keep] ** 2) / max(3 * n - 6, 1) * 3)
    sigma_t = max(float(rms) / np.sqrt(n), noise_floor)
    return CameraMotion(R, t, keep, sigma_t, sigma_t / _spread(before[keep]))


def _spread(points: np.ndarray) -> float:
    """The second-largest rms extent of a point set (small: the points are on a line)."""
    s = np.linalg.svd(points - points.mean(0), compute_uv=False) / np.sqrt(len(points))
    return float(s[1]) if len(s) > 1 else 0.0
