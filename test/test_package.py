"""Package layout and the ROS-free core: what colcon, ament and users rely on."""

import subprocess
import sys
import xml.etree.ElementTree as ET


def test_core_imports_without_rclpy():
    """Every module outside posediff_ros.ros imports in an interpreter where rclpy can't."""
    code = """
import importlib, importlib.abc, pkgutil, sys

class RefuseRclpy(importlib.abc.MetaPathFinder):  # as if ROS 2 were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'rclpy':
            raise ImportError('rclpy is not available')

sys.meta_path.insert(0, RefuseRclpy())
import posediff_ros
names = [m.name for m in pkgutil.walk_packages(posediff_ros.__path__, 'posediff_ros.')
         if not m.name.startswith('posediff_ros.ros')]
for name in names:
    importlib.import_module(name)
assert 'rclpy' not in sys.modules
print(len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert int(out.stdout.strip()) >= 20  # the whole core: geometry, data, model, runtime, ...


# import name -> rosdep key; pip-only packages are in requirements.txt instead
ROSDEP_KEYS = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces",
    "builtin_interfaces": "builtin_interfaces", "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs", "geometry_msgs": "geometry_msgs",
    "visualization_msgs": "visualization_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "std_srvs": "std_srvs",
    "vision_msgs": "vision_msgs", "tf2_msgs": "tf2_msgs", "tf2_ros": "tf2_ros_py",
    "ament_index_python": "ament_index_python", "launch": "launch", "launch_ros": "launch_ros",
    "ros2launch": "ros2launch", "lifecycle_msgs": "lifecycle_msgs",
    "numpy": "python3-numpy", "scipy": "python3-scipy",
    "yaml": "python3-yaml", "PIL": "python3-pil", "tqdm": "python3-tqdm",
    "threadpoolctl": "python3-threadpoolctl",
    "pytest": "python3-pytest", "hypothesis": "python3-hypothesis",
    "launch_testing": "launch_testing", "sensor_msgs_py": "sensor_msgs_py",
}
PIP_ONLY = {"torch": "torch", "safetensors": "safetensors", "onnx": "onnx",
            "onnxruntime": "onnxruntime", "rosbags": "rosbags"}
OPTIONAL = {"tensorrt"}  # backend falls back without it (README)
LOCAL = {"posediff_ros", "conftest", "fp32", "reference", "gpu_checks"}


def imported_modules(paths) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports only)."""
    import ast

    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_package_xml_declares_every_import(repo):
    """Every import of posediff_ros/, launch/ and test/ is the standard library, this
    package, a rosdep key declared in package.xml (exec or test) or a pinned pip package."""
    root = ET.parse(repo / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "posediff_ros"
    assert root.find("export/build_type").text == "ament_python"
    assert root.find("buildtool_depend") is None  # ament_python is no rosdep key
    exec_deps = {e.text for e in root.findall("exec_depend")}
    test_deps = {e.text for e in root.findall("test_depend")}
    runtime = imported_modules([*repo.glob("posediff_ros/**/*.py"), *repo.glob("launch/*.py")])
    tests = imported_modules(repo.glob("test/*.py"))
    requirements = (repo / "requirements.txt").read_text()
    for modules, declared in ((runtime, exec_deps), (tests, exec_deps | test_deps)):
        for name, files in sorted(modules.items()):
            local = LOCAL | {p.stem for p in (repo / "test").glob("*.py")}  # test helpers
            if name in sys.stdlib_module_names or name in local | OPTIONAL:
                continue
            if name in PIP_ONLY:
                assert f"{PIP_ONLY[name]}==" in requirements, (name, files)
                continue
            assert name in ROSDEP_KEYS, f"{name} (imported by {sorted(files)}): which rosdep key?"
            assert ROSDEP_KEYS[name] in declared, f"{ROSDEP_KEYS[name]} not in package.xml"
    # launch files start rviz2 (pose.launch.py rviz:=true); nothing declared goes unused
    assert "rviz2" in exec_deps and "message_filters" not in exec_deps
    used = {ROSDEP_KEYS[m] for m in {**runtime, **tests} if m in ROSDEP_KEYS}
    assert exec_deps | test_deps <= used | {"rviz2", "ros2param", "ros2pkg", "lifecycle_msgs"}


def test_ament_index_finds_share_files():
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("posediff_ros")
    from pathlib import Path

    assert (Path(share) / "package.xml").is_file()
    for folder in ("launch", "config", "models"):
        assert (Path(share) / folder).is_dir(), folder
