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


def cylinder_z(radius: float, length: float, x: float, y: float, segments: int = 24,
               part: int = PART_BODY) -> Mesh:
    """Closed cylinder about an axis parallel to z through (x, y), centred on z = 0."""
    m = lathe(np.array([(0.0, -length / 2), (radius, -length / 2), (radius, length / 2),
                        (0.0, length / 2)]), segments, part)
    v = m.vertices
    m.vertices = np.stack([x + v[:, 0], y + v[:, 2], v[:, 1]], axis=-1)  # y axis -> z axis
    return m


def shifted(mesh: Mesh, offset) -> Mesh:
    return Mesh(mesh.vertices + np.asarray(offset, dtype=np.float64), mesh.faces, mesh.parts)


# --- parameter draws: training ranges, or widened ones for the out-of-distribution split ----

OOD_WIDEN = 0.25  # OOD ranges reach this fraction of a range's width beyond each end


@dataclass
class Draw:
    """Draws the shape parameters of one object.

    In distribution (ood=False) a parameter is uniform over its training range [lo, hi]. Out of
    distribution it is uniform over [lo - w, hi + w], w = OOD_WIDEN * (hi - lo), clipped to the
    physical limits given with the range, so about a third of every parameter's draws (and
    nearly every object, having several parameters) lie outside what training ever saw.
    `outside` counts those draws."""

    rng: np.random.Generator
    ood: bool = False
    subtype: str = ""  # force this sub-type (contact sheet, tests); "" = draw one
    outside: int = 0
    draws: int = 0

    def __call__(self, lo: float, hi: float, limits: tuple[float, float] = (0.0, np.inf)) -> float:
        if self.ood:
            w = OOD_WIDEN * (hi - lo)
            lo_o, hi_o = max(lo - w, limits[0]), min(hi + w, limits[1])
            v = float(self.rng.uniform(lo_o, hi_o))
            self.outside += not lo <= v <= hi
        else:
            v = float(self.rng.uniform(lo, hi))
        self.draws += 1
        return v

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, weights: dict[str, float]) -> str:
        if self.subtype:
            if self.subtype not in weights:
                raise KeyError(f"unknown sub-type {self.subtype!r}; known: {', '.join(weights)}")
            return self.subtype
        names = list(weights)
        p = np.array([weights[n] for n in names], dtype=np.float64)
        return names[int(self.rng.choice(len(names), p=p / p.sum()))]


def _finish(cls_name: str, parts: list[Mesh], params: dict, d: Draw | None = None) -> Shape:
    """Centre the mesh on its bounding box and measure its extents."""
    mesh = Mesh.concat(parts)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    mesh.vertices = mesh.vertices - 0.5 * (lo + hi)
    if d is not None:
        params = {**params, "ood": d.ood, "params_outside": d.outside, "params_drawn": d.draws}
    return Shape(class_id(cls_name), mesh, hi - lo, params)


def _curve(t: np.ndarray, p: float) -> np.ndarray:
    """Smooth 0->1 ease with shape exponent p (p<1 rises fast, p>1 slow)."""
    return np.sin(0.5 * np.pi * np.clip(t, 0.0, 1.0)) ** p


# --- bottle: surfaces of revolution (y-symmetric) ------------------------------------------
# sub-type: (weight, height H, body radius R, neck radius / R, shoulder start / H,
#            neck start as a fraction of the rest, cap height); metres; sources in docs/DATA.md

BOTTLE_TYPES = {
    "water": (0.30, (0.16, 0.31), (0.027, 0.045), (0.30, 0.50), (0.50, 0.75), (0.30, 0.75),
              (0.012, 0.025)),
    "wine": (0.20, (0.24, 0.33), (0.033, 0.046), (0.30, 0.42), (0.55, 0.70), (0.12, 0.35),
             (0.020, 0.045)),
    "jug": (0.20, (0.17, 0.30), (0.055, 0.100), (0.18, 0.35), (0.55, 0.82), (0.30, 0.70),
            (0.015, 0.030)),
    "sport": (0.15, (0.17, 0.27), (0.032, 0.045), (0.60, 0.85), (0.75, 0.90), (0.40, 0.80),
              (0.025, 0.050)),
    "squat": (0.15, (0.10, 0.17), (0.028, 0.050), (0.35, 0.60), (0.50, 0.80), (0.30, 0.70),
              (0.010, 0.030)),
}


