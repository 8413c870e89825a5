"""The TF listener (ros/tf_listener.py) over real DDS: a separate process broadcasts a static
transform (latched, sent before the listener exists) and a moving one at 50 Hz; lookups at
stamps between the received ones must give the analytic pose."""

import threading
import time

import numpy as np
import pytest
from conftest import spawn_python, stop

pytestmark = pytest.mark.ros

# base_link -(static)-> pan_tilt -(moving)-> camera (argv: s0 in ns, rate Hz, camera frame,
# speed). The moving edge turns at speed * 0.5 rad/s about z and slides speed * 0.2 m/s along
# x from s0: a constant rate about a fixed axis, so interpolating between two stamps is exact.
TF_PUBLISHER = r"""
import math, sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped

s0_ns, rate = int(sys.argv[1]), float(sys.argv[2])
camera = sys.argv[3] if len(sys.argv) > 3 else 'camera_color_optical_frame'
speed = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
rclpy.init()
node = rclpy.create_node('tf_test_publisher')
static_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
static = node.create_publisher(TFMessage, '/tf_static', static_qos)
moving = node.create_publisher(TFMessage, '/tf', tf_qos)
st = TransformStamped()
st.header.frame_id, st.child_frame_id = 'base_link', 'pan_tilt'
st.header.stamp = node.get_clock().now().to_msg()
st.transform.translation.x, st.transform.translation.z = 0.3, 1.1
# 90 deg about x: the camera's z (forward) becomes the robot's -y ... any fixed rotation does
st.transform.rotation.x, st.transform.rotation.w = math.sqrt(0.5), math.sqrt(0.5)
static.publish(TFMessage(transforms=[st]))
def tick():
    now = node.get_clock().now()
    s = speed * (now.nanoseconds - s0_ns) * 1e-9  # ns first: float epoch seconds step 0.2 us
    t = TransformStamped()
    t.header.stamp = now.to_msg()
    t.header.frame_id, t.child_frame_id = 'pan_tilt', camera
    t.transform.translation.x, t.transform.translation.y = 0.2 * s, 0.1
    t.transform.translation.z = 0.6
    t.transform.rotation.z, t.transform.rotation.w = math.sin(0.25 * s), math.cos(0.25 * s)
    moving.publish(TFMessage(transforms=[t]))
node.create_timer(1.0 / rate, tick)
print('publishing', flush=True)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def base_from_camera(stamp_ns: int, s0_ns: int, speed: float = 1.0):
    """The analytic base_link_from_camera of TF_PUBLISHER at a stamp."""
    from posediff_ros.geometry import axis_angle_to_matrix
    from posediff_ros.transforms import Rigid

    s = speed * (stamp_ns - s0_ns) * 1e-9
    static = Rigid(axis_angle_to_matrix(np.array([1.0, 0, 0]), np.pi / 2),
                   np.array([0.3, 0.0, 1.1]))
    moving = Rigid(axis_angle_to_matrix(np.array([0, 0, 1.0]), 0.5 * s),
                   np.array([0.2 * s, 0.1, 0.6]))
    return static @ moving


@pytest.fixture
def spinning_node(rclpy_context):
    import rclpy

    node = rclpy.create_node("tf_listener_test", context=rclpy_context)
    executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()


def test_static_and_moving_transforms_over_dds(spinning_node):
    from posediff_ros.ros.tf_listener import BufferListener
    from posediff_ros.transforms import TransformUnavailable

    s0 = time.time_ns()
    publisher = spawn_python(TF_PUBLISHER, str(s0), "50")
    try:
        time.sleep(2.0)  # the static transform is sent now, long before the listener exists
        listener = BufferListener(spinning_node)
        deadline = time.monotonic() + 30
        edges = listener.buffer._edges
        while time.monotonic() < deadline and (
                "camera_color_optical_frame" not in edges
                or len(edges["camera_color_optical_frame"].stamps) < 5):
            time.sleep(0.1)
        stamps = list(edges["camera_color_optical_frame"].stamps)[-5:]
        assert len(stamps) == 5, "no moving transforms received"
        assert edges["pan_tilt"].static is not None  # the latched one, sent before we existed
        # between two received stamps: interpolated, exact for this motion
        for a, b in zip(stamps[:-1], stamps[1:], strict=True):
            stamp = (a + b) // 2
            got = listener.lookup("base_link", "camera_color_optical_frame", stamp, 0.0)
            want = base_from_camera(stamp, s0)
            np.testing.assert_allclose(got.rotation, want.rotation, atol=1e-9)
            np.testing.assert_allclose(got.translation, want.translation, atol=1e-9)
        # a stamp slightly in the future: the lookup waits until the transform arrives
        future = time.time_ns() + 200_000_000
        got = listener.lookup("base_link", "camera_color_optical_frame", future, 5.0)
        np.testing.assert_allclose(got.translation, base_from_camera(future, s0).translation,
                                   atol=1e-9)
        with pytest.raises(TransformUnavailable, match="'gripper' does not exist"):
            listener.lookup("gripper", "camera_color_optical_frame", future, 0.2)
        listener.destroy()
    finally:
        out = stop(publisher)
    assert "publishing" in out, out
