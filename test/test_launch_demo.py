"""The demo command end to end (ros2 launch where it exists, plain processes otherwise)."""

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
