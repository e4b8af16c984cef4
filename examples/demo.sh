#!/usr/bin/env bash
# `make demo`: gitfaas serving examples/hello against a real cluster.
#
# Uses the cluster of an explicitly given KUBECONFIG (kind, k3d, a real one),
# else builds and starts the local control plane (tests/cluster). Builds
# gitfaas, serves examples/hello from the local directory, publishes one
# message, follows the Job to Complete, and shows how to publish more.
# Interactive: keeps serving until Ctrl-C. With CI=true or DEMO_ONCE=1 it
# stops by itself after the walkthrough.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
port=${GITFAAS_DEMO_PORT:-5000}
namespace=${GITFAAS_DEMO_NAMESPACE:-default}
once=${DEMO_ONCE:-${CI:-}}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/ensure-deps.sh
cleanup=()
on_exit() {
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[$i]}" || true; done
}
trap on_exit EXIT

if [ -n "${KUBECONFIG:-}" ]; then
  say "Using the cluster of KUBECONFIG=$KUBECONFIG"
  command -v kubectl >/dev/null 2>&1 || PATH="$(tests/cluster/build.sh):$PATH"
else
  say "No KUBECONFIG given: starting the local control plane (first run builds it from source: 20-40 min)"
  eval "$(tests/cluster/up.sh)"
  cleanup+=("tests/cluster/down.sh")
fi

say "Building gitfaas (release)"
cargo build --release --locked --quiet
bin=$root/target/release/gitfaas

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: port $port is in use; set GITFAAS_DEMO_PORT to a free port" >&2
  exit 1
fi
log=$(mktemp -t gitfaas-demo.XXXXXX.log)
say "Serving examples/hello on http://127.0.0.1:$port (log: $log)"
"$bin" serve --dir examples/hello --listen "127.0.0.1:$port" --namespace "$namespace" \
  --public-url "http://127.0.0.1:$port" --poll-interval 10s >"$log" 2>&1 &
server=$!
cleanup+=("kill $server 2>/dev/null; wait $server 2>/dev/null")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "demo: gitfaas exited" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$log" >&2; exit 1; }

say "Publishing a message to topic hello"
echo "+ curl -X POST -H 'content-type: text/plain' --data 'Hello from the demo' 'http://127.0.0.1:$port/publish/hello?greeting=hi'" >&2
report=$(curl -sS -X POST -H 'content-type: text/plain' --data 'Hello from the demo' \
  "http://127.0.0.1:$port/publish/hello?greeting=hi")
echo "$report" | python3 -m json.tool
job=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["applies"][0]["objects"][0]["name"])')

say "Following Job $job"
for _ in $(seq 1 120); do
  state=$(kubectl -n "$namespace" get job "$job" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}' 2>/dev/null || true)
  case "$state" in
    *Complete*) break ;;
    *Failed*) echo "demo: the Job failed" >&2; kubectl -n "$namespace" describe job "$job" >&2; exit 1 ;;
  esac
  sleep 0.5
done
kubectl -n "$namespace" get job "$job" -L gitfaas.io/topic,gitfaas.io/request-uid
case "$state" in *Complete*) ;; *) echo "demo: the Job did not complete in time" >&2; exit 1 ;; esac
kubectl -n "$namespace" get job "$job" -o jsonpath='{.spec.template.spec.containers[0].env}' | python3 -m json.tool

say "Service status"
curl -sS "http://127.0.0.1:$port/status" | python3 -m json.tool

cat >&2 <<MSG

Publish more by hand:
  curl -X POST --data 'another message' 'http://127.0.0.1:$port/publish/hello?greeting=hey'
  kubectl -n $namespace get jobs -l gitfaas.io/topic=hello
Edit examples/hello/*.yaml, then: curl http://127.0.0.1:$port/refresh
MSG
if [ -n "$once" ]; then
  say "Demo done (non-interactive): stopping"
  exit 0
fi
say "gitfaas keeps serving; press Ctrl-C to stop it (and the local control plane, if the demo started it)"
wait "$server"
