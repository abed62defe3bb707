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
# So do tests marked `kubernetes`: they test the Kubernetes runtime against a control plane
# of their own (scripts/kube), started once per pytest session.
#
# A `-m EXPR` of the caller's is combined with each pytest's own marker expression instead of
# being passed on: pytest keeps only the last -m it is given, so `-m kubernetes` would
# otherwise replace "not browser and not once and not kubernetes" (running the kubernetes
# tests on SQLite too) and "browser" (running them once more in each browser pytest).
# Combined, `scripts/test.sh -m kubernetes` runs the kubernetes tests alone, once, on
# PostgreSQL: the other three pytests select nothing. A pytest that selects nothing (exit code
# 5) is no failure here, as long as some pytest of the run selected something.
user_mark=""
args=()
while [ $# -gt 0 ]; do
  case $1 in
    -m) [ $# -ge 2 ] || { echo "test: -m needs an expression" >&2; exit 2; }
        user_mark=$2; shift 2 ;;
    -m*) user_mark=${1#-m}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
ran=0
pytest_run() { # marker-expression
  local mark=$1 code=0
  [ -z "$user_mark" ] || mark="($mark) and ($user_mark)"
  .venv/bin/pytest --basetemp "$TEST_TMP/pytest" -m "$mark" "${args[@]}" || code=$?
  case $code in
    0) ran=1 ;;
    5) ;;  # nothing selected in this pytest
    *) ran=1; status=$code ;;
  esac
}
run() {
  local skip=$1
  pytest_run "not browser$skip"
  pytest_run browser
}
status=0
echo "== tests on SQLite"
run " and not once and not kubernetes"
# The kubernetes tests' control plane is built from the Go module proxy (scripts/kube/build.sh,
# with the Go of /usr/local/go/bin, which build.sh puts on its PATH itself). Once built it is
# a no-op; cold, it takes about 10 minutes, longer than a test may (pytest-timeout), so it runs
# here and not inside the tests' start.sh. If it fails, the run fails, and the PostgreSQL pass
# runs without the kubernetes tests.
kube_log=$DATA_DIR/kube-build.log
kube_skip=""
kube_failed=""
echo "== building the Kubernetes control plane for the tests marked kubernetes (scripts/kube/build.sh; log: $kube_log)"
if ! scripts/kube/build.sh >"$kube_log" 2>&1; then
  tail -n 20 "$kube_log" >&2
  kube_failed="test: scripts/kube/build.sh failed, so the tests marked kubernetes did not run: see $kube_log"
  echo "$kube_failed" >&2
  kube_skip=" and not kubernetes"
  status=1
fi
echo "== tests on PostgreSQL"
DATABASE_URL=$TEST_DATABASE_URL run "$kube_skip"
[ -z "$kube_failed" ] || echo "$kube_failed" >&2
if [ $ran = 0 ]; then
  echo "test: no test was selected${user_mark:+ by -m $user_mark}" >&2
  [ $status != 0 ] || status=5
fi
exit $status
