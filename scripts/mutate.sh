#!/usr/bin/env bash
# Mutation testing with mutmut 3 (pinned below), one target at a time: scripts/mutate.sh
# [--fresh] [--jobs N] [TARGET...]. Targets are [tool.mutate.targets.*] in pyproject.toml; without
# arguments every target runs. Each target gets .mutmut/TARGET/: links to the project's
# folders, a pyproject.toml with a [tool.mutmut] of its own, and mutmut's mutants/ (kept,
# so a rerun only tests the mutants not tested yet and those of functions that changed; an
# interrupted run goes on where it stopped; --fresh starts over).
# Prints each target's counts, score and time, and `mutmut show` for every mutant that was
# not killed. Mutants run one at a time: the tests share one SQLite file and one Redis db.
# With --jobs N, a slow target's untested mutants are dealt to N copies of its folder that
# run at once, each with a data directory, a Redis database and ports of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MUTMUT_VERSION=3.8.1

fresh=0 report_only=0 list_only=0 jobs=1
while [ $# -gt 0 ]; do
  case $1 in
    --fresh) fresh=1; shift ;;
    --jobs)
      jobs=${2:-}
      [[ $jobs =~ ^[1-4]$ ]] || { echo "mutate: --jobs takes 1 to 4, got '$jobs'" >&2; exit 2; }
      shift 2 ;;
    --report) report_only=1; shift ;;  # print the last results again, without running
    --list) list_only=1; shift ;;  # list the targets' mutants and what each changes, without running
    *) break ;;
  esac
done

[ -x .venv/bin/pytest ] || scripts/install.sh test
# mutmut and what it needs, pinned and hashed like everything else (`make lock` makes the
# lock file); the same versions as requirements-dev.lock for what both hold.
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null)" != "$MUTMUT_VERSION" ]; then
  .venv/bin/pip install -q --require-hashes --no-deps -r requirements-mutate.lock
fi

# The tests' environment, as scripts/test.sh gives it, with a data directory, a Redis
# database and ports of mutation testing's own (so it can run beside `make test`).
export DATA_DIR=${MUTATE_DATA_DIR:-$ROOT/data/mutate}
redis_password_file=${REDIS_PASSWORD_FILE:-/etc/redis/choreo-password}
if [ -z "${MUTATE_REDIS_URL:-}" ] && [ -r "$redis_password_file" ]; then
  MUTATE_REDIS_URL="redis://:$(cat "$redis_password_file")@127.0.0.1:6379/13"
