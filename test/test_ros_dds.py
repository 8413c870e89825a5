"""posediff_ros's output messages cross process boundaries over real Fast DDS.

One process builds a frame's results with the package's own code (messages.detections_msg,
messages.transforms; TF frame names from pipeline.object_names) from known poses and
publishes them; this process subscribes with rclpy and decodes them with the package's
collector.detection_arrays. The round trip must give back the poses (rotation matrix ->
quaternion -> matrix), sizes, classes, ids, scores, the 6x6 covariance in REP 103 order and
the TF frame names.
"""

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import spawn_python, stop

pytestmark = pytest.mark.ros

OBJECTS = [  # instance id, class id, rotvec (rad), translation (m), size (m), score
    (3, 6, [0.3, -1.2, 0.4], [0.10, -0.20, 0.80], [0.12, 0.09, 0.08], 0.75),
    (7, 1, [2.9, 0.1, -0.5], [-0.15, 0.05, 1.10], [0.07, 0.21, 0.07], 0.5),
    (9, 6, [0.0, 0.0, 3.1], [0.02, 0.12, 0.65], [0.11, 0.10, 0.09], 0.25),
]


def covariance(k: int) -> np.ndarray:
    """A distinct, asymmetric-looking pattern per object: entry (i, j) = k + i / 10 + j / 100,
    so a transposed, reordered or flattened-wrong matrix shows."""
    i, j = np.mgrid[:6, :6]
    return k + i / 10 + j / 100


PUBLISHER = r"""
import json, sys
import numpy as np, rclpy
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from types import SimpleNamespace
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from posediff_ros.ros import messages  # numpy only: the publisher starts fast

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)  # tf2_ros.TransformBroadcaster's
spec = json.loads(sys.argv[1])
objects = [SimpleNamespace(instance_id=inst, class_id=cls, score=score, size=np.array(size),
                           rotation=Rotation.from_rotvec(rv).as_matrix(), translation=np.array(t),
                           covariance=np.array(cov))
           for inst, cls, rv, t, size, score, cov in spec]
names = sys.argv[2].split(",")
rclpy.init()
node = rclpy.create_node('dds_test_publisher')
poses = node.create_publisher(Detection3DArray, 'object_poses', 10)
tf = node.create_publisher(TFMessage, '/tf', TF_QOS)
k = 0
def tick():
    global k
    k += 1
    header = Header(frame_id='camera_color_optical_frame')
    header.stamp.sec = 1000 + k
    poses.publish(messages.detections_msg(header, objects))
    tf.publish(TFMessage(transforms=messages.transforms(header, objects, names)))
node.create_timer(0.05, tick)
try:
    rclpy.spin(node)
except KeyboardInterrupt:
    pass
"""


def test_detections_and_tf_cross_processes(rclpy_context):
    import rclpy
    from rclpy.utilities import get_rmw_implementation_identifier
    from scipy.spatial.transform import Rotation
    from tf2_msgs.msg import TFMessage
    from vision_msgs.msg import Detection3DArray

    from posediff_ros.geometry import quaternion_to_matrix
    from posediff_ros.ros.collector import detection_arrays
    from posediff_ros.ros.node import TF_QOS

    assert get_rmw_implementation_identifier() == "rmw_fastrtps_cpp"
    from posediff_ros.pipeline import object_names

    spec = [[*o, covariance(o[0]).tolist()] for o in OBJECTS]
    names = object_names([SimpleNamespace(instance_id=o[0], class_id=o[1]) for o in OBJECTS],
                         "posediff/")
    publisher = spawn_python(PUBLISHER, json.dumps(spec), ",".join(names))
    node = rclpy.create_node("dds_test_listener", context=rclpy_context)
    got_poses: list[Detection3DArray] = []
    got_tf: list[TFMessage] = []
    node.create_subscription(Detection3DArray, "object_poses", got_poses.append, 10)
    node.create_subscription(TFMessage, "/tf", got_tf.append, TF_QOS)
    executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    deadline = time.monotonic() + 60  # the publisher's start-up on a loaded machine
    try:
        while (len(got_poses) < 3 or len(got_tf) < 3) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            assert publisher.poll() is None, stop(publisher)
    finally:
        output = stop(publisher)
        node.destroy_node()
    assert len(got_poses) >= 3 and len(got_tf) >= 3, f"received too little; publisher:\n{output}"

    msg = got_poses[-1]
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert got_poses[-1].header.stamp.sec > got_poses[0].header.stamp.sec  # live messages
    decoded = detection_arrays(msg)
    assert sorted(decoded) == [o[0] for o in OBJECTS]
    by_id = {d.id: d for d in msg.detections}
    for inst, cls, rotvec, t, size, score in OBJECTS:
        name, R, t_got, size_got = decoded[inst]
        assert name == {6: "mug", 1: "bottle"}[cls]
        np.testing.assert_allclose(R, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-9)
        np.testing.assert_allclose(t_got, t, atol=1e-12)
        np.testing.assert_allclose(size_got, size, atol=1e-12)
        hyp = by_id[str(inst)].results[0]
        assert hyp.hypothesis.score == pytest.approx(score)
        # geometry_msgs/PoseWithCovariance: row-major 6x6 over (x, y, z, rot x, rot y, rot z)
        np.testing.assert_array_equal(np.reshape(hyp.pose.covariance, (6, 6)), covariance(inst))

    transforms = {t.child_frame_id: t for t in got_tf[-1].transforms}
    # <prefix><class>_<id>: the frame follows the object's id (issue 14), not a class count
    assert set(transforms) == {"posediff/mug_3", "posediff/bottle_7", "posediff/mug_9"}
    for inst, child in ((3, "posediff/mug_3"), (7, "posediff/bottle_7"), (9, "posediff/mug_9")):
        tf = transforms[child].transform
        assert transforms[child].header.frame_id == "camera_color_optical_frame"
        _, R, t_got, _ = decoded[inst]
        q = tf.rotation
        np.testing.assert_allclose(quaternion_to_matrix(np.array([q.x, q.y, q.z, q.w])), R,
                                   atol=1e-9)
        np.testing.assert_allclose([tf.translation.x, tf.translation.y, tf.translation.z],
                                   t_got, atol=1e-12)
