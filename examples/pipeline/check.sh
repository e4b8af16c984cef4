#!/usr/bin/env bash
# Checks that examples/pipeline is a valid functions repository, against the
# cluster of $KUBECONFIG (eval "$(make -s cluster-up)" first): serves it with
# `gitfaas serve --dir examples/pipeline`, then asserts that GET /status lists
# the three topics with no sync error and that a dry-run publish of each step
# answers 200 (rendered, structure- and policy-checked, accepted by the API
# server's dry run, nothing created).
# Binary: $GITFAAS_BIN if set, else `cargo build --locked` and target/debug/gitfaas.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

log() { echo "pipeline: $*" >&2; }
die() {
  echo "pipeline: FAIL: $*" >&2
  exit 1
}

# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ] ||
  die "KUBECONFIG is not set to a file: start a cluster first (eval \"\$(make -s cluster-up)\")"
if [ -n "${GITFAAS_BIN:-}" ]; then
  bin=$GITFAAS_BIN
else
  cargo build --locked -q >&2
  bin=$root/target/debug/gitfaas
fi
[ -x "$bin" ] || die "no gitfaas binary at $bin"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-pipeline.XXXXXX")
pid=""
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$tmp/gitfaas.log" ]; then
    echo "pipeline: last lines of the gitfaas log:" >&2
    tail -n 20 "$tmp/gitfaas.log" >&2 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${GITFAAS_PIPELINE_PORT:-}
if [ -z "$port" ]; then
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if port_free "$p"; then
      port=$p
      break
    fi
  done
fi
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ -n "$port" ] && port_free "$port" || die "no free port (set GITFAAS_PIPELINE_PORT)"
base=http://127.0.0.1:$port

"$bin" serve --dir examples/pipeline --kubeconfig "$KUBECONFIG" --listen "127.0.0.1:$port" \
  --data-dir "$tmp/data" --auth none >"$tmp/gitfaas.log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base/readyz" 2>/dev/null)" = 200 ]; do
  kill -0 "$pid" 2>/dev/null || die "gitfaas exited before becoming ready"
  [ "$SECONDS" -lt "$deadline" ] || die "gitfaas not ready on $base after 60 s"
  sleep 0.5
done

status=$(curl -fsS --max-time 10 "$base/status")
for topic in collect uncompress convert; do
  printf '%s' "$status" | grep -Eq "\"name\": ?\"$topic\"" || die "/status does not list topic $topic: $status"
done
[ "$(printf '%s' "$status" | grep -Eo '"name": ?"[^"]*"' | wc -l)" = 3 ] || die "/status does not list exactly 3 topics: $status"
printf '%s' "$status" | grep -Eq '"lastError": ?null' || die "/status shows a sync error: $status"
log "/status: topics collect, uncompress, convert; no lastError"

dry_run() { # TOPIC CONTENT-TYPE BODY
  local code
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 30 -X POST \
    -H "Content-Type: $2" --data-binary "$3" "$base/publish/$1?dryRun=true")
  [ "$code" = 200 ] || die "POST /publish/$1?dryRun=true: HTTP $code, expected 200: $(cat "$tmp/body")"
  grep -q "ttlSecondsAfterFinished" "$tmp/body" || die "dry run of $1 did not return the rendered Job: $(cat "$tmp/body")"
  log "POST /publish/$1?dryRun=true -> 200"
}
dry_run collect text/plain 'https://data.example.com/sales.csv.gz'
printf 'id,city\n1,Paris\n2,Lyon\n' | gzip -c >"$tmp/data.csv.gz"
dry_run uncompress application/octet-stream "@$tmp/data.csv.gz"
dry_run convert text/csv $'id,city\n1,Paris\n2,Lyon\n'
log "ok"
