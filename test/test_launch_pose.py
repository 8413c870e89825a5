"""launch_testing: launch/pose.launch.py with its topics remapped (launch arguments) and a
namespace, fed by the synthetic camera on other names. The launched node's Detection3DArray
(on the remapped output topic), TF and markers must arrive over real DDS with the camera's
stamps, frame and classes. Skipped where the ROS 2 launch stack is not installed."""

import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription, SetLaunchConfiguration  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAM = "/sim_cam"  # where the camera publishes
REMAPS = {"depth": f"{CAM}/depth", "mask": f"{CAM}/mask", "camera_info": f"{CAM}/camera_info",
          "detections": f"{CAM}/detections", "object_poses": "/perception/poses"}


@pytest.mark.launch_test
@pytest.mark.launch
def generate_test_description():
    camera = Node(package="posediff_ros", executable="synthetic_camera", namespace=CAM,
                  output="screen", parameters=[{"rate": 4.0, "num_objects": 2, "ring_size": 1}],
                  additional_env={"FASTDDS_DEFAULT_PROFILES_FILE":
                                  str(REPO / "config" / "fastdds_shm.xml")})
    pose = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "pose.launch.py")),
        launch_arguments=dict(model="random", namespace="robot", **REMAPS).items())
    # the property tested is a clean exit (code 0) on SIGINT, not its speed: on a loaded
    # machine an interpreter holding torch can take longer than launch's default 5 s to exit
    patience = SetLaunchConfiguration("sigterm_timeout", "30")
    return launch.LaunchDescription([patience, camera, pose,
                                     launch_testing.actions.ReadyToTest()])


class TestRemappedTopics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from rclpy.executors import SingleThreadedExecutor

        from posediff_ros.ros.collector import Collector

        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        # the collector listens where this launch put things
        remaps = {"object_poses": REMAPS["object_poses"], "ground_truth": f"{CAM}/ground_truth",
                  "markers": "/robot/markers", "debug/points": "/robot/debug/points"}
        args = ["--ros-args"] + [a for k, v in remaps.items() for a in ("-r", f"{k}:={v}")]
        cls.node = Collector(context=cls.context, cli_args=args, use_global_arguments=False)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.try_shutdown(context=cls.context)

    def test_launched_node_publishes_poses_tf_markers_on_remapped_topics(self, proc_output):
        c = self.node
        c.spin_until(self.executor, lambda: len(c.matched()) >= 2 and c.tf and c.markers, 60)
        self.assertGreaterEqual(len(c.matched()), 2, "too few results on /perception/poses")
        for stamp in c.matched():  # results carry the camera's stamps, frame and classes
            est, gt = c.poses[stamp], c.truth[stamp]
            self.assertEqual(est.header.frame_id, "camera_color_optical_frame")
            gt_classes = {d.id: d.results[0].hypothesis.class_id for d in gt.detections}
            self.assertTrue(est.detections)
            for det in est.detections:
                self.assertEqual(det.results[0].hypothesis.class_id, gt_classes[det.id])
        tf_stamps = {t.header.stamp.sec * 10**9 + t.header.stamp.nanosec
                     for m in c.tf for t in m.transforms}
        self.assertTrue(tf_stamps & set(c.poses), "no TF with a result's stamp")
        ours = [t for m in c.tf for t in m.transforms
                if t.header.stamp.sec * 10**9 + t.header.stamp.nanosec in c.poses]
        self.assertTrue(all(t.header.frame_id == "camera_color_optical_frame" for t in ours))
        self.assertTrue(any(m.ns == "box" for a in c.markers for m in a.markers))

        # the node lives in the launch namespace; its default output name is unused
        def namespaces():
            return [ns for name, ns in c.get_node_names_and_namespaces()
                    if name == "posediff_node"]

        c.spin_until(self.executor, lambda: bool(namespaces()), 15)
        self.assertEqual(namespaces(), ["/robot"])
        self.assertEqual(c.count_publishers("/robot/object_poses"), 0)
        self.assertEqual(c.count_publishers(REMAPS["object_poses"]), 1)
        proc_output.assertWaitFor("ready: backend onnxruntime", timeout=10, stream="stderr")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
