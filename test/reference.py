"""Independent float64 references (numpy + scipy, none of the package's own maths) for the
tests: the chordal mean of rotations and the pose covariance in REP 103 / geometry_msgs order
(x, y, z, rotation about x, y, z)."""

import numpy as np
from scipy.spatial.transform import Rotation


def chordal_mean(rot: np.ndarray) -> tuple[np.ndarray, float]:
    """(N, 3, 3) -> (closest rotation to the mean matrix, conditioning 2 / (s2 + s3)): an
    error d in the samples moves the mean by at most that times d (polar factor perturbation,
    with the determinant sign folded into the smallest singular value)."""
    u, s, vt = np.linalg.svd(np.asarray(rot, np.float64).mean(0))
    d = np.sign(np.linalg.det(u @ vt))
    mean = u @ np.diag([1.0, 1.0, d]) @ vt
    return mean, 2.0 / max(s[1] + d * s[2], 1e-12)


def pose_covariance(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(N, 3, 3), (N, 3) samples of one object -> (6, 6): unbiased covariance of
    (t - mean t, rotvec(R_i mean^T)); rotation vectors by scipy."""
    rot, trans = np.asarray(rot, np.float64), np.asarray(trans, np.float64)
    mean, _ = chordal_mean(rot)
    dr = Rotation.from_matrix(rot @ mean.T).as_rotvec()
    v = np.concatenate([trans - trans.mean(0), dr], axis=1)
    return v.T @ v / (len(v) - 1)
