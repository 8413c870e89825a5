"""What a grasp planner reads: hypotheses in Detection3D.results, poses moved into the
robot's frame (message building; no DDS here, see test_node_outputs.py for that)."""

from types import SimpleNamespace

import numpy as np
import pytest
from std_msgs.msg import Header

from posediff_ros.calibration import not_estimated
from posediff_ros.geometry import quaternion_to_matrix, random_rotations
from posediff_ros.hypotheses import Hypothesis
from posediff_ros.ros import messages


def _pose_of(pose_msg):
    p, q = pose_msg.position, pose_msg.orientation
    return quaternion_to_matrix([q.x, q.y, q.z, q.w]), np.array([p.x, p.y, p.z])


def test_each_mode_is_one_result_heaviest_first():
    rng = np.random.default_rng(0)
    rot = random_rotations(3, rng)
    trans = rng.uniform(-0.2, 0.2, (3, 3)) + [0, 0, 0.8]
    covs = [np.diag(np.arange(1, 7) * 1e-4), np.diag(np.arange(6, 0, -1) * 1e-5), None]
    hyps = [Hypothesis(rot[k], trans[k], covs[k], w, n)
            for k, (w, n) in enumerate(((0.5, 8), (0.3125, 5), (0.0625, 1)))]
    obj = SimpleNamespace(instance_id=7, class_id=6, rotation=rot[0], translation=trans[0],
                          size=np.array([0.12, 0.1, 0.09]), score=0.8, covariance=covs[0],
                          hypotheses=hyps)
    (det,) = messages.detections_msg(Header(frame_id="base_link"), [obj]).detections
    assert len(det.results) == 3
    for res, h in zip(det.results, hyps, strict=True):
        assert res.hypothesis.class_id == "mug"
        # score = the object's confidence x the mode's weight: they add up to the confidence
        assert res.hypothesis.score == pytest.approx(0.8 * h.weight)
        r, t = _pose_of(res.pose.pose)
        np.testing.assert_allclose(r, h.rotation, atol=1e-9)
        np.testing.assert_allclose(t, h.translation, atol=1e-12)
        # a mode of one sample has no spread: "not estimated" (-1 first), not zeros
        want = not_estimated() if h.covariance is None else h.covariance
        np.testing.assert_array_equal(np.reshape(res.pose.covariance, (6, 6)), want)
    assert sum(r.hypothesis.score for r in det.results) == pytest.approx(0.8 * 0.875)
    assert det.bbox.center == det.results[0].pose.pose


def test_no_hypotheses_one_result_with_the_objects_own_score():
    obj = SimpleNamespace(instance_id=1, class_id=1, rotation=np.eye(3),
                          translation=np.array([0, 0, 1.0]), size=np.ones(3) * 0.1, score=0.6,
                          covariance=None, hypotheses=[])
    (det,) = messages.detections_msg(Header(), [obj]).detections
    assert len(det.results) == 1 and det.results[0].hypothesis.score == pytest.approx(0.6)
