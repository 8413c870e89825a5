"""ament_python package posediff_ros: colcon builds it with a ROS 2 distro; scripts/setup.sh
pip-installs it into a venv without one."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "posediff_ros"


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", sorted(f for f in glob(f"{folder}/{pattern}")))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config"),
        share("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="posediff_ros developers",
    maintainer_email="dev@posediff.invalid",
    description="Category-level 6D pose estimation node: regression + score-scaled diffusion",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            # ROS nodes (ros2 run posediff_ros <name>)
            "posediff_node = posediff_ros.ros.node:main",
            "synthetic_camera = posediff_ros.ros.synthetic_camera:main",
            "posediff-bag = posediff_ros.ros.bag:main",
            "posediff-demo = posediff_ros.ros.demo:main",
            "posediff-eval = posediff_ros.cli.eval_frames:main",
            "posediff-train = posediff_ros.cli.train:main",
            "posediff-results = posediff_ros.cli.results:main",
            "posediff-export = posediff_ros.cli.export:main",
            "posediff-bench = posediff_ros.cli.bench:main",
            "posediff-generate = posediff_ros.cli.generate:main",
            "posediff-cache = posediff_ros.data.cache:main",
            "posediff-soak = posediff_ros.ros.soak:main",
        ],
    },
)
