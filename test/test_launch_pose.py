"""launch_testing: launch/pose.launch.py with its topics remapped (launch arguments) and a
namespace, fed by the synthetic camera on other names; results must arrive on the remapped
output topic, over real DDS. Skipped where the ROS 2 launch stack is not installed."""

import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch_ros.actions import Node  # noqa: E402
from vision_msgs.msg import Detection3DArray  # noqa: E402

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAM = "/sim_cam"  # where the camera publishes
REMAPS = {"depth": f"{CAM}/depth", "mask": f"{CAM}/mask", "camera_info": f"{CAM}/camera_info",
          "detections": f"{CAM}/detections", "object_poses": "/perception/poses"}


@pytest.mark.launch_test
@pytest.mark.launch
def generate_test_description():
    camera = Node(package="posediff_ros", executable="synthetic_camera", namespace=CAM,
                  output="screen", parameters=[{"rate": 4.0, "num_objects": 2, "ring_size": 1}])
    pose = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "pose.launch.py")),
        launch_arguments=dict(model="random", namespace="robot", **REMAPS).items())
    return launch.LaunchDescription([camera, pose, launch_testing.actions.ReadyToTest()])


class TestRemappedTopics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("remap_listener", context=cls.context)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.try_shutdown(context=cls.context)

    def test_results_on_the_remapped_topic(self, proc_output):
        got = []
        self.node.create_subscription(Detection3DArray, REMAPS["object_poses"], got.append, 10)
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        end = time.time() + 60
        while time.time() < end and not any(m.detections for m in got):
            executor.spin_once(timeout_sec=0.2)
        self.assertTrue(any(m.detections for m in got), "no poses on /perception/poses")
        self.assertEqual(got[-1].header.frame_id, "camera_color_optical_frame")
        # the node lives in the launch namespace; its default output name is unused
        def namespaces():
            return [ns for name, ns in self.node.get_node_names_and_namespaces()
                    if name == "posediff_node"]

        end = time.time() + 15
        while time.time() < end and not namespaces():
            executor.spin_once(timeout_sec=0.2)
        self.assertEqual(namespaces(), ["/robot"])
        self.assertEqual(self.node.count_publishers("/robot/object_poses"), 0)
        self.assertEqual(self.node.count_publishers(REMAPS["object_poses"]), 1)
        proc_output.assertWaitFor("ready: backend torch", timeout=10, stream="stderr")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
