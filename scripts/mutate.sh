#!/usr/bin/env bash
# Mutation testing with mutmut 3 (pinned below), one target at a time: scripts/mutate.sh
# [--fresh] [TARGET...]. Targets are [tool.mutate.targets.*] in pyproject.toml; without
# arguments every target runs. Each target gets .mutmut/TARGET/: links to the project's
# folders, a pyproject.toml with a [tool.mutmut] of its own, and mutmut's mutants/ (kept,
# so a rerun only tests the mutants not tested yet and those of functions that changed; an
# interrupted run goes on where it stopped; --fresh starts over).
# Prints each target's counts, score and time, and `mutmut show` for every mutant that was
# not killed. Mutants run one at a time: the tests share one SQLite file and one Redis db.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MUTMUT_VERSION=3.8.1

fresh=0 report_only=0 list_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --fresh) fresh=1; shift ;;
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
  if [ $fresh = 1 ]; then rm -rf "$work/mutants"; fi
  for dir in builds choreo_site deployments environments tasks templates static scripts tests manage.py; do
    ln -sfn "$ROOT/$dir" "$work/$dir"
  done
  echo "== mutate $name"
  if [ $list_only = 1 ]; then
    (cd "$work" && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" list)
    continue
  fi
  if [ $report_only = 0 ]; then
    start=$(date +%s)
    # Without functions, `mutmut run` alone: it tests every mutant that has no result yet.
    names=$functions run=1
    if [ -n "$functions" ] && [ -d "$work/mutants" ]; then
      # Only those of these functions not tested yet: an interrupted run of a slow target
      # goes on where it stopped (mutmut tests again every mutant named to it).
      # shellcheck disable=SC2086
      names=$(cd "$work" && set -f && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" untested $functions)
      echo "$(echo "$names" | grep -c . || true) mutants not tested yet"
      [ -n "$names" ] || run=0
    fi
    if [ $run = 1 ]; then
      # shellcheck disable=SC2086  # names, or the functions' globs: for mutmut, not for the shell
      (cd "$work" && set -f && "$ROOT/.venv/bin/mutmut" run --max-children 1 $names) >"$work/run.log" 2>&1 || { status=1; tail -c 3000 "$work/run.log" | tr '\r' '\n' | tail -20; }
    fi
    echo "wall time: $(($(date +%s) - start))s"
  fi
  # shellcheck disable=SC2086
  (cd "$work" && set -f && "$ROOT/.venv/bin/python" "$ROOT/scripts/mutate_results.py" report $functions)
done
exit $status
