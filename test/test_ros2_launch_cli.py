"""`ros2 launch posediff_ros demo.launch.py` by package name, as a user types it: the launch
file is found through the ament index, starts the synthetic camera and posediff_node, the
poses arrive here over DDS, and Ctrl-C (SIGINT) stops everything with exit code 0.

Needs the launch stack (ros2launch): the wheelhouse venv or a sourced distro. The pip-only
set-up has no `ros2 launch`; there the same nodes start from console scripts (test_node_e2e).
"""

import subprocess
import time

import pytest
from conftest import REPO, ros2_cli, stop_group

pytestmark = [pytest.mark.ros, pytest.mark.ros2launch]
ROS2 = ros2_cli()


@pytest.mark.skipif(ROS2 is None, reason="no `ros2` command: launch stack not installed")
def test_ros2_launch_by_package_name_publishes_poses(rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from vision_msgs.msg import Detection3DArray

    launch = subprocess.Popen(
        [ROS2, "launch", "posediff_ros", "demo.launch.py", "namespace:=cli_launch",
         # the default hand-held sequence, 4 frames (all are rendered before the first one)
         "rate:=4.0", "num_objects:=3", "sequence_frames:=4", "publish_overlay:=false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        start_new_session=True,  # its own process group: SIGINT reaches launch and its nodes
    )
    node = rclpy.create_node("cli_launch_listener", context=rclpy_context)
    received: list[Detection3DArray] = []
    node.create_subscription(Detection3DArray, "/cli_launch/object_poses", received.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    deadline = time.monotonic() + 90
    try:
        while len(received) < 2 and time.monotonic() < deadline and launch.poll() is None:
            executor.spin_once(timeout_sec=0.2)
    finally:
        node.destroy_node()
        output = stop_group(launch)
    assert len(received) >= 2, f"no poses from the launched nodes; launch output:\n{output}"
    assert "process started with pid" in output
    assert all(d.results[0].hypothesis.class_id for msg in received for d in msg.detections)
    assert any(msg.detections for msg in received), output
    assert launch.returncode == 0, f"launch exited {launch.returncode}:\n{output}"
    assert "Traceback" not in output, output
