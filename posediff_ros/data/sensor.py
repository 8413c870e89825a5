"""A structured-light / active-stereo depth sensor (Kinect v1, RealSense D400 class), applied to
exact rendered depth. What real depth does to small objects, in the order it happens:

1. Window matching (block matching / speckle correlation over a k x k window): a pixel whose
   own surface fills little of its window (object edges, rims, handles narrower than ~3 px)
   returns the depth of the surface that dominates the window (edge fattening, thin parts
   swallowed by the background), a mix of the two (flying pixels between object and
   background), or nothing.
2. Occlusion shadow: pixels the second view (projector or right imager, `baseline side`) cannot
   see next to a nearer surface return nothing; the band is the disparity jump wide.
3. Axial noise sigma(z) = sigma0 + sigma1 * z^2 (Khoshelham & Elberink 2012; Nguyen et al.
   2012), growing at grazing incidence (Nguyen et al.), spatially correlated (the matching
   windows of neighbours overlap): a Gaussian-filtered field plus a white part.
4. Disparity quantisation: d = f*b / z is returned in steps of `disparity_step` px, so depth
   steps grow as z^2 (step_1m * z^2; Kinect v1: 1/8 px, ~2.9 mm at 1 m).
5. Holes: no return on dark (IR-absorbing) and shiny (specular) objects in blobs, at grazing
   incidence, in random blobs anywhere, and isolated dropouts.

Parameters and their sources: docs/DATA.md ("Depth-sensor model"). One `SensorSettings` is
drawn per frame from `SensorRanges` (training) or their widened out-of-distribution version.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

OOD_WIDEN = 0.5  # out-of-distribution sensor ranges reach this much of a width beyond each end


@dataclass(frozen=True)
class SensorRanges:
    """Ranges (lo, hi) each frame's sensor settings are drawn from (training)."""

    sigma0_mm: tuple[float, float] = (0.4, 1.2)  # axial noise floor
    sigma1_mm: tuple[float, float] = (0.8, 3.0)  # axial noise at 1 m above the floor (x z^2)
    corr_px: tuple[float, float] = (0.8, 3.0)  # correlation length (Gaussian sigma) of noise
    white_frac: tuple[float, float] = (0.1, 0.5)  # uncorrelated share of the noise variance
    step_1m_mm: tuple[float, float] = (1.0, 4.0)  # depth step at 1 m (disparity step)
    fb_px_m: tuple[float, float] = (25.0, 50.0)  # focal length x baseline: disparity at 1 m
    window_px: tuple[float, float] = (5.0, 9.0)  # matching window side (rounded to odd)
    support_lo: tuple[float, float] = (0.25, 0.40)  # own-surface share: always mixed below
    support_hi: tuple[float, float] = (0.55, 0.70)  # ... never mixed above
    p_flying: tuple[float, float] = (0.2, 0.6)  # a mixed pixel returns a blend of the surfaces
    p_mixed_lost: tuple[float, float] = (0.05, 0.3)  # a mixed pixel returns nothing
    shadow: tuple[float, float] = (0.0, 1.0)  # share of frames with an occlusion shadow
    p_dark: tuple[float, float] = (0.1, 0.3)  # per object: IR-dark (blobs of holes)
    dark_holes: tuple[float, float] = (0.05, 0.5)  # ... share of its pixels lost
    p_shiny: tuple[float, float] = (0.1, 0.3)  # per object: specular (holes where it faces
    specular_cos: tuple[float, float] = (0.93, 0.99)  # the sensor: |cos incidence| above this)
    grazing_cos: tuple[float, float] = (0.08, 0.25)  # |cos incidence| below: no return
    hole_fraction: tuple[float, float] = (0.0, 0.02)  # random blobs anywhere
    dropout: tuple[float, float] = (0.0, 0.004)  # isolated missing pixels

    def widened(self, widen: float = OOD_WIDEN) -> SensorRanges:
        """The out-of-distribution ranges: each end moved out by `widen` x the width (shares
        and probabilities clipped to [0, 1], lengths kept positive)."""
        out = {}
        for f in fields(self):
            lo, hi = getattr(self, f.name)
            w = widen * (hi - lo)
            lo, hi = lo - w, hi + w
            if f.name in _UNIT_INTERVAL:
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            out[f.name] = (max(lo, _FLOOR.get(f.name, 0.0)), hi)
        return SensorRanges(**out)


