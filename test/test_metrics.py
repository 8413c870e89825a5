"""NOCS metrics: 3D IoU (correct and legacy), symmetry rules, accuracies, mAP."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff_ros import metrics as m
from posediff_ros.categories import class_id
from posediff_ros.geometry import axis_angle_to_matrix, random_rotations, rotation_about_y

I3 = np.eye(3)
Z3 = np.zeros(3)


def test_identical_boxes_iou_one():
    size = np.array([0.1, 0.2, 0.3])
    R = axis_angle_to_matrix([1, 2, 3], 0.7)
    t = np.array([0.1, -0.1, 0.8])
    assert np.isclose(m.iou_3d(size, R, t, size, R, t), 1.0)
    assert np.isclose(m.iou_3d(size, R, t, size, R, t, legacy=True), 1.0)


def test_half_width_shift_iou_one_third():
    size = np.array([0.2, 0.1, 0.1])
    iou = m.iou_3d(size, I3, [0.1, 0, 0], size, I3, Z3)  # shifted by half of its x width
    assert np.isclose(iou, 1 / 3)
    assert m.iou_3d(size, I3, [0.3, 0, 0], size, I3, Z3) == 0  # apart


def test_legacy_flag_changes_a_known_case():
    # boxes 2x4x6 at the origin and shifted by 1 along x. Correct: 1/3. Legacy NOCS code:
    # per corner (max - min over x, y, z): A 2,5,5,4,4,5,5,2; B 3,5,5,3,5,5,5,1; overlaps
    # 2,5,5,3,4,5,5,1 -> products 40000, 28125, 15000 -> 15000 / 53125 = 24/85
    size = np.array([2.0, 4.0, 6.0])
    assert np.isclose(m.iou_3d(size, I3, [1, 0, 0], size, I3, Z3), 1 / 3)
    assert np.isclose(m.iou_3d(size, I3, [1, 0, 0], size, I3, Z3, legacy=True), 24 / 85)


def test_correct_iou_uses_axis_aligned_bounds_of_rotated_box():
    # a unit cube turned 45 deg about y has camera-frame bounds sqrt(2) x 1 x sqrt(2)
    R = rotation_about_y(np.pi / 4)
    iou = m.iou_3d(np.ones(3), R, Z3, np.ones(3), I3, Z3)
    assert np.isclose(iou, 1 / 2)  # intersection 1 (the cube's bounds), union 2


def test_symmetric_iou_max_over_y_rotations():
    size = np.array([0.1, 0.2, 0.3])
    R_pred = rotation_about_y(np.pi / 2)  # swaps x and z extents
    plain = m.iou_3d(size, R_pred, Z3, size, I3, Z3)
    assert plain < 0.5
    assert np.isclose(m.iou_3d(size, R_pred, Z3, size, I3, Z3, symmetric=True), 1.0)
    both = m.iou_3d(
        np.stack([size, size]), np.stack([R_pred, R_pred]), np.zeros((2, 3)),
        size, I3, Z3, symmetric=np.array([True, False]),
    )  # fmt: skip
    assert np.allclose(both, [1.0, plain])


def _errors(cls_name, R_pred, handle_visible=True):
    cid = np.array([class_id(cls_name)])
    rot, trans = m.pose_errors(R_pred[None], Z3[None], I3[None], Z3[None], cid,
                               np.array([handle_visible]))
    return rot[0], trans[0]


def test_symmetry_rules_for_rotation_error():
    Ry = rotation_about_y(np.radians(40))
    assert np.isclose(_errors("bottle", Ry)[0], 0, atol=1e-6)
    assert np.isclose(_errors("bowl", Ry)[0], 0, atol=1e-6)
    assert np.isclose(_errors("can", Ry)[0], 0, atol=1e-6)
    assert np.isclose(_errors("mug", Ry, handle_visible=False)[0], 0, atol=1e-6)
    assert np.isclose(_errors("mug", Ry, handle_visible=True)[0], 40)
    assert np.isclose(_errors("camera", Ry)[0], 40)
    # a tilt counts for symmetric classes too
    Rx = axis_angle_to_matrix([1, 0, 0], np.radians(7))
    assert np.isclose(_errors("bottle", Rx @ Ry)[0], 7)


@settings(max_examples=50, deadline=None)
@given(st.floats(-np.pi, np.pi), st.integers(0, 2**31 - 1))
def test_bottle_any_y_rotation_is_free(angle, seed):
    R = random_rotations(1, np.random.default_rng(seed))[0]
    rot, _ = m.pose_errors((R @ rotation_about_y(angle))[None], Z3[None], R[None], Z3[None],
                           np.array([1]))
    assert rot[0] < 1e-3


def _random_objects(n, rng):
    cids = np.tile(np.arange(1, 7), n // 6 + 1)[:n]
    R = random_rotations(n, rng)
    t = rng.uniform([-0.3, -0.2, 0.5], [0.3, 0.2, 1.2], (n, 3))
    size = rng.uniform(0.05, 0.3, (n, 3))
    hv = rng.random(n) < 0.7
    return cids, R, t, size, hv


def test_prediction_equals_ground_truth_gives_100_everywhere():
    cids, R, t, size, hv = _random_objects(30, np.random.default_rng(0))
    err = m.object_errors(R, t, R, t, cids, hv, size, size)
    table = m.accuracy_table(err)
    for row in ("bottle", "bowl", "camera", "can", "laptop", "mug", "mean", "all"):
        for col in m.COLUMNS:
            assert table[row][col] == pytest.approx(100.0), (row, col)
    assert table["mug"]["n"] == 5 and table["all"]["n"] == 30


def test_accuracy_table_known_drops():
    # 4 cameras: errors (3 deg, 1 cm), (8 deg, 1 cm), (3 deg, 4 cm), (20 deg, 0 cm)
    R_gt = np.repeat(I3[None], 4, 0)
    R_pred = np.stack([axis_angle_to_matrix([0, 0, 1], np.radians(d)) for d in (3, 8, 3, 20)])
    t_gt = np.zeros((4, 3))
    t_pred = np.array([[0.01, 0, 0], [0.01, 0, 0], [0.04, 0, 0], [0, 0, 0]])
    err = m.object_errors(R_pred, t_pred, R_gt, t_gt, np.full(4, 3))
    row = m.accuracy_table(err)["camera"]
    assert row["5d2cm"] == 25 and row["5d5cm"] == 50
    assert row["10d2cm"] == 50 and row["10d5cm"] == 75 and row["10d10cm"] == 75
    assert np.isnan(row["IoU25"])  # no sizes given
    assert np.isclose(row["rot_median_deg"], 5.5) and np.isclose(row["trans_median_cm"], 1)


def test_average_precision_voc():
    # 3 gts; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    # monotone precision: 1 up to recall 1/3, 2/3 up to 2/3 -> AP = 1/3 + 1/3 * 2/3
    ap = m.average_precision(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 3)
    assert np.isclose(ap, 1 / 3 + 2 / 9)
    assert m.average_precision(np.zeros(0, bool), np.zeros(0), 2) == 0
    assert np.isnan(m.average_precision(np.zeros(0, bool), np.zeros(0), 0))


def _frame(cids, R, t, size, hv, pred=None, scores=None):
    pR, pt, psize, pc = pred if pred is not None else (R, t, size, cids)
    return m.FramePoses(
        cids, R, t, size, hv, pc, pR, pt, psize,
        np.ones(len(pc)) if scores is None else scores,
    )  # fmt: skip


def test_map_perfect_predictions_100():
    rng = np.random.default_rng(1)
    frames = [_frame(*_random_objects(6, rng)) for _ in range(5)]
    table = m.nocs_map(frames)
    for col in m.COLUMNS:
        assert table["mean"][col] == pytest.approx(100.0), col
    assert table["mean"]["n"] == 30
    assert m.nocs_map(frames, legacy_iou=True)["mean"]["IoU75"] == pytest.approx(100.0)


def test_map_false_positive_and_miss():
    # one camera at the origin; frame 1: a good detection (score 0.9) + a far-off duplicate
    # (score 0.95, ranked first); frame 2: a camera that is not detected at all.
    size = np.array([[0.1, 0.1, 0.1]])
    R, t, c, hv = I3[None], np.array([[0, 0, 1.0]]), np.array([3]), np.array([True])
    pred = (np.stack([I3, I3]), np.array([[0, 0, 1.0], [0.5, 0, 1.0]]), np.repeat(size, 2, 0),
            np.array([3, 3]))
    f1 = _frame(c, R, t, size, hv, pred, np.array([0.9, 0.95]))
    f2 = _frame(c, R, t, size, hv, (np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros((0, 3)),
                                    np.zeros(0, int)))
    table = m.nocs_map([f1, f2])
    # IoU: ranked FP, TP -> precision 1/2 at recall 1/2 (of 2 gts) -> AP 25
    assert table["camera"]["IoU50"] == pytest.approx(25.0)
    # pose (IoU-0.1-matched only, the protocol): one matched pair, correct -> 100
    assert table["camera"]["5d2cm"] == pytest.approx(100.0)
    # all detections and gts in the pose matching: same as IoU -> 25
    assert m.nocs_map([f1, f2], use_iou_matches_for_pose=False)["camera"]["5d2cm"] == 25


def test_map_rotated_prediction_drops_pose_not_symmetric_iou():
    # bowls predicted with a 90-degree yaw error: IoU and pose perfect (symmetric); the same
    # for laptops drops the pose columns.
    size = np.array([[0.2, 0.1, 0.4]])
    R, t, hv = I3[None], np.array([[0, 0, 1.0]]), np.array([True])
    yaw = rotation_about_y(np.pi / 2)[None]
    bowl = _frame(np.array([2]), R, t, size, hv, (yaw, t, size, np.array([2])))
    laptop = _frame(np.array([5]), R, t, size, hv, (yaw, t, size, np.array([5])))
    table = m.nocs_map([bowl, laptop])
    assert table["bowl"]["10d5cm"] == pytest.approx(100) and table["bowl"]["IoU75"] == 100
    assert table["laptop"]["10d10cm"] == 0
    assert table["laptop"]["IoU25"] == pytest.approx(100)  # 0.2x0.4 footprint swapped: IoU 1/3
    assert table["laptop"]["IoU50"] == 0
    assert table["mean"]["10d10cm"] == pytest.approx(50)


def test_map_pose_columns_zero_when_nothing_matches_at_iou_01():
    size = np.array([[0.1, 0.1, 0.1]])
    R, t, hv = I3[None], np.array([[0, 0, 1.0]]), np.array([True])
    far = _frame(np.array([3]), R, t, size, hv, (R, t + [[0.5, 0, 0]], size, np.array([3])))
    row = m.nocs_map([far])["camera"]
    assert all(row[c] == 0 for c in m.COLUMNS)
    # a class with detections but no ground truth is reported as NaN and left out of the mean
    extra = _frame(np.zeros(0, int), np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros((0, 3)),
                   np.zeros(0, bool), (R, t, size, np.array([5])))
    table = m.nocs_map([far, extra])
    assert np.isnan(table["laptop"]["IoU25"]) and table["laptop"]["n"] == 0
    assert table["mean"]["IoU25"] == 0 and table["mean"]["n"] == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_iou_properties(seed, legacy):
    rng = np.random.default_rng(seed)
    R1, R2 = random_rotations(2, rng)
    s1, s2 = rng.uniform(0.05, 0.3, (2, 3))
    t1, t2 = rng.normal(0, 0.05, (2, 3))
    a = m.iou_3d(s1, R1, t1, s2, R2, t2, legacy=legacy)
    assert 0 <= a <= 1 + 1e-12
    assert np.isclose(a, m.iou_3d(s2, R2, t2, s1, R1, t1, legacy=legacy))  # symmetric
    if not legacy:  # the correct IoU does not depend on where both boxes are
        shift = rng.normal(0, 1, 3)
        assert np.isclose(a, m.iou_3d(s1, R1, t1 + shift, s2, R2, t2 + shift))
    # the y-symmetric IoU is at least the plain one
    assert m.iou_3d(s1, R1, t1, s2, R2, t2, symmetric=True, legacy=legacy) >= a - 1e-12
