"""The node's outputs cost nothing without subscribers, and its own per-stage timers reach
/diagnostics: real camera and node processes over DDS, this test as the only subscriber."""

import time

import pytest
from conftest import REPO, start_ros_module, stop

pytestmark = [pytest.mark.ros, pytest.mark.slow]

STAGES = ("receive", "pairing wait", "queue", "conversion", "checks", "extraction", "model",
          "poses", "stamp to poses", "tf", "markers")


def _start(module, *params):
    return start_ros_module(module, *params, namespace="outputs", env={
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_shm.xml")})


def test_outputs_built_only_for_subscribers_and_stage_timers(rclpy_context):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from vision_msgs.msg import Detection3DArray
    from visualization_msgs.msg import MarkerArray

    camera = _start("posediff_ros.ros.synthetic_camera", "rate:=10.0", "num_objects:=2",
                    "ring_size:=1", "width:=320", "height:=240")
    node = _start("posediff_ros.ros.node", "model_path:=random", "min_points:=20")
    listener = Node("outputs_listener", namespace="/outputs", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(listener)
    poses, markers, diag = [], [], {}

    def on_diag(msg):
        for s in msg.status:
            if s.hardware_id == "/outputs/posediff_node":
                diag.clear()
                diag.update({kv.key: kv.value for kv in s.values})

    listener.create_subscription(Detection3DArray, "object_poses", poses.append, 10)
    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    def spin_until(cond, timeout=90.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            executor.spin_once(timeout_sec=0.1)
            assert node.poll() is None and camera.poll() is None
        return cond()

    try:
        # 1. only object_poses has a subscriber: nothing else is built or sent
        assert spin_until(lambda: int(diag.get("published object_poses", 0)) >= 10), diag
        assert poses and diag["published markers"] == "0" and diag["published tf"] == "0"
        assert diag["published debug/points"] == "0"  # publish_debug is off by default
        for stage in STAGES:  # the node's own timers, every stage of a published frame
            p50, p99 = (float(diag[f"stage {stage} {q} (ms)"]) for q in ("p50", "p99"))
            assert 0 <= p50 <= p99, (stage, p50, p99)
        assert "stage debug p50 (ms)" not in diag  # disabled outputs have no stage
        # 2. a markers subscriber appears: markers flow (and only they)
        listener.create_subscription(MarkerArray, "markers", markers.append, 10)
        assert spin_until(lambda: len(markers) >= 3 and int(diag["published markers"]) > 0)
        assert diag["published tf"] == "0"
        assert any(m.ns == "box" for m in markers[-1].markers)
    finally:
        executor.shutdown()
        listener.destroy_node()
        node_log = stop(node)
        stop(camera)
    assert node.returncode == 0 and "Traceback" not in node_log, node_log
    assert "threads: {" in node_log  # math libraries bounded, said at start