def make_bottle(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in BOTTLE_TYPES.items()})
    _, h_r, r_r, n_r, sh_r, nk_r, cap_r = BOTTLE_TYPES[kind]
    H, R = d(*h_r, (0.06, 0.5)), d(*r_r, (0.015, 0.13))
    rn = R * d(*n_r, (0.1, 0.95))
    y_sh = H * d(*sh_r, (0.3, 0.95))
    y_nk = y_sh + (H - y_sh) * d(*nk_r, (0.05, 0.95))
    cap_h = d(*cap_r, (0.004, 0.3 * H))
    waist = d(0.03, 0.12, (0.0, 0.25)) if d.chance(0.35) else 0.0  # grip waist
    p = d(0.6, 2.0, (0.3, 3.0))  # shoulder curvature
    foot = d(0.80, 0.95, (0.6, 1.0))  # base chamfer
    prof = [(0.0, 0.0), (foot * R, 0.0), (R, min(0.012, 0.3 * y_sh))]
    for t in np.linspace(0.1, 1.0, 8):
        prof.append((R * (1.0 - waist * np.sin(np.pi * t) ** 2), 0.012 + t * (y_sh - 0.012)))
    for t in np.linspace(0.1, 1.0, 10):
        prof.append((R + (rn - R) * _curve(t, p), y_sh + t * (y_nk - y_sh)))
    y_cap = max(H - cap_h, y_nk + 0.003)
    cap_w = rn * d(1.05, 1.25, (1.0, 1.5))
    prof += [(rn, y_cap), (cap_w, y_cap), (cap_w, H), (0.0, H)]
    return _finish("bottle", [lathe(np.array(prof), 40)],
                   dict(subtype=kind, height=H, radius=R, neck=rn), d)


# --- bowl ----------------------------------------------------------------------------------
# sub-type: (weight, rim radius R, height / R, foot radius / R, profile exponent)

BOWL_TYPES = {
    "rice": (0.25, (0.050, 0.075), (0.50, 0.75), (0.35, 0.55), (0.5, 1.1)),
    "cereal": (0.30, (0.065, 0.090), (0.35, 0.60), (0.35, 0.60), (0.5, 1.2)),
    "soup_plate": (0.15, (0.085, 0.120), (0.22, 0.38), (0.35, 0.55), (0.3, 0.8)),
    "mixing": (0.30, (0.090, 0.140), (0.40, 0.65), (0.40, 0.60), (0.6, 1.3)),
}


def make_bowl(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in BOWL_TYPES.items()})
    _, r_r, h_r, b_r, p_r = BOWL_TYPES[kind]
    R = d(*r_r, (0.03, 0.2))
    H = R * d(*h_r, (0.12, 1.0))
    rb = R * d(*b_r, (0.15, 0.85))
    t = d(0.0025, 0.009, (0.0015, 0.25 * H))  # wall
    tb = t * d(1.0, 2.0, (0.8, 3.0))
    p = d(*p_r, (0.2, 2.0))
    foot_h = d(0.004, 0.012, (0.0, 0.3 * H)) if d.chance(0.5) else 0.0  # foot ring
    lip = d(0.0, 0.004, (0.0, 0.008))  # rolled rim bead, outward
    s = np.linspace(0.0, 1.0, 14)
    outer = np.stack([rb + (R - rb) * _curve(s, p), foot_h + s * (H - foot_h)], -1)
    foot = [[0.0, foot_h], [0.9 * rb, foot_h], [0.9 * rb, 0.0], [rb, 0.0]] if foot_h else \
        [[0.0, 0.0]]
    rim = [[R + lip, H - 0.5 * lip], [R, H]] if lip > 0.0005 else np.zeros((0, 2))
    inner_y = np.linspace(H, foot_h + tb, 14)
    inner_r = np.interp(inner_y, outer[:, 1], outer[:, 0]) - t
    inner = np.stack([np.maximum(inner_r, 0.0), inner_y], -1)
    prof = np.concatenate([foot, outer, rim, inner, [[0.0, foot_h + tb]]])
    return _finish("bowl", [lathe(prof, 48)],
                   dict(subtype=kind, radius=R, height=H, wall=t), d)


# --- can -----------------------------------------------------------------------------------
# sub-type: (weight, radius, height)

