#!/usr/bin/env bash
# Starts every service the test suites need when it is not answering, then runs each
# scripts/setup.d/*.sh (Docker engine, test images, sandboxes, ...). Idempotent; used by
# .ci/run and by people. Needs root for apt-get and daemons.
set -uo pipefail
cd "$(dirname "$0")/.."
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; return 1; }

if ! up 6379; then
  echo "services: starting Redis" >&2
  command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_up 6379 || { echo "services: Redis did not start" >&2; exit 1; }
fi
if ! up 5432; then
  echo "services: starting PostgreSQL" >&2
  if ! ls /etc/postgresql >/dev/null 2>&1; then apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_up 5432 || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi
for f in scripts/setup.d/*.sh; do
  [ -e "$f" ] || continue
  echo "services: $f" >&2
  bash "$f" || { echo "services: $f failed" >&2; exit 1; }
done
exit 0