fi
export REDIS_URL=${MUTATE_REDIS_URL:-redis://127.0.0.1:6379/13}
export REGISTRY_PORT=${MUTATE_REGISTRY_PORT:-5199} WEB_PORT=${MUTATE_WEB_PORT:-8199} INGRESS_PORT=${MUTATE_INGRESS_PORT:-8198}
MUTATE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/choreo-mutate.XXXXXX")
trap 'rm -rf "$MUTATE_TMP"' EXIT
export TMPDIR=$MUTATE_TMP LOCAL_REPOSITORY_ROOTS=$MUTATE_TMP
unset DATABASE_URL
# Never PYTHONPATH=$ROOT: the tests would import the unmutated code and every mutant would
# survive. mutmut puts .mutmut/TARGET/mutants first on sys.path itself.
unset PYTHONPATH
mkdir -p "$DATA_DIR"

# Shard i of --jobs (1 to N-1; 0 is the target's folder itself): a copy of the folder,
# made before any shard runs, and the tests' environment moved off shard 0's: DATA_DIR-i,
# the Redis database i below, ports 10*i below. Its results stay in its folder until
# merge_shards takes them in.
make_shard() {
  local work=$1 i=$2
  rm -rf "$work.shard$i" && mkdir -p "$work.shard$i"
  cp -a "$work/mutants" "$work/pyproject.toml" "$work.shard$i/"
  link_project "$work.shard$i"
}

# A target's folder (or a shard's) sees the project's folders through links.
link_project() {
  for dir in builds choreo_site deployments environments tasks templates static scripts tests manage.py; do
    ln -sfn "$ROOT/$dir" "$1/$dir"
  done
}

run_shard() {
  local work=$1 i=$2 names=$3 folder=$1 db
  [ "$i" = 0 ] || folder=$work.shard$i
  db=${REDIS_URL##*/}
  [[ $db =~ ^[0-9]+$ ]] && [ "$db" -ge "$i" ] || { echo "mutate: --jobs needs a Redis URL that ends in its database number" >&2; return 1; }
  mkdir -p "$MUTATE_TMP/shard$i"
  # shellcheck disable=SC2086  # names: for mutmut, not for the shell
  (
    if [ "$i" -gt 0 ]; then
      export DATA_DIR=$DATA_DIR-$i REDIS_URL=${REDIS_URL%/*}/$((db - i))
      mkdir -p "$DATA_DIR"
      export REGISTRY_PORT=$((REGISTRY_PORT - 10 * i)) WEB_PORT=$((WEB_PORT - 10 * i)) INGRESS_PORT=$((INGRESS_PORT - 10 * i))
    fi
    export TMPDIR=$MUTATE_TMP/shard$i LOCAL_REPOSITORY_ROOTS=$MUTATE_TMP/shard$i
    cd "$folder" && set -f && "$ROOT/.venv/bin/mutmut" run --max-children 1 $names
  ) >"$folder/run.log" 2>&1
}

# Take in, and remove, what the shards of an earlier --jobs run left (one interrupted, say).
merge_shards() {
  local work=$1 shards
  mapfile -t shards < <(compgen -G "$ROOT/$work.shard*" || true)
  [ ${#shards[@]} -gt 0 ] || return 0
  (cd "$work" && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" merge "${shards[@]}")
  rm -rf "${shards[@]}"
}

# The targets' [tool.mutmut] blocks, as "name<TAB>functions" lines and one file per target.
mapfile -t targets < <(.venv/bin/python - "$@" <<'EOF'
import json, sys, tomllib
from pathlib import Path

conf = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutate"]
# Without arguments: the targets not marked slow (those run Docker tests).
names = sys.argv[1:] or [n for n, t in conf["targets"].items() if not t.get("slow")]
unknown = [n for n in names if n not in conf["targets"]]
if unknown:
    sys.exit(f"mutate: no such target {unknown}; known: {', '.join(conf['targets'])}")
base = Path("pyproject.toml").read_text()
for name in names:
    t = conf["targets"][name]
    block = {
        # every package is copied into mutants/, only `mutate` is mutated
        "source_paths": ["builds", "choreo_site", "deployments", "environments", "tasks"],
        "only_mutate": t["mutate"],
        "also_copy": ["manage.py", "templates", "static", "scripts"],  # + tests/, pyproject.toml
        "pytest_add_cli_args_test_selection": t["tests"],
        "pytest_add_cli_args": [f"--timeout={conf.get('timeout', 120)}"],
        "timeout_constant": float(conf.get("timeout_constant", 30.0)),
        "timeout_multiplier": float(conf.get("timeout_multiplier", 3.0)),
    }
    work = Path(".mutmut") / name
    work.mkdir(parents=True, exist_ok=True)
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in block.items()]
    text = base + "\n".join(lines) + "\n"
    if not (work / "pyproject.toml").exists() or (work / "pyproject.toml").read_text() != text:
        (work / "pyproject.toml").write_text(text)
    print(name + "\t" + " ".join(t.get("functions", [])))
EOF
)

status=0
for line in "${targets[@]}"; do
  name=${line%%$'\t'*}
  functions=${line#*$'\t'}
  work=.mutmut/$name
  if [ $fresh = 1 ]; then rm -rf "$work/mutants" "$work".shard*; fi  # and what a --jobs run left
  link_project "$work"
  echo "== mutate $name"
  if [ $list_only = 1 ]; then
    (cd "$work" && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" list)
    continue
  fi
  if [ $report_only = 0 ]; then
    start=$(date +%s)
    # Without functions, `mutmut run` alone: it tests every mutant that has no result yet.
    names=$functions run=1
    if [ -n "$functions" ] && { [ -d "$work/mutants" ] || [ "$jobs" -gt 1 ]; }; then
      merge_shards "$work"
      # Only those of these functions not tested yet: an interrupted run of a slow target
      # goes on where it stopped (mutmut tests again every mutant named to it).
      # shellcheck disable=SC2086
      names=$(cd "$work" && set -f && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" untested $functions)
      echo "$(echo "$names" | grep -c . || true) mutants not tested yet"
      [ -n "$names" ] || run=0
    fi
    if [ $run = 1 ] && [ "$jobs" -gt 1 ] && [ -n "$functions" ]; then
      mapfile -t untested < <(echo "$names" | grep .)
      for ((i = 1; i < jobs; i++)); do make_shard "$work" "$i"; done
      pids=()
      for ((i = 0; i < jobs; i++)); do
        dealt=""
        for ((j = i; j < ${#untested[@]}; j += jobs)); do dealt+="${untested[j]} "; done
        [ -n "$dealt" ] || continue
        run_shard "$work" "$i" "$dealt" &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid" || status=1; done
      [ $status = 0 ] || for log in "$work/run.log" "$work".shard*/run.log; do tail -c 3000 "$log" | tr '\r' '\n' | tail -20; done
      merge_shards "$work"
    elif [ $run = 1 ]; then
      # shellcheck disable=SC2086  # names, or the functions' globs: for mutmut, not for the shell
      (cd "$work" && set -f && "$ROOT/.venv/bin/mutmut" run --max-children 1 $names) >"$work/run.log" 2>&1 || { status=1; tail -c 3000 "$work/run.log" | tr '\r' '\n' | tail -20; }
    fi
    echo "wall time: $(($(date +%s) - start))s"
  fi
  # shellcheck disable=SC2086
  (cd "$work" && set -f && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" report $functions)
done
exit $status
