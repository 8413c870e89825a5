"""The demo command end to end (ros2 launch where it exists, plain processes otherwise)."""

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["launch", "processes"])
def test_demo_runs_and_reports(tmp_path, mode):
    if mode == "launch":
        pytest.importorskip("ros2launch")
    args = [sys.executable, "-m", "posediff_ros.ros.demo", "--duration", "4", "--model", "random",
            "--out", str(tmp_path)] + (["--no-launch"] if mode == "processes" else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "frames/s" in out and "latency" in out and "trans err cm" in out
    assert (tmp_path / "demo_overlay.png").stat().st_size > 10_000


def test_demo_notices_a_failed_launch_and_falls_back(tmp_path):
    """A broken install, as a plain `pip install .` used to leave: the package's share/ is
    found first on AMENT_PREFIX_PATH but its lib/posediff_ros/ executables are not, so
    `ros2 launch` ends at once. The demo must notice that (not wait --startup-timeout for a
    result) and run the same nodes as plain processes."""
    pytest.importorskip("ros2launch")
    from conftest import REPO

    broken = tmp_path / "prefix"
    (broken / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (broken / "share/ament_index/resource_index/packages/posediff_ros").write_text("")
    for folder in ("launch", "config"):
        shutil.copytree(REPO / folder, broken / "share/posediff_ros" / folder)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(broken))
    args = [sys.executable, "-m", "posediff_ros.ros.demo", "--duration", "3", "--model",
            "random", "--out", str(tmp_path), "--startup-timeout", "60"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ros2 launch demo.launch.py ended (exit code" in out, out
    assert "falling back to separate processes" in out and "frames/s" in out, out
