#!/usr/bin/env bash
# `make demo`: gitfaas serving examples/pipeline against a real cluster, whose
# three functions really run: collect downloads a gzip-compressed CSV from a
# local HTTP server, uncompress gunzips it, convert turns it into JSON, each
# step a Job on the real node publishing the next from inside its pod.
#
# Uses the cluster of an explicitly given KUBECONFIG (kind, k3d, a real one;
# set GITFAAS_DEMO_HOST to an address of this machine its pods reach, and
# push tests/cluster/images' examples image where its nodes find it), else
# builds and starts the local control plane with its real node
# (tests/cluster). Builds gitfaas, serves examples/pipeline from the local
# directory, publishes the file's URL to the first step and follows the
# chain by the requests' status to the JSON the last container produced.
# Interactive: keeps serving until Ctrl-C. With CI=true or DEMO_ONCE=1 it
# stops by itself after the walkthrough.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
port=${GITFAAS_DEMO_PORT:-5000}
namespace=${GITFAAS_DEMO_NAMESPACE:-gitfaas-examples}
once=${DEMO_ONCE:-${CI:-}}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { echo "demo: $*" >&2; exit 1; }

scripts/ensure-deps.sh runc busybox-static npm
cleanup=()
on_exit() {
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[$i]}" || true; done
}
trap on_exit EXIT

if [ -n "${KUBECONFIG:-}" ]; then
  say "Using the cluster of KUBECONFIG=$KUBECONFIG"
  command -v kubectl >/dev/null 2>&1 || PATH="$(tests/cluster/build.sh):$PATH"
else
  say "No KUBECONFIG given: starting the local control plane and its real node (first run builds them from source: 20-40 min)"
  here=$root/tests/cluster
  # shellcheck source=../tests/cluster/common.sh
  . "$here/common.sh"
  # A cluster that was up before the demo stays up after it.
  recorded_all_alive 2>/dev/null || cleanup+=("tests/cluster/down.sh")
  eval "$(tests/cluster/up.sh)"
fi
# Where pods reach this machine: the real node's address (the local
# cluster's pods bridge) unless told.
host=${GITFAAS_DEMO_HOST:-$(kubectl get nodes -l type=real -o 'jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null || true)}
[ -n "$host" ] || die "no node labelled type=real and no GITFAAS_DEMO_HOST: start the local cluster with its real node (make cluster-up), or set GITFAAS_DEMO_HOST to an address of this machine that the cluster's pods reach"
kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace" >&2

# GITFAAS_BIN: a gitfaas binary already built (`make test` passes the debug
# one its tests built, saving CI a release build of minutes); else the
# release build.
if [ -n "${GITFAAS_BIN:-}" ]; then
  bin=$GITFAAS_BIN
  say "Using $bin"
else
  say "Building gitfaas (release)"
  cargo build --release --locked --quiet
  bin=${CARGO_TARGET_DIR:-$root/target}/release/gitfaas
fi

# Who may do what (gitfaas --auth kubernetes): gitfaas reviews every
# caller's service-account token (audience gitfaas) and asks the API server
# whether it may, on gitfaas.io's virtual resources in gitfaas' own
# namespace (its kubeconfig context's, as a pod's is its own). The pipeline's
# steps run as their namespace's `default` account and may publish the next
# two steps; the demo itself calls as `gitfaas-demo`, which may do
# everything (README "Security"). No token file and no Secret anywhere.
home=$(kubectl config view --minify -o 'jsonpath={..namespace}' 2>/dev/null || true)
home=${home:-default}
say "Granting the pipeline's steps and the demo their permissions (Roles in namespace $home)"
kubectl apply -f - >&2 <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: gitfaas-demo, namespace: $namespace}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gitfaas-pipeline-steps, namespace: $home}
rules:
  - apiGroups: [gitfaas.io]
    resources: [topics]
    resourceNames: [uncompress, convert]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gitfaas-pipeline-steps, namespace: $home}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gitfaas-pipeline-steps}
subjects:
  - {kind: ServiceAccount, name: default, namespace: $namespace}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gitfaas-demo-operator, namespace: $home}
rules:
  - apiGroups: [gitfaas.io]
    resources: [topics]
    verbs: [create, get, list]
  - apiGroups: [gitfaas.io]
    resources: [runs]
    verbs: [get, list, delete]
  - apiGroups: [gitfaas.io]
    resources: [runs/retry]
    verbs: [create]
  - apiGroups: [gitfaas.io]
    resources: [sync]
    verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gitfaas-demo-operator, namespace: $home}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gitfaas-demo-operator}
subjects:
  - {kind: ServiceAccount, name: gitfaas-demo, namespace: $namespace}
YAML

if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  die "port $port is in use on $host; set GITFAAS_DEMO_PORT to a free port"
fi
log=$(mktemp -t gitfaas-demo.XXXXXX.log)
data=$(mktemp -d -t gitfaas-demo-data.XXXXXX)
files=$(mktemp -d -t gitfaas-demo-files.XXXXXX)
cleanup+=("rm -rf '$data' '$log' '$files'")
# The demo's own token (TokenRequest, audience gitfaas, one hour), in a
# file only this user reads, gone with the demo.
token_file=$data/demo-token
# curl reads the header from a file, so the token is in no command line.
header_file=$data/demo-header
(
  umask 077
  kubectl -n "$namespace" create token gitfaas-demo --audience gitfaas --duration 1h >"$token_file"
  printf 'Authorization: Bearer %s\n' "$(cat "$token_file")" >"$header_file"
)
auth=(--header "@$header_file")