CAN_TYPES = {
    "soda": (0.45, (0.026, 0.034), (0.090, 0.170)),
    "food_tin": (0.40, (0.033, 0.052), (0.055, 0.125)),
    "tall_tin": (0.15, (0.036, 0.052), (0.120, 0.180)),
}


def make_can(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in CAN_TYPES.items()})
    _, r_r, h_r = CAN_TYPES[kind]
    R, H = d(*r_r, (0.015, 0.08)), d(*h_r, (0.03, 0.25))
    if kind == "soda":  # drawn-and-ironed: tapered neck, recessed lid
        neck = R * d(0.80, 0.95, (0.7, 0.99))
        rim = d(0.006, 0.016, (0.002, 0.25 * H))
        prof = [(0.0, 0.0), (neck, 0.0), (R, rim), (R, H - rim), (neck, H - 0.002), (neck, H),
                (neck - 0.003, H), (neck - 0.003, H - 0.004), (0.0, H - 0.004)]
        return _finish("can", [lathe(np.array(prof), 40)],
                       dict(subtype=kind, radius=R, height=H), d)
    # tin: rolled seams at both ends, optional stiffening ribs
    seam = d(0.0008, 0.0025, (0.0, 0.004))
    ribs = int(d.rng.integers(0, 8))
    rib_a = d(0.0004, 0.0015, (0.0, 0.003))
    ys = np.linspace(0.006, H - 0.006, 40)
    r_body = R - rib_a * (ribs > 0) * np.sin(np.pi * ribs * (ys - ys[0]) / (ys[-1] - ys[0])) ** 2
    prof = np.concatenate([[[0.0, 0.002], [R - 0.002, 0.002], [R + seam, 0.0],
                            [R + seam, 0.006]], np.stack([r_body, ys], -1),
                           [[R + seam, H - 0.006], [R + seam, H], [R - 0.002, H - 0.002],
                            [0.0, H - 0.002]]])
    return _finish("can", [lathe(prof, 40)],
                   dict(subtype=kind, radius=R + seam, height=H, ribs=ribs), d)


# --- mug: body of revolution + C-shaped handle on +x ------------------------------------------
# sub-type: (weight, height H, top radius, bottom radius / top radius, bulge, lid height)

MUG_TYPES = {
    "classic": (0.26, (0.080, 0.115), (0.036, 0.048), (0.88, 1.02), None, None),
    "tapered": (0.14, (0.080, 0.125), (0.038, 0.052), (0.62, 0.85), None, None),
    "flared": (0.05, (0.075, 0.110), (0.032, 0.042), (1.10, 1.30), None, None),
    "barrel": (0.14, (0.080, 0.120), (0.034, 0.045), (0.85, 1.00), (0.06, 0.20), None),
    "travel": (0.18, (0.130, 0.200), (0.034, 0.046), (0.72, 0.92), None, (0.012, 0.030)),
    "espresso": (0.11, (0.052, 0.072), (0.027, 0.037), (0.78, 1.00), None, None),
    "large": (0.12, (0.090, 0.125), (0.048, 0.060), (0.85, 1.00), None, None),
}


def _mug_body(d: Draw, kind: str):
    """(body mesh, radius-at-height function, body height, total height, params)."""
    _, h_r, r_r, b_r, bulge_r, lid_r = MUG_TYPES[kind]
    H, R_top = d(*h_r, (0.035, 0.26)), d(*r_r, (0.02, 0.08))
    R_bot = R_top * d(*b_r, (0.5, 1.5))
    bulge = d(*bulge_r, (0.0, 0.35)) if bulge_r else 0.0
    lid_h = d(*lid_r, (0.005, 0.05)) if lid_r else 0.0
    Hb = H - lid_h  # body height below the lid
    t = d(0.0025, 0.010, (0.0015, 0.4 * min(R_top, R_bot)))  # wall: thin porcelain .. stoneware
    tb = d(0.006, 0.014, (0.003, 0.3 * Hb))

    def radius(y):
        s = np.clip(np.asarray(y) / Hb, 0.0, 1.0)
        return (R_bot + (R_top - R_bot) * s) * (1.0 + bulge * np.sin(np.pi * s) ** 1.5)

    ys = np.linspace(0.0, Hb, 12)
    outer = np.stack([radius(ys), ys], -1)
    if lid_h:  # closed lid, slightly wider, with a raised centre
        R_lid = R_top * d(1.0, 1.08, (0.95, 1.15))
        top = [[R_lid, Hb], [R_lid, Hb + 0.6 * lid_h], [0.8 * R_lid, H], [0.0, H]]
        prof = np.concatenate([[[0.0, 0.0]], outer, top])
    else:
        bead = d(0.0, 0.0025, (0.0, 0.004))  # rounded, thickened rim
        inner = np.stack([radius(ys[::-1]) - t, ys[::-1]], -1)
        inner[-1, 1] = tb
        rim = [[R_top + bead, Hb - bead], [R_top, Hb]] if bead > 0.0004 else np.zeros((0, 2))
        prof = np.concatenate([[[0.0, 0.0]], outer[:-1], rim, [outer[-1]], inner,
                               [[0.0, tb]]])
    params = dict(subtype=kind, height=H, radius=R_top, wall=t, lid=lid_h, bulge=bulge)
    return lathe(prof, 48), radius, Hb, H, params


