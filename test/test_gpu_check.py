"""scripts/gpu_check.sh, CPU path (--device cpu --quick), as it runs on a bare CUDA machine:
an interpreter that sees only torch, numpy, scipy, onnx, onnxruntime, safetensors (and their
own dependencies) - no ROS, no pytest, no Pillow, no tqdm - and the source tree."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
BARE = ["torch", "torchgen", "functorch", "numpy", "numpy.libs", "scipy", "scipy.libs", "onnx",
        "onnxruntime", "safetensors", "typing_extensions.py", "sympy", "mpmath", "networkx",
        "jinja2", "markupsafe", "fsspec", "filelock", "google", "ml_dtypes", "flatbuffers",
        "coloredlogs", "humanfriendly", "packaging", "protobuf"]


def bare_site(dest: Path) -> Path:
    """A site dir with links to only the packages such a machine has."""
    site = Path(sysconfig.get_path("purelib"))
    dest.mkdir()
    wanted = {n.lower() for n in BARE}
    for entry in site.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if name.lower() in wanted:
            (dest / entry.name).symlink_to(entry)
    return dest


def test_gpu_check_cpu_path_on_a_bare_interpreter(tmp_path):
    site = bare_site(tmp_path / "site")
    env = dict(os.environ, PYTHON=f"{sys.executable} -S", PYTHONPATH=str(site))
    env.pop("PYTEST_XDIST_WORKER", None)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--device",
                           "cpu", "--quick"], capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    checks = json.loads((out / "gpu_tests.json").read_text())
    assert len(checks) >= 9 and {c["status"] for c in checks} == {"skipped"}  # no GPU here
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bench"] == {"fp32": "ok", "bf16": "ok", "fp16": "ok"}
    for precision in ("fp32", "bf16", "fp16"):
        res = json.loads((out / f"bench_{precision}.json").read_text())
        backends = {r["backend"] for r in res["rows"] if r["method"] == "ours"}
        assert backends == ({"torch", "torch-fused"} if precision == "fp32" else {"torch-fused"})
        assert any(r["method"] == "baseline" for r in res["rows"])
        assert res["accuracy"]["baseline"]["n"] > 0  # accuracy beside speed
        # the fp32-only sections (tracked objects, a settings change) once, in the fp32 run
        assert bool(res["tracking"]) == bool(res["configure_ms"]) == (precision == "fp32")
    text = (out / "SUMMARY.md").read_text()
    assert "## GPU tests" in text and "## posediff-bench, bf16" in text
    assert "| ours, 2 steps, bf16 |" in text  # accuracy of the poses timed: in bf16
