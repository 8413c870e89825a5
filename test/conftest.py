"""Shared test set-up: every test session talks DDS in its own domain, on localhost only.

Set here (and in scripts/test.sh) before anything imports rclpy, so parallel runs on one
machine never see each other's topics. Subprocesses started by tests inherit the same values.
Under pytest-xdist each worker gets its own domain too: ROS_DOMAIN_ID of the run (the base)
plus the worker's index (gw0 -> base, gw1 -> base + 1, ...), so a run with base B and n
workers uses B .. B + n - 1; give parallel runs bases at least n apart.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 199)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw"):
    # workers share the cores: one compute thread each (also for the nodes they start)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["ROS_DOMAIN_ID"] = str(int(os.environ["ROS_DOMAIN_ID"]) + int(_worker[2:]))
    if int(os.environ["ROS_DOMAIN_ID"]) > 232:
        raise RuntimeError(f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']} of xdist worker "
                           f"{_worker} is above 232 (Fast DDS ports): use a smaller base")

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# generated artefacts (ONNX graphs of the nodes' models, the held-out accuracy set) are cached
# in the checkout, named by content hash (weights + settings, generator version): a warm run
# reuses them, a changed input gets new ones, a fresh clone builds them, ~/.cache stays as is
os.environ.setdefault("POSEDIFF_CACHE", str(REPO / ".pytest_cache" / "posediff"))


def pytest_addoption(parser):
    parser.addoption("--capability", default=None,
                     help="the ATEN_CPU_CAPABILITY this run was started with (set by "
                          "test_backends.py::test_parity_under_other_cpu_kernels)")


def ros2_cli() -> str | None:
    """The `ros2` command of this environment (venv with the wheelhouse, or a sourced distro)."""
    local = VENV_BIN / "ros2"
    return str(local) if local.exists() else shutil.which("ros2")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context for one test (in this process); shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def spawn_python(code: str, *args: str) -> subprocess.Popen:
    """Run `code` in a separate interpreter (a separate DDS participant), output captured."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_ros_module(module: str, *params: str, namespace: str = "",
                     env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m module --ros-args -r __ns:=/namespace -p name:=value ...` as its own process
    (its own DDS participant, like `ros2 run`), output captured, unbuffered and uncoloured."""
    args = [sys.executable, "-m", module, "--ros-args"]
    if namespace:
        args += ["-r", f"__ns:=/{namespace.lstrip('/')}"]
    for param in params:
        args += ["-p", param]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", **(env or {}))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGINT like Ctrl-C / launch stop, then collect output; kill if it hangs."""
    if proc.poll() is None:
        proc.send_signal(2)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """Ctrl-C to a whole process group (a `ros2 launch` started with start_new_session=True
    and the nodes it started), then collect output; kill the group if it hangs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(items):
    """Tests that share a module-scoped fixture (processes, a built cache, a model) run on one
    worker: xdist_group(<module>), unless they name a group themselves. Otherwise every worker
    that gets one of them builds the fixture again (three cameras + nodes for test_node_outputs'
    three tests on three workers)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        defs = getattr(item, "_fixtureinfo", None)
        scopes = {d.scope for fixture in (defs.name2fixturedefs.values() if defs else ())
                  for d in fixture}
        if "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """POSEDIFF_TEST_CPU=FILE: append each test's CPU seconds to FILE, setup to teardown, one
    `total own wall start worker nodeid` line per test: total = this process's user + sys and
    those of the child processes it waited for, own = this process's alone, wall = elapsed
    seconds, start = time.time() at setup. To see where the suite's CPU and time go."""
    out = os.environ.get("POSEDIFF_TEST_CPU")
    if not out:
        yield
        return
    import resource

    def cpu() -> tuple[float, float]:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        own = s.ru_utime + s.ru_stime
        return own + c.ru_utime + c.ru_stime, own

    (total, own), wall, start = cpu(), time.monotonic(), time.time()
    yield
    (total_end, own_end), wall_end = cpu(), time.monotonic()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(out, "a") as f:
        f.write(f"{total_end - total:.2f} {own_end - own:.2f} {wall_end - wall:.2f} "
                f"{start:.2f} {worker} {item.nodeid}\n")