def make_mug(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in MUG_TYPES.items()})
    body, radius, Hb, H, params = _mug_body(d, kind)
    # handle: C/D-shaped tube on the +x side, ends buried in the wall
    span = Hb * d(0.40, 0.80, (0.25, 0.92))
    yc = Hb * 0.5 + d(-0.1, 0.1, (-0.3, 0.3)) * (Hb - span)
    reach = d(0.016, 0.036, (0.008, 0.06))
    ry = d(0.004, 0.009, (0.0025, 0.014))
    rz = ry * d(0.7, 1.7, (0.5, 2.5))
    e = d(2.0, 5.0, (1.5, 8.0))  # superellipse exponent: round (2) .. squarish (5)
    ang = np.linspace(0.5 * np.pi, -0.5 * np.pi, 25)
    c, s = np.cos(ang), np.sin(ang)
    ys = yc + 0.5 * span * np.sign(s) * np.abs(s) ** (2 / e)
    xs = radius(ys) - 0.5 * params["wall"] + reach * np.abs(c) ** (2 / e)
    handle = tube(np.stack([xs, ys], -1), ry, rz)
    return _finish("mug", [body, handle],
                   {**params, "reach": reach, "span": span, "tube": ry}, d)


# --- camera: lens along +x, body width along z, grip on the +z (user's right) side ----------
# sub-type: (weight, body width w (z), height h (y), depth (x), lens radius, lens length)
# "drum" and "pedestal" bodies use w as the drum diameter / head width.

CAMERA_TYPES = {
    "dslr": (0.22, (0.120, 0.152), (0.085, 0.110), (0.048, 0.065), (0.030, 0.045),
             (0.040, 0.160)),
    "dslr_body": (0.06, (0.120, 0.150), (0.085, 0.110), (0.048, 0.065), (0.026, 0.032),
                  (0.004, 0.014)),
    "mirrorless": (0.17, (0.108, 0.135), (0.062, 0.088), (0.033, 0.050), (0.026, 0.038),
                   (0.022, 0.120)),
    "compact": (0.15, (0.090, 0.118), (0.052, 0.070), (0.020, 0.040), (0.012, 0.022),
                (0.004, 0.035)),
    "camcorder": (0.13, (0.050, 0.075), (0.055, 0.080), (0.095, 0.150), (0.016, 0.028),
                  (0.010, 0.040)),
    "instant": (0.15, (0.090, 0.125), (0.105, 0.150), (0.060, 0.100), (0.024, 0.040),
                (0.008, 0.030)),
    "drum": (0.06, (0.060, 0.110), (0.050, 0.100), (0.0, 0.0), (0.015, 0.030),
             (0.010, 0.040)),
    "pedestal": (0.06, (0.060, 0.100), (0.035, 0.060), (0.030, 0.050), (0.012, 0.025),
                 (0.005, 0.025)),
}


