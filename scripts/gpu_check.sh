#!/usr/bin/env bash
# One prepared check for a bare CUDA machine (an H100/H200: under 8 minutes): the GPU tests,
# then posediff-bench on cuda with torch and torch-fused (CUDA graphs), fp32 / bf16 / fp16,
# 1/3/6/12/50 objects, the GenPose-style baseline, accuracy beside speed, peak GPU memory and
# the fraction of the GPU's peak; Markdown + JSON into OUT_DIR (SUMMARY.md first).
# Needs python3 with torch (CUDA), numpy, onnx, onnxruntime (CPU), safetensors, scipy: no
# network, no ROS, no pip installs; the package runs from this source tree.
# usage: scripts/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick]
#   (CI runs --device cpu --quick: the same path in seconds)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$REPO:$REPO/test${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# PYTHON may carry interpreter options (CI: "python -S" with only the packages above)
exec $PYTHON "$REPO/scripts/gpu_check.py" "$@"
