"""Masked depth -> fixed-size object point sets. One code path for the node, the training
cache and the evaluator, so what is trained on is what runs.

All objects of a frame are extracted together: one pass over the instance-id image finds the
pixels of every object (`ObjectPixels`), and everything after it (depth lookup, back-projection,
outlier trimming) works on those pixels only, for all objects at once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from posediff_ros.geometry import (
    OutlierThresholds,
    depth_to_metres,
    inverse_intrinsics,
    probe_offsets,
)


@dataclass
class ObjectPixels:
    """The pixels of the objects of one frame, grouped by instance id (ascending), raster
    order within an object, with their depth."""

    index: np.ndarray  # flat pixel indices
    z: np.ndarray  # float32 depth in metres at each
    valid: np.ndarray  # positions in `index` of the pixels with valid depth, grouped the same
    ids: np.ndarray  # the distinct ids found, ascending (also those without valid depth)
    num_mask: np.ndarray  # pixels of each id
    num_valid: np.ndarray  # pixels of each id with valid depth
    width: int  # image width (flat index -> column, row)
    depth_range: tuple[float, float]

    @classmethod
    def of(cls, mask: np.ndarray, depth: np.ndarray, depth_range: tuple[float, float],
           background: int | None = None, ids: list[int] | np.ndarray | None = None,
           depth_scale: float | None = None) -> ObjectPixels:
        """One pass over `mask` (H, W ints) for the pixels whose value is not `background`
        (or, without a background, is one of `ids`); depth (uint16 millimetres or float
        metres, see geometry.depth_to_metres) is read at those pixels only. Valid depth:
        inside `depth_range` (metres); zero, NaN and inf are invalid."""
        flat = np.asarray(mask).ravel()
        positions = _positions(flat.size)
        if background is not None:
            index = positions[flat != background]
        else:
            index = positions[np.isin(flat, np.asarray(ids, dtype=np.int64))]
        index, found, starts = _grouped(index, flat[index])
        z = depth_to_metres(depth.ravel()[index], depth_scale)
        lo, hi = depth_range
        ok = (z >= lo) & (z <= hi)  # NaN compares false
        if not lo > 0:
            ok &= z > 0
        num_valid = (np.add.reduceat(ok, starts, dtype=np.int64) if len(starts)
                     else np.zeros(0, dtype=np.int64))
        return cls(index, z, positions[:len(ok)][ok], found, np.diff(starts, append=len(index)),
                   num_valid, int(np.shape(mask)[1]), (lo, hi))

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per id: (first position in `valid`, valid pixels, mask pixels); zeros for an id
        that is not in the mask."""
        if not len(self.ids):
            zeros = np.zeros(len(ids), dtype=np.int64)
            return zeros, zeros.copy(), zeros.copy()
        first = np.cumsum(self.num_valid) - self.num_valid
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        found = self.ids[at] == ids
        return tuple(np.where(found, per_id[at], 0) for per_id in (first, self.num_valid,
                                                                    self.num_mask))

    def centroids(self, ids: list[int] | np.ndarray, K: np.ndarray) -> np.ndarray:
        """(len(ids), 3) mean of ALL the valid pixels of each id back-projected (not of a
        sample; NaN for an id without any): K^-1 applied to the per-id means of
        (u z, v z, z), summed over the grouped pixels in one pass."""
        ids = np.asarray(ids, dtype=np.int64)
        z = self.z[self.valid].astype(np.float64)
        flat = self.index[self.valid].astype(np.float64)
        v = np.floor((flat + 0.5) * (1.0 / self.width))  # the row (0.5: never at an integer)
        starts = np.cumsum(self.num_valid) - self.num_valid
        found = self.num_valid > 0
        sums = np.zeros((len(self.ids), 3))
        if found.any():  # per-id sums of (u z, v z, z) over the grouped pixels; u = flat - v w
            at = starts[found]
            vz, zs = np.add.reduceat(v * z, at), np.add.reduceat(z, at)
            sums[found] = np.stack([np.add.reduceat(flat * z, at) - self.width * vz, vz, zs], 1)
        out = np.full((len(ids), 3), np.nan)
        if len(self.ids):
            at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
            ok = (self.ids[at] == ids) & (self.num_valid[at] > 0)
            means = sums[at[ok]] / self.num_valid[at[ok], None]
            out[ok] = means @ inverse_intrinsics(K).T
        return out


