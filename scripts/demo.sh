#!/usr/bin/env bash
# The demo in one command: set up (idempotent, see scripts/setup.sh), then run posediff-demo:
# synthetic camera -> posediff_node -> a listener over real DDS for ~8 s; prints per-object
# errors against the ground truth, the achieved rate and latency; writes out/demo_overlay.png.
#   bash scripts/demo.sh [--duration S] [--num-objects N] [--model PATH|random] [--no-launch]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${POSEDIFF_VENV:-$REPO/.venv}
bash "$REPO/scripts/setup.sh" --venv "$VENV"
exec "$VENV/bin/posediff-demo" "$@"
