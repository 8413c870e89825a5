"""Geometry core: intrinsics, rotations (6D, quaternions), back-projection, boxes, errors.

numpy only, vectorised over leading batch axes, ROS-free. Conventions:
- camera frame as in OpenCV / REAL275 ground truth: x right, y down, z forward (metres);
- poses are camera-from-object: p_cam = R @ p_obj + t;
- 6-D rotation = the first two COLUMNS of R, [R[:, 0], R[:, 1]] (GenPose, Zhou et al. 2019);
- quaternions in ROS order (x, y, z, w), w >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- intrinsics ---------------------------------------------------------------------------


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 pinhole intrinsics (float64)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


REAL275_K = intrinsics_matrix(591.0125, 590.16775, 322.525, 244.11084)  # 640x480
CAMERA25_K = intrinsics_matrix(577.5, 577.5, 319.5, 239.5)  # 640x480

# --- rotations ----------------------------------------------------------------------------


def _normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def rotation_6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3): Gram-Schmidt on the two given columns, third = cross product."""
    r6 = np.asarray(r6, dtype=np.float64)
    b1 = _normalize(r6[..., 0:3])
    a2 = r6[..., 3:6]
    b2 = _normalize(a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)  # columns


def matrix_to_rotation_6d(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) = [R[:, 0], R[:, 1]]."""
    R = np.asarray(R)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternion (x, y, z, w), normalised here -> (..., 3, 3)."""
    q = _normalize(np.asarray(q, dtype=np.float64))
    x, y, z, w = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 4) quaternion (x, y, z, w) with w >= 0.

    Picks, per matrix, the numerically best of the four classic formulas (largest of
    w, x, y, z), so it stays accurate near 180-degree rotations.
    """
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # 4 * squares of (w, x, y, z), each from the diagonal
    sq = np.stack(
        [1 + tr, 1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr, 1 + 2 * m[:, 2, 2] - tr],
        axis=-1,
    )
    best = np.argmax(sq, axis=-1)
    s = 2.0 * np.sqrt(np.maximum(sq[np.arange(len(m)), best], 1e-300))  # 4 * that component
    d10, d01 = m[:, 1, 0], m[:, 0, 1]
    d20, d02 = m[:, 2, 0], m[:, 0, 2]
    d21, d12 = m[:, 2, 1], m[:, 1, 2]
    # rows: candidate (w, x, y, z) * s for each choice of the largest component
    cand = np.stack(
        [
            np.stack([s * s / 4, d21 - d12, d02 - d20, d10 - d01], -1),  # w largest
            np.stack([d21 - d12, s * s / 4, d01 + d10, d02 + d20], -1),  # x largest
            np.stack([d02 - d20, d01 + d10, s * s / 4, d12 + d21], -1),  # y largest
            np.stack([d10 - d01, d02 + d20, d12 + d21, s * s / 4], -1),  # z largest
        ],
        axis=1,
    )
    wxyz = cand[np.arange(len(m)), best] / s[:, None]
    q = _normalize(np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=-1))
    q = np.where(q[:, 3:4] < 0, -q, q)
    return q.reshape(R.shape[:-2] + (4,))


def matrix_to_rotation_vector(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) rotation vector (axis * angle, angle in [0, pi]).

    Through the quaternion (w >= 0): angle = 2 atan2(|v|, w) is accurate at every angle,
    where acos of the trace loses precision near 0 and the axis formula breaks near pi."""
    q = matrix_to_quaternion(R)
    v, w = q[..., :3], q[..., 3]
    norm = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(norm, w)
    # angle / |v| -> 2 as |v| -> 0 (sin(angle / 2) ~ angle / 2)
    scale = np.where(norm > 1e-12, angle / np.maximum(norm, 1e-300), 2.0)
    return v * scale[..., None]


