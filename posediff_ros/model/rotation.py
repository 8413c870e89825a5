"""Rotations in torch: 6-D <-> matrix, angles, means, log map (numpy twins: geometry.py).

6-D = the first two columns of R (object x and y axes in the camera frame), as in GenPose.
Gram-Schmidt starts from the y column: y is the symmetry axis of bottle/bowl/can, so the
axis that matters for those classes is kept exactly and x is fitted around it.
"""

import torch
import torch.nn.functional as F


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) = (x column, y column) -> (..., 3, 3) rotation (columns x, y, z)."""
    y = F.normalize(x[..., 3:6], dim=-1, eps=1e-8)
    a = x[..., 0:3]
    xa = F.normalize(a - (a * y).sum(-1, keepdim=True) * y, dim=-1, eps=1e-8)
    z = torch.cross(xa, y, dim=-1)
    return torch.stack([xa, y, z], dim=-1)


def matrix_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): first column then second column."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], dim=-1)


def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle of r1^T r2 in radians, (...)."""
    tr = (r1 * r2).sum(dim=(-2, -1))  # trace(r1^T r2)
    return torch.acos(((tr - 1) / 2).clamp(-1.0, 1.0))


def y_axis_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Angle between the rotated y axes (error of y-symmetric objects), radians.

    atan2(|a x b|, a . b) rather than acos(a . b): acos is ill-conditioned near 0, where a
    trained model's estimates sit, so fp32 rounding would dominate the result. The cross
    product is written out so that every ONNX exporter handles it."""
    a, b = r1[..., :, 1], r2[..., :, 1]
    cross = torch.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                         a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                         a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], dim=-1)
    return torch.atan2(cross.norm(dim=-1), (a * b).sum(-1))


def project_to_so3(m: torch.Tensor) -> torch.Tensor:
    """Closest rotation (Frobenius) to each (..., 3, 3) matrix, det +1."""
    u, _, vh = torch.linalg.svd(m)
    d = torch.det(u @ vh)
    ones = torch.ones_like(d)
    s = torch.stack([ones, ones, d], dim=-1)
    return u @ torch.diag_embed(s) @ vh


def mean_rotation(r: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Chordal L2 mean of rotations along `dim` (mean matrix projected back to SO(3))."""
    return project_to_so3(r.mean(dim=dim))


def log_map(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) rotation vectors (axis * angle, angle in [0, pi]), accurate
    at every angle in float32 as in float64.

    acos((trace - 1) / 2) is ill-conditioned near 0 and pi (a trace rounding error e gives an
    angle error ~sqrt(e)), so the angle is atan2(|w| / 2, (trace - 1) / 2) with
    w = vee(R - R^T) = 2 sin(angle) axis. Up to pi/2 the axis is w / |w|; beyond, w shrinks to
    0 with sin(angle) and loses its direction, so the axis comes from the symmetric part
    (R + R^T) / 2 - cos(angle) I = (1 - cos(angle)) axis axis^T (its column of the largest
    diagonal entry), with the sign of w."""
    w = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                     r[..., 1, 0] - r[..., 0, 1]], dim=-1)
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    sin = w.norm(dim=-1) / 2
    angle = torch.atan2(sin, cos)
    # near 0: angle / (2 sin) -> 1/2 (sin == 0 only for the identity, where w == 0 too)
    small = w * torch.where(sin > 0, angle / (2 * sin.clamp_min(1e-30)), 0.5).unsqueeze(-1)
    sym = (r + r.transpose(-1, -2)) / 2 - cos[..., None, None] * torch.eye(3, dtype=r.dtype,
                                                                             device=r.device)
    k = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)[..., None, None].expand(*r.shape[:-1], 1)
    axis = torch.nn.functional.normalize(torch.take_along_dim(sym, k, dim=-1)[..., 0], dim=-1)
    sign = torch.where((axis * w).sum(-1) < 0, -1.0, 1.0).to(r.dtype)
    large = axis * (sign * angle).unsqueeze(-1)
    return torch.where((cos < 0).unsqueeze(-1), large, small)


def canonical_symmetric(r: torch.Tensor, t: torch.Tensor, symmetric: torch.Tensor) -> torch.Tensor:
    """For y-symmetric objects pick the one rotation about y whose x axis points toward the
    camera (the component of -t orthogonal to y), so the target is a function of the view.

    r (B,3,3), t (B,3) camera frame, symmetric (B,) bool. Others are returned unchanged.
    """
    y = r[..., :, 1]
    v = -t / t.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    v = v - (v * y).sum(-1, keepdim=True) * y
    ok = symmetric & (v.norm(dim=-1) > 1e-3)
    x = F.normalize(v, dim=-1, eps=1e-8)
    z = torch.cross(x, y, dim=-1)
    rc = torch.stack([x, y, z], dim=-1)
    return torch.where(ok[:, None, None], rc, r)
