#!/usr/bin/env bash
# Installs what the platform needs and is missing, starts the Docker Engine when it is not
# running, and makes the virtual environment and the local base images.
#   scripts/install.sh        what `make up` needs
#   scripts/install.sh test   plus what the tests need (Chromium, PostgreSQL, the dev requirements)
# Everything is skipped when already there, so running it again is cheap.
#
# Redis, like the Docker Engine, is system infrastructure: where REDIS_URL is unset and
# nothing answers at 127.0.0.1:6379, Debian's redis-server is installed, protected by a
# password that only root can read (REDIS_PASSWORD_FILE), and started as a daemon.
# Stopping the platform never stops it. An explicit REDIS_URL is used as given.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
packages=(git docker.io docker-registry haproxy debootstrap busybox-static)
[ "$mode" = test ] && packages+=(chromium postgresql apache2-utils wrk systemd redis-tools)
redis_password_file=${REDIS_PASSWORD_FILE:-/etc/redis/choreo-password}
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
start_redis=
if [ -z "${REDIS_URL:-}" ] && ! answers 127.0.0.1 6379; then
  start_redis=1
  packages+=(redis-server)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install: missing packages: ${missing[*]}" >&2
    echo "install: run as root on Debian:  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "install: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Docker Engine is system infrastructure: started here when it is not running, and
# never stopped by the platform.
if [ -n "$start_redis" ]; then
  scripts/redis.sh "$redis_password_file"
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install: the Docker Engine is not running; start it (sudo systemctl start docker, or sudo dockerd &)" >&2
    exit 1
  fi
  start_dockerd() {
    echo "install: starting dockerd (log: /var/log/dockerd.log)"
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    local pid=$!
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && return 0
      kill -0 "$pid" 2>/dev/null || return 1
      sleep 0.5
    done
    docker info >/dev/null 2>&1
  }
  if ! start_dockerd; then
    # Docker 20.10 (Debian 12) stores a network before its address pool; a dockerd killed in
    # between leaves a record that makes every later start panic in reservePools. Only the
    # network database is affected: move it aside, and the platform creates its networks
    # again when it next needs them (its networks are named from primary keys).
    network_db=/var/lib/docker/network/files/local-kv.db
    if grep -q "reservePools" /var/log/dockerd.log && [ -f "$network_db" ]; then
      aside="$network_db.damaged-$(date +%Y%m%dT%H%M%S)"
      echo "install: dockerd's network database is damaged (it was killed while creating a network); moved it to $aside" >&2
      mv "$network_db" "$aside"
      start_dockerd || { echo "install: dockerd did not start, see /var/log/dockerd.log" >&2; exit 1; }
    else
      echo "install: dockerd did not start, see /var/log/dockerd.log" >&2
      exit 1
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# The lock files pin and hash every package, dependencies of dependencies included
# (`make lock` makes them from requirements*.txt with pip-tools).
lock=requirements.lock
[ "$mode" = test ] && lock=requirements-dev.lock
stamp=.venv/.installed-$(sha256sum requirements.lock requirements-dev.lock | sha256sum | cut -c1-16)-$mode
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --require-hashes --no-deps -r "$lock"
  touch "$stamp"
fi

DATA_DIR=${DATA_DIR:-$PWD/data} scripts/base-images.sh busybox python python_build
# Node.js and Go source builds need this host's Node.js 20 and Go 1.26; the tests need them,
# the platform runs without them (those builds then say which image is missing).
if [ "$mode" = test ]; then
  DATA_DIR=${DATA_DIR:-$PWD/data} scripts/base-images.sh node go
else
  DATA_DIR=${DATA_DIR:-$PWD/data} scripts/base-images.sh node go \
    || echo "install: Node.js and Go source builds are not available here (see above); everything else is"
fi

# axe-core for the accessibility check of the browser tests: from npm, pinned and hashed
# by tests/a11y/package-lock.json, installed once outside the checkout.
if [ "$mode" = test ]; then
  axe_dir=${AXE_DIR:-/var/cache/choreo-test/axe}
  if ! cmp -s tests/a11y/package-lock.json "$axe_dir/package-lock.json" || [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
    command -v npm >/dev/null || { echo "install: npm is missing (Node is needed for the accessibility check)" >&2; exit 1; }
    mkdir -p "$axe_dir"
    cp tests/a11y/package.json tests/a11y/package-lock.json "$axe_dir/"
    (cd "$axe_dir" && npm ci --silent --no-audit --no-fund --ignore-scripts)
    echo "install: axe-core in $axe_dir"
  fi
fi
