#!/usr/bin/env bash
# Runs the whole suite twice: on SQLite, then on the PostgreSQL at 127.0.0.1:5432.
# The tests get their own Redis database, data directory and ports, so they never touch
# a platform running on this machine with the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."

export DATA_DIR=$PWD/data/test
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export REGISTRY_PORT=${TEST_REGISTRY_PORT:-5099}
export WEB_PORT=${TEST_WEB_PORT:-8099}
export INGRESS_PORT=${TEST_INGRESS_PORT:-8098}
export PYTHONPATH=$PWD
unset DATABASE_URL
mkdir -p "$DATA_DIR"

# The browser tests run in a pytest of their own: Playwright's sync API keeps an event
# loop in the main thread, which Django's async views and Channels cannot share.
run() {
  .venv/bin/pytest -m "not browser" "$@" || status=$?
  .venv/bin/pytest -m browser "$@" || status=$?
}
status=0
echo "== tests on SQLite"
run "$@"
echo "== tests on PostgreSQL"
DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/choreo} run "$@"
exit $status