def rotation_about_y(angle: np.ndarray | float) -> np.ndarray:
    """Rotation(s) by `angle` radians about +y: (...,) -> (..., 3, 3)."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], axis=-1).reshape(a.shape + (3, 3))


def axis_angle_to_matrix(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rodrigues: unit-normalised axis (..., 3), angle (...,) radians -> (..., 3, 3)."""
    k = _normalize(np.asarray(axis, dtype=np.float64))
    a = np.asarray(angle, dtype=np.float64)[..., None]
    q = np.concatenate([k * np.sin(a / 2), np.cos(a / 2)], axis=-1)
    return quaternion_to_matrix(q)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotations uniform on SO(3) (normalised Gaussian quaternions): (n, 3, 3)."""
    return quaternion_to_matrix(rng.standard_normal((n, 4)))


def project_to_so3(M: np.ndarray) -> np.ndarray:
    """Nearest rotation (Frobenius) to each (..., 3, 3) matrix, via SVD with det fix."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    d = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[..., :, 2] *= d[..., None]
    return U @ Vt


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle of (..., 3, 3) in degrees, in [0, 180]."""
    tr = np.trace(np.asarray(R, dtype=np.float64), axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


# --- errors (NOCS protocol) ---------------------------------------------------------------


def rotation_error_deg(
    R_pred: np.ndarray, R_gt: np.ndarray, symmetric: bool | np.ndarray = False
) -> np.ndarray:
    """Rotation error in degrees, batched over leading axes.

    Asymmetric: geodesic angle of R_pred^T R_gt. Symmetric (rotation about the object's y
    axis ignored): the angle between the rotated y axes R_pred[:, 1] and R_gt[:, 1].
    `symmetric` may be a bool or a bool array broadcastable to the batch shape.
    """
    R_pred = np.asarray(R_pred, dtype=np.float64)
    R_gt = np.asarray(R_gt, dtype=np.float64)
    geodesic = rotation_angle_deg(np.swapaxes(R_pred, -1, -2) @ R_gt)
    y_p = _normalize(R_pred[..., :, 1])
    y_g = _normalize(R_gt[..., :, 1])
    y_angle = np.degrees(np.arccos(np.clip(np.sum(y_p * y_g, axis=-1), -1.0, 1.0)))
    return np.where(np.asarray(symmetric, dtype=bool), y_angle, geodesic)


def translation_error_cm(t_pred: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """Euclidean translation error in centimetres (inputs in metres), batched."""
    diff = np.asarray(t_pred, dtype=np.float64) - np.asarray(t_gt, dtype=np.float64)
    return 100.0 * np.linalg.norm(diff, axis=-1)


def align_symmetric_rotation(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """R_pred rotated about its own y axis to be closest (geodesic) to R_gt.

    For y-symmetric objects this picks the representative of R_pred's equivalence class
    nearest to R_gt: R_pred @ Ry(theta) with the best theta in closed form.
    """
    R_pred = np.asarray(R_pred, dtype=np.float64)
    M = np.swapaxes(R_pred, -1, -2) @ np.asarray(R_gt, dtype=np.float64)
    # maximise trace(Ry(theta)^T M) = cos(theta) (M00 + M22) + sin(theta) (M02 - M20)
    theta = np.arctan2(M[..., 0, 2] - M[..., 2, 0], M[..., 0, 0] + M[..., 2, 2])
    return R_pred @ rotation_about_y(theta)


# --- boxes --------------------------------------------------------------------------------

# unit-cube corner signs, x slowest: (-,-,-), (-,-,+), (-,+,-), ... (+,+,+)
_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
)


def box_corners(
    extents: np.ndarray, R: np.ndarray | None = None, t: np.ndarray | None = None
) -> np.ndarray:
    """8 corners of a box with full side lengths `extents` (..., 3) centred at the object
    origin, moved by R (..., 3, 3) and t (..., 3) when given: (..., 8, 3)."""
    ext = np.asarray(extents, dtype=np.float64)
    corners = 0.5 * ext[..., None, :] * _CORNER_SIGNS  # (..., 8, 3)
    if R is not None:
        corners = corners @ np.swapaxes(np.asarray(R, dtype=np.float64), -1, -2)
    if t is not None:
        corners = corners + np.asarray(t, dtype=np.float64)[..., None, :]
    return corners


# --- similarity fit -----------------------------------------------------------------------


def similarity_transform(
    src: np.ndarray, dst: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991): dst ~= s * R @ src + t.

    src, dst: (N, 3) corresponding points, N >= 3 not collinear. Returns (s, R, t).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"need two (N>=3, 3) arrays of equal shape, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2] = -1.0  # reflection -> rotation
    R = U @ np.diag(S) @ Vt
    var_s = np.mean(np.sum(xs * xs, axis=1))
    s = float(np.sum(D * S) / var_s) if var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


# --- depth -> points ----------------------------------------------------------------------


def depth_to_metres(depth: np.ndarray, depth_scale: float | None = None) -> np.ndarray:
    """Depth image to float32 metres: integer depth is taken as millimetres (scale 0.001),
    float depth as metres (scale 1), unless `depth_scale` is given."""
    depth = np.asarray(depth)
    if depth_scale is None:
        depth_scale = 0.001 if np.issubdtype(depth.dtype, np.integer) else 1.0
    if depth_scale == 1.0:  # no product: the same numbers, and a signalling NaN from the
        return depth.astype(np.float32)  # wire would warn "invalid value ... in multiply"
    # the float32 product of the float32 value, in one pass
    return np.multiply(depth, np.float32(depth_scale), dtype=np.float32)


def backproject(
    depth: np.ndarray, mask: np.ndarray, K: np.ndarray, depth_scale: float | None = None
) -> np.ndarray:
    """Masked depth pixels -> (N, 3) float32 camera-frame points in metres.

    depth: HxW, uint16 millimetres or float32 metres (see `depth_to_metres`); mask: HxW bool.
    Pixels with zero, negative, NaN or infinite depth are dropped. Pixel (u, v) = (column,
    row) is projected with p = z * K^-1 [u, v, 1] (integer pixel coordinates, as REAL275).
    """
    z_img = depth_to_metres(depth, depth_scale)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != z_img.shape:
        raise ValueError(f"mask shape {mask.shape} != depth shape {z_img.shape}")
    valid = mask & np.isfinite(z_img) & (z_img > 0)
    v, u = np.nonzero(valid)
    z = z_img[v, u].astype(np.float64)
    K_inv = inverse_intrinsics(K)
    uv1 = np.stack([u, v, np.ones_like(u)], axis=0).astype(np.float64)  # (3, N)
    rays = K_inv @ uv1
    return (rays * z).T.astype(np.float32)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixel coordinates (u, v)."""
    p = np.asarray(points, dtype=np.float64) @ np.asarray(K, dtype=np.float64).T
    return p[:, :2] / p[:, 2:3]


