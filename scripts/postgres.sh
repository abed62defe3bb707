#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use answers at 127.0.0.1:5432, and prints its URL.
# On a machine where none runs, Debian's cluster is created (when missing) and started,
# with a role and a database for the tests whose password only root can read.
# `make test` calls it when TEST_DATABASE_URL is unset.
set -euo pipefail
role=choreo_test
database=choreo
password_file=${TEST_PG_PASSWORD_FILE:-/var/lib/choreo/test-pg-password}
answers() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null; }

if ! answers; then
  if ! command -v pg_lsclusters >/dev/null; then
    echo "postgres: apt-get install postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main" \
    || pg_createcluster "$version" main -- --auth-local=peer --auth-host=scram-sha-256 >&2
  # Its notes ("Removed stale pid file.") go to stderr: stdout carries only the URL.
  pg_ctlcluster "$version" main start >&2
  for _ in $(seq 1 50); do answers && break; sleep 0.2; done
  answers || { echo "postgres: the cluster $version/main did not start: see /var/log/postgresql/" >&2; exit 1; }
fi

if [ ! -s "$password_file" ]; then
  mkdir -p "$(dirname "$password_file")"
  chmod 0700 "$(dirname "$password_file")"
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$password_file")
fi
password=$(cat "$password_file")
# Role and database are made once; the password is set again each time, from the file.
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $role LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')\gexec
ALTER ROLE $role PASSWORD '$password';
SELECT 'CREATE DATABASE $database OWNER $role' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$database')\gexec
SQL
echo "postgres://$role:$password@127.0.0.1:5432/$database"
