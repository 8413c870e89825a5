#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: ruff, then pytest over real DDS, in
# parallel (pytest-xdist, POSEDIFF_TEST_WORKERS processes, default 4: many tests wait on
# processes and DDS rather than compute, so more workers than cores, but each worker collects
# the suite (~2.9 CPU-s with torch) and more processes contend for the cores: on 2 cores
# 3 / 4 / 5 workers took 118 / 103 / 106 s using 191 / 190 / 203 CPU-s). Every run
# gets its own base ROS_DOMAIN_ID and stays on localhost; worker k uses base + k
# (test/conftest.py), so parallel runs don't meet when their bases are at least the worker
# count apart.
# usage: scripts/test.sh [pytest args...]     (e.g. -n 0 for one process, -m "not slow")
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
bash "$REPO/scripts/setup.sh"
VENV=${POSEDIFF_VENV:-$REPO/.venv}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( RANDOM % 100 + 100 ))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR=${ROS_LOG_DIR:-$(mktemp -d)}
# byte-code caches on, also where the environment turns them off: without them every xdist
# worker, node and pytest subprocess compiles (and assertion-rewrites) the suite and the
# package again (collection 7.2 -> 4.6 s per worker)
export PYTHONDONTWRITEBYTECODE=
cd "$REPO"
echo "== ruff"
"$VENV/bin/ruff" check .
echo "== pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
WORKERS=${POSEDIFF_TEST_WORKERS:-4}
exec "$VENV/bin/python" -m pytest -n "$WORKERS" --dist loadgroup "$@"
