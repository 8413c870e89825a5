"""Procedural triangle meshes of the six NOCS categories, with intra-class variation.

Every shape is built in the canonical frame of docs/method.md: origin at the bounding-box
centre, +y up, front toward +x (mug handle toward +x, camera lens along +x with the body
width along z, laptop base in the xz plane with the lid hinged along z at the -x edge).
Lengths are metres. Meshes need not be watertight or consistently wound: the renderer is a
z-buffer without back-face culling, so only the visible surface matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posediff_ros.categories import BY_ID, class_id

PART_BODY, PART_HANDLE, PART_SCREEN, PART_LENS = 0, 1, 2, 3


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    parts: np.ndarray  # (F,) int8 part label (PART_*), e.g. to find the mug handle's pixels

    @staticmethod
    def concat(meshes: list[Mesh]) -> Mesh:
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        return Mesh(
            np.concatenate([m.vertices for m in meshes]),
            np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)]),
            np.concatenate([m.parts for m in meshes]),
        )


@dataclass
class Shape:
    class_id: int  # NOCS id 1..6
    mesh: Mesh  # canonical frame, bbox centred at the origin
    extents: np.ndarray  # (3,) exact bounding-box side lengths of the mesh, metres
    params: dict = field(default_factory=dict)  # the drawn shape parameters, for inspection

    @property
    def category(self) -> str:
        return BY_ID[self.class_id].name

    @property
    def nocs_scale(self) -> float:
        """NOCS scale: length of the bounding-box diagonal."""
        return float(np.linalg.norm(self.extents))


# --- mesh primitives ----------------------------------------------------------------------


def lathe(profile: np.ndarray, segments: int = 48, part: int = PART_BODY) -> Mesh:
    """Surface of revolution about +y of a profile polyline of (radius, y) points.
    `segments` is a multiple of 4 so the polygon reaches +-r exactly on x and z (exact bbox)."""
    profile = np.asarray(profile, dtype=np.float64)
    m = len(profile)
    a = 2.0 * np.pi * np.arange(segments) / segments
    r, y = profile[:, 0:1], profile[:, 1:2]
    verts = np.stack(
        [r * np.cos(a), np.broadcast_to(y, (m, segments)), r * np.sin(a)], axis=-1
    ).reshape(-1, 3)
    j, k = np.meshgrid(np.arange(m - 1), np.arange(segments), indexing="ij")
    k1 = (k + 1) % segments
    v00, v01 = j * segments + k, j * segments + k1
    v10, v11 = (j + 1) * segments + k, (j + 1) * segments + k1
    faces = np.concatenate(
        [np.stack([v00, v10, v11], -1).reshape(-1, 3), np.stack([v00, v11, v01], -1).reshape(-1, 3)]
    )
    return Mesh(verts, faces.astype(np.int64), np.full(len(faces), part, dtype=np.int8))


_BOX_FACES = np.array(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
    dtype=np.int64,
)  # fmt: skip


def box(corner: np.ndarray, axes: np.ndarray, part: int = PART_BODY) -> Mesh:
    """Parallelepiped: corner + any combination of the three edge vectors (rows of `axes`)."""
    s = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    verts = np.asarray(corner, dtype=np.float64) + s @ np.asarray(axes, dtype=np.float64)
    return Mesh(verts, _BOX_FACES.copy(), np.full(12, part, dtype=np.int8))


def aabox(lo, hi, part: int = PART_BODY) -> Mesh:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return box(lo, np.diag(hi - lo), part)


def cylinder_x(radius_profile: np.ndarray, x0: float, y: float, z: float, segments=32,
               part: int = PART_BODY) -> Mesh:
    """Lathe about the +x axis: profile (radius, distance along x from x0); axis at (y, z)."""
    m = lathe(radius_profile, segments, part)
    v = m.vertices
    m.vertices = np.stack([x0 + v[:, 1], y - v[:, 0], z + v[:, 2]], axis=-1)  # y axis -> x axis
    return m


def tube(path: np.ndarray, ry: float, rz: float, segments: int = 16, part=PART_HANDLE) -> Mesh:
    """Sweep an elliptic cross-section (ry in the path's xy plane, rz along z) along a path
    of (x, y) points in the z = 0 plane; both ends capped."""
    path = np.asarray(path, dtype=np.float64)
    tangent = np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=-1)  # in-plane normal
    a = 2.0 * np.pi * np.arange(segments) / segments
    xy = path[:, None, :] + ry * np.cos(a)[None, :, None] * normal[:, None, :]
    z = np.broadcast_to(rz * np.sin(a)[None, :], xy.shape[:2])
    ring = np.concatenate([xy, z[..., None]], axis=-1).reshape(-1, 3)
    m = len(path)
    j, k = np.meshgrid(np.arange(m - 1), np.arange(segments), indexing="ij")
    k1 = (k + 1) % segments
    v00, v01 = j * segments + k, j * segments + k1
    v10, v11 = (j + 1) * segments + k, (j + 1) * segments + k1
    faces = [np.stack([v00, v10, v11], -1).reshape(-1, 3), np.stack([v00, v11, v01], -1)
             .reshape(-1, 3)]
    centres = np.concatenate([path[[0, -1]], np.zeros((2, 1))], axis=1)
    c0, c1 = len(ring), len(ring) + 1
    kk = np.arange(segments)
    faces.append(np.stack([np.full(segments, c0), (kk + 1) % segments, kk], -1))
    last = (m - 1) * segments
    faces.append(np.stack([np.full(segments, c1), last + kk, last + (kk + 1) % segments], -1))
    faces = np.concatenate(faces).astype(np.int64)
    return Mesh(np.concatenate([ring, centres]), faces, np.full(len(faces), part, np.int8))


def _finish(cls_name: str, parts: list[Mesh], params: dict) -> Shape:
    """Centre the mesh on its bounding box and measure its extents."""
    mesh = Mesh.concat(parts)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    mesh.vertices = mesh.vertices - 0.5 * (lo + hi)
    return Shape(class_id(cls_name), mesh, hi - lo, params)


def _curve(t: np.ndarray, p: float) -> np.ndarray:
    """Smooth 0->1 ease with shape exponent p (p<1 rises fast, p>1 slow)."""
    return np.sin(0.5 * np.pi * np.clip(t, 0.0, 1.0)) ** p


# --- categories ---------------------------------------------------------------------------


def make_bottle(rng: np.random.Generator) -> Shape:
    H = rng.uniform(0.15, 0.30)
    R = rng.uniform(0.026, 0.045) * (H / 0.22) ** 0.5
    rn = R * rng.uniform(0.28, 0.5)  # neck radius
    y_sh = H * rng.uniform(0.45, 0.72)  # shoulder start
    y_nk = y_sh + (H - y_sh) * rng.uniform(0.3, 0.75)  # neck start
    cap_h = rng.uniform(0.01, 0.025)
    waist = rng.uniform(0.0, 0.12) * rng.integers(0, 2)  # some bottles have a grip waist
    p = rng.uniform(0.6, 2.0)
    prof = [(0.0, 0.0), (0.88 * R, 0.0), (R, 0.01)]
    for t in np.linspace(0.1, 1.0, 8):  # body with optional waist
        y = 0.01 + t * (y_sh - 0.01)
        prof.append((R * (1.0 - waist * np.sin(np.pi * t) ** 2), y))
    for t in np.linspace(0.1, 1.0, 10):  # shoulder
        prof.append((R + (rn - R) * _curve(t, p), y_sh + t * (y_nk - y_sh)))
    y_cap = max(H - cap_h, y_nk + 0.005)
    prof += [(rn, y_cap), (rn * 1.12, y_cap), (rn * 1.12, H), (0.0, H)]
    return _finish("bottle", [lathe(np.array(prof), 40)], dict(height=H, radius=R, neck=rn))


def make_bowl(rng: np.random.Generator) -> Shape:
    R = rng.uniform(0.06, 0.12)
    H = R * rng.uniform(0.35, 0.7)
    rb = R * rng.uniform(0.3, 0.6)  # foot radius
    t = rng.uniform(0.003, 0.008)  # wall thickness (visible at the rim and inside)
    tb = t * rng.uniform(1.0, 2.0)
    p = rng.uniform(0.4, 1.2)
    s = np.linspace(0.0, 1.0, 14)
    outer = np.stack([rb + (R - rb) * _curve(s, p), s * H], -1)
    inner_y = np.linspace(H, tb, 14)
    inner_r = np.interp(inner_y, outer[:, 1], outer[:, 0]) - t
    inner = np.stack([np.maximum(inner_r, 0.0), inner_y], -1)
    prof = np.concatenate([[[0.0, 0.0]], outer, inner, [[0.0, tb]]])
    return _finish("bowl", [lathe(prof, 48)], dict(radius=R, height=H, wall=t))


def make_can(rng: np.random.Generator) -> Shape:
    R = rng.uniform(0.026, 0.042)
    H = rng.uniform(max(0.07, 1.4 * R), 0.17)
    rim = rng.uniform(0.006, 0.015)
    neck = R * rng.uniform(0.82, 0.95)
    prof = [(0.0, 0.0), (neck, 0.0), (R, rim), (R, H - rim), (neck, H - 0.002), (neck, H),
            (neck - 0.003, H), (neck - 0.003, H - 0.004), (0.0, H - 0.004)]  # fmt: skip
    return _finish("can", [lathe(np.array(prof), 40)], dict(radius=R, height=H))


def make_mug(rng: np.random.Generator) -> Shape:
    H = rng.uniform(0.075, 0.12)
    R_top = rng.uniform(0.035, 0.05)
    R_bot = R_top * rng.uniform(0.8, 1.05)
    t = rng.uniform(0.003, 0.007)
    tb = rng.uniform(0.006, 0.012)
    prof = np.array([(0.0, 0.0), (R_bot, 0.0), (R_top, H), (R_top - t, H), (R_bot - t, tb),
                     (0.0, tb)])  # fmt: skip
    # handle: C-shaped tube on the +x side, ends buried in the wall
    span = H * rng.uniform(0.45, 0.78)
    yc = H * 0.5 + rng.uniform(-0.1, 0.1) * (H - span)
    reach = rng.uniform(0.018, 0.035)
    ry = rng.uniform(0.004, 0.008)
    rz = ry * rng.uniform(0.7, 1.6)
    e = rng.uniform(2.0, 5.0)  # superellipse exponent: round (2) .. squarish (5)
    ang = np.linspace(0.5 * np.pi, -0.5 * np.pi, 25)
    c, s = np.cos(ang), np.sin(ang)
    ys = yc + 0.5 * span * np.sign(s) * np.abs(s) ** (2 / e)
    x_wall = np.interp(ys, [0.0, H], [R_bot, R_top]) - 0.5 * t
    xs = x_wall + reach * np.abs(c) ** (2 / e)
    path = np.stack([xs, ys], -1)
    handle = tube(path, ry, rz)
    return _finish(
        "mug", [lathe(prof, 48), handle],
        dict(height=H, radius=R_top, wall=t, reach=reach, span=span, tube=ry),
    )


def make_camera(rng: np.random.Generator) -> Shape:
    w = rng.uniform(0.09, 0.15)  # body width along z
    h = w * rng.uniform(0.55, 0.8)
    d = rng.uniform(0.035, 0.075)  # body depth along x
    parts = [aabox([-d / 2, 0.0, -w / 2], [d / 2, h, w / 2])]
    rl = min(h * rng.uniform(0.28, 0.42), 0.045)
    ll = rng.uniform(0.02, 0.09)
    yl = h * rng.uniform(0.4, 0.5)
    zl = rng.uniform(-0.12, 0.12) * w
    ring = rl * rng.uniform(1.05, 1.2)
    lens = np.array([(0.0, 0.0), (ring, 0.0), (ring, 0.3 * ll), (rl, 0.35 * ll), (rl, ll),
                     (0.75 * rl, ll), (0.7 * rl, ll - 0.003), (0.0, ll - 0.003)])  # fmt: skip
    parts.append(cylinder_x(lens, d / 2, yl, zl, part=PART_LENS))
    if rng.random() < 0.7:  # viewfinder / flash hump on top
        hw = w * rng.uniform(0.25, 0.4)
        hh = h * rng.uniform(0.15, 0.3)
        parts.append(aabox([-d / 2, h, zl - hw / 2], [d / 2 * rng.uniform(0.3, 0.9), h + hh,
                                                      zl + hw / 2]))  # fmt: skip
    if rng.random() < 0.7:  # hand grip on one side of the front
        gw = w * rng.uniform(0.15, 0.25)
        gz = w / 2 - gw
        parts.append(aabox([d / 2, 0.0, gz], [d / 2 + rng.uniform(0.008, 0.02), h * 0.9, w / 2]))
    return _finish("camera", parts, dict(width=w, height=h, depth=d, lens_r=rl, lens_len=ll))


def make_laptop(rng: np.random.Generator) -> Shape:
    W = rng.uniform(0.28, 0.40)  # width along z
    D = W * rng.uniform(0.62, 0.75)  # base depth along x
    tb = rng.uniform(0.012, 0.024)
    tl = rng.uniform(0.004, 0.010)
    L = D * rng.uniform(0.92, 1.0)
    theta = np.deg2rad(rng.uniform(70.0, 135.0))  # lid opening angle from the base plane
    base = aabox([-D / 2, 0.0, -W / 2], [D / 2, tb, W / 2])
    d = np.array([np.cos(theta), np.sin(theta), 0.0])  # along the lid, from the hinge
    n = np.array([-np.sin(theta), np.cos(theta), 0.0])  # toward the lid's back
    hinge = np.array([-D / 2, tb, -W / 2])
    lid = box(hinge, np.stack([L * d, tl * n, [0.0, 0.0, W]]))
    # screen panel a hair in front of the lid's inner face, for colour only
    m = 0.012
    screen = box(hinge + m * d - 0.0005 * n + [0, 0, m],
                 np.stack([(L - 2 * m) * d, 0.0004 * n, [0.0, 0.0, W - 2 * m]]), PART_SCREEN)
    return _finish("laptop", [base, lid, screen],
                   dict(width=W, depth=D, lid_angle_deg=float(np.rad2deg(theta))))


MAKERS = {
    1: make_bottle,
    2: make_bowl,
    3: make_camera,
    4: make_can,
    5: make_laptop,
    6: make_mug,
}


def make_shape(cls_id: int, rng: np.random.Generator) -> Shape:
    """A new random shape of NOCS class `cls_id` (1..6) in its canonical frame."""
    return MAKERS[int(cls_id)](rng)
