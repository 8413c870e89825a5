#!/usr/bin/env bash
# One set-up for posediff_ros. Picks its path by itself and is idempotent:
#   1. a sourced ROS 2 distro (rclpy importable): a venv that sees the distro's packages
#      (--system-site-packages) and gets only the Python dependencies;
#   2. otherwise a plain venv with the ROS 2 Kilted wheels from PyPI, plus
#      - ../shared/ros2-wheelhouse when it exists (Python 3.11): its tested wheels give real
#        `ros2 launch` / `ros2 run`, launch_testing, message_filters, vision_msgs, tf2_msgs;
#      - else vision_msgs and tf2_msgs built here from interfaces/ (needs cmake + g++).
# Then the pinned Python dependencies and this package, installed so that `ros2 run` and
# launch files find its executables.
#
# usage: scripts/setup.sh [--venv DIR] [--cuda] [--no-dev] [--quiet]
# env:   PYTHON (interpreter, default python3), POSEDIFF_WHEELHOUSE (wheelhouse folder),
#        POSEDIFF_TORCH_INDEX (a pip index for torch, e.g. a CUDA or CPU wheel index)
set -euo pipefail
START=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${POSEDIFF_VENV:-$REPO/.venv}
CUDA=0; DEV=1; QUIET=-q
while [ $# -gt 0 ]; do
  case $1 in
    --venv) VENV=$2; shift 2 ;;
    --cuda) CUDA=1; shift ;;
    --no-dev) DEV=0; shift ;;
    --verbose) QUIET=; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
WHEELHOUSE=${POSEDIFF_WHEELHOUSE:-$REPO/../shared/ros2-wheelhouse}
say() { printf '[setup %3ds] %s\n' $(( $(date +%s) - START )) "$*"; }
die() { printf 'setup.sh: ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' found; install python3 (3.10-3.12) and python3-venv"
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case $PYVER in 3.10|3.11|3.12) ;; *) die "Python $PYVER found; posediff_ros needs 3.10, 3.11 or 3.12 (the ROS 2 Kilted wheels are cp310-cp312). Set PYTHON=python3.11 or similar." ;; esac
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "Python $PYVER has no venv/ensurepip; on Debian/Ubuntu: sudo apt-get install python3-venv"

# --- which path --------------------------------------------------------------------------
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' 2>/dev/null; then
  MODE=distro
elif [ -d "$WHEELHOUSE" ] && [ "$PYVER" = 3.11 ]; then
  MODE=wheelhouse
else
  MODE=pypi
fi
say "path: $MODE (Python $PYVER, venv $VENV)"

if [ ! -x "$VENV/bin/python" ]; then
  if [ $MODE = distro ]; then "$PYTHON" -m venv --system-site-packages "$VENV"
  else "$PYTHON" -m venv "$VENV"; fi
  say "created venv"
fi
VENV=$(cd "$VENV" && pwd)
PY=$VENV/bin/python
PIP=("$PY" -m pip install $QUIET --disable-pip-version-check)

# --- up to date? ----------------------------------------------------------------------------
# A warm venv skips pip (5 CPU-s of "already satisfied"): the stamp is a hash of everything the
# installs below read. Files added to launch/, config/ or models/ are linked again every time.
STAMP=$VENV/.posediff-setup-stamp
IMPORTS='import rclpy, vision_msgs.msg, tf2_msgs.msg, posediff_ros'  # what a working venv has
fingerprint() {
  { echo "$MODE $PYVER $CUDA $DEV $REPO ${POSEDIFF_TORCH_INDEX:-}"
    cat "$REPO/scripts/setup.sh" "$REPO/requirements.txt" "$REPO/requirements-dev.txt" \
      "$REPO/setup.py" "$REPO/setup.cfg" "$REPO/package.xml"
    [ $MODE != wheelhouse ] || ls -l "$WHEELHOUSE"
  } | sha256sum | cut -d' ' -f1
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] \
    && "$PY" -c "$IMPORTS" 2>/dev/null; then
  "$PY" "$REPO/scripts/ament_links.py" "$REPO" "$VENV"
  say "up to date ($STAMP matches): python: $PY"
  exit 0
fi
rm -f "$STAMP"

# --- ROS 2 --------------------------------------------------------------------------------
ROS_PKGS=(
  ros-kilted-rclpy==9.1.2 ros-kilted-rmw-fastrtps-cpp==9.3.3
  ros-kilted-builtin-interfaces==2.3.0 ros-kilted-rcl-interfaces==2.3.0
  ros-kilted-lifecycle-msgs==2.3.0 ros-kilted-action-msgs==2.3.0
  ros-kilted-unique-identifier-msgs==2.7.0
  ros-kilted-std-msgs==5.5.1 ros-kilted-std-srvs==5.5.1 ros-kilted-geometry-msgs==5.5.1
  ros-kilted-sensor-msgs==5.5.1 ros-kilted-visualization-msgs==5.5.1
  ros-kilted-diagnostic-msgs==5.5.1
)
WHEELHOUSE_PKGS=(
  ros-launch==3.7.1 ros-launch-xml==3.7.1 ros-launch-yaml==3.7.1 ros-launch-ros==0.28.0
  ros-ros2cli==0.36.1 ros-ros2launch==0.28.0 ros-ros2run==0.36.1 ros-ros2pkg==0.36.1
  ros-ros2topic==0.36.1 ros-ros2node==0.36.1 ros-ros2param==0.36.1 ros-ros2service==0.36.1
  ros-ros2interface==0.36.1 ros-ros2action==0.36.1 ros-rosidl-runtime-py==0.14.0
  ros-ament-copyright==0.19.0 ros-composition-interfaces==2.2.0
  ros-tf2-msgs==0.39.1 ros-vision-msgs==4.1.1
  ros-launch-testing==3.7.1 ros-launch-pytest==3.7.1 ros-launch-testing-ros==0.28.0
  ros-message-filters==6.0.6 ros-sensor-msgs-py==5.4.2
)
TORCH_ARGS=()
[ -z "${POSEDIFF_TORCH_INDEX:-}" ] || TORCH_ARGS=(--extra-index-url "$POSEDIFF_TORCH_INDEX")

