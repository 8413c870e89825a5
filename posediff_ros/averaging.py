"""Test-time averaging: one object's pose from several point subsets and/or samples.

One prediction of a hard object can swing by tens of degrees between two random subsets of
its points (or two sampler noises). With averaging on, each object is predicted K times on K
point subsets (`subsets`), each with the sampler's num_samples samples, and the K x S
hypotheses are combined:

1. agreement: the hypotheses are grouped into modes on SE(3) exactly as hypotheses.py groups
   samples (average linkage, separation 20 deg / 5 cm, the class's symmetry; the mug's
   handle visibility is unknown, so a mug keeps its yaw);
2. outlier rejection: the mode with the most members is kept (ties: the higher mean
   agreement score, i.e. how well each subset's diffusion pose and regression pose agree,
   runtime/postprocess.agreement_score); the other hypotheses are dropped;
3. average of the kept ones: the chordal L2 mean rotation (as model/rotation.mean_rotation;
   for bottle, bowl and can each member is first turned about its own up axis onto the
   medoid, so arbitrary turns about the symmetry axis do not blur the mean), the mean
   translation, box size and score, and the kept hypotheses' covariance about the mean.

`reject_outliers=False` averages all hypotheses instead (the plain mean, for comparison).
numpy + scipy, ROS-free. The pipeline (node parameter `average_subsets`) and posediff-eval
(`--subsets`) call `predict_averaged`; docs/RESULTS.md (h) has accuracy vs cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posediff_ros.categories import BY_ID, is_symmetric
from posediff_ros.hypotheses import (
    ClusterConfig,
    Hypothesis,
    cluster_labels,
    mode_pose,
    pairwise_distances,
)
from posediff_ros.runtime.base import PoseBatch


@dataclass(frozen=True)
class AveragingConfig:
    subsets: int = 1  # K point subsets per object (1 = one subset, as without averaging)
    reject_outliers: bool = True  # keep only the largest agreeing mode (False: mean of all)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self):
        if self.subsets < 1:
            raise ValueError(f"subsets must be >= 1, got {self.subsets}")


@dataclass
class Averaged:
    """One object's averaged pose (camera-from-object) and what it was made of."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,) metres
    size: np.ndarray  # (3,) metres
    score: float
    covariance: np.ndarray | None  # (6, 6) of the kept hypotheses, None when one was kept
    kept: int  # hypotheses averaged
    total: int  # hypotheses drawn (subsets x samples)
    hypotheses: list[Hypothesis]  # every mode, the kept one first


def average_hypotheses(rotations: np.ndarray, translations: np.ndarray, sizes: np.ndarray,
                       scores: np.ndarray, class_id: int,
                       config: AveragingConfig | None = None) -> Averaged:
    """(N, 3, 3), (N, 3), (N, 3), (N,) hypotheses of one object -> its averaged pose."""
    if class_id not in BY_ID:
        raise ValueError(f"class id {class_id} is not a NOCS class (1..6)")
    config = config or AveragingConfig()
    r = np.asarray(rotations, np.float64)
    t = np.asarray(translations, np.float64)
    sizes, scores = np.asarray(sizes, np.float64), np.asarray(scores, np.float64)
    n = len(r)
    symmetric = is_symmetric(class_id, True)
    d = pairwise_distances(r, t, symmetric, config.clusters)
    labels = cluster_labels(d)
    members = [np.flatnonzero(labels == k) for k in range(labels.max() + 1)]
    # largest first; ties: the higher mean agreement score, then the earlier mode
    members.sort(key=lambda idx: (-len(idx), -scores[idx].mean()))
    modes = []
    for idx in members:
        rm, tm, cov = mode_pose(r[idx], t[idx], d[np.ix_(idx, idx)], symmetric)
        modes.append(Hypothesis(rm, tm, cov, len(idx) / n, len(idx)))
    kept = members[0] if config.reject_outliers else np.arange(n)
    if config.reject_outliers:
        rm, tm, cov = modes[0].rotation, modes[0].translation, modes[0].covariance
    else:
        rm, tm, cov = mode_pose(r, t, d, symmetric)
    return Averaged(rm, tm, sizes[kept].mean(axis=0), float(scores[kept].mean()), cov,
                    len(kept), n, modes)


def average_batch(poses: PoseBatch, class_ids: np.ndarray,
                  config: AveragingConfig) -> list[Averaged]:
    """A backend's PoseBatch of B x K rows (object b's K subsets in rows b*K .. b*K+K-1, each
    with its samples when num_samples > 1) -> one Averaged per object."""
    k = config.subsets
    rows = len(poses.rotation)
    if rows % k or len(class_ids) * k != rows:
        raise ValueError(f"{rows} poses are not {len(class_ids)} objects x {k} subsets")
    if poses.samples_rotation is not None:
        rot, trans = poses.samples_rotation, poses.samples_translation  # (B*K, S, ...)
    else:
        rot, trans = poses.rotation[:, None], poses.translation[:, None]
    s = rot.shape[1]
    out = []
    for b, cls in enumerate(class_ids):
        sl = slice(b * k, (b + 1) * k)
        out.append(average_hypotheses(
            rot[sl].reshape(k * s, 3, 3), trans[sl].reshape(k * s, 3),
            np.repeat(poses.size[sl], s, axis=0), np.repeat(poses.score[sl], s),
            int(cls), config))
    return out


def subset_groups(ids: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Extraction rows of objects asked for k times each (ids repeated k times in a row) ->
    (ids (B,), points (B * k, P, 3)) of the objects all of whose k rows came back (an object
    is dropped by its point count, the same for every subset; this keeps the B x k layout
    even if one subset ever were not)."""
    if k == 1:
        return ids, points
    keep = [i for i in dict.fromkeys(ids.tolist()) if (ids == i).sum() == k]
    rows = np.concatenate([np.flatnonzero(ids == i) for i in keep]) if keep else []
    return np.asarray(keep, np.int64), points[rows]


def predict_averaged(predict, points: np.ndarray, class_ids: np.ndarray,
                     config: AveragingConfig) -> tuple[PoseBatch, list[Averaged]]:
    """One backend call on (B * K, P, 3) points (object b's K subsets in rows b*K .. b*K+K-1)
    of B objects of `class_ids` (B,) -> their averaged poses as a PoseBatch of B rows
    (covariance None: each kept mode's covariance is in its Averaged) and the Averaged list."""
    if len(class_ids) == 0:
        z = np.zeros
        return PoseBatch(z((0, 3, 3)), z((0, 3)), z((0, 3)), z(0)), []
    poses = predict(points, np.repeat(np.asarray(class_ids, np.int64), config.subsets))
    averaged = average_batch(poses, class_ids, config)
    rows = {name: np.stack([getattr(a, name) for a in averaged])
            for name in ("rotation", "translation", "size")}
    score = np.array([a.score for a in averaged], np.float64)
    return PoseBatch(**rows, score=score, timings_ms=dict(poses.timings_ms)), averaged
