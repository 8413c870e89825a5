"""posediff_node's input contract over real DDS (the node in its own process): detector class
names through the aliases, unknown classes skipped and counted, camera_info picked by the
frame's stamp across a resolution change, and a rejected frame clearing the outputs."""

import time

import numpy as np
import pytest
from conftest import start_ros_module, stop

pytestmark = pytest.mark.ros

W, H = 160, 120
K = [300.0, 0.0, 80.0, 0.0, 300.0, 60.0, 0.0, 0.0, 1.0]
NS = "contract"


@pytest.fixture
def node_process():
    proc = start_ros_module("posediff_ros.ros.node", "model_path:=random", "min_points:=20",
                            "publish_tf:=false", namespace=NS)
    yield proc
    stop(proc)


def test_classes_camera_info_by_stamp_and_rejected_frames(node_process, rclpy_context):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import (
        Detection2D,
        Detection2DArray,
        Detection3DArray,
        ObjectHypothesis,
        ObjectHypothesisWithPose,
    )
    from visualization_msgs.msg import Marker, MarkerArray

    from posediff_ros.ros.convert import ns_to_stamp, numpy_to_image, stamp_to_ns

    node = Node("contract_publisher", namespace=f"/{NS}", context=rclpy_context)
    pubs = {"depth": node.create_publisher(Image, "depth", 10),
            "mask": node.create_publisher(Image, "mask", 10),
            "info": node.create_publisher(CameraInfo, "camera_info", 10),
            "detections": node.create_publisher(Detection2DArray, "detections", 10)}
    poses, markers, diagnostics = {}, [], []
    node.create_subscription(Detection3DArray, "object_poses",
                             lambda m: poses.__setitem__(stamp_to_ns(m.header.stamp), m), 10)
    node.create_subscription(MarkerArray, "markers", markers.append, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    def spin_until(condition, seconds=5.0) -> None:  # conditions, not fixed sleeps: a
        end = time.monotonic() + seconds  # loaded machine delivers late
        while not condition() and time.monotonic() < end:
            spin(0.05)

    spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
               and node.count_publishers("object_poses") > 0, 60.0)

    depth = np.full((H, W), 700, np.uint16)
    mask = np.zeros((H, W), np.uint8)
    mask[30:70, 20:60] = 1  # a "Cup"
    mask[40:90, 100:140] = 2  # a "person": not a NOCS category
    detections = Detection2DArray()
    for i, name in ((1, "Cup"), (2, "person")):
        hyp = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=0.9))
        detections.detections.append(Detection2D(id=str(i), results=[hyp]))

    def header(stamp_ns):
        return Header(stamp=ns_to_stamp(stamp_ns), frame_id="cam")

    def send_info(stamp_ns, size=(W, H)):
        pubs["info"].publish(CameraInfo(header=header(stamp_ns), width=size[0], height=size[1],
                                        k=K))

    def send_images(stamp_ns, with_mask=True):
        detections.header = header(stamp_ns)
        pubs["depth"].publish(numpy_to_image(depth, "16UC1", header=header(stamp_ns)))
        pubs["detections"].publish(detections)
        if with_mask:
            pubs["mask"].publish(numpy_to_image(mask, "mono8", header=header(stamp_ns)))

    def answered(stamp_ns, seconds=5.0):
        spin_until(lambda: stamp_ns in poses, seconds)
        return poses.get(stamp_ns)

    t = time.time_ns()
    for _ in range(3):  # best-effort: the first frames may go before discovery settles
        t += 50_000_000
        send_info(t)
        send_images(t)
        if (first := answered(t)) is not None:
            break
    assert first is not None, "no answer to a good frame"
    assert [(d.id, d.results[0].hypothesis.class_id) for d in first.detections] == [("1", "mug")]
    spin_until(lambda: markers)  # published right after object_poses
    assert markers and {m.id for m in markers[-1].markers} == {1}

    # the resolution changes right after frame t2, whose mask is late: t2 keeps its own info
    t2, t3 = t + 50_000_000, t + 100_000_000
    send_info(t2)
    send_images(t2, with_mask=False)
    spin(0.3)
    send_info(t3, size=(2 * W, 2 * H))
    spin(0.3)
    pubs["mask"].publish(numpy_to_image(mask, "mono8", header=header(t2)))
    second = answered(t2)
    assert second is not None and len(second.detections) == 1, "frame before the change lost"

    # frame t3 has the new 320x240 camera_info but 160x120 depth: rejected, outputs cleared
    before = len(markers)
    send_images(t3)
    third = answered(t3)
    assert third is not None and third.detections == [], "no empty object_poses"

    def deletes() -> list:
        return [m for a in markers[before:] for m in a.markers if m.action == Marker.DELETE]

    spin_until(deletes)  # published right after object_poses
    assert {m.id for m in deletes()} == {1} and all(m.header.stamp == third.header.stamp
                                                     for m in deletes())

    def mine() -> list:  # this node's status on /diagnostics (once a second)
        return [s for d in diagnostics for s in d.status
                if s.hardware_id == f"/{NS}/posediff_node"]

    seen = len(mine())
    spin_until(lambda: len(mine()) > seen)  # one published after the frames above
    assert len(mine()) > seen, "no /diagnostics from the node"
    values = {kv.key: kv.value for kv in mine()[-1].values}
    assert values["unknown classes skipped"].startswith("person "), values
    node.destroy_node()
    out = stop(node_process)
    assert out.count("detection class 'person' is not a NOCS category") == 1, out  # throttled
    assert "camera_info is 320x240 but depth is 160x120" in out, out