_POSITIONS = np.zeros(0, dtype=np.int64)


def _positions(n: int) -> np.ndarray:
    """0 .. n-1 (int64), kept for the next frame: selecting from it with a bool mask is what
    np.flatnonzero does, a quarter faster (numpy 2.x, 640x480)."""
    global _POSITIONS
    if len(_POSITIONS) < n:
        _POSITIONS = np.arange(n, dtype=np.int64)
        _POSITIONS.setflags(write=False)
    return _POSITIONS[:n]


# Up to this many distinct ids in the id range found, a frame's pixels are grouped by one
# selection per id (a comparison over the object pixels each, ~0.02 ms per 60k pixels) instead
# of a stable sort of all of them (~0.4 ms); both keep raster order within an object.
SELECT_MAX_IDS = 32


def _grouped(index: np.ndarray, labels: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (flat indices, with their ids `labels`) grouped by id, ascending, raster order
    within an id; the distinct ids (int64) and where each id's group starts."""
    if len(labels) == 0:
        return index, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(labels.min()), int(labels.max())
    if lo == hi:  # one object: already grouped
        return index, np.array([lo], dtype=np.int64), np.zeros(1, dtype=np.int64)
    if hi - lo < SELECT_MAX_IDS:
        groups = [index[labels == i] for i in range(lo, hi + 1)]
        sizes = np.array([len(g) for g in groups])
        present = np.flatnonzero(sizes)
        return (np.concatenate([groups[i] for i in present]), present + lo,
                np.concatenate(([0], np.cumsum(sizes[present])[:-1])))
    order = np.argsort(labels, kind="stable")  # radix sort for 8/16-bit ids
    index, labels = index[order], labels[order]
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    return index, labels[starts].astype(np.int64), starts


@dataclass
class FrameObjects:
    """Stacked points of the objects of one frame that had enough points."""

    points: np.ndarray  # (B, n_points, 3) float32
    ids: np.ndarray  # (B,) instance ids kept, in the order asked for
    dropped: dict[int, str] = field(default_factory=dict)  # instance id -> reason
    num_valid: np.ndarray | None = None  # per id asked: pixels with depth inside depth_range
    # per id asked: kept by the outlier rule of the pixels examined (every valid pixel unless
    # a random subset of them held enough, extract_objects)
    num_kept: np.ndarray | None = None


def _backproject_planar(pixels: ObjectPixels, at: np.ndarray, K_inv: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (each shaped as `at`) of p = z K^-1 [u, v, 1] for the grouped pixels at
    positions `at` (u = column, v = row), elementwise (no BLAS call, so no math-library
    threads wake up)."""
    v, u = np.divmod(pixels.index[at], pixels.width)
    z = pixels.z[at].astype(np.float64)
    if K_inv[0, 1] == 0 and K_inv[1, 0] == 0 and (K_inv[2] == (0, 0, 1)).all():
        # no skew (as camera_info K usually is): the zero terms dropped, same numbers bit for bit
        return (K_inv[0, 0] * u + K_inv[0, 2]) * z, (K_inv[1, 1] * v + K_inv[1, 2]) * z, z
    u, v = u.astype(np.float64), v.astype(np.float64)
    return tuple((K_inv[r, 0] * u + K_inv[r, 1] * v + K_inv[r, 2]) * z for r in range(3))


def _backproject(pixels: ObjectPixels, at: np.ndarray, K_inv: np.ndarray) -> np.ndarray:
    """(N, 3) points of the grouped pixels at positions `at` (see `_backproject_planar`)."""
    return np.stack(_backproject_planar(pixels, at, K_inv), axis=1)


# Pixels examined per object: its points over the share of its probe pixels that the outlier
# rule keeps, times this margin, plus a few. The subset then holds ~1.3x the kept pixels
# needed, many standard deviations above n; it falls short only where the probe's share is
# off by a quarter, and then every pixel of that object is examined.
CANDIDATE_MARGIN = 1.3
CANDIDATE_EXTRA = 64


@dataclass
class _Draws:
    """One object's random draws, made before any of its pixels is looked at (so a frame's
    objects draw in the order asked, whatever their pixels turn out to be)."""

    order: np.ndarray  # positions among its valid pixels, uniformly random order
    fill: np.ndarray  # n uniform [0, 1) numbers: draws with replacement if too few are kept
    seed: int  # for a full random order of every pixel, if `order` is a subset that fell short


def extract_objects(
    pixels: ObjectPixels,
    K: np.ndarray,
    ids: list[int] | np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    min_points: int = 32,
    trim: bool = True,
) -> FrameObjects:
    """Points of the listed objects (an id may repeat): back-project their valid pixels
    (integer pixel coordinates, p = z K^-1 [u, v, 1], as REAL275), trim outliers
    (geometry.trim_outliers), draw `n_points` of the kept ones (without replacement; all of
    them plus draws with replacement when fewer are kept, as geometry.sample_points).
    Objects with fewer than `min_points` points at any stage are dropped with a reason.

    The outlier thresholds come from <= 1024 pixels spread evenly over each object (rows of
    the image; 256 cost 0.6-1.0 points of the 5 degree metrics, docs/BENCHMARKS.md). The n
    points are then drawn without looking at every pixel: the object's valid pixels are taken
    in a uniformly random order, the first n of them that the rule keeps are the sample (a
    uniformly random n-subset of all kept pixels, as drawing n after trimming every pixel),
    and only as many pixels are examined as the kept share of the probe says is enough (all
    of them if that falls short). So the cost per object does not grow with its size."""
    ids = np.asarray(ids, dtype=np.int64)
    first, num_valid, num_mask = pixels.lookup(ids)
    K_inv = inverse_intrinsics(K)
    enough = max(n_points, min_points)
    if trim and num_valid.any():
        rule, share = _thresholds(pixels, K_inv, first, num_valid)
    else:
        rule, share = None, np.ones(len(ids))
    want = (CANDIDATE_MARGIN * enough / np.maximum(share, 1e-3)).astype(np.int64) + (
        CANDIDATE_EXTRA)
    draws = [_Draws(rng.choice(nv, size=w, replace=False) if w < nv else rng.permutation(nv),
                    rng.random(n_points), int(rng.integers(2**63)))
             for nv, w in zip(num_valid.tolist(), want.tolist(), strict=True)]
    xyz, kept = _examine(pixels, K_inv, rule, first, [d.order for d in draws])
    points = np.empty((len(ids), n_points, 3), dtype=np.float32)  # rows of the kept ones
    kept_ids, dropped = [], {}
    num_kept = np.array([len(k) for k in kept], dtype=np.int64)
    for b, inst in enumerate(ids.tolist()):
        if num_kept[b] < enough and len(draws[b].order) < num_valid[b]:  # subset fell short
            order = np.random.default_rng(draws[b].seed).permutation(num_valid[b])
            (xyz_b,), (kept_b,) = _examine(pixels, K_inv, rule, first[b:b + 1], [order])
            xyz[b], kept[b], num_kept[b] = xyz_b, kept_b, len(kept_b)
        why = _too_few(int(num_mask[b]), int(num_valid[b]), int(num_kept[b]),
                       pixels.depth_range, min_points)
        if why:
            dropped[inst] = why
            continue
        take = kept[b][:n_points]  # in random order: the first n are a uniform subset
        if len(take) < n_points:  # all of them, then the rest drawn with replacement
            take = np.concatenate((take, kept[b][(draws[b].fill[:n_points - len(take)]
                                                  * len(take)).astype(np.int64)]))
        points[len(kept_ids)] = xyz[b][take]
        kept_ids.append(inst)
    return FrameObjects(points[:len(kept_ids)], np.asarray(kept_ids, dtype=np.int64), dropped,
                        num_valid, num_kept)


def _examine(pixels: ObjectPixels, K_inv: np.ndarray, rule: OutlierThresholds | None,
             first: np.ndarray, orders: list[np.ndarray]
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Back-project the valid pixels orders[b] of each object b (positions among its own,
    starting at first[b] in `pixels.valid`), all objects in one go; per object its points
    and the indices of those the rule keeps, in the order given."""
    counts = [len(o) for o in orders]
    at = np.concatenate([f + o for f, o in zip(first.tolist(), orders, strict=True)]
                        ) if orders else np.zeros(0, dtype=np.int64)
    xyz = _backproject(pixels, pixels.valid[at], K_inv)
    keep = (rule.keep(xyz, counts) if rule is not None and len(xyz)
            else np.ones(len(xyz), dtype=bool))
    ends = list(itertools.accumulate(counts))
    starts = [0, *ends][:len(ends)]
    kept_at = np.flatnonzero(keep)
    cuts = np.searchsorted(kept_at, [0, *ends]).tolist()  # slices: np.split costs a few us
    return ([xyz[s:e] for s, e in zip(starts, ends, strict=True)],
            [kept_at[c0:c1] - s for c0, c1, s in zip(cuts[:-1], cuts[1:], starts,
                                                      strict=True)])


def _thresholds(pixels: ObjectPixels, K_inv: np.ndarray, first: np.ndarray,
                num_valid: np.ndarray) -> tuple[OutlierThresholds, np.ndarray]:
    """The outlier rule of each object from its probe pixels, and the share of them it keeps
    (objects may repeat or lack valid pixels; `first`, `num_valid` as `ObjectPixels.lookup`)."""
    offsets, k = probe_offsets(num_valid)
    # (padding, and an object without valid pixels, may point past the end: clamped, unused)
    at = pixels.valid[np.minimum(first[:, None] + offsets, len(pixels.valid) - 1)]
    return OutlierThresholds.of_planar(*_backproject_planar(pixels, at, K_inv), k)


def _too_few(n_mask: int, num_valid: int, num_kept: int, depth_range: tuple[float, float],
             min_points: int) -> str:
    """Why an object has too few points ('' when it has enough)."""
    if n_mask == 0:
        return "mask empty"
    if num_valid < min_points:
        lo, hi = depth_range
        return (f"only {num_valid} valid depth pixels of {n_mask} in the mask "
                f"(depth range {lo:g}-{hi:g} m, min {min_points})")
    if num_kept < min_points:
        return (f"only {num_kept} points left after outlier trimming of {num_valid} "
                f"(min {min_points})")
    return ""


@dataclass
class ObjectPoints:
    """Points of one object, or the reason there are none (`points` is None then)."""

    points: np.ndarray | None  # (n_points, 3) float32, camera frame, metres
    reason: str = ""  # why `points` is None, for logs
    num_valid: int = 0  # back-projected points inside depth_range, before trimming
    num_kept: int = 0  # kept by outlier trimming, of the pixels examined (extract_objects)

    def __bool__(self) -> bool:
        return self.points is not None


def object_points(
    depth: np.ndarray,
    instance_mask: np.ndarray,
    K: np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    depth_range: tuple[float, float] = (0.1, 3.0),
    min_points: int = 32,
    trim: bool = True,
    depth_scale: float | None = None,
) -> ObjectPoints:
    """Points of one object given as a bool mask (H, W): see `ObjectPixels.of` and
    `extract_objects` for the rules."""
    mask = np.asarray(instance_mask, dtype=bool).view(np.uint8)
    pixels = ObjectPixels.of(mask, depth, depth_range, background=0, depth_scale=depth_scale)
    found = extract_objects(pixels, K, [1], n_points, rng, min_points, trim)
    counts = {"num_valid": int(found.num_valid[0]), "num_kept": int(found.num_kept[0])}
    if len(found.ids):
        return ObjectPoints(found.points[0], **counts)
    return ObjectPoints(None, found.dropped[1], **counts)


def frame_objects(
    depth: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    instance_ids: list[int] | np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    depth_range: tuple[float, float] = (0.1, 3.0),
    min_points: int = 32,
    trim: bool = True,
    depth_scale: float | None = None,
    background: int | None = None,
) -> FrameObjects:
    """Points of every listed instance (an id may repeat) in an instance-id image `mask`
    (H, W ints, one id per pixel); `background`, when given, saves the id lookup."""
    pixels = ObjectPixels.of(mask, depth, depth_range, background, instance_ids, depth_scale)
    return extract_objects(pixels, K, instance_ids, n_points, rng, min_points, trim)
