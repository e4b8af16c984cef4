#!/usr/bin/env bash
# A throwaway redis-server for the tests: `tests/redis.sh up` starts one on
# 127.0.0.1:${GITFAAS_TEST_REDIS_PORT:-16379} with no persistence and prints
# `export GITFAAS_TEST_REDIS_URL=…`; `tests/redis.sh down` stops it by the PID
# it recorded. Installs redis-server (Debian package) when it is missing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${GITFAAS_TEST_REDIS_PORT:-16379}
dir=${GITFAAS_TEST_REDIS_DIR:-${TMPDIR:-/tmp}/gitfaas-redis-$port}
url="redis://127.0.0.1:$port"

alive() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

case "${1:-}" in
  up)
    "$root/scripts/ensure-deps.sh" redis-server
    if alive; then
      echo "export GITFAAS_TEST_REDIS_URL=$url"
      exit 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "redis: port $port is already in use; set GITFAAS_TEST_REDIS_PORT to a free port" >&2
      exit 1
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
      --daemonize no >"$dir/redis.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        echo "redis: up on $url (pid $(cat "$dir/pid"))" >&2
        echo "export GITFAAS_TEST_REDIS_URL=$url"
        exit 0
      fi
      alive || break
      sleep 0.1
    done
    echo "redis: redis-server did not start; last lines of its log:" >&2
    tail -20 "$dir/redis.log" >&2 || true
    "$0" down
    exit 1
    ;;
  down)
    if alive; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: tests/redis.sh up|down" >&2
    exit 2
    ;;
esac
