#!/usr/bin/env bash
# Starts Debian's redis-server as the platform's Redis, protected so that no other local
# user can use it: a password (requirepass) that only root can read, in PASSWORD_FILE, and
# Debian's /etc/redis (mode 2770, redis:redis) for the copy redis-server reads.
# The platform reads PASSWORD_FILE when REDIS_URL is unset (choreo_site/settings.py).
#   scripts/redis.sh PASSWORD_FILE
set -euo pipefail
password_file=$1
conf=/etc/redis/redis.conf
auth=/etc/redis/choreo-auth.conf

if [ ! -s "$password_file" ]; then
  mkdir -p "$(dirname "$password_file")"
  (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$password_file.tmp")
  mv "$password_file.tmp" "$password_file"
fi
chown root:root "$password_file"
chmod 0600 "$password_file"
(umask 027; printf 'requirepass %s\n' "$(cat "$password_file")" > "$auth.tmp")
chown root:redis "$auth.tmp"
mv "$auth.tmp" "$auth"
grep -qxF "include $auth" "$conf" || printf '\n# The platform: protected by a password only root can read.\ninclude %s\n' "$auth" >> "$conf"

if [ -d /run/systemd/system ]; then
  systemctl enable --now redis-server >/dev/null
  systemctl restart redis-server
else
  # No init system (a container): Debian's own script, which drops to the redis user.
  /etc/init.d/redis-server restart >/dev/null 2>&1 || true
fi
for _ in $(seq 1 50); do
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379' 2>/dev/null && break
  sleep 0.1
done
timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379' 2>/dev/null \
  || { echo "install: redis-server did not start, see /var/log/redis/redis-server.log" >&2; exit 1; }
echo "install: started redis-server on 127.0.0.1:6379 (password in $password_file)"
