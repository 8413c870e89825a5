"""Pose hypotheses: the sampled poses of one object -> its modes on SE(3), with weights.

With several samples per object (num_samples > 1) the diffusion head draws from the pose
distribution; for an ambiguous object (a mug whose handle is hidden, a camera seen from
behind) the samples fall into separate groups, and their plain average is a pose in
between that none of them supports. This module groups the samples into modes instead:

- distance between two samples: max(rotation angle / rotation_deg, translation distance /
  translation_m), so 1.0 means "as far apart as the separation allows" on either part;
  the rotation angle respects the class's symmetry: for bottle, bowl, can (and a mug whose
  handle is known to be hidden) only the up (+y) axis counts, rotation about it is no
  difference at all;
- average-linkage agglomerative clustering cut at distance 1: modes whose samples are on
  average further apart than the separation stay apart, a broad mode is not chopped into
  pieces by one pair of far-apart members;
- per mode: weight = its share of the samples (all modes' weights sum to 1), the mean pose
  (symmetric classes: each member first turned about its own up axis onto the medoid, so
  arbitrary turns about the symmetry axis do not blur the mean), and the covariance of the
  members about it in the layout of geometry_msgs/PoseWithCovariance.

numpy + scipy, ROS-free; the pipeline calls `object_hypotheses` per object, the messages
turn each hypothesis into one ObjectHypothesisWithPose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posediff_ros.categories import BY_ID, is_symmetric
from posediff_ros.geometry import (
    align_symmetric_rotation,
    matrix_to_rotation_vector,
    project_to_so3,
    rotation_error_deg,
)


@dataclass(frozen=True)
class ClusterConfig:
    """How far apart two samples must be to count as different poses."""

    rotation_deg: float = 20.0  # twice the loosest accuracy threshold (10 deg)
    translation_m: float = 0.05  # the loosest translation threshold (5 cm)

    def __post_init__(self):
        if not (self.rotation_deg > 0 and self.translation_m > 0):
            raise ValueError(f"cluster separations must be > 0, got {self}")


@dataclass
class Hypothesis:
    """One mode of an object's pose samples (camera-from-object, like the single pose)."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,) metres
    covariance: np.ndarray | None  # (6, 6) x, y, z, rot x, rot y, rot z; None: one member
    weight: float  # share of the samples in this mode, in (0, 1]
    count: int  # samples in this mode


def pairwise_distances(rotations: np.ndarray, translations: np.ndarray, symmetric: bool,
                       config: ClusterConfig) -> np.ndarray:
    """(N, N) distances in units of the separation (see the module docstring)."""
    r = np.asarray(rotations, np.float64)
    t = np.asarray(translations, np.float64)
    ang = rotation_error_deg(r[:, None], r[None, :], symmetric)
    dt = np.linalg.norm(t[:, None] - t[None, :], axis=-1)
    d = np.maximum(ang / config.rotation_deg, dt / config.translation_m)
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, d.T)  # exactly symmetric for scipy's condensed form


def cluster_labels(distances: np.ndarray) -> np.ndarray:
    """(N,) mode index per sample, 0..K-1 in order of first appearance."""
    n = len(distances)
    if n == 1:
        return np.zeros(1, np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    tree = linkage(squareform(distances, checks=False), method="average")
    raw = fcluster(tree, t=1.0, criterion="distance")
    _, first, labels = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # relabel by first member's sample index
    return order[labels]


def mode_pose(rotations: np.ndarray, translations: np.ndarray, distances: np.ndarray,
              symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean rotation, mean translation and covariance of the members of one mode."""
    medoid = int(np.argmin(distances.sum(axis=1)))
    r = np.asarray(rotations, np.float64)
    if symmetric:  # each member's equivalent rotation nearest the medoid
        r = align_symmetric_rotation(r, r[medoid])
    r_mean = project_to_so3(r.mean(axis=0))
    t_mean = np.asarray(translations, np.float64).mean(axis=0)
    if len(r) < 2:
        return r_mean, t_mean, None
    # rotation vectors of R_i R_mean^T: perturbations about the camera axes, as
    # PoseWithCovariance's (rot x, rot y, rot z) in the header frame
    dr = matrix_to_rotation_vector(r @ r_mean.T)
    v = np.concatenate([translations - t_mean, dr], axis=1)
    return r_mean, t_mean, v.T @ v / (len(v) - 1)


def cluster_poses(rotations: np.ndarray, translations: np.ndarray, symmetric: bool = False,
                  config: ClusterConfig | None = None) -> list[Hypothesis]:
    """(N, 3, 3), (N, 3) samples of one object -> all its modes, heaviest first (ties: the
    mode whose first sample comes first). Weights sum to 1."""
    config = config or ClusterConfig()
    rotations = np.asarray(rotations, np.float64)
    translations = np.asarray(translations, np.float64)
    n = len(rotations)
    if n == 0 or rotations.shape != (n, 3, 3) or translations.shape != (n, 3):
        raise ValueError(f"need (N>=1, 3, 3) and (N, 3) samples, got {rotations.shape}, "
                         f"{translations.shape}")
    d = pairwise_distances(rotations, translations, symmetric, config)
    labels = cluster_labels(d)
    modes = []
    for k in range(labels.max() + 1):
        idx = np.flatnonzero(labels == k)
        r, t, cov = mode_pose(rotations[idx], translations[idx], d[np.ix_(idx, idx)], symmetric)
        modes.append(Hypothesis(r, t, cov, len(idx) / n, len(idx)))
    return sorted(modes, key=lambda m: -m.count)  # stable: ties keep first-sample order


def object_hypotheses(rotations: np.ndarray, translations: np.ndarray, class_id: int,
                      max_hypotheses: int = 0, handle_visible: bool | None = None,
                      config: ClusterConfig | None = None) -> list[Hypothesis]:
    """The heaviest `max_hypotheses` modes (0 = all) of one object's samples. The symmetry
    comes from the class; a mug counts as symmetric only when its handle is known to be
    hidden (handle_visible False): unknown (None, as in the node) keeps its yaw modes apart,
    which is what a grasp planner needs to know about a hidden handle."""
    if class_id not in BY_ID:
        raise ValueError(f"class id {class_id} is not a NOCS class (1..6)")
    symmetric = is_symmetric(class_id, handle_visible is not False)
    modes = cluster_poses(rotations, translations, symmetric, config)
    return modes[:max_hypotheses] if max_hypotheses > 0 else modes
