"""posediff_node with its parameters, topic remaps and optional RViz.

  ros2 launch posediff_ros pose.launch.py model:=random namespace:=cam depth:=/camera/depth
  ros2 launch posediff_ros pose.launch.py managed:=true target_frame:=base_link
  ros2 launch posediff_ros pose.launch.py segmentation:=boxes detections:=/yolo/detections \
      class_aliases:="['41:mug', '39:bottle']"     # a box detector, no mask topic

managed:=true starts it as a lifecycle node that waits for configure / activate (a lifecycle
manager, or `ros2 lifecycle set /posediff_node configure`), so the model loads when the
robot's bring-up says so; launch's lifecycle events reach it as a launch_ros LifecycleNode.
"""

from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution

# input/output name -> launch argument that remaps it (default: the same relative name)
TOPICS = ["depth", "camera_info", "mask", "detections", "color", "object_poses", "markers"]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("posediff_ros")
    args = [
        DeclareLaunchArgument("model", default_value="",
                              description="model JSON or 'random'; empty = bundled default"),
        DeclareLaunchArgument("backend", default_value="onnxruntime-int8",
                              description="onnxruntime-int8 | onnxruntime | torch | torch-fused | "
                                          "tensorrt (falls back to the next one when missing)"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu | cuda | cuda:N"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its relative topics"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "pose.yaml"]),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("class_source", default_value="detections",
                              description="detections | parameter | color_mask"),
        DeclareLaunchArgument("segmentation", default_value="mask",
                              description="mask | boxes (no mask topic: each object cut out "
                                          "of the depth inside its detection box)"),
        DeclareLaunchArgument("class_aliases", default_value="['']",
                              description="detector class names -> NOCS classes on top of "
                                          "the defaults, e.g. \"['41:mug', 'tumbler:mug']\""),
        DeclareLaunchArgument("sync", default_value="exact",
                              description="exact (identical stamps) | approximate (within "
                                          "slop, for sources that re-stamp)"),
        DeclareLaunchArgument("slop", default_value="0.02",
                              description="approximate sync: max stamp difference (s)"),
        DeclareLaunchArgument("publish_overlay", default_value="false",
                              description="publish boxes drawn on the colour image"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="true: a lifecycle node waiting for configure and "
                                          "activate; false: starts at once"),
        DeclareLaunchArgument("target_frame", default_value="",
                              description="publish poses, TF and markers in this frame (e.g. "
                                          "base_link); empty = the camera frame"),
        DeclareLaunchArgument("frame_prefix", default_value="auto",
                              description="prefix of the object TF frames; auto = the node's "
                                          "fully qualified name + '/' (unique per node)"),
        DeclareLaunchArgument("tracking", default_value="true",
                              description="ids per physical object, warm starts, smoothing"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="debug | info | warn | error"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
        DeclareLaunchArgument(
            "dds_profile", default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
            description="Fast DDS profile of the node (large shared-memory segment for images)"),
    ] + [DeclareLaunchArgument(t, default_value=t, description=f"remap of '{t}'")
         for t in TOPICS]
    managed = LaunchConfiguration("managed")
    node_options = dict(
        package="posediff_ros", executable="posediff_node", name="posediff_node",
        namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), {
            # strings stay strings (an empty model path would otherwise parse as null)
            "model_path": ParameterValue(LaunchConfiguration("model"), value_type=str),
            "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
            "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
            "class_source": ParameterValue(LaunchConfiguration("class_source"), value_type=str),
            "segmentation": ParameterValue(LaunchConfiguration("segmentation"), value_type=str),
            "class_aliases": LaunchConfiguration("class_aliases"),  # YAML: a list of strings
            "sync": ParameterValue(LaunchConfiguration("sync"), value_type=str),
            "slop": ParameterValue(LaunchConfiguration("slop"), value_type=float),
            "publish_overlay": LaunchConfiguration("publish_overlay"),
            "target_frame": ParameterValue(LaunchConfiguration("target_frame"), value_type=str),
            "managed": ParameterValue(managed, value_type=bool),
            "frame_prefix": ParameterValue(LaunchConfiguration("frame_prefix"), value_type=str),
            "tracking": LaunchConfiguration("tracking"),
        }],
        remappings=[(t, LaunchConfiguration(t)) for t in TOPICS],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": LaunchConfiguration("dds_profile")},
    )
    nodes = [Node(condition=UnlessCondition(managed), **node_options),
             LifecycleNode(condition=IfCondition(managed), **node_options)]
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", PathJoinSubstitution([share, "config", "posediff.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + nodes + [rviz])

