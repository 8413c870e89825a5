#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: ruff, then pytest over real DDS.
# Every run gets its own ROS_DOMAIN_ID and stays on localhost, so parallel runs don't meet.
# usage: scripts/test.sh [pytest args...]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
bash "$REPO/scripts/setup.sh"
VENV=${POSEDIFF_VENV:-$REPO/.venv}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 100 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=${ROS_LOG_DIR:-$(mktemp -d)}
cd "$REPO"
echo "== ruff"
"$VENV/bin/ruff" check .
echo "== pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
exec "$VENV/bin/python" -m pytest "$@"
