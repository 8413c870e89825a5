"""Which object of this frame is which track: gated Hungarian assignment on a cost built from
class, 3D centre distance and box overlap, with a bonus when the segmenter's mask id is the
one the track had (a segmenter that tracks).

Observations are what is known before inference: the class and the object's points (their
centroid and axis-aligned bounds in the camera frame), so the assignment can choose the
sampler's start pose of each object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INFEASIBLE = 1e6


@dataclass
class AssociationConfig:
    gate_distance: float = 0.06  # m: centre distance always allowed between two frames
    max_speed: float = 1.0  # m/s: apparent speed allowed on top (camera or object motion)
    max_gate: float = 0.3  # m: the gate never grows beyond this (long-lost tracks)
    overlap_weight: float = 1.0  # cost of no box overlap, against 1 for a centre at the gate
    mask_id_bonus: float = 0.5  # cost taken off when the mask id is the track's last one


def point_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (lo, hi) of (P, 3) points."""
    return points.min(axis=0), points.max(axis=0)


def box_iou(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """IoU of two axis-aligned boxes (lo, hi)."""
    overlap = np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0.0, None)
    inter = float(np.prod(overlap))
    union = float(np.prod(a[1] - a[0]) + np.prod(b[1] - b[0])) - inter
    return inter / union if union > 0 else 0.0


def gate(config: AssociationConfig, dt: float) -> float:
    """Largest centre distance (m) allowed after `dt` seconds unseen."""
    return min(config.gate_distance + config.max_speed * max(dt, 0.0), config.max_gate)


def cost_matrix(tracks: list, observations: list, dts: np.ndarray,
                config: AssociationConfig) -> np.ndarray:
    """(tracks, observations) costs; INFEASIBLE across classes or beyond the gate.

    tracks: objects with class_id, centroid (predicted), box, mask_id; observations: objects
    with class_id, centroid, box, mask_id; dts: seconds since each track was last seen."""
    cost = np.full((len(tracks), len(observations)), INFEASIBLE)
    for i, track in enumerate(tracks):
        limit = gate(config, float(dts[i]))
        for j, obs in enumerate(observations):
            if obs.class_id != track.class_id:
                continue
            distance = float(np.linalg.norm(obs.centroid - track.centroid))
            if distance > limit:
                continue
            c = distance / limit + config.overlap_weight * (1.0 - box_iou(track.box, obs.box))
            if obs.mask_id == track.mask_id:
                c -= config.mask_id_bonus
            cost[i, j] = c
    return cost


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs (row, column), leaving out infeasible ones."""
    if cost.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
            if cost[r, c] < INFEASIBLE]
