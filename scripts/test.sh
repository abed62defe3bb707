#!/usr/bin/env bash
# Runs the whole suite twice: on SQLite, then on PostgreSQL (TEST_DATABASE_URL, or the
# cluster at 127.0.0.1:5432 that scripts/postgres.sh starts when none answers).
# The tests get their own Redis database, data directory and ports, so they never touch
# a platform running on this machine with the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."

export DATA_DIR=$PWD/data/test
# The Redis that `make up` starts (scripts/redis.sh) has a password only root can read.
redis_password_file=${REDIS_PASSWORD_FILE:-/etc/redis/choreo-password}
if [ -z "${TEST_REDIS_URL:-}" ] && [ -r "$redis_password_file" ]; then
  TEST_REDIS_URL="redis://:$(cat "$redis_password_file")@127.0.0.1:6379/15"
fi
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
if [ -z "${TEST_DATABASE_URL:-}" ]; then TEST_DATABASE_URL=$(scripts/postgres.sh) || exit 1; fi
case $TEST_DATABASE_URL in
  postgres://*|postgresql://*) ;;
  *) echo "test: TEST_DATABASE_URL is not a postgres:// URL" >&2; exit 1 ;;
esac
export REGISTRY_PORT=${TEST_REGISTRY_PORT:-5099}
export WEB_PORT=${TEST_WEB_PORT:-8099}
export INGRESS_PORT=${TEST_INGRESS_PORT:-8098}
export PYTHONPATH=$PWD
# Test repositories live in a temporary directory of this run's own, the only place the
# platform under test may build local repositories from (LOCAL_REPOSITORY_ROOTS).
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/choreo-test.XXXXXX")
trap 'rm -rf "$TEST_TMP"' EXIT
export TMPDIR=$TEST_TMP LOCAL_REPOSITORY_ROOTS=$TEST_TMP
unset DATABASE_URL
mkdir -p "$DATA_DIR"

# The browser tests run in a pytest of their own: Playwright's sync API keeps an event
# loop in the main thread, which Django's async views and Channels cannot share.
# Tests marked `once` build images from the package registries or on a second instance:
# they test the image pipeline, not the database, so they run in the PostgreSQL pass only.
run() {
  local skip=$1
  shift
  .venv/bin/pytest --basetemp "$TEST_TMP/pytest" -m "not browser$skip" "$@" || status=$?
  .venv/bin/pytest --basetemp "$TEST_TMP/pytest" -m browser "$@" || status=$?
}
status=0
echo "== tests on SQLite"
run " and not once" "$@"
echo "== tests on PostgreSQL"
DATABASE_URL=$TEST_DATABASE_URL run "" "$@"
exit $status