_UNIT_INTERVAL = {"white_frac", "support_lo", "support_hi", "p_flying", "p_mixed_lost",
                  "shadow", "p_dark", "dark_holes", "p_shiny", "specular_cos", "grazing_cos",
                  "hole_fraction", "dropout"}
_FLOOR = {"sigma0_mm": 0.1, "sigma1_mm": 0.2, "corr_px": 0.3, "step_1m_mm": 0.3,
          "fb_px_m": 10.0, "window_px": 3.0, "support_lo": 0.1}


@dataclass(frozen=True)
class SensorSettings:
    """One frame's sensor (drawn from SensorRanges; lengths in metres unless named)."""

    sigma0: float = 0.0008
    sigma1: float = 0.0018
    corr_px: float = 1.5
    white_frac: float = 0.3
    step_1m: float = 0.0029  # Kinect v1: 1/8 px disparity step, f*b = 43.5 px m
    fb_px_m: float = 43.5
    window_px: int = 7
    support_lo: float = 0.33
    support_hi: float = 0.62
    p_flying: float = 0.4
    p_mixed_lost: float = 0.15
    shadow_side: int = 1  # +1: 2nd view right of the reference (band left of near objects)
    shadow: bool = True
    p_dark: float = 0.2
    dark_holes: float = 0.2
    p_shiny: float = 0.2
    specular_cos: float = 0.96
    grazing_cos: float = 0.15
    hole_fraction: float = 0.005
    dropout: float = 0.002
    max_range: float = 3.0

    @property
    def disparity_step(self) -> float:
        """Disparity quantum (px): the depth step at z is disparity_step * z^2 / fb."""
        return self.step_1m * self.fb_px_m


def draw_settings(rng: np.random.Generator, ranges: SensorRanges | None = None,
                  ood: bool = False) -> SensorSettings:
    """One frame's sensor settings, uniform over the (training or widened) ranges."""
    r = ranges or SensorRanges()
    r = r.widened() if ood else r
    u = {f.name: float(rng.uniform(*getattr(r, f.name))) for f in fields(r)}
    window = int(round(u["window_px"])) | 1  # odd
    return SensorSettings(
        sigma0=u["sigma0_mm"] / 1000, sigma1=u["sigma1_mm"] / 1000, corr_px=u["corr_px"],
        white_frac=u["white_frac"], step_1m=u["step_1m_mm"] / 1000, fb_px_m=u["fb_px_m"],
        window_px=window, support_lo=min(u["support_lo"], u["support_hi"] - 0.05),
        support_hi=u["support_hi"], p_flying=u["p_flying"], p_mixed_lost=u["p_mixed_lost"],
        shadow_side=1 if rng.random() < 0.5 else -1, shadow=bool(rng.random() < u["shadow"]),
        p_dark=u["p_dark"], dark_holes=u["dark_holes"], p_shiny=u["p_shiny"],
        specular_cos=u["specular_cos"], grazing_cos=u["grazing_cos"],
        hole_fraction=u["hole_fraction"], dropout=u["dropout"])


# --- 1. window matching: edges, thin parts, flying pixels ------------------------------------


def _same_surface_tolerance(z: np.ndarray, dist_px: float, fx: float) -> np.ndarray:
    """Depth difference (m) up to which a neighbour `dist_px` away lies on the same surface:
    8 mm + 1 % of the range, plus the rise of a surface tilted up to ~72 deg (slope 3)."""
    return 0.008 + 0.01 * z + 3.0 * dist_px * z / fx