# The data: a gzip-compressed CSV on a local HTTP server the pods reach.
gzip -c examples/data/cities.csv >"$files/cities.csv.gz"
files_port=$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$host")
python3 -m http.server "$files_port" --bind "$host" --directory "$files" >"$files/http.log" 2>&1 &
files_server=$!
cleanup+=("kill $files_server 2>/dev/null; wait $files_server 2>/dev/null")
url=http://$host:$files_port/cities.csv.gz

base=http://$host:$port
say "Serving examples/pipeline on $base (log: $log)"
"$bin" serve --dir examples/pipeline --listen "$host:$port" --namespace "$namespace" \
  --public-url "$base" --poll-interval 10s --data-dir "$data/store" --auth kubernetes \
  >"$log" 2>&1 &
server=$!
cleanup+=("kill $server 2>/dev/null; wait $server 2>/dev/null")
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; die "gitfaas exited"; }
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || { tail -20 "$log" >&2; exit 1; }
"$bin" validate examples/pipeline

say "Publishing the file's URL to topic collect"
echo "+ gitfaas publish collect --url $base --token-file $token_file --data $url" >&2
request=$("$bin" publish collect --url "$base" --token-file "$token_file" --data "$url" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requestUid"])')

# follow STEP UID: waits until the request's Jobs have finished and its
# function has responded; prints the step and sets `response` (its body).
follow() {
  local step=$1 uid=$2 view deadline=$((SECONDS + 240))
  while :; do
    view=$(curl -fsS "${auth[@]}" "$base/requests/$uid") || die "GET /requests/$uid failed"
    if printf '%s' "$view" | python3 -c '
import json, sys
v = json.load(sys.stdin)
sys.exit(0 if v["done"] and (v["succeeded"] is False or all(f.get("response") is not None for f in v["functions"])) else 1)'; then
      break
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$step ($uid) did not finish within 240 s: $view"
    sleep 1
  done
  printf '%s' "$view" | python3 -c '
import json, sys
v = json.load(sys.stdin)
print(sys.argv[1] + ":", "request", v["requestUid"], "succeeded" if v["succeeded"] else "FAILED")
for o in v["objects"]:
    print("  ", o["kind"], o["namespace"] + "/" + o["name"], o["status"]["phase"])' "$step" >&2
  echo "   its container's log:" >&2
  kubectl -n "$namespace" logs -l "gitfaas.io/request-uid=$uid" --tail=20 2>&1 | sed 's/^/     | /' >&2
  if ! printf '%s' "$view" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["succeeded"] else 1)'; then
    die "step $step failed (request $uid); see the log above and $log"
  fi
  response=$(printf '%s' "$view" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["functions"][0]["response"]))')
}
say "Following the pipeline by the requests' status (each step runs in a pod on the real node)"
follow collect "$request"
next=$(printf '%s' "$response" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requestUid"])')
follow uncompress "$next"
next=$(printf '%s' "$response" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requestUid"])')
follow convert "$next"
say "The JSON that convert's container produced (GET /response/$next?decoded=true)"
final=$(curl -fsS "${auth[@]}" "$base/response/$next?decoded=true")
printf '%s' "$final" | python3 -m json.tool
# The demo fails unless a container really produced every record.
printf '%s' "$final" | python3 -c '
import csv, json, sys
records = json.load(sys.stdin)["responses"][0]
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["city"] for r in records] == [r["city"] for r in rows], (records, rows)
print("demo: convert produced all", len(records), "records of", sys.argv[1], file=sys.stderr)' examples/data/cities.csv
kubectl -n "$namespace" get jobs -l app.kubernetes.io/part-of=gitfaas-pipeline-example -L gitfaas.io/topic >&2

say "Service status"
curl -sS "$base/status" | python3 -m json.tool

cat >&2 <<MSG

Publish more by hand, with the demo's token (kubectl -n $namespace create token gitfaas-demo --audience gitfaas):
  TOKEN=\$(cat $token_file)
  curl -X POST -H "Authorization: Bearer \$TOKEN" --data '$url' $base/publish/collect
  $bin publish convert --url $base --token-file $token_file --data 'a,b' --wait 60s
  curl -H "Authorization: Bearer \$TOKEN" $base/requests/<requestUid>
  kubectl -n $namespace get jobs -l app.kubernetes.io/managed-by=gitfaas
Edit examples/pipeline/*.yaml, then: curl -H "Authorization: Bearer \$TOKEN" $base/refresh
Or in a browser: $base/ui/ (the web console: runs, logs, topics, publish, sync; sign in with that token)
MSG
if [ -n "$once" ]; then
  say "Demo done (non-interactive): stopping"
  exit 0
fi
say "gitfaas keeps serving; press Ctrl-C to stop it (and the local control plane, if the demo started it)"
wait "$server"
