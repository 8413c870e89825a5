"""posediff_node as a subprocess: SIGINT and SIGTERM (what `ros2 launch` sends on stop) while
frames flow end it with exit code 0 and no traceback; a broken model file ends the start with
exit code 1 and one clear line naming the file and the problem (never a traceback)."""

import json
import os
import signal
import time

import pytest
from conftest import start_ros_module

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def camera():
    proc = start_ros_module("posediff_ros.ros.synthetic_camera", "rate:=15.0", "ring_size:=1",
                  "width:=320", "height:=240", "num_objects:=2", namespace="shutdown")
    yield proc
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_processing_exits_cleanly(camera, sig):
    node = start_ros_module("posediff_ros.ros.node", "model_path:=random", "log_period:=0.5",
                  "min_points:=20", namespace="shutdown")
    # wait until frames are being processed (the rate log line), then signal
    lines, deadline = [], time.monotonic() + 60
    os.set_blocking(node.stdout.fileno(), False)
    while time.monotonic() < deadline and node.poll() is None:
        chunk = node.stdout.readline()
        if chunk:
            lines.append(chunk)
            if "frames/s" in chunk:
                break
        else:
            time.sleep(0.05)
    assert any("frames/s" in line for line in lines), "".join(lines)
    node.send_signal(sig)
    os.set_blocking(node.stdout.fileno(), True)
    out, _ = node.communicate(timeout=20)
    out = "".join(lines) + out
    assert node.returncode == 0, f"exit code {node.returncode}:\n{out}"
    assert "Traceback" not in out, out


def _model_files(tmp_path):
    """A real saved model (random weights) and broken variants of it: {case: json path}."""
    import torch

    from posediff_ros.model.posenet import PoseNet, PoseNetConfig, save_model

    torch.manual_seed(0)
    good = save_model(PoseNet(PoseNetConfig(feat_dim=64, hidden=64)), tmp_path / "good.json")
    cfg = json.loads(good.read_text())
    weights = tmp_path / cfg["weights"]
    cases = {"missing": (tmp_path / "absent.json", "does not exist")}

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


@pytest.mark.slow  # seven node processes start at once (torch import) on a shared CPU
def test_broken_model_files_fail_at_start_with_a_clear_line(tmp_path):
    cases = _model_files(tmp_path)
    procs = {name: start_ros_module("posediff_ros.ros.node", f"model_path:={path}",
                          namespace="badmodel") for name, (path, _) in cases.items()}
    for name, proc in procs.items():  # all at once: start-up is mostly importing torch
        out, _ = proc.communicate(timeout=120)
        path, expected = cases[name]
        assert proc.returncode == 1, f"{name}: exit {proc.returncode}\n{out}"
        assert "Traceback" not in out, f"{name}:\n{out}"
        fatal = [line for line in out.splitlines() if "cannot start" in line]
        assert len(fatal) == 1, f"{name}:\n{out}"
        assert expected in fatal[0], f"{name}: {fatal[0]}"
        assert path.stem in fatal[0] or "gone.st" in fatal[0], f"{name}: file not named"


def test_model_loading_never_unpickles():
    """Weights are safetensors + JSON: no pickle, torch.load or np.load(allow_pickle) in the
    code that loads models or runs the node."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "posediff_ros"
    files = [*root.glob("model/*.py"), *root.glob("runtime/*.py"), *root.glob("ros/*.py"),
             root / "pipeline.py"]
    for path in files:
        text = path.read_text()
        for banned in ("import pickle", "torch.load(", "allow_pickle=True"):
            assert banned not in text, f"{path}: {banned}"
