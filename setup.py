"""ament_python package posediff_ros: colcon builds it with a ROS 2 distro; scripts/setup.sh
pip-installs it into a venv without one; a plain `pip install .` gives the same ament layout.

Layout every install gets (what ament_index, `ros2 run` and `ros2 launch` look for):
  <prefix>/share/ament_index/resource_index/packages/posediff_ros
  <prefix>/share/posediff_ros/{package.xml, launch/, config/, models/}
  <prefix>/lib/posediff_ros/<executables>
colcon (setup.py install/develop) puts the console scripts in lib/posediff_ros itself
(setup.cfg). A wheel cannot: pip puts console scripts in <prefix>/bin, so a wheel also carries
lib/posediff_ros/<name> launchers (sh: exec ../../bin/<name>) as data files.
"""

import sys
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "posediff_ros"
HERE = Path(__file__).resolve().parent
CONSOLE_SCRIPTS = [
    # ROS nodes (ros2 run posediff_ros <name>)
    "posediff_node = posediff_ros.ros.node:main",
    "synthetic_camera = posediff_ros.ros.synthetic_camera:main",
    "lossy_relay = posediff_ros.ros.relay:main",
    "posediff-bag = posediff_ros.ros.bag:main",
    "posediff-demo = posediff_ros.ros.demo:main",
    "posediff-eval = posediff_ros.cli.eval_frames:main",
    "posediff-train = posediff_ros.cli.train:main",
    "posediff-results = posediff_ros.cli.results:main",
    "posediff-export = posediff_ros.cli.export:main",
    "posediff-bench = posediff_ros.cli.bench:main",
    "posediff-generate = posediff_ros.cli.generate:main",
    "posediff-cache = posediff_ros.cli.cache:main",
    "posediff-sequences = posediff_ros.data.sequences:main",
    "posediff-calibrate = posediff_ros.cli.calibrate:main",
    "posediff-soak = posediff_ros.ros.soak:main",
]


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    """Regular files directly in `folder` (generated subfolders such as models/onnx/ are not
    installed: setuptools can only copy files, and a folder would fail the build)."""
    files = sorted(str(p.relative_to(HERE)) for p in (HERE / folder).glob(pattern) if p.is_file())
    return (f"share/{PACKAGE}/{folder}", files)


def wheel_launchers() -> list[tuple[str, list[str]]]:
    """lib/posediff_ros/<name> -> ../../bin/<name>, only when building a wheel (for colcon's
    setup.py install they would overwrite the real scripts there)."""
    if "bdist_wheel" not in sys.argv:
        return []
    out = HERE / "build" / "ament_launchers"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for entry in CONSOLE_SCRIPTS:
        name = entry.split("=")[0].strip()
        path = out / name
        path.write_text(f'#!/bin/sh\nexec "$(dirname "$0")/../../bin/{name}" "$@"\n')
        path.chmod(0o755)
        files.append(str(path.relative_to(HERE)))
    return [(f"lib/{PACKAGE}", files)]


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "LICENSE"]),
        share("launch", "*.launch.py"),
        share("config"),
        share("models"),
        *wheel_launchers(),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs pytest when this names it
    zip_safe=False,
    maintainer="posediff_ros developers",
    maintainer_email="dev@posediff.invalid",
    description="Category-level 6D pose estimation node: regression + score-scaled diffusion",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