def window_mixing(z: np.ndarray, label: np.ndarray, s: SensorSettings,
                  rng: np.random.Generator, fx: float = 591.0) -> np.ndarray:
    """Depth after window matching; z: exact depth (inf = no return), label: surface id per
    pixel (object index, or negative ids for table, floor, nothing). Returns depth with NaN
    where the match fails. Neighbours are the same surface when they carry the same label and
    no depth jump separates them (a handle in front of its mug's body is a jump). Only
    pixels whose window holds another surface and an object are touched."""
    H, W = z.shape
    k = s.window_px
    r = k // 2
    zf = np.where(np.isfinite(z), z, 100.0)
    spread = ndimage.maximum_filter(zf, k) - ndimage.minimum_filter(zf, k)
    label_max = ndimage.maximum_filter(label, k)
    edge = label_max != ndimage.minimum_filter(label, k)
    edge |= spread > _same_surface_tolerance(np.minimum(zf, 10.0), r * np.sqrt(2), fx)
    edge &= label_max >= 0  # only where an object is in the window (what pose estimation sees)
    cand = np.flatnonzero(edge)
    out = z.astype(np.float64, copy=True)
    if len(cand) == 0:
        return out
    zpad = np.pad(zf, r, constant_values=100.0)
    lpad = np.pad(label, r, constant_values=np.iinfo(label.dtype).min)
    rows, cols = np.divmod(cand, W)
    zc, lc = zf.ravel()[cand], label.ravel()[cand]
    same = np.zeros(len(cand))
    other_sum = np.zeros(len(cand))
    other_n = np.zeros(len(cand))
    for dr in range(k):
        for dc in range(k):
            zn = zpad[rows + dr, cols + dc]
            tol = _same_surface_tolerance(np.minimum(zc, 10.0), np.hypot(dr - r, dc - r), fx)
            is_same = (lpad[rows + dr, cols + dc] == lc) & (np.abs(zn - zc) < tol)
            same += is_same
            other = ~is_same & (zn < 99.0)
            other_sum += np.where(other, zn, 0.0)
            other_n += other
    support = same / (k * k)
    p_mix = np.clip((s.support_hi - support) / (s.support_hi - s.support_lo), 0.0, 1.0)
    mixed = rng.random(len(cand)) < p_mix
    with np.errstate(invalid="ignore", divide="ignore"):
        other_mean = np.where(other_n > 0, other_sum / other_n, np.nan)
    u, a = rng.random(len(cand)), rng.random(len(cand))
    lost = u < s.p_mixed_lost
    flying = ~lost & (u < s.p_mixed_lost + s.p_flying) & (zc < 99.0)
    new = np.where(lost, np.nan, other_mean)  # swallowed by the dominant other surface
    new = np.where(flying, a * zc + (1 - a) * other_mean, new)  # a point in between
    flat = out.ravel()
    flat[cand] = np.where(mixed, new, flat[cand])
    return flat.reshape(H, W)


# --- 2. occlusion shadow ---------------------------------------------------------------------


def occlusion_shadow(z: np.ndarray, s: SensorSettings) -> np.ndarray:
    """Bool mask of pixels the second view cannot see. A point at column u with disparity d(u)
    appears at u - side * d(u) there; with side +1 a nearer point at v > u hides it when
    d(v) - d(u) >= v - u, i.e. when g(v) = d(v) - v reaches g(u) for some v > u: one reversed
    running maximum per row (side -1: h(v) = d(v) + v from the left)."""
    d = np.where(np.isfinite(z), s.fb_px_m / np.maximum(z, 1e-3), 0.0)
    cols = np.arange(d.shape[1], dtype=np.float64)
    if s.shadow_side > 0:
        g = d - cols
        after = np.maximum.accumulate(g[:, ::-1], axis=1)[:, ::-1]  # max over v >= u
        best = np.concatenate([after[:, 1:], np.full((d.shape[0], 1), -np.inf)], axis=1)
        return (best >= g + 0.25) & (d > 0)
    h = d + cols
    before = np.maximum.accumulate(h, axis=1)
    best = np.concatenate([np.full((d.shape[0], 1), -np.inf), before[:, :-1]], axis=1)
    return (best >= h + 0.25) & (d > 0)


# --- 3-4. correlated noise, disparity quantisation -------------------------------------------