def sample_points(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Fixed-size subset of (N, 3) points: without replacement when N >= n, otherwise all
    N points plus n - N drawn with replacement (so every point appears at least once)."""
    N = len(points)
    if N == 0:
        raise ValueError("cannot sample from an empty point set")
    if N >= n:
        idx = rng.choice(N, size=n, replace=False)
    else:
        idx = np.concatenate([rng.permutation(N), rng.integers(0, N, size=n - N)])
    return points[idx]


_INVERSES: dict[bytes, np.ndarray] = {}


def inverse_intrinsics(K: np.ndarray) -> np.ndarray:
    """K^-1 (float64, read-only), remembered for the last few K: a camera's K rarely changes,
    and np.linalg.inv costs more than the rest of a small object's back-projection."""
    K = np.asarray(K, dtype=np.float64)
    key = K.tobytes()
    inverse = _INVERSES.get(key)
    if inverse is None:
        if len(_INVERSES) >= 16:
            _INVERSES.clear()
        inverse = np.linalg.inv(K)
        inverse.setflags(write=False)
        _INVERSES[key] = inverse
    return inverse


OUTLIER_PROBE = 1024  # points per object the outlier thresholds are estimated from (256: 5d
# accuracy 0.6-1.0 points lower on the test split, data/points.py)


def _medians(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the first count[r] entries of each row r of `values` (R, M) once sorted,
    the other entries being +inf. Row by row, a partition puts the one or two middle order
    statistics where a sort would (the same values, so the same medians) at a third of a
    sort's cost for 1024 numbers; one partition of all rows at every row's middle positions
    costs more than a sort from about 6 distinct positions on (measured)."""
    last = values.shape[1] - 1
    out = np.empty(len(values), dtype=values.dtype)
    for r, n in enumerate(count.tolist()):  # Python ints: most rows are one of few objects
        a, b = max(n - 1, 0) // 2, min(n // 2, last)
        row = np.partition(values[r], (a, b))
        out[r] = 0.5 * (row[a] + row[b])
    return out


@dataclass
class OutlierThresholds:
    """The two-pass rule of `trim_outliers` for B objects, estimated from probe points: keep
    a point of object b when |z - z_median[b]| <= band[b] and |p - centre[b]| <= radius[b]."""

    z_median: np.ndarray  # (B,)
    band: np.ndarray  # (B,)
    centre: np.ndarray  # (B, 3)
    radius: np.ndarray  # (B,)

    @classmethod
    def of(cls, rows: np.ndarray, count: np.ndarray, depth_k: float = 3.0,
           min_depth_band: float = 0.03, radius_k: float = 3.0, min_radius: float = 0.03
           ) -> OutlierThresholds:
        """From probe points laid out as rows (B, M, 3), the first count[b] of row b real (the
        rest ignored): each median one sort for all objects."""
        return cls.of_planar(*np.moveaxis(np.asarray(rows, dtype=np.float64), -1, 0), count,
                             depth_k, min_depth_band, radius_k, min_radius)[0]

    @classmethod
    def of_planar(cls, x: np.ndarray, y: np.ndarray, z: np.ndarray, count: np.ndarray,
                  depth_k: float = 3.0, min_depth_band: float = 0.03, radius_k: float = 3.0,
                  min_radius: float = 0.03) -> tuple[OutlierThresholds, np.ndarray]:
        """`of` with the probe's coordinates as three (B, M) arrays; also returns the share
        of each object's probe points that the rule keeps."""
        count = np.asarray(count, dtype=np.int64)
        # every row real (one object, or all of >= probe points): no padding to mask out
        full = bool((count >= z.shape[1]).all())
        present = None if full else np.arange(z.shape[1]) < count[:, None]
        z_med = _medians(z if full else np.where(present, z, np.inf), count)
        dev = np.abs(z - z_med[:, None])
        if not full:
            dev = np.where(present, dev, np.inf)
        band = np.maximum(depth_k * 1.4826 * _medians(dev, count), min_depth_band)
        near = dev <= band[:, None]  # the probe points inside the depth band
        k_near = near.sum(axis=1)
        centre = _medians(np.where(near, np.concatenate([x, y, z]).reshape(3, *z.shape),
                                   np.inf).reshape(3 * len(z), -1),
                          np.concatenate([k_near] * 3)).reshape(3, -1).T
        d = np.sqrt((x - centre[:, :1]) ** 2 + (y - centre[:, 1:2]) ** 2
                    + (z - centre[:, 2:]) ** 2)
        radius = np.maximum(radius_k * _medians(np.where(near, d, np.inf), k_near), min_radius)
        share = (near & (d <= radius[:, None])).sum(axis=1) / np.maximum(count, 1)
        return cls(z_med, band, centre, radius), share

    def keep(self, points: np.ndarray, counts: np.ndarray | list[int]) -> np.ndarray:
        """Bool (N,): which of `points` (N, 3) pass the rule of their object, the objects'
        points one after the other, counts[b] of object b."""
        p = np.asarray(points, dtype=np.float64)
        # one object: its thresholds broadcast, no per-point gather
        group = 0 if len(self.band) == 1 else np.repeat(np.arange(len(self.band)), counts)
        q = p - self.centre[group]
        return ((np.abs(p[:, 2] - self.z_median[group]) <= self.band[group])
                & (np.einsum("ij,ij->i", q, q) <= self.radius[group] ** 2))


def probe_offsets(counts: np.ndarray, probe: int = OUTLIER_PROBE) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Where the outlier thresholds are estimated from, for B objects of counts[b] points:
    (B, M) offsets of at most `probe` points spread evenly over each object (all of a smaller
    one; the rest of a row is padding, offset 0) and (B,) how many of each row are real."""
    counts = np.asarray(counts, dtype=np.int64)
    k = np.minimum(counts, probe)
    j = np.arange(k.max() if len(k) else 0)
    return np.where(j < k[:, None], j * counts[:, None] // np.maximum(k, 1)[:, None], 0), k


def grouped_outlier_mask(
    points: np.ndarray,
    counts: np.ndarray,
    probe: int = OUTLIER_PROBE,
    **rule: float,
) -> np.ndarray:
    """Bool (N,) keep-mask of `trim_outliers` for many objects at once: `points` (N, 3) holds
    them one after the other, counts[b] points each. The thresholds come from at most `probe`
    points per object spread evenly over its points (all of them for smaller objects; see
    `OutlierThresholds` for the keyword arguments) and then apply to every point."""
    p = np.asarray(points, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    offsets, k = probe_offsets(counts, probe)
    at = (np.cumsum(counts) - counts)[:, None] + offsets  # objects laid one after the other
    rule_of = OutlierThresholds.of(p[np.minimum(at, len(p) - 1)], k, **rule)  # (empty: unused)
    return rule_of.keep(p, counts)


def outlier_mask(points: np.ndarray, **kwargs: float) -> np.ndarray:
    """Bool (N,) keep-mask of `trim_outliers`; see there for the rule."""
    return grouped_outlier_mask(points, np.array([len(points)]), **kwargs)


def trim_outliers(points: np.ndarray, **kwargs: float) -> np.ndarray:
    """Drop points that do not belong to the object's main blob (mask bleeding onto the
    background or onto a nearer occluder).

    Rule, in two passes:
    1. depth: keep |z - median(z)| <= max(depth_k * 1.4826 * MAD(z), min_depth_band)
       (MAD = median absolute deviation; 1.4826 * MAD estimates a standard deviation);
    2. radius: with c the per-axis median of the points kept so far, keep
       |p - c| <= max(radius_k * median |p - c|, min_radius).
    Defaults depth_k = radius_k = 3, min_depth_band = min_radius = 3 cm keep the whole of a
    solid object (uniformly spread depth: the band reaches 1.1x its depth extent) while
    cutting background points tens of cm behind it. The medians are taken over at most
    OUTLIER_PROBE points spread evenly over the object (exactly for smaller objects); keyword
    arguments: see `grouped_outlier_mask`.
    """
    return points[outlier_mask(points, **kwargs)]
