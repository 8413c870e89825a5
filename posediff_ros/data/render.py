"""Exact CPU z-buffer rendering (numpy, vectorised) and a depth-camera noise model.

Triangles are rasterised at integer pixel centres (u = column, v = row, as REAL275 back-
projects them) with perspective-correct depth (1/z is affine in screen space on a planar
triangle), so the depth of a covered pixel is the exact ray/mesh intersection. The table is
an analytic plane, intersected per pixel. No back-face culling: meshes need not be closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# candidates (triangle, pixel) evaluated per chunk: bounds the transient memory (~100 MB)
_CHUNK = 1_500_000


@dataclass
class Raster:
    depth: np.ndarray  # (H, W) float64 metres, inf where nothing was hit
    face: np.ndarray  # (H, W) int64 index of the visible triangle, -1 where none


_RAYS: dict[bytes, np.ndarray] = {}


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) rays K^-1 [u, v, 1] (z component 1) through the pixel centres (cached per
    camera; treat as read-only)."""
    key = np.asarray(K, dtype=np.float64).tobytes() + bytes(f"{width}x{height}", "ascii")
    if key not in _RAYS:
        u, v = np.meshgrid(np.arange(width, dtype=np.float64),
                           np.arange(height, dtype=np.float64))
        Ki = np.linalg.inv(K)
        rays = (np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ Ki.T)
        rays = rays.reshape(height, width, 3)
        rays[..., 2] = 1.0
        rays.flags.writeable = False
        if len(_RAYS) > 8:
            _RAYS.clear()
        _RAYS[key] = rays
    return _RAYS[key]


def rasterize(
    verts: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int,
    near: float = 0.05,
) -> Raster:
    """Z-buffer of camera-frame triangles (verts (V, 3), faces (F, 3)).

    Triangles with a vertex nearer than `near` are skipped (scenes keep objects far in front).
    """
    depth = np.full(height * width, np.inf)
    face_buf = np.full(height * width, -1, dtype=np.int64)
    z = verts[:, 2]
    uv = verts[:, :2] / np.maximum(z, near)[:, None] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    tri = uv[faces]  # (F, 3, 2)
    tz = z[faces]
    x0 = np.ceil(tri[..., 0].min(1)).clip(0, width)
    x1 = np.floor(tri[..., 0].max(1)).clip(-1, width - 1)
    y0 = np.ceil(tri[..., 1].min(1)).clip(0, height)
    y1 = np.floor(tri[..., 1].max(1)).clip(-1, height - 1)
    bw = (x1 - x0 + 1).astype(np.int64)
    bh = (y1 - y0 + 1).astype(np.int64)
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = (bw > 0) & (bh > 0) & (np.abs(area) > 1e-12) & (tz.min(1) > near)
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        return Raster(depth.reshape(height, width), face_buf.reshape(height, width))
    counts = bw[idx] * bh[idx]
    # split the triangles into chunks of about _CHUNK candidate pixels
    bounds = np.searchsorted(np.cumsum(counts), np.arange(_CHUNK, counts.sum(), _CHUNK))
    for part in np.split(np.arange(len(idx)), bounds + 1):
        if len(part) == 0:
            continue
        t = idx[part]
        c = counts[part]
        ti = np.repeat(t, c)
        local = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        px = x0[ti] + local % bw[ti]
        py = y0[ti] + local // bw[ti]
        a = tri[ti, 0]
        dx, dy = px - a[:, 0], py - a[:, 1]
        inv_area = 1.0 / area[ti]
        w1 = (dx * e2[ti, 1] - dy * e2[ti, 0]) * inv_area
        w2 = (e1[ti, 0] * dy - e1[ti, 1] * dx) * inv_area
        w0 = 1.0 - w1 - w2
        eps = -1e-9
        inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
        ti, px, py = ti[inside], px[inside], py[inside]
        zt = tz[ti]
        inv_z = w0[inside] / zt[:, 0] + w1[inside] / zt[:, 1] + w2[inside] / zt[:, 2]
        zc = 1.0 / inv_z
        pix = py.astype(np.int64) * width + px.astype(np.int64)
        np.minimum.at(depth, pix, zc)
        win = zc <= depth[pix]
        face_buf[pix[win]] = ti[win]
    return Raster(depth.reshape(height, width), face_buf.reshape(height, width))


def face_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3) of camera-frame triangles, flipped to face the camera."""
    v = verts[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-15)
    flip = np.einsum("ij,ij->i", n, v[:, 0]) > 0  # normal pointing away from the camera
    n[flip] *= -1
    return n


@dataclass
class DepthNoise:
    """Structured-light / stereo depth camera errors (RealSense-like)."""

    sigma_base: float = 0.0008  # m, axial noise at z -> 0
    sigma_z2: tuple[float, float] = (0.0012, 0.003)  # m per m^2: axial std grows with z^2
    edge_jump: float = 0.015  # m; neighbours further apart are a depth edge
    edge_drop: float = 0.5  # probability of losing a pixel on a depth edge
    grazing_cos: tuple[float, float] = (0.08, 0.3)  # |cos| of incidence: all lost .. none lost
    hole_fraction: tuple[float, float] = (0.0, 0.03)  # fraction of pixels in random blobs
    dropout: float = 0.003  # isolated missing pixels
    max_range: float = 3.0  # m


def add_depth_noise(
    depth: np.ndarray, cos_incidence: np.ndarray, rng: np.random.Generator,
    cfg: DepthNoise | None = None,
) -> np.ndarray:
    """Noisy metric depth (float64, 0 = missing) from exact depth (inf = no return).
    cos_incidence: |cos| of the angle between the pixel ray and the surface normal."""
    cfg = cfg or DepthNoise()
    H, W = depth.shape
    valid = np.isfinite(depth) & (depth < cfg.max_range)
    z = np.where(valid, depth, 0.0)
    k = rng.uniform(*cfg.sigma_z2)
    noisy = z + rng.standard_normal(z.shape) * (cfg.sigma_base + k * z * z)
    # depth edges: the stereo match fails on one side of a discontinuity
    zf = np.where(valid, depth, 10.0)
    jump = np.zeros((H, W), dtype=bool)
    dz_x = np.abs(np.diff(zf, axis=1)) > cfg.edge_jump
    dz_y = np.abs(np.diff(zf, axis=0)) > cfg.edge_jump
    jump[:, 1:] |= dz_x
    jump[:, :-1] |= dz_x
    jump[1:] |= dz_y
    jump[:-1] |= dz_y
    lost = jump & (rng.random((H, W)) < cfg.edge_drop)
    # grazing angles: no reliable return
    lo, hi = cfg.grazing_cos
    p_graze = np.clip((hi - cos_incidence) / (hi - lo), 0.0, 1.0)
    lost |= rng.random((H, W)) < p_graze
    # holes: blobs from a thresholded smooth random field
    frac = rng.uniform(*cfg.hole_fraction)
    if frac > 0:
        field = ndimage.zoom(rng.random((H // 16 + 1, W // 16 + 1)), 16, order=1)[:H, :W]
        lost |= field > np.quantile(field, 1.0 - frac)
    lost |= rng.random((H, W)) < cfg.dropout
    return np.where(valid & ~lost, np.maximum(noisy, 0.0), 0.0)