def correlated_field(shape: tuple[int, int], s: SensorSettings,
                     rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise: a Gaussian-filtered white field (correlation length corr_px) plus a
    white share `white_frac` of the variance."""
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), s.corr_px, mode="wrap")
    smooth /= max(smooth.std(), 1e-12)
    return (np.sqrt(1.0 - s.white_frac) * smooth
            + np.sqrt(s.white_frac) * rng.standard_normal(shape))


def axial_sigma(z: np.ndarray, cos_incidence: np.ndarray, s: SensorSettings) -> np.ndarray:
    """sigma0 + sigma1 z^2, plus Nguyen et al.'s angle term 0.1 mm / sqrt(z) * th^2 / (pi/2 -
    th)^2 (tiny up to 60 deg, growing toward grazing)."""
    th = np.arccos(np.clip(cos_incidence, 0.05, 1.0))
    angle = 0.0001 / np.sqrt(np.maximum(z, 0.1)) * th**2 / (0.5 * np.pi - th) ** 2
    return s.sigma0 + s.sigma1 * z * z + np.minimum(angle, 0.02)


def quantise(z: np.ndarray, s: SensorSettings) -> np.ndarray:
    """Round the disparity f*b/z to multiples of the disparity step."""
    step = s.disparity_step
    d = np.round(s.fb_px_m / np.maximum(z, 1e-3) / step) * step
    return s.fb_px_m / np.maximum(d, step)


# --- 5. holes ------------------------------------------------------------------------------


def blob_field(shape: tuple[int, int], rng: np.random.Generator, cell: int = 12) -> np.ndarray:
    """A smooth random field in [0, 1] with blobs about `cell` px across."""
    H, W = shape
    coarse = rng.random((H // cell + 2, W // cell + 2))
    return ndimage.zoom(coarse, cell, order=1)[:H, :W]


def material_holes(object_index: np.ndarray, cos_incidence: np.ndarray, s: SensorSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """Pixels lost on IR-dark objects (blobs covering `dark_holes` of the object) and on shiny
    ones (where the surface faces the sensor, plus blobs)."""
    lost = np.zeros(object_index.shape, dtype=bool)
    n = int(object_index.max()) + 1 if object_index.size else 0
    field = None
    for i in range(n):
        dark, shiny = rng.random() < s.p_dark, rng.random() < s.p_shiny
        if not (dark or shiny):
            continue
        sel = object_index == i
        if not sel.any():
            continue
        field = blob_field(object_index.shape, rng) if field is None else field
        if dark:
            thr = np.quantile(field[sel], 1.0 - s.dark_holes)
            lost |= sel & (field > thr)
        if shiny:  # the highlight where it faces the sensor, and a smaller patch elsewhere
            lost |= sel & (cos_incidence > s.specular_cos)
            lost |= sel & (field < np.quantile(field[sel], 0.1))
    return lost


# --- the whole sensor --------------------------------------------------------------------


def simulate_depth(depth: np.ndarray, cos_incidence: np.ndarray, label: np.ndarray,
                   rng: np.random.Generator, s: SensorSettings | None = None,
                   fx: float = 591.0) -> np.ndarray:
    """Sensor depth (metres, float64, 0 = no return) from exact depth (inf = nothing hit).
    cos_incidence: |cos| between pixel ray and surface normal; label: per pixel the object
    (0..N-1), or a negative id for each other surface (table, floor, nothing); fx: focal
    length (px)."""
    s = s or SensorSettings()
    z = np.where(np.isfinite(depth) & (depth < s.max_range), depth, np.inf)
    mixed = window_mixing(z, label, s, rng, fx)
    lost = ~np.isfinite(mixed)
    zm = np.where(lost, 1.0, mixed)
    if s.shadow:
        lost |= occlusion_shadow(z, s)
    noisy = zm + correlated_field(z.shape, s, rng) * axial_sigma(zm, cos_incidence, s)
    out = quantise(np.maximum(noisy, 0.05), s)
    lo, hi = s.grazing_cos, 1.5 * s.grazing_cos + 0.05
    lost |= rng.random(z.shape) < np.clip((hi - cos_incidence) / (hi - lo), 0.0, 1.0)
    lost |= material_holes(np.maximum(label, -1), cos_incidence, s, rng)
    if s.hole_fraction > 0:
        field = blob_field(z.shape, rng, cell=16)
        lost |= field > np.quantile(field, 1.0 - s.hole_fraction)
    lost |= rng.random(z.shape) < s.dropout
    lost |= out >= s.max_range
    return np.where(lost, 0.0, out)
