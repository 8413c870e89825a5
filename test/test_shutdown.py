"""posediff_node as a subprocess: SIGINT and SIGTERM (what `ros2 launch` sends on stop) while
frames flow end it with exit code 0 and no traceback; a broken model file ends the start with
exit code 1 and one clear line naming the file and the problem (never a traceback)."""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import spawn_python, start_ros_module

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def camera():
    # 30 Hz with 4 objects: the node's worker is busy (inference or publishing) most of the
    # time, so a stop lands in the middle of a frame
    proc = start_ros_module("posediff_ros.ros.synthetic_camera", "rate:=30.0", "ring_size:=2",
                            "width:=320", "height:=240", "num_objects:=4", namespace="shutdown")
    yield proc
    signalled = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert_clean_stop(out, since=signalled)


def assert_clean_stop(out: str, since: float = 0.0) -> None:
    """Nothing published into a context that is already gone (rclpy's "publisher's context
    is invalid", "Failed to publish log message to rosout", "failed to initialize wait
    set"), no traceback, and no warning or error logged after the stop request (`since`,
    wall-clock seconds; warnings about the input stream before it are the node's business)."""
    for bad in ("Traceback", "context is invalid", "context is not valid", "Failed to publish"):
        assert bad not in out, f"{bad!r} in the output:\n{out}"
    late = [line for line in out.splitlines()
            if (m := re.match(r"\[(WARN|ERROR|FATAL)\] \[(\d+\.\d+)\]", line))
            and float(m.group(2)) >= since]
    assert not late, "warnings after the stop request:\n" + "\n".join(late)


def wait_for_line(proc, text: str, timeout: float = 60.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline and proc.poll() is None:
        chunk = proc.stdout.readline()
        if chunk:
            lines.append(chunk)
            if text in chunk:
                break
        else:
            time.sleep(0.05)
    os.set_blocking(proc.stdout.fileno(), True)
    return lines


@pytest.mark.xdist_group("shutdown_camera")  # one camera for the three stops
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGINT", "SIGTERM", "SIGINT-again"])
def test_signal_while_processing_exits_cleanly(camera, sig):
    """Stop while frames flow at 30 Hz: exit 0, no traceback and no warning."""
    node = start_ros_module("posediff_ros.ros.node", "model_path:=random", "log_period:=0.5",
                            "min_points:=20", namespace="shutdown")
    lines = wait_for_line(node, "frames/s")  # processing (the rate log line), then signal
    assert any("frames/s" in line for line in lines), "".join(lines)
    time.sleep(0.3)
    signalled = time.time()
    node.send_signal(sig)
    out, _ = node.communicate(timeout=20)
    out = "".join(lines) + out
    assert node.returncode == 0, f"exit code {node.returncode}:\n{out}"
    assert_clean_stop(out, since=signalled)


def _model_files(tmp_path):
    """A real saved model (random weights) and broken variants of it: {case: json path}."""
    import torch

    from posediff_ros.model.posenet import PoseNet, PoseNetConfig, save_model

    torch.manual_seed(0)
    good = save_model(PoseNet(PoseNetConfig(feat_dim=64, hidden=64)), tmp_path / "good.json")
    cfg = json.loads(good.read_text())
    weights = tmp_path / cfg["weights"]
    absent = Path("/nonexistent/model.json")  # a missing folder, named in full
    cases = {"missing": (absent, f"{absent} does not exist")}

    def variant(name, change, weights_bytes=None):
        c = dict(cfg)
        change(c)
        if weights_bytes is not None:
            (tmp_path / f"{name}.safetensors").write_bytes(weights_bytes)
            c["weights"] = f"{name}.safetensors"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(c))
        return path

    blob = weights.read_bytes()
    cases["truncated weights"] = (variant("trunc", lambda c: None, blob[: len(blob) // 2]),
                                  "truncated or replaced")
    cases["truncated weights, no checksum"] = (
        variant("trunc_nosum", lambda c: c.pop("weights_sha256"), blob[: len(blob) // 2]),
        "cannot be read")
    truncated_json = tmp_path / "cut.json"
    truncated_json.write_text(good.read_text()[:100])
    cases["truncated config"] = (truncated_json, "is not valid JSON")
    cases["wrong version"] = (variant("v99", lambda c: c.update(format_version=99)),
                              "has format_version 99")
    cases["wrong shapes"] = (variant("shapes", lambda c: c.update(hidden=32)),
                             "does not fit the network")
    cases["missing weights"] = (variant("noweights", lambda c: c.update(weights="gone.st")),
                                "does not exist")
    return cases


# Every broken file through the node's own main() (what `ros2 run` calls), one after the
# other in one process: each start is one fatal line naming the file and main() returns 1.
_START_EACH = """
import sys
from posediff_ros.ros.node import main
for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
    rc = main(["--ros-args", "-r", "__ns:=/badmodel", "-p", f"model_path:={path}"])
    print(f"=== {name} returned {rc}", flush=True)
"""


@pytest.mark.slow  # two node processes, one of them starting seven times
def test_broken_model_files_fail_at_start_with_a_clear_line(tmp_path):
    cases = _model_files(tmp_path)
    # as a process: exit code 1 (the first case); then every case in turn in one process
    alone = start_ros_module("posediff_ros.ros.node", f"model_path:={cases['missing'][0]}",
                             namespace="badmodel")
    each = spawn_python(_START_EACH, *[str(x) for name, (path, _) in cases.items()
                                       for x in (name, path)])
    out, _ = alone.communicate(timeout=120)
    assert alone.returncode == 1, f"exit {alone.returncode}\n{out}"
    assert "Traceback" not in out and out.count("cannot start") == 1, out
    out, _ = each.communicate(timeout=120)
    assert each.returncode == 0 and "Traceback" not in out, out
    chunks = re.split(r"^=== (.+) returned (-?\d+)\n", out, flags=re.M)
    assert len(chunks) == 3 * len(cases) + 1, out
    for text, name, rc in zip(chunks[0::3], chunks[1::3], chunks[2::3], strict=False):
        path, expected = cases[name]
        assert rc == "1", f"{name}: main() returned {rc}\n{text}"
        fatal = [line for line in text.splitlines() if "cannot start" in line]
        assert len(fatal) == 1, f"{name}:\n{text}"
        assert expected in fatal[0], f"{name}: {fatal[0]}"
        assert path.stem in fatal[0] or "gone.st" in fatal[0], f"{name}: file not named"


def test_model_loading_never_unpickles():
    """Weights are safetensors + JSON: no pickle, torch.load or np.load(allow_pickle) in the
    code that loads models or runs the node."""
    root = Path(__file__).resolve().parents[1] / "posediff_ros"
    files = [*root.glob("model/*.py"), *root.glob("runtime/*.py"), *root.glob("ros/*.py"),
             root / "pipeline.py"]
    for path in files:
        text = path.read_text()
        for banned in ("import pickle", "torch.load(", "allow_pickle=True"):
            assert banned not in text, f"{path}: {banned}"
