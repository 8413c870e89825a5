"""Mug handle visibility travels from the generator through the synthetic camera's ground truth
to the demo's errors: a mug whose handle is hidden is scored as symmetric (NOCS protocol)."""

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

from posediff_ros.data.synthetic import InstanceGT  # noqa: E402
from posediff_ros.geometry import rotation_about_y  # noqa: E402
from posediff_ros.ros import messages  # noqa: E402
from posediff_ros.ros.collector import compare, handle_visible  # noqa: E402
from posediff_ros.ros.synthetic_camera import HANDLE_VISIBLE, ground_truth  # noqa: E402


def _instance(inst_id: int, cls: int, visible: bool) -> InstanceGT:
    return InstanceGT(inst_id, cls, np.eye(3), np.array([0.0, 0.0, 0.8]),
                      np.array([0.12, 0.1, 0.09]), visible)


def _estimate(truth: Detection3DArray, yaw_deg: float) -> Detection3DArray:
    """The ground truth with every object turned by yaw about its own y axis."""
    R = rotation_about_y(np.deg2rad(yaw_deg))
    return Detection3DArray(header=truth.header, detections=[
        messages.detection(truth.header, int(d.id), 6, R, np.array([0.0, 0.0, 0.8]),
                           np.array([0.12, 0.1, 0.09]), 0.9) for d in truth.detections])


def test_mug_ground_truth_carries_handle_visibility():
    gt = ground_truth(Header(), [_instance(1, 6, True), _instance(2, 6, False),
                                 _instance(3, 1, True)])
    extra = {d.id: [(r.hypothesis.class_id, r.hypothesis.score) for r in d.results[1:]]
             for d in gt.detections}
    assert extra == {"1": [(HANDLE_VISIBLE, 1.0)], "2": [(HANDLE_VISIBLE, 0.0)], "3": []}
    assert gt.detections[1].results[0].hypothesis.class_id == "mug"  # consumers read [0]
    assert handle_visible(gt) == {1: True, 2: False, 3: True}


def test_hidden_handle_mug_error_ignores_yaw():
    gt = ground_truth(Header(), [_instance(1, 6, True), _instance(2, 6, False)])
    errors = {e.instance_id: e for e in compare(_estimate(gt, 90.0), gt)}
    assert errors[1].rotation_deg == pytest.approx(90.0, abs=1e-3)  # visible: yaw counts
    assert errors[2].rotation_deg == pytest.approx(0.0, abs=1e-3)  # hidden: symmetric
    assert errors[2].handle_hidden and not errors[1].handle_hidden
