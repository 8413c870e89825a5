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


def test_package_xml_declares_runtime_dependencies(repo):
    root = ET.parse(repo / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "posediff_ros"
    deps = {e.text for e in root.findall("exec_depend")}
    for needed in ("rclpy", "sensor_msgs", "geometry_msgs", "visualization_msgs", "vision_msgs",
                   "tf2_msgs", "diagnostic_msgs"):
        assert needed in deps, needed
    assert root.find("export/build_type").text == "ament_python"


def test_ament_index_finds_share_files():
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("posediff_ros")
    from pathlib import Path

    assert (Path(share) / "package.xml").is_file()
    for folder in ("launch", "config", "models"):
        assert (Path(share) / folder).is_dir(), folder
