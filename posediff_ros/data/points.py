"""Masked depth -> fixed-size object point sets. One code path for the node, the training
cache and the evaluator, so what is trained on is what runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posediff_ros.geometry import backproject, sample_points, trim_outliers


@dataclass
class ObjectPoints:
    """Points of one object, or the reason there are none (`points` is None then)."""

    points: np.ndarray | None  # (n_points, 3) float32, camera frame, metres
    reason: str = ""  # why `points` is None, for logs
    num_valid: int = 0  # back-projected points inside depth_range, before trimming
    num_kept: int = 0  # after outlier trimming (before resampling to n_points)

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
    """Back-project the pixels of one object's bool mask, keep depths inside `depth_range`
    (metres), trim outliers (see geometry.trim_outliers), resample to `n_points`.

    Returns ObjectPoints with points=None and a readable `reason` when fewer than
    `min_points` valid points remain at any stage.
    """
    mask = np.asarray(instance_mask, dtype=bool)
    n_mask = int(mask.sum())
    if n_mask == 0:
        return ObjectPoints(None, "mask empty")
    pts = backproject(depth, mask, K, depth_scale)
    lo, hi = depth_range
    pts = pts[(pts[:, 2] >= lo) & (pts[:, 2] <= hi)]
    num_valid = len(pts)
    if num_valid < min_points:
        return ObjectPoints(
            None,
            f"only {num_valid} valid depth pixels of {n_mask} in the mask "
            f"(depth range {lo:g}-{hi:g} m, min {min_points})",
            num_valid=num_valid,
        )
    if trim:
        pts = trim_outliers(pts)
        if len(pts) < min_points:
            return ObjectPoints(
                None,
                f"only {len(pts)} points left after outlier trimming of {num_valid} "
                f"(min {min_points})",
                num_valid=num_valid,
                num_kept=len(pts),
            )
    return ObjectPoints(
        sample_points(pts, n_points, rng).astype(np.float32, copy=False),
        num_valid=num_valid,
        num_kept=len(pts),
    )


@dataclass
class FrameObjects:
    """Stacked points of the objects of one frame that had enough points."""

    points: np.ndarray  # (B, n_points, 3) float32
    ids: np.ndarray  # (B,) instance ids kept, in the order asked for
    dropped: dict[int, str] = field(default_factory=dict)  # instance id -> reason


def frame_objects(
    depth: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    instance_ids: list[int] | np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    **kwargs,
) -> FrameObjects:
    """Points of every listed instance in an instance-id image `mask` (HxW ints, one id per
    pixel). Keyword arguments go to `object_points`."""
    mask = np.asarray(mask)
    kept_pts, kept_ids, dropped = [], [], {}
    for inst in instance_ids:
        res = object_points(depth, mask == inst, K, n_points, rng, **kwargs)
        if res:
            kept_pts.append(res.points)
            kept_ids.append(int(inst))
        else:
            dropped[int(inst)] = res.reason
    points = (
        np.stack(kept_pts) if kept_pts else np.zeros((0, n_points, 3), dtype=np.float32)
    )
    return FrameObjects(points, np.asarray(kept_ids, dtype=np.int64), dropped)
