"""Classes from a colour-coded class mask (class_source=color_mask), over real DDS; the node
in its own process, this test publishing depth, camera_info and the colour mask."""

import time

import numpy as np
import pytest
from conftest import start_ros_module, stop

pytestmark = pytest.mark.ros

W, H = 160, 120


@pytest.fixture
def color_mask_node():
    proc = start_ros_module("posediff_ros.ros.node", "model_path:=random",
                            "class_source:=color_mask",
                            "class_colors:=['mug:#ff0000', 'bowl:0,255,0']", "min_points:=20",
                            "num_samples:=3", namespace="colours")
    yield proc
    stop(proc)


def test_colour_coded_masks_give_classes_and_covariance(color_mask_node, rclpy_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection3DArray

    from posediff_ros.ros.convert import ns_to_stamp, numpy_to_image

    node = Node("colour_publisher", namespace="/colours", context=rclpy_context)
    pubs = {name: node.create_publisher(Image, name, 10) for name in ("depth", "mask")}
    info_pub = node.create_publisher(CameraInfo, "camera_info", 10)
    results = []
    node.create_subscription(Detection3DArray, "object_poses", results.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    deadline = time.monotonic() + 60
    while pubs["mask"].get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.2)

    depth = np.full((H, W), 700, np.uint16)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[10:50, 10:50] = (255, 0, 0)  # two separate mugs and a bowl
    rgb[60:110, 20:60] = (255, 0, 0)
    rgb[30:90, 90:150] = (0, 255, 0)
    for _ in range(20):
        header = Header(stamp=ns_to_stamp(time.time_ns()), frame_id="cam")
        info_pub.publish(CameraInfo(header=header, width=W, height=H,
                                    k=[400.0, 0.0, 80.0, 0.0, 400.0, 60.0, 0.0, 0.0, 1.0]))
        pubs["depth"].publish(numpy_to_image(depth, "16UC1", header=header))
        pubs["mask"].publish(numpy_to_image(rgb, "rgb8", header=header))
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        if any(r.detections for r in results):
            break
    node.destroy_node()
    assert color_mask_node.poll() is None
    result = next(r for r in results if r.detections)
    classes = sorted(d.results[0].hypothesis.class_id for d in result.detections)
    assert classes == ["bowl", "mug", "mug"]
    # three samples per object (an untrained model: they scatter): either one hypothesis with
    # a real covariance, or several (hypotheses.py), each covariance symmetric, diagonal >= 0
    for det in result.detections:
        covs = [np.reshape(r.pose.covariance, (6, 6)) for r in det.results]
        for cov in covs:
            np.testing.assert_allclose(cov, cov.T, atol=1e-9)
            assert np.all(np.diag(cov) >= 0)
        assert len(covs) > 1 or np.any(np.diag(covs[0]) > 0)
