"""NOCS / REAL275 pose metrics: 3D IoU, rotation/translation errors, accuracies and mAP.

Two paths, same definitions:
- per object (`object_errors` + `accuracy_table`): predictions already paired with their
  ground truth (e.g. objects cut with ground-truth masks); an accuracy is the percentage of
  objects within a threshold. Used by training's periodic evaluation.
- per frame (`nocs_map`): detections with scores against the ground truth of each frame,
  greedy matching by score and VOC-style AP per class, as in the NOCS evaluation code.

3D IoU is the CORRECT one by default (box bounds per axis over the 8 corners);
`legacy=True` reproduces the original NOCS code, which takes max/min over x, y, z of each
corner instead (an (8,)-vector "box"), as copied by SPD, SGPA and others. Say which one a
table used. Column order everywhere: COLUMNS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posediff_ros.categories import BY_ID, CATEGORIES
from posediff_ros.geometry import box_corners, rotation_about_y, rotation_error_deg
from posediff_ros.geometry import translation_error_cm as _translation_error_cm

IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.50, 0.75)
# (degrees, centimetres)
POSE_THRESHOLDS: tuple[tuple[float, float], ...] = ((5, 2), (5, 5), (10, 2), (10, 5), (10, 10))
COLUMNS: tuple[str, ...] = (
    "IoU25", "IoU50", "IoU75", "5d2cm", "5d5cm", "10d2cm", "10d5cm", "10d10cm",
)  # fmt: skip
NUM_SYMMETRY_ROTATIONS = 20  # NOCS: symmetric IoU is the max over 20 rotations about y


# --- symmetry -----------------------------------------------------------------------------


def symmetric_mask(class_ids: np.ndarray, handle_visible: np.ndarray | None = None) -> np.ndarray:
    """Bool per object: rotation about y ignored (bottle, bowl, can; mug with hidden handle)."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    if handle_visible is None:
        handle_visible = np.ones(class_ids.shape, dtype=bool)
    sym_ids = [c.id for c in CATEGORIES if c.y_symmetric]
    mug = np.asarray([c.id for c in CATEGORIES if c.name == "mug"])
    return np.isin(class_ids, sym_ids) | (
        np.isin(class_ids, mug) & ~np.asarray(handle_visible, dtype=bool)
    )


# --- 3D IoU -------------------------------------------------------------------------------


def _bounds(corners: np.ndarray, legacy: bool) -> tuple[np.ndarray, np.ndarray]:
    # correct: per axis over the 8 corners -> (..., 3); legacy: per corner over x, y, z -> (..., 8)
    axis = -1 if legacy else -2
    return corners.min(axis=axis), corners.max(axis=axis)