REQS=(-r "$REPO/requirements.txt")
[ $DEV = 1 ] && REQS+=(-r "$REPO/requirements-dev.txt")
case $MODE in
  distro)
    "${PIP[@]}" "${TORCH_ARGS[@]}" "${REQS[@]}" setuptools==79.0.1 wheel==0.45.1 ;;
  wheelhouse)
    "${PIP[@]}" "${TORCH_ARGS[@]}" --find-links "$WHEELHOUSE" "${ROS_PKGS[@]}" \
      "${WHEELHOUSE_PKGS[@]}" "${REQS[@]}" setuptools==79.0.1 wheel==0.45.1 ;;
  pypi)
    "${PIP[@]}" "${TORCH_ARGS[@]}" "${ROS_PKGS[@]}" "${REQS[@]}" setuptools==79.0.1 wheel==0.45.1 ;;
esac
say "installed pinned dependencies"

if [ $CUDA = 1 ]; then
  # the CUDA build of the same torch release; onnxruntime-gpu brings the CUDA/TensorRT providers
  "${PIP[@]}" "${TORCH_ARGS[@]}" --force-reinstall --no-deps torch==2.13.0 onnxruntime-gpu==1.23.2 \
    || die "CUDA packages failed to install (set POSEDIFF_TORCH_INDEX to a CUDA wheel index)"
  say "installed CUDA builds of torch and onnxruntime"
fi

SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# ament_index (ros2 run/launch, share/ lookups) only sees prefixes on AMENT_PREFIX_PATH: let
# every interpreter of the venv append the venv itself (after a sourced distro's prefixes).
cat > "$SITE/posediff_ament_prefix.pth" <<'PTH'
import os, sys; _p = [x for x in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if x]; sys.prefix in _p or os.environ.__setitem__('AMENT_PREFIX_PATH', os.pathsep.join(_p + [sys.prefix]))
PTH

# --- vision_msgs / tf2_msgs built from interfaces/ (pypi path only) ------------------------
if [ $MODE = pypi ] && ! "$PY" -c 'import vision_msgs.msg, tf2_msgs.msg' 2>/dev/null; then
  command -v cmake >/dev/null || die "cmake not found: building vision_msgs/tf2_msgs needs it (sudo apt-get install cmake g++)"
  command -v g++ >/dev/null || die "g++ not found: building vision_msgs/tf2_msgs needs it (sudo apt-get install g++)"
  "${PIP[@]}" ros-kilted-ament-cmake==2.7.3 ros-kilted-ament-package \
    ros-kilted-ament-cmake-include-directories ros-kilted-ament-cmake-ros-core \
    ros-kilted-rosidl-default-generators==1.7.1 ros-kilted-rosidl-core-generators catkin_pkg
  # The wheels' CMake exports name the include dirs of the machine they were built on.
  PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$PY" -c 'import numpy; print(numpy.get_include())')
  { grep -rl --include='*.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i -E -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g" \
      -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g" "$f"
  done
  GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
  BUILD=$(mktemp -d)
  for pkg in tf2_msgs vision_msgs; do
    ( export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
      cmake -S "$REPO/interfaces/$pkg" -B "$BUILD/$pkg" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
        >"$BUILD/$pkg.log" 2>&1 &&
      cmake --build "$BUILD/$pkg" -j"$(nproc)" >>"$BUILD/$pkg.log" 2>&1 &&
      cmake --install "$BUILD/$pkg" >>"$BUILD/$pkg.log" 2>&1 ) \
      || { tail -30 "$BUILD/$pkg.log"; die "building $pkg failed (log above)"; }
    say "built $pkg from interfaces/$pkg"
  done
  rm -rf "$BUILD"
fi

# --- this package ---------------------------------------------------------------------------
# Editable for the Python code (edits are live); share/ files (launch, config, models) and the
# executables that `ros2 run` / launch_ros look for in <prefix>/lib/posediff_ros/ are placed by
# tools/ament_links.py, because pip puts console scripts in <prefix>/bin.
"${PIP[@]}" --no-deps --no-build-isolation -e "$REPO"
"$PY" "$REPO/scripts/ament_links.py" "$REPO" "$VENV"
say "installed posediff_ros (editable) into $VENV"

"$PY" -c "$IMPORTS" || die "the installed venv does not import rclpy / vision_msgs / tf2_msgs (see above)"
fingerprint > "$STAMP"
HAVE_LAUNCH=no; [ -x "$VENV/bin/ros2" ] && HAVE_LAUNCH=yes
[ $MODE = distro ] && HAVE_LAUNCH="from the distro"
say "done in $(( $(date +%s) - START ))s: path=$MODE, ros2 launch: $HAVE_LAUNCH, python: $PY"
