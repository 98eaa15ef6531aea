#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on their local ports: start them if installed,
# install them from Debian's packages if missing. Starts only what is down; stops nothing.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # name port seconds
  for _ in $(seq 1 "$3"); do answers "$2" && return 0; sleep 1; done
  echo "services: $1 did not come up on port $2" >&2; return 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL
if ! answers 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL"; apt_install postgresql
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    # Local development and CI: trust loopback connections, as the contract's DATABASE_URL expects.
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "/etc/postgresql/$ver/main/pg_hba.conf"
    sed -i -E 's/^(local\s+all\s+postgres\s+)\S+/\1trust/' "/etc/postgresql/$ver/main/pg_hba.conf"
  fi
  echo "services: starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
  wait_for PostgreSQL 5432 30
fi

# Redis
if ! answers 6379; then
  command -v redis-server >/dev/null || { echo "services: installing Redis"; apt_install redis-server; }
  echo "services: starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 6379 15
fi

# RabbitMQ (with the management UI on 15672 for people watching the queues)
if ! answers 5672; then
  command -v rabbitmq-server >/dev/null || { echo "services: installing RabbitMQ"; apt_install rabbitmq-server; }
  as_root rabbitmq-plugins enable --offline rabbitmq_management >/dev/null 2>&1 || true
  echo "services: starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_for RabbitMQ 5672 90
fi
if ! answers 15672 && command -v rabbitmq-plugins >/dev/null; then
  as_root rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 || true
fi
# nginx: only its binary, for the test that checks deploy/nginx/nginx.conf with `nginx -t`.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "services: installing nginx (binary only)"; apt_install nginx-light; }
# promtool (Debian's prometheus package): tests/deploy checks deploy/prometheus/ with `promtool check/test rules`.
command -v promtool >/dev/null || { echo "services: installing promtool (prometheus)"; apt_install --no-install-recommends prometheus; }
# Chromium (Debian's): the tests render /api/docs and /api/redoc in it, headless.
command -v chromium >/dev/null || { echo "services: installing Chromium"; apt_install chromium; }
# wrk (Debian's): the load generator of `make bench` (scripts/services.sh --bench).
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null || { echo "services: installing wrk"; apt_install wrk; }
fi
echo "services: PostgreSQL, Redis and RabbitMQ answer"
