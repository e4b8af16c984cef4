#!/usr/bin/env bash
# `make demo`: gitfaas serving examples/pipeline against a real cluster.
#
# Uses the cluster of an explicitly given KUBECONFIG (kind, k3d, a real one),
# else builds and starts the local control plane (tests/cluster). Builds
# gitfaas, serves examples/pipeline from the local directory, publishes a
# message to its first step and waits for the Job to Complete, plays the
# function's part (response, next step), and shows how to publish more.
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
bin=${CARGO_TARGET_DIR:-$root/target}/release/gitfaas

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: port $port is in use; set GITFAAS_DEMO_PORT to a free port" >&2
  exit 1
fi
log=$(mktemp -t gitfaas-demo.XXXXXX.log)
data=$(mktemp -d -t gitfaas-demo-data.XXXXXX)
cleanup+=("rm -rf '$data' '$log'")
say "Serving examples/pipeline on http://127.0.0.1:$port (log: $log)"
"$bin" serve --dir examples/pipeline --listen "127.0.0.1:$port" --namespace "$namespace" \
  --public-url "http://127.0.0.1:$port" --poll-interval 10s --data-dir "$data" >"$log" 2>&1 &
server=$!
cleanup+=("kill $server 2>/dev/null; wait $server 2>/dev/null")
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "demo: gitfaas exited" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$log" >&2; exit 1; }
"$bin" validate examples/pipeline

say "Publishing to topic collect and waiting for its Job (gitfaas publish --wait)"
echo "+ gitfaas publish collect --url http://127.0.0.1:$port --data https://example.com/data.csv.gz --wait 120s" >&2
view=$("$bin" publish collect --url "http://127.0.0.1:$port" --data https://example.com/data.csv.gz --wait 120s)
echo "$view" | python3 -c '
import json, sys
v = json.load(sys.stdin)
print("request", v["requestUid"], "done:", v["done"], "succeeded:", v["succeeded"])
for o in v["objects"]:
    s = o["status"]
    print(" ", o["kind"], o["namespace"] + "/" + o["name"], s["phase"], [c["type"] for c in s.get("conditions", []) if c["status"] == "True"])
'
request=$(echo "$view" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requestUid"])')
function=$(echo "$view" | python3 -c 'import json,sys; print(json.load(sys.stdin)["functions"][0]["functionUid"])')
done_=$(echo "$view" | python3 -c 'import json,sys; print(json.load(sys.stdin)["done"])')
[ "$done_" = True ] || { echo "demo: the collect Job did not finish" >&2; exit 1; }
kubectl -n "$namespace" get jobs -l "gitfaas.io/request-uid=$request" -L gitfaas.io/topic

say "Playing the function's part (the simulated node runs no containers): respond, then publish the next step"
echo "+ curl -X POST --data 'collected 1234 bytes' http://127.0.0.1:$port/response/$function" >&2
curl -fsS -X POST --data 'collected 1234 bytes' "http://127.0.0.1:$port/response/$function"; echo
echo "+ curl http://127.0.0.1:$port/response/$request   # base64, as the Python gitfaas" >&2
curl -fsS "http://127.0.0.1:$port/response/$request"; echo
echo "+ curl 'http://127.0.0.1:$port/response/$request?decoded=true'" >&2
curl -fsS "http://127.0.0.1:$port/response/$request?decoded=true"; echo
"$bin" publish uncompress --url "http://127.0.0.1:$port" --data 'compressed bytes' --wait 60s \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); print("uncompress:", v["objects"][0]["name"], v["objects"][0]["status"]["phase"])'

say "Service status"
curl -sS "http://127.0.0.1:$port/status" | python3 -m json.tool

cat >&2 <<MSG

Publish more by hand:
  curl -X POST --data 'https://example.com/other.csv.gz' http://127.0.0.1:$port/publish/collect
  $bin publish convert --url http://127.0.0.1:$port --data 'a,b' --wait 60s
  curl http://127.0.0.1:$port/requests/<requestUid>
  kubectl -n $namespace get jobs -l app.kubernetes.io/managed-by=gitfaas
Edit examples/pipeline/*.yaml, then: curl http://127.0.0.1:$port/refresh
MSG
if [ -n "$once" ]; then
  say "Demo done (non-interactive): stopping"
  exit 0
fi
say "gitfaas keeps serving; press Ctrl-C to stop it (and the local control plane, if the demo started it)"
wait "$server"
