"""The standard ROS ways of installing the package, for real: a wheel (`pip install .`) and
colcon (build, `ros2 pkg executables`, test). Each builds from a copy of the package with a
generated models/onnx/ in it (written by posediff-export; it must never break a build)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, ros2_cli

pytestmark = pytest.mark.slow
ONE_WHEEL = pytest.mark.xdist_group("packaging_wheel")  # built once per worker that needs it
PACKAGE_FILES = ["setup.py", "setup.cfg", "package.xml", "LICENSE", "pytest.ini", "resource",
                 "launch", "config", "models", "posediff_ros", "test"]
EXECUTABLES = {"posediff_node", "synthetic_camera", "lossy_relay", "posediff-demo", "posediff-bag",
               "posediff-eval", "posediff-train", "posediff-results", "posediff-export",
               "posediff-bench", "posediff-generate", "posediff-cache", "posediff-soak",
               "posediff-sequences", "posediff-calibrate"}
SHARE = {"package.xml", "LICENSE", "launch/pose.launch.py", "launch/demo.launch.py",
         "config/pose.yaml", "config/posediff.rviz", "models/posediff_default.json",
         "models/posediff_default.safetensors", "models/posediff_default.covariance.json"}


def package_copy(dest: Path) -> Path:
    """The package's files (as a clone has them) plus what a user's run generates."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "onnx")
    for name in PACKAGE_FILES:
        src = REPO / name
        (shutil.copytree(src, dest / name, ignore=ignore) if src.is_dir()
         else shutil.copy2(src, dest / name))
    (dest / "models" / "onnx").mkdir()
    (dest / "models" / "onnx" / "posediff_default.euler4-x.onnx").write_bytes(b"graph")
    (dest / "config" / "__pycache__").mkdir()
    return dest


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    said = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{said}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = package_copy(tmp_path_factory.mktemp("wheel") / "posediff_ros")
    out = src.parent / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)])
    (path,) = out.glob("posediff_ros-*.whl")
    return path


@ONE_WHEEL
def test_wheel_has_the_ament_layout(wheel):
    data = "posediff_ros-0.1.0.data/data/"
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename[len(data):]: i for i in z.infolist() if i.filename.startswith(data)}
    assert "share/ament_index/resource_index/packages/posediff_ros" in infos
    assert {f"share/posediff_ros/{f}" for f in SHARE} <= set(infos)
    assert not [f for f in infos if "/onnx/" in f or "__pycache__" in f]  # generated files
    launchers = {f.split("/")[-1]: i for f, i in infos.items() if f.startswith("lib/posediff_ros/")}
    assert set(launchers) == EXECUTABLES
    assert all(i.external_attr >> 16 & 0o111 for i in launchers.values())  # executable


@ONE_WHEEL
def test_pip_install_gives_what_ros2_run_finds(wheel, tmp_path):
    """A plain (non-editable) install into a prefix: ros2 run and launch_ros look for
    <prefix>/lib/posediff_ros/<name>; the launcher there runs pip's console script."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: else pip "replaces" the venv's own (editable) install, i.e. removes it
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q",
         "--prefix", str(prefix), str(wheel)])
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    env = dict(os.environ, PYTHONPATH=site, AMENT_PREFIX_PATH=str(prefix))
    lib = prefix / "lib" / "posediff_ros"
    assert {p.name for p in lib.iterdir() if os.access(p, os.X_OK)} == EXECUTABLES
    out = run([str(lib / "posediff-export"), "--help"], env=env, cwd=tmp_path).stdout
    assert "usage: posediff-export" in out
    cli = ros2_cli()
    if cli is None:
        pytest.skip("no ros2 command line here: the lib/ layout is checked above")
    listed = run([cli, "pkg", "executables", "posediff_ros"], env=env).stdout.split()
    assert set(listed[1::2]) == EXECUTABLES
    assert run([cli, "pkg", "prefix", "posediff_ros"], env=env).stdout.strip() == str(prefix)


def colcon_venv() -> Path:
    """colcon in its own venv beside the project's (made once, ~1 min: pip from the index),
    seeing the project venv's packages (rclpy, torch, ...) through a .pth file."""
    home = Path(sys.prefix) / "colcon"
    colcon = home / "bin" / "colcon"
    if colcon.exists():
        return colcon
    venv.create(home, with_pip=True)
    proc = subprocess.run([home / "bin" / "python", "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", "-r", REPO / "requirements-colcon.txt"],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(home)
        pytest.skip(f"colcon not installable from the package index here: {proc.stderr[-500:]}")
    own = sysconfig.get_path("purelib", vars={"base": str(home), "platbase": str(home)})
    project = sysconfig.get_path("purelib")
    Path(own, "posediff_project.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    return colcon


def test_colcon_build_and_test(tmp_path):
    colcon = colcon_venv()
    package_copy(tmp_path / "src" / "posediff_ros")
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    run([colcon, "build", "--event-handlers", "console_direct-"], cwd=tmp_path, env=env)
    prefix = tmp_path / "install" / "posediff_ros"
    lib = prefix / "lib" / "posediff_ros"
    assert {p.name for p in lib.iterdir() if os.access(p, os.X_OK)} == EXECUTABLES
    assert all((prefix / "share" / "posediff_ros" / f).is_file() for f in SHARE)
    cli = ros2_cli()
    if cli is not None:
        listed = run([cli, "pkg", "executables", "posediff_ros"],
                     env=dict(env, AMENT_PREFIX_PATH=str(prefix))).stdout.split()
        assert set(listed[1::2]) == EXECUTABLES
    # colcon test runs pytest (not "Ran 0 tests" of unittest): a quick part of the suite
    # (launch_testing's plugin would import every test module to look for launch tests)
    run([colcon, "test", "--event-handlers", "console_direct-", "--pytest-args", "-q",
         "-p", "no:cacheprovider", "-p", "no:launch_testing", "-p", "no:launch_ros",
         "test/test_geometry.py", "test/test_metrics.py"],
        cwd=tmp_path, env=env)
    result = run([colcon, "test-result", "--all", "--verbose"], cwd=tmp_path, env=env).stdout
    tests = int(result.split("Summary: ")[1].split(" tests")[0])
    assert tests >= 20 and "0 errors, 0 failures" in result, result
