"""Exact CPU z-buffer rendering (numpy, vectorised); the depth sensor is data/sensor.py.

Triangles are rasterised at integer pixel centres (u = column, v = row, as REAL275 back-
projects them) with perspective-correct depth (1/z is affine in screen space on a planar
triangle), so the depth of a covered pixel is the exact ray/mesh intersection. The table is
an analytic plane, intersected per pixel. No back-face culling: meshes need not be closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