def _lens(d: Draw, r: float, length: float, x0: float, y: float, z: float) -> Mesh:
    """Lens barrel from the body's front face (x0) along +x: mount ring, zoom ring, front
    element recessed; sometimes a flared hood. Its total length along x is `length`."""
    ring = r * d(1.03, 1.18, (1.0, 1.3))
    zoom = r * d(1.0, 1.08, (1.0, 1.12))
    L = length
    hood = L * d(0.15, 0.3, (0.1, 0.4)) if d.chance(0.2) and L > 0.04 else 0.0
    Lb = L - hood
    prof = [(0.0, 0.0), (ring, 0.0), (ring, 0.12 * Lb), (r, 0.15 * Lb), (r, 0.5 * Lb),
            (zoom, 0.53 * Lb), (zoom, 0.8 * Lb), (r, 0.83 * Lb), (r, Lb)]
    if hood:
        prof += [(r * 1.3, L), (r * 1.2, L)]
    prof += [(0.75 * r, Lb), (0.7 * r, Lb - 0.002), (0.0, Lb - 0.002)]
    return cylinder_x(np.array(prof), x0, y, z, part=PART_LENS)


def _dslr_like(d: Draw, kind: str, w, h, dep, rl, ll) -> tuple[list[Mesh], float, float]:
    """Box body, forward grip on +z, optional prism hump and dials; returns (parts, lens y,
    lens z)."""
    parts = [aabox([-dep / 2, 0.0, -w / 2], [dep / 2, h, w / 2])]
    zl = d(-0.14, 0.06, (-0.25, 0.2)) * w
    yl = h * d(0.42, 0.55, (0.3, 0.65))
    grip = {"dslr": (0.018, 0.032), "dslr_body": (0.018, 0.032), "mirrorless": (0.008, 0.025),
            "compact": (0.0, 0.006)}[kind]
    gp = d(*grip, (0.0, 0.045))
    if gp > 0.001:
        gw = w * d(0.16, 0.26, (0.1, 0.32))
        parts.append(aabox([dep / 2, 0.0, w / 2 - gw], [dep / 2 + gp, h * d(0.85, 0.97),
                                                        w / 2]))
    if kind != "compact" and d.chance(0.8 if kind.startswith("dslr") else 0.45):
        hw, hh = w * d(0.28, 0.42, (0.2, 0.5)), h * d(0.15, 0.32, (0.1, 0.4))
        parts.append(aabox([-dep / 2, h, zl - hw / 2], [dep / 2 * d(0.3, 0.9), h + hh,
                                                        zl + hw / 2]))
    if d.chance(0.6):  # mode dial on the top plate, on the -z or +z shoulder
        rd = d(0.010, 0.016, (0.006, 0.02))
        zd = (1 if d.chance(0.6) else -1) * (w / 2 - rd - 0.006)
        dial = lathe(np.array([(0.0, 0.0), (rd, 0.0), (rd, d(0.006, 0.012)), (0.0, 0.012)]), 16)
        parts.append(shifted(dial, [-dep * 0.1, h, zd]))
    return parts, yl, zl


def _camcorder(d: Draw, w, h, dep) -> tuple[list[Mesh], float, float]:
    """Body longer along the lens axis than wide; flip-out screen on -z, viewfinder at the
    back, hand strap on +z."""
    parts = [aabox([-dep / 2, 0.0, -w / 2], [dep / 2, h, w / 2])]
    sl, sh = dep * d(0.40, 0.60, (0.3, 0.7)), h * d(0.55, 0.85, (0.4, 0.95))
    st = d(0.006, 0.012, (0.004, 0.016))
    x_s = dep / 2 - sl - dep * d(0.05, 0.2, (0.0, 0.3))
    if d.chance(0.5):  # screen folded flat against the side
        parts.append(aabox([x_s, 0.1 * h, -w / 2 - st], [x_s + sl, 0.1 * h + sh, -w / 2]))
    else:  # screen opened 60-100 degrees: hinged at its front edge
        a = np.deg2rad(d(60.0, 100.0, (30.0, 120.0)))
        parts.append(box([x_s + sl, 0.1 * h, -w / 2], np.array(
            [[-sl * np.cos(a), 0.0, -sl * np.sin(a)], [0.0, sh, 0.0], [0.0, 0.0, -st]])))
    if d.chance(0.7):  # strap: a band over the +z side
        sw = d(0.008, 0.015)
        parts.append(aabox([-dep * 0.35, 0.15 * h, w / 2], [dep * 0.3, 0.85 * h, w / 2 + sw]))
    if d.chance(0.6):  # viewfinder tube sticking out at the back top
        vr = d(0.007, 0.012)
        vl = d(0.015, 0.035)
        parts.append(cylinder_x(np.array([(0.0, 0.0), (vr, 0.0), (vr, vl), (0.0, vl)]),
                                -dep / 2 - vl + 0.005, h - vr, d(-0.2, 0.2) * w, segments=16))
    return parts, h * d(0.45, 0.6, (0.35, 0.7)), d(-0.1, 0.1, (-0.2, 0.2)) * w


