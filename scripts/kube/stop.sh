#!/usr/bin/env bash
# Stop the control plane started by start.sh (same KUBE_STATE) and remove its state dir.
# Only the pids recorded in $KUBE_STATE/pids are signalled, and only while they still run a
# binary from the plane (checked via /proc/<pid>/cmdline), so a recycled pid is never hit.
# KUBE_KEEP_STATE=1 keeps the state dir (logs, certs) for inspection.
set -uo pipefail
S="${KUBE_STATE:-/tmp/choreo-kube}"
[ -d "$S/pids" ] || { echo "stop.sh: nothing to stop in $S"; exit 0; }
[ -e "$S/.choreo-kube" ] || { echo "stop.sh: $S is not a choreo-kube state dir" >&2; exit 1; }

ours() { # pid name
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "/$2 "
}
stopped=()
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$S/pids/$name.pid"
  [ -s "$f" ] || continue
  pid="$(cat "$f")"
  if ours "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null && stopped+=("$name:$pid")
    for _ in $(seq 1 100); do ours "$pid" "$name" || break; sleep 0.1; done
    if ours "$pid" "$name"; then
      echo "stop.sh: $name (pid $pid) ignored SIGTERM for 10s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$f"
done
echo "stop.sh: stopped ${stopped[*]:-nothing (no live process)}"
if [ "${KUBE_KEEP_STATE:-0}" = 1 ]; then
  echo "stop.sh: kept $S"
else
  rm -rf "$S"
  echo "stop.sh: removed $S"
fi