def _box_iou(corners_a: np.ndarray, corners_b: np.ndarray, legacy: bool) -> np.ndarray:
    lo_a, hi_a = _bounds(corners_a, legacy)
    lo_b, hi_b = _bounds(corners_b, legacy)
    overlap = np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b)
    inter = np.where(np.all(overlap >= 0, axis=-1), np.prod(overlap, axis=-1), 0.0)
    union = np.prod(hi_a - lo_a, axis=-1) + np.prod(hi_b - lo_b, axis=-1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def iou_3d(
    size_pred: np.ndarray,
    R_pred: np.ndarray,
    t_pred: np.ndarray,
    size_gt: np.ndarray,
    R_gt: np.ndarray,
    t_gt: np.ndarray,
    symmetric: bool | np.ndarray = False,
    legacy: bool = False,
) -> np.ndarray:
    """3D IoU of the axis-aligned bounds (camera frame) of two posed boxes, batched over
    leading axes. Sizes are full extents in metres. Symmetric objects: the max over
    NUM_SYMMETRY_ROTATIONS rotations of the prediction about its own y axis (as NOCS)."""
    args = (size_pred, R_pred, t_pred, size_gt, R_gt, t_gt)
    size_pred, R_pred, t_pred, size_gt, R_gt, t_gt = (np.asarray(a, np.float64) for a in args)
    gt = box_corners(size_gt, R_gt, t_gt)
    plain = _box_iou(box_corners(size_pred, R_pred, t_pred), gt, legacy)
    symmetric = np.asarray(symmetric, dtype=bool)
    if not symmetric.any():
        return plain
    angles = 2 * np.pi * np.arange(NUM_SYMMETRY_ROTATIONS) / NUM_SYMMETRY_ROTATIONS
    Ry = rotation_about_y(angles)  # (K, 3, 3)
    R_rot = R_pred[..., None, :, :] @ Ry  # (..., K, 3, 3)
    pred_rot = box_corners(size_pred[..., None, :], R_rot, t_pred[..., None, :])
    sym = _box_iou(pred_rot, gt[..., None, :, :], legacy).max(axis=-1)
    return np.where(symmetric, np.maximum(sym, plain), plain)


# --- per-object errors and accuracies -----------------------------------------------------


@dataclass
class ObjectErrors:
    """Errors of predictions paired one-to-one with ground-truth objects."""

    class_ids: np.ndarray  # (N,) NOCS ids
    rot_deg: np.ndarray  # (N,) with the symmetry rules
    trans_cm: np.ndarray  # (N,)
    iou: np.ndarray | None = None  # (N,) 3D IoU, None when sizes were not given
    legacy_iou: bool = False


def pose_errors(
    R_pred: np.ndarray,
    t_pred: np.ndarray,
    R_gt: np.ndarray,
    t_gt: np.ndarray,
    class_ids: np.ndarray,
    handle_visible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rotation error degrees, translation error cm) per object, NOCS symmetry rules."""
    sym = symmetric_mask(class_ids, handle_visible)
    return rotation_error_deg(R_pred, R_gt, sym), _translation_error_cm(t_pred, t_gt)


def object_errors(
    R_pred: np.ndarray,
    t_pred: np.ndarray,
    R_gt: np.ndarray,
    t_gt: np.ndarray,
    class_ids: np.ndarray,
    handle_visible: np.ndarray | None = None,
    size_pred: np.ndarray | None = None,
    size_gt: np.ndarray | None = None,
    legacy_iou: bool = False,
) -> ObjectErrors:
    """Pose errors and (when both sizes are given) 3D IoU of paired objects."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    rot, trans = pose_errors(R_pred, t_pred, R_gt, t_gt, class_ids, handle_visible)
    iou = None
    if size_pred is not None and size_gt is not None:
        sym = symmetric_mask(class_ids, handle_visible)
        iou = iou_3d(size_pred, R_pred, t_pred, size_gt, R_gt, t_gt, sym, legacy_iou)
    return ObjectErrors(class_ids, rot, trans, iou, legacy_iou)


def _accuracies(rot: np.ndarray, trans: np.ndarray, iou: np.ndarray | None) -> dict[str, float]:
    row = {}
    for thr, col in zip(IOU_THRESHOLDS, COLUMNS[:3], strict=True):
        row[col] = float(100 * np.mean(iou > thr)) if iou is not None else float("nan")
    for (deg, cm), col in zip(POSE_THRESHOLDS, COLUMNS[3:], strict=True):
        row[col] = float(100 * np.mean((rot <= deg) & (trans <= cm)))
    return row


def accuracy_table(errors: ObjectErrors) -> dict[str, dict[str, float]]:
    """Percent of objects within each threshold (IoU > thr; rot <= deg and trans <= cm),
    per class name present, plus "mean" (over those classes, as NOCS averages classes)
    and "all" (over objects). Each row also has "n" and the medians of the errors."""
    table: dict[str, dict[str, float]] = {}
    for cid in sorted(set(errors.class_ids.tolist())):
        sel = errors.class_ids == cid
        iou = errors.iou[sel] if errors.iou is not None else None
        row = _accuracies(errors.rot_deg[sel], errors.trans_cm[sel], iou)
        row.update(
            n=int(sel.sum()),
            rot_median_deg=float(np.median(errors.rot_deg[sel])),
            trans_median_cm=float(np.median(errors.trans_cm[sel])),
        )
        table[BY_ID[cid].name if cid in BY_ID else str(cid)] = row
    if table:
        table["mean"] = {c: float(np.mean([r[c] for r in table.values()])) for c in COLUMNS}
        table["mean"]["n"] = int(len(errors.class_ids))
        row = _accuracies(errors.rot_deg, errors.trans_cm, errors.iou)
        row.update(
            n=int(len(errors.class_ids)),
            rot_median_deg=float(np.median(errors.rot_deg)),
            trans_median_cm=float(np.median(errors.trans_cm)),
        )
        table["all"] = row
    return table


# --- frame-level mAP (NOCS protocol) ------------------------------------------------------


@dataclass
class FramePoses:
    """Ground truth and detections of one frame (sizes: box extents in metres)."""

    gt_class_ids: np.ndarray  # (G,)
    gt_R: np.ndarray  # (G, 3, 3)
    gt_t: np.ndarray  # (G, 3)
    gt_size: np.ndarray  # (G, 3)
    gt_handle_visible: np.ndarray  # (G,) bool
    pred_class_ids: np.ndarray  # (P,)
    pred_R: np.ndarray  # (P, 3, 3)
    pred_t: np.ndarray  # (P, 3)
    pred_size: np.ndarray  # (P, 3)
    pred_scores: np.ndarray  # (P,)


def average_precision(matched: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """VOC-style AP (all points, precision made monotone) of detections sorted by score.
    NaN when there is no ground truth (the class is then left out of the mean)."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(matched, dtype=bool)[order]
    cum = np.cumsum(tp)
    precision = np.concatenate([[0.0], cum / np.arange(1, len(tp) + 1), [0.0]])
    recall = np.concatenate([[0.0], cum / num_gt, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _greedy_iou_match(iou: np.ndarray, thr: float) -> np.ndarray:
    """Preds (rows, already sorted by score) take the unmatched gt of highest IoU above thr
    (strictly, as NOCS). Returns the matched gt index per pred, -1 for none."""
    P, G = iou.shape
    pred_match = np.full(P, -1)
    taken = np.zeros(G, dtype=bool)
    for i in range(P):
        for j in np.argsort(-iou[i], kind="stable"):
            if iou[i, j] < thr:
                break
            if not taken[j] and iou[i, j] > thr:
                taken[j], pred_match[i] = True, j
                break
    return pred_match


def _greedy_pose_match(rot: np.ndarray, trans: np.ndarray, deg: float, cm: float) -> np.ndarray:
    """Preds (rows, sorted by score) take the unmatched gt of smallest deg + cm that is within
    both thresholds (<=, as NOCS). Returns the matched gt index per pred, -1 for none."""
    P, G = rot.shape
    pred_match = np.full(P, -1)
    taken = np.zeros(G, dtype=bool)
    ok = (rot <= deg) & (trans <= cm)
    for i in range(P):
        for j in np.argsort(rot[i] + trans[i], kind="stable"):
            if not taken[j] and ok[i, j]:
                taken[j], pred_match[i] = True, j
                break
    return pred_match


def nocs_map(
    frames: list[FramePoses],
    legacy_iou: bool = False,
    use_iou_matches_for_pose: bool = True,
    iou_pose_thres: float = 0.1,
) -> dict[str, dict[str, float]]:
    """NOCS-style mAP (percent) per class name and "mean" (over classes with ground truth),
    columns COLUMNS. Per frame and class, detections sorted by score are matched greedily;
    AP is computed over all frames per class.

    use_iou_matches_for_pose (the protocol of NOCS/SPD/DualPoseNet/GenPose tables): the pose
    columns only consider detections and ground truths matched at 3D IoU > iou_pose_thres;
    False: every detection and ground truth of the class enters the pose matching.
    """
    iou_thrs = sorted(set(IOU_THRESHOLDS) | {iou_pose_thres})
    acc: dict[int, dict] = {}
    for f in frames:
        for cid in np.unique(np.concatenate([f.gt_class_ids, f.pred_class_ids]).astype(int)):
            a = acc.setdefault(
                int(cid),
                {"scores": [], "iou": {t: [] for t in iou_thrs}, "n_gt": 0,
                 "pose_scores": [], "pose": {p: [] for p in POSE_THRESHOLDS}, "pose_n_gt": 0},
            )  # fmt: skip
            g = np.nonzero(f.gt_class_ids == cid)[0]
            p = np.nonzero(f.pred_class_ids == cid)[0]
            p = p[np.argsort(-f.pred_scores[p], kind="stable")]
            scores = f.pred_scores[p]
            hv = f.gt_handle_visible[g]
            sym = symmetric_mask(np.full(len(g), cid), hv)
            # (P, G) IoU and errors; the gt's symmetry decides (as NOCS)
            iou = iou_3d(
                f.pred_size[p][:, None], f.pred_R[p][:, None], f.pred_t[p][:, None],
                f.gt_size[g][None], f.gt_R[g][None], f.gt_t[g][None],
                sym[None, :], legacy_iou,
            )  # fmt: skip
            rot = rotation_error_deg(f.pred_R[p][:, None], f.gt_R[g][None], sym[None, :])
            trans = _translation_error_cm(f.pred_t[p][:, None], f.gt_t[g][None])
            a["scores"].append(scores)
            a["n_gt"] += len(g)
            matches = {t: _greedy_iou_match(iou, t) for t in iou_thrs}
            for t in iou_thrs:
                a["iou"][t].append(matches[t] >= 0)
            keep_p, keep_g = np.arange(len(p)), np.arange(len(g))
            if use_iou_matches_for_pose:
                m = matches[iou_pose_thres]
                keep_p = np.nonzero(m >= 0)[0]
                keep_g = np.sort(m[keep_p])
            a["pose_scores"].append(scores[keep_p])
            a["pose_n_gt"] += len(keep_g)
            sub_rot, sub_trans = rot[np.ix_(keep_p, keep_g)], trans[np.ix_(keep_p, keep_g)]
            for deg, cm in POSE_THRESHOLDS:
                a["pose"][(deg, cm)].append(_greedy_pose_match(sub_rot, sub_trans, deg, cm) >= 0)
    table: dict[str, dict[str, float]] = {}
    for cid in sorted(acc):
        a = acc[cid]
        scores = np.concatenate(a["scores"])
        pose_scores = np.concatenate(a["pose_scores"])
        row = {}
        for thr, col in zip(IOU_THRESHOLDS, COLUMNS[:3], strict=True):
            row[col] = 100 * average_precision(np.concatenate(a["iou"][thr]), scores, a["n_gt"])
        for pt, col in zip(POSE_THRESHOLDS, COLUMNS[3:], strict=True):
            matched = np.concatenate(a["pose"][pt])
            # a class with ground truth but no IoU-matched pair at all scores 0 (NOCS: NaN)
            ap = average_precision(matched, pose_scores, a["pose_n_gt"]) if a["pose_n_gt"] else 0
            row[col] = 100 * ap if a["n_gt"] else float("nan")
        row["n"] = a["n_gt"]
        table[BY_ID[cid].name if cid in BY_ID else str(cid)] = row
    rows = [r for r in table.values() if r["n"] > 0]
    if rows:
        table["mean"] = {c: float(np.nanmean([r[c] for r in rows])) for c in COLUMNS}
        table["mean"]["n"] = int(sum(r["n"] for r in rows))
    return table