def _instant(d: Draw, w, h, dep) -> tuple[list[Mesh], float, float]:
    """Taller than wide (most instant cameras), a front plate, a flash window at the top."""
    parts = [aabox([-dep / 2, 0.0, -w / 2], [dep / 2, h, w / 2])]
    if d.chance(0.6):  # raised front plate around the lens
        pt = d(0.004, 0.012)
        parts.append(aabox([dep / 2, 0.08 * h, -0.42 * w], [dep / 2 + pt, 0.75 * h, 0.42 * w]))
    fw, fh = w * d(0.25, 0.45), h * d(0.08, 0.15)
    zf = d(-0.25, 0.25) * w
    parts.append(aabox([dep / 2 - 0.01, h - fh - 0.005, zf - fw / 2],
                       [dep / 2 + 0.004, h - 0.005, zf + fw / 2]))
    if d.chance(0.5):  # viewfinder hump on top
        vw = w * d(0.15, 0.3)
        parts.append(aabox([-dep / 2, h, -w / 2 + 0.01], [dep * 0.2, h + d(0.008, 0.02),
                                                         -w / 2 + 0.01 + vw]))
    return parts, h * d(0.35, 0.55, (0.25, 0.65)), d(-0.15, 0.15, (-0.3, 0.3)) * w


def _drum(d: Draw, w, h) -> tuple[list[Mesh], float, float, float]:
    """Upright cylinder body (diameter w): nothing but the lens tells front from back.
    Returns (parts, lens y, lens z, x of the front surface at the lens)."""
    r = w / 2
    body = lathe(np.array([(0.0, 0.0), (r, 0.0), (r, h), (0.0, h)]), 40)
    parts = [body]
    if d.chance(0.6):  # shutter button / top cap
        rb = d(0.006, 0.012)
        parts.append(shifted(lathe(np.array([(0.0, 0.0), (rb, 0.0), (rb, 0.006), (0.0, 0.006)]),
                                   16), [d(-0.5, 0.5) * r, h, d(-0.5, 0.5) * r]))
    return parts, h * d(0.4, 0.6, (0.3, 0.7)), 0.0, 0.92 * r


def _pedestal(d: Draw, w, h, dep) -> tuple[list[Mesh], float]:
    """A head (box or lying cylinder) on a stem and a round foot (webcams, security and
    retro cameras). Returns (parts, head base height)."""
    foot_r, foot_h = d(0.025, 0.045, (0.015, 0.06)), d(0.006, 0.015, (0.003, 0.02))
    stem_r, stem_h = d(0.006, 0.012), d(0.015, 0.055, (0.005, 0.08))
    parts = [lathe(np.array([(0.0, 0.0), (foot_r, 0.0), (foot_r, foot_h), (0.0, foot_h)]), 32),
             shifted(lathe(np.array([(0.0, 0.0), (stem_r, 0.0), (stem_r, stem_h),
                                     (0.0, stem_h)]), 16), [0.0, foot_h, 0.0])]
    y0 = foot_h + stem_h
    if d.chance(0.5):
        parts.append(aabox([-dep / 2, y0, -w / 2], [dep / 2, y0 + h, w / 2]))
    else:
        parts.append(cylinder_z(h / 2, w, 0.0, y0 + h / 2))
    return parts, y0


