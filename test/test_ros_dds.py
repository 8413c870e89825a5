"""posediff_ros's output messages cross process boundaries over real Fast DDS.

One process publishes vision_msgs/Detection3DArray on object_poses and tf2_msgs/TFMessage on
/tf (the tf2 QoS), this process subscribes with rclpy and checks the content field by field.
"""

import time

import pytest
from conftest import spawn_python, stop

pytestmark = pytest.mark.ros

PUBLISHER = r"""
import sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from vision_msgs.msg import Detection3DArray, Detection3D, ObjectHypothesisWithPose
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped

rclpy.init()
node = rclpy.create_node('dds_test_publisher')
poses = node.create_publisher(Detection3DArray, 'object_poses', 10)
tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
tf = node.create_publisher(TFMessage, '/tf', tf_qos)
k = 0
def tick():
    global k
    k += 1
    msg = Detection3DArray()
    msg.header.frame_id = 'camera_color_optical_frame'
    msg.header.stamp.sec = 1000 + k
    det = Detection3D()
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = 'mug'
    hyp.hypothesis.score = 0.75
    hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z = 0.1, -0.2, 0.8
    hyp.pose.pose.orientation.w = 1.0
    hyp.pose.covariance[0] = 0.01
    det.results.append(hyp)
    det.bbox.center = hyp.pose.pose
    det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = 0.12, 0.09, 0.08
    msg.detections.append(det)
    poses.publish(msg)
    t = TransformStamped()
    t.header = msg.header
    t.child_frame_id = 'posediff_mug_0'
    t.transform.translation.z = 0.8
    t.transform.rotation.w = 1.0
    tf.publish(TFMessage(transforms=[t]))
node.create_timer(0.05, tick)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def test_detections_and_tf_cross_processes(rclpy_context):
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.utilities import get_rmw_implementation_identifier
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    assert get_rmw_implementation_identifier() == "rmw_fastrtps_cpp"
    publisher = spawn_python(PUBLISHER)
    node = rclpy.create_node("dds_test_listener", context=rclpy_context)
    got_poses: list[Detection3DArray] = []
    got_tf: list[TFMessage] = []
    node.create_subscription(Detection3DArray, "object_poses", got_poses.append, 10)
    tf_qos = QoSProfile(
        depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
    )
    node.create_subscription(TFMessage, "/tf", got_tf.append, tf_qos)
    executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    deadline = time.monotonic() + 30
    try:
        while (len(got_poses) < 3 or len(got_tf) < 3) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            assert publisher.poll() is None, stop(publisher)
    finally:
        output = stop(publisher)
        node.destroy_node()
    assert len(got_poses) >= 3 and len(got_tf) >= 3, f"received nothing; publisher said:\n{output}"

    msg = got_poses[-1]
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert msg.header.stamp.sec > 1000
    (det,) = msg.detections
    hyp = det.results[0]
    assert hyp.hypothesis.class_id == "mug"
    assert hyp.hypothesis.score == pytest.approx(0.75)
    assert (hyp.pose.pose.position.x, hyp.pose.pose.position.z) == pytest.approx((0.1, 0.8))
    assert hyp.pose.covariance[0] == pytest.approx(0.01)
    assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == pytest.approx((0.12, 0.09, 0.08))
    # stamps keep increasing: messages are live, not one replayed sample
    assert got_poses[-1].header.stamp.sec > got_poses[0].header.stamp.sec

    transform = got_tf[-1].transforms[0]
    assert transform.header.frame_id == "camera_color_optical_frame"
    assert transform.child_frame_id == "posediff_mug_0"
    assert transform.transform.translation.z == pytest.approx(0.8)
