"""A listener for the node's outputs and the synthetic camera's ground truth, used by the demo
and the end-to-end tests: stores what arrives by stamp and compares poses with the truth."""

import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from posediff_ros.categories import BY_NAME, is_symmetric
from posediff_ros.geometry import quaternion_to_matrix, rotation_error_deg, translation_error_cm
from posediff_ros.ros.convert import stamp_to_ns
from posediff_ros.ros.node import TF_QOS
from posediff_ros.ros.synthetic_camera import HANDLE_VISIBLE


@dataclass
class ObjectError:
    stamp_ns: int
    instance_id: int
    class_name: str
    rotation_deg: float  # about the symmetry axis only for bottle, bowl, can, hidden-handle mugs
    translation_cm: float
    size_error: float  # mean relative box-extent error
    handle_hidden: bool = False  # a mug whose handle the ground truth marks hidden


def detection_arrays(msg: Detection3DArray) -> dict[int, tuple[str, np.ndarray, np.ndarray,
                                                                np.ndarray]]:
    """{instance id: (class name, R, t, size)} of a Detection3DArray."""
    out = {}
    for det in msg.detections:
        pose = det.results[0].pose.pose
        q = pose.orientation
        R = quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w]))
        t = np.array([pose.position.x, pose.position.y, pose.position.z])
        size = np.array([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z])
        out[int(det.id)] = (det.results[0].hypothesis.class_id, R, t, size)
    return out


def handle_visible(msg: Detection3DArray) -> dict[int, bool]:
    """{instance id: handle visible} from the ground truth (True unless a HANDLE_VISIBLE
    result says 0)."""
    return {int(det.id): all(r.hypothesis.score >= 0.5 for r in det.results
                             if r.hypothesis.class_id == HANDLE_VISIBLE)
            for det in msg.detections}


def pair_with_truth(estimate: Detection3DArray, truth: Detection3DArray,
                    max_distance_m: float = 0.1) -> list[tuple[int, int]]:
    """(estimated id, true id) pairs: same class, nearest centres (Hungarian), at most
    `max_distance_m` apart. Ids are not compared: with tracking they are the node's own."""
    from scipy.optimize import linear_sum_assignment

    est, gt = detection_arrays(estimate), detection_arrays(truth)
    e_ids, g_ids = sorted(est), sorted(gt)
    cost = np.full((len(e_ids), len(g_ids)), 1e6)
    for i, e in enumerate(e_ids):
        for j, g in enumerate(g_ids):
            d = float(np.linalg.norm(est[e][2] - gt[g][2]))
            if est[e][0] == gt[g][0] and d <= max_distance_m:
                cost[i, j] = d
    rows, cols = linear_sum_assignment(cost) if cost.size else ([], [])
    return [(e_ids[r], g_ids[c]) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e6]


def compare(estimate: Detection3DArray, truth: Detection3DArray) -> list[ObjectError]:
    """Per-object errors of the detections paired with a ground-truth object (same class,
    nearest centre, no distance gate: an estimate far off its object still counts, with its
    large error); instance_id is the ground truth's."""
    stamp = stamp_to_ns(estimate.header.stamp)
    est, gt = detection_arrays(estimate), detection_arrays(truth)
    visible = handle_visible(truth)
    errors = []
    for e, g in pair_with_truth(estimate, truth, max_distance_m=np.inf):
        name, R, t, size = est[e]
        _, R_gt, t_gt, size_gt = gt[g]
        # a mug whose handle the camera cannot see is symmetric (NOCS protocol)
        symmetric = is_symmetric(BY_NAME[name].id, handle_visible=visible[g])
        errors.append(ObjectError(
            stamp, g, name, float(rotation_error_deg(R, R_gt, symmetric)),
            float(translation_error_cm(t, t_gt)),
            float(np.mean(np.abs(size - size_gt) / np.maximum(size_gt, 1e-6))),
            handle_hidden=not visible[g]))
    return errors


class Collector(Node):
    """Subscribes to object_poses, ground_truth, /tf, markers, debug/points and overlay."""

    def __init__(self, namespace: str = "", **kwargs):
        super().__init__("posediff_collector", namespace=namespace, **kwargs)
        self.poses: dict[int, Detection3DArray] = {}
        self.received_ns: dict[int, int] = {}  # stamp -> wall-clock arrival
        self.truth: dict[int, Detection3DArray] = {}
        self.tf: list[TFMessage] = []
        self.markers: list[MarkerArray] = []
        self.clouds: list[PointCloud2] = []
        self.overlays: list[Image] = []
        self.create_subscription(Detection3DArray, "object_poses", self._on_poses, 10)
        self.create_subscription(Detection3DArray, "ground_truth", self._on_truth, 10)
        self.create_subscription(TFMessage, "/tf", self.tf.append, TF_QOS)
        self.create_subscription(MarkerArray, "markers", self.markers.append, 10)
        self.create_subscription(PointCloud2, "debug/points", self.clouds.append, 2)
        self.create_subscription(Image, "overlay", self._on_overlay, 2)

    def _on_poses(self, msg: Detection3DArray) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self.poses[stamp] = msg
        self.received_ns[stamp] = self.get_clock().now().nanoseconds

    def _on_truth(self, msg: Detection3DArray) -> None:
        self.truth[stamp_to_ns(msg.header.stamp)] = msg

    def _on_overlay(self, msg: Image) -> None:
        self.overlays = [msg]  # keep the newest only

    def matched(self) -> list[int]:
        """Stamps with both an estimate and the ground truth."""
        return sorted(set(self.poses) & set(self.truth))

    def errors(self) -> list[ObjectError]:
        return [e for s in self.matched() for e in compare(self.poses[s], self.truth[s])]

    def latencies_ms(self) -> np.ndarray:
        return np.array([(self.received_ns[s] - s) / 1e6 for s in sorted(self.poses)])

    def spin_until(self, executor, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            executor.spin_once(timeout_sec=0.1)
        return condition()