def make_camera(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in CAMERA_TYPES.items()})
    _, w_r, h_r, d_r, r_r, l_r = CAMERA_TYPES[kind]
    w, h = d(*w_r, (0.03, 0.22)), d(*h_r, (0.025, 0.2))
    dep = d(*d_r, (0.012, 0.22)) if kind != "drum" else w
    rl, ll = d(*r_r, (0.008, 0.06)), d(*l_r, (0.002, 0.22))
    if kind == "camcorder":
        parts, yl, zl = _camcorder(d, w, h, dep)
        rl = min(rl, 0.48 * min(w, h))
    elif kind == "instant":
        parts, yl, zl = _instant(d, w, h, dep)
    elif kind == "drum":
        parts, yl, zl, x_front = _drum(d, w, h)
        rl = min(rl, 0.45 * h, 0.6 * w / 2)
    elif kind == "pedestal":
        parts, y0 = _pedestal(d, w, h, dep)
        rl = min(rl, 0.45 * h)
        yl, zl = y0 + h / 2, d(-0.15, 0.15) * w
        dep = dep if len(parts[-1].vertices) == 8 else h
    else:
        parts, yl, zl = _dslr_like(d, kind, w, h, dep, rl, ll)
        if kind == "compact":
            rl = min(rl, 0.45 * h)
            zl = d(-0.25, 0.25, (-0.35, 0.35)) * w
    x0 = x_front if kind == "drum" else dep / 2
    parts.append(_lens(d, rl, ll, x0, yl, zl))
    return _finish("camera", parts, dict(subtype=kind, width=w, height=h, depth=dep,
                                         lens_r=rl, lens_len=ll), d)


# --- laptop: base in the xz plane, lid hinged along z at the -x edge -------------------------
# sub-type: (weight, width W (z), base thickness, lid thickness)

LAPTOP_TYPES = {
    "ultrabook": (0.35, (0.290, 0.360), (0.009, 0.015), (0.004, 0.007)),
    "standard": (0.35, (0.320, 0.385), (0.015, 0.024), (0.005, 0.009)),
    "gaming": (0.15, (0.355, 0.400), (0.022, 0.032), (0.007, 0.012)),
    "small": (0.15, (0.250, 0.295), (0.015, 0.024), (0.005, 0.010)),
}


def make_laptop(d: Draw) -> Shape:
    kind = d.pick({k: v[0] for k, v in LAPTOP_TYPES.items()})
    _, w_r, tb_r, tl_r = LAPTOP_TYPES[kind]
    W = d(*w_r, (0.18, 0.48))  # width along z
    D = W * d(0.62, 0.75, (0.55, 0.85))  # base depth along x
    tb, tl = d(*tb_r, (0.005, 0.045)), d(*tl_r, (0.002, 0.016))
    L = D * d(0.92, 1.0, (0.85, 1.05))
    theta = np.deg2rad(d(65.0, 135.0, (20.0, 175.0)))  # lid opening angle from the base plane
    base = aabox([-D / 2, 0.0, -W / 2], [D / 2, tb, W / 2])
    u = np.array([np.cos(theta), np.sin(theta), 0.0])  # along the lid, from the hinge
    n = np.array([-np.sin(theta), np.cos(theta), 0.0])  # toward the lid's back
    hinge = np.array([-D / 2, tb, -W / 2])
    lid = box(hinge, np.stack([L * u, tl * n, [0.0, 0.0, W]]))
    # screen panel a hair in front of the lid's inner face, for colour only
    m = d(0.006, 0.016, (0.003, 0.022))  # bezel
    screen = box(hinge + m * u - 0.0005 * n + [0, 0, m],
                 np.stack([(L - 2 * m) * u, 0.0004 * n, [0.0, 0.0, W - 2 * m]]), PART_SCREEN)
    parts = [base, lid, screen]
    if d.chance(0.4):  # barrel hinge along the back edge
        parts.append(cylinder_z(0.5 * tb, 0.7 * W, -D / 2 + 0.5 * tb, tb, segments=16))
    return _finish("laptop", parts, dict(subtype=kind, width=W, depth=D,
                                         lid_angle_deg=float(np.rad2deg(theta))), d)


MAKERS = {
    1: make_bottle,
    2: make_bowl,
    3: make_camera,
    4: make_can,
    5: make_laptop,
    6: make_mug,
}
SUBTYPES = {1: BOTTLE_TYPES, 2: BOWL_TYPES, 3: CAMERA_TYPES, 4: CAN_TYPES, 5: LAPTOP_TYPES,
            6: MUG_TYPES}


def make_shape(cls_id: int, rng: np.random.Generator, ood: bool = False,
               subtype: str = "") -> Shape:
    """A new random shape of NOCS class `cls_id` (1..6) in its canonical frame; `ood` draws
    its parameters from the widened out-of-distribution ranges (see Draw); `subtype` forces
    one of the class's sub-types (SUBTYPES)."""
    return MAKERS[int(cls_id)](Draw(rng, ood, subtype))
