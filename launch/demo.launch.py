"""The synthetic camera feeding posediff_node (pose.launch.py): no hardware needed.

  ros2 launch posediff_ros demo.launch.py rviz:=true
"""

from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("posediff_ros")
    args = [
        DeclareLaunchArgument("model", default_value=""),
        DeclareLaunchArgument("backend", default_value="onnxruntime-int8"),
        DeclareLaunchArgument("device", default_value="cpu"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("rate", default_value="5.0", description="camera frames/s"),
        DeclareLaunchArgument("num_objects", default_value="0", description="0 = random 2-6"),
        DeclareLaunchArgument("ring_size", default_value="4"),
        DeclareLaunchArgument("seed", default_value="0"),
        DeclareLaunchArgument("sequence", default_value="handheld",
                              description="camera plays a moving sequence: static | orbit | "
                                          "handheld | pick_place; empty = random scenes"),
        DeclareLaunchArgument("sequence_frames", default_value="45",
                              description="frames of the sequence (all rendered at start)"),
        DeclareLaunchArgument("publish_overlay", default_value="true"),
        DeclareLaunchArgument("rviz", default_value="false"),
        DeclareLaunchArgument(
            "dds_profile", default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            description="Fast DDS profile of the publishers (large shared-memory segment)"),
    ]
    camera = Node(
        package="posediff_ros", executable="synthetic_camera", name="synthetic_camera",
        namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
        parameters=[{
            "rate": LaunchConfiguration("rate"),
            "num_objects": LaunchConfiguration("num_objects"),
            "ring_size": LaunchConfiguration("ring_size"),
            "seed": LaunchConfiguration("seed"),
            "sequence": LaunchConfiguration("sequence"),
            "sequence_frames": LaunchConfiguration("sequence_frames"),
        }],
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": LaunchConfiguration("dds_profile")},
    )
    pose = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "pose.launch.py"])),
        launch_arguments={name: LaunchConfiguration(name) for name in (
            "model", "backend", "device", "namespace", "publish_overlay", "rviz",
            "dds_profile")}.items(),
    )
    return LaunchDescription(args + [camera, pose])
