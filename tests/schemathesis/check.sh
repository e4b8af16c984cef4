#!/usr/bin/env bash
# Property-based testing of the HTTP API against its own OpenAPI document:
# schemathesis (pinned, installed by install.sh into a cache outside the
# repository) reads GET /openapi.json of a gitfaas serving
# tests/schemathesis/functions (one topic, a ConfigMap) into a fresh
# namespace of the cluster of $KUBECONFIG, generates requests for every
# operation (valid ones and invalid ones), and fails when an answer is a 5xx
# or does not match the document: its status, content type, headers or body
# schema ($GITFAAS_SCHEMATHESIS_CHECKS to choose others, e.g. `all`).
# Bounded: at most $GITFAAS_SCHEMATHESIS_EXAMPLES (50) cases per operation
# and phase, one worker, the whole run killed after
# $GITFAAS_SCHEMATHESIS_TIMEOUT (300) seconds. The seed is fixed
# ($GITFAAS_SCHEMATHESIS_SEED) so that a failure replays, and no example
# database is kept (it would be written into the working directory).
# Arguments are passed on to `st run` (e.g. --report har --report-dir DIR).
# Binary: $GITFAAS_BIN if set, else `cargo build --locked` and target/debug/gitfaas.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

log() { echo "schemathesis: $*" >&2; }
die() {
  echo "schemathesis: FAIL: $*" >&2
  exit 1
}

# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ] ||
  die "KUBECONFIG is not set to a file: start a cluster first (eval \"\$(make -s cluster-up)\")"
command -v kubectl >/dev/null 2>&1 || die "kubectl is not on PATH (eval \"\$(make -s cluster-up)\" puts it there)"
if [ -n "${GITFAAS_BIN:-}" ]; then
  bin=$GITFAAS_BIN
else
  cargo build --locked -q >&2
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/gitfaas
fi
[ -x "$bin" ] || die "no gitfaas binary at $bin"
st_bin=$("$here/install.sh")

examples=${GITFAAS_SCHEMATHESIS_EXAMPLES:-50}
budget=${GITFAAS_SCHEMATHESIS_TIMEOUT:-300}
seed=${GITFAAS_SCHEMATHESIS_SEED:-20260501}
# No 5xx, and every answer as documented: status, content type, headers, body.
checks=${GITFAAS_SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-schemathesis.XXXXXX")
ns=gitfaas-st-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
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
    echo "schemathesis: last lines of the gitfaas log:" >&2
    tail -n 30 "$tmp/gitfaas.log" >&2 || true
  fi
  kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if port_free "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
port=$(free_port) || die "no free port"
# Nothing listens there: a callback is refused at once, on this machine.
sink_port=$(free_port) || die "no free port"
base=http://127.0.0.1:$port

kubectl create namespace "$ns" >/dev/null || die "creating namespace $ns failed"
printf 'schemathesis-webhook-secret\n' >"$tmp/webhook-secret"
# The webhook is enabled so that its verification is exercised too (no
# generated signature is right: every call is refused before a sync).
# Callbacks may reach the loopback sink only; hooks.py points every
# generated X-Callback-Url there.
"$bin" serve --dir "$here/functions" --kubeconfig "$KUBECONFIG" --listen "127.0.0.1:$port" \
  --namespace "$ns" --allowed-namespaces "$ns" --data-dir "$tmp/data" \
  --webhook-secret-file "$tmp/webhook-secret" --auth none \
  --callback-allow-http --callback-allowed-hosts 127.0.0.1 --callback-max-wait 10s \
  >"$tmp/gitfaas.log" 2>&1 </dev/null &
pid=$!
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base/readyz" 2>/dev/null)" = 200 ]; do
  kill -0 "$pid" 2>/dev/null || die "gitfaas exited before becoming ready"
  [ "$SECONDS" -lt "$deadline" ] || die "gitfaas not ready on $base after 60 s"
  sleep 0.5
done
log "gitfaas ready on $base (namespace $ns); schemathesis $("$st_bin/st" --version 2>&1 | awk '{print $NF}'), seed $seed, $examples examples per operation, at most ${budget}s"

start=$SECONDS
rc=0
# From $tmp: schemathesis and hypothesis keep caches (failures to replay,
# unicode tables) in the working directory, which must not be the repository.
(cd "$tmp" && GITFAAS_CALLBACK_SINK="http://127.0.0.1:$sink_port/callback" \
  SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" \
  timeout --kill-after=10 "$budget" "$st_bin/st" run "$base/openapi.json" \
  --checks "$checks" \
  --max-examples "$examples" --seed "$seed" --workers 1 --request-timeout 30 \
  --generation-database none --no-color "$@") || rc=$?
elapsed=$((SECONDS - start))
case $rc in
  124 | 137) die "schemathesis did not finish within ${budget}s" ;;
esac
[ "$rc" -eq 0 ] || die "schemathesis found failures (exit $rc, ${elapsed}s): see above; replay with GITFAAS_SCHEMATHESIS_SEED=$seed"
kill -0 "$pid" 2>/dev/null || die "gitfaas exited during the run"
log "ok in ${elapsed}s"
