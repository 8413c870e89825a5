"""The demo command end to end (ros2 launch where it exists, plain processes otherwise).

Where `ros2 launch` exists, the plain-processes mode runs end to end inside the fallback test
(a failed launch, then the same nodes as processes, reported in full), so it is not run a
second time on its own (each run starts three or four processes that import torch or
rclpy)."""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
HAS_LAUNCH = importlib.util.find_spec("ros2launch") is not None
# the default hand-held sequence, 8 frames instead of 45: the camera renders all of them
# (~0.4 CPU-s each) before its first frame
SHORT = ["--sequence-frames", "8"]


def assert_reports(proc: subprocess.CompletedProcess, out_dir) -> str:
    """A demo run that ended well: rate, latency, per-object errors and the overlay PNG."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "frames/s" in out and "latency" in out and "trans err cm" in out, out
    assert (out_dir / "demo_overlay.png").stat().st_size > 10_000
    return out


@pytest.mark.parametrize("mode", ["launch", "processes"])
def test_demo_runs_and_reports(tmp_path, mode):
    if mode == "launch" and not HAS_LAUNCH:
        pytest.skip("no ros2launch here: the demo runs as plain processes ([processes])")
    if mode == "processes" and HAS_LAUNCH:
        pytest.skip("run end to end by test_demo_notices_a_failed_launch_and_falls_back")
    args = [sys.executable, "-m", "posediff_ros.ros.demo", "--duration", "4", "--model", "random",
            "--out", str(tmp_path), *SHORT] + (["--no-launch"] if mode == "processes" else [])
    assert_reports(subprocess.run(args, capture_output=True, text=True, timeout=180), tmp_path)


def test_demo_notices_a_failed_launch_and_falls_back(tmp_path):
    """A broken install, as a plain `pip install .` used to leave: the package's share/ is
    found first on AMENT_PREFIX_PATH but its lib/posediff_ros/ executables are not, so
    `ros2 launch` ends at once. The demo must notice that (not wait --startup-timeout for a
    result) and run the same nodes as plain processes, reporting in full (the demo's
    plain-processes mode, end to end)."""
    pytest.importorskip("ros2launch")
    from conftest import REPO

    broken = tmp_path / "prefix"
    (broken / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (broken / "share/ament_index/resource_index/packages/posediff_ros").write_text("")
    for folder in ("launch", "config"):
        shutil.copytree(REPO / folder, broken / "share/posediff_ros" / folder)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(broken))
    args = [sys.executable, "-m", "posediff_ros.ros.demo", "--duration", "3", "--model",
            "random", "--out", str(tmp_path), "--startup-timeout", "60", *SHORT]
    out = assert_reports(subprocess.run(args, capture_output=True, text=True, timeout=240,
                                        env=env), tmp_path)
    assert "ros2 launch demo.launch.py ended (exit code" in out, out
    assert "falling back to separate processes" in out and "frames/s" in out, out
