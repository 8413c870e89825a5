"""The launch files load and declare their arguments; the YAML and RViz configs match the
node's parameters and topics. No processes are started here (test_launch_pose.py does)."""

from pathlib import Path

import pytest
import yaml

from posediff_ros.ros.node import PARAMETERS

REPO = Path(__file__).resolve().parents[1]


def _arguments(path: Path) -> set[str]:
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(path))
    return {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}


def test_pose_launch_arguments():
    args = _arguments(REPO / "launch" / "pose.launch.py")
    assert {"model", "backend", "device", "namespace", "rviz", "params_file", "depth", "mask",
            "camera_info", "detections", "color", "object_poses", "managed",
            "target_frame", "segmentation", "class_aliases", "sync", "slop"} <= args


def test_demo_launch_arguments():
    args = _arguments(REPO / "launch" / "demo.launch.py")
    assert {"model", "rate", "num_objects", "rviz", "namespace"} <= args


def test_pose_yaml_lists_every_parameter_at_its_declared_default():
    """ros2 launch and a plain `ros2 run` behave alike, and the file documents the defaults
    (it once set estimate_every 1 against the node's 3)."""
    config = yaml.safe_load((REPO / "config" / "pose.yaml").read_text())
    params = config["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name][0]
        assert type(value) is type(default), f"{name}: {value!r} vs declared {default!r}"
        assert value == default, f"{name}: pose.yaml {value!r} vs declared {default!r}"


def test_rviz_config_shows_markers_tf_and_points():
    config = yaml.safe_load((REPO / "config" / "posediff.rviz").read_text())
    displays = {d["Class"]: d for d in config["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/markers"
    assert displays["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == "/debug/points"
    assert "rviz_default_plugins/TF" in displays
