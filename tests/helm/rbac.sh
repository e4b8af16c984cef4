#!/usr/bin/env bash
# Least-privilege proof of the chart's namespaced RBAC, against a running
# cluster ($KUBECONFIG, admin):
#   1. creates namespaces NS (gitfaas' own) and OTHER, applies the
#      functions' Namespace (NS-functions), ServiceAccount, Role and
#      RoleBinding the chart renders for release namespace NS, mints a token
#      for the ServiceAccount and writes a kubeconfig that holds only that
#      token;
#   2. runs `gitfaas serve --dir <functions> --kubeconfig <token kubeconfig>
#      --namespace NS-functions` with four topics: "inside" (a Job without a
#      namespace), "own" (a Job in NS), "outside" (a Job in OTHER) and
#      "timer" (a yearly schedule, so that gitfaas takes its Lease);
#   3. asserts (gitfaas runs with --auth kubernetes: it reviews a caller's
#      token with the system:auth-delegator binding, its one cluster-wide
#      grant): no token -> 401; publish inside -> 202 and the Job exists in NS-functions;
#      publish own and outside -> 403 with a JSON message naming "forbidden"
#      and the namespace, and nothing created in NS or OTHER: gitfaas has no
#      right in its own namespace, where its Secret lives, but its
#      scheduler's Lease, which it holds (created in NS, under its identity);
#   4. cleans up (gitfaas stopped by its PID, the namespaces deleted).
# Binary: $GITFAAS_BIN if set, else `cargo build --release --locked` and
# target/release/gitfaas. Port: $GITFAAS_RBAC_PORT, else a free one.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

log() { echo "rbac: $*" >&2; }
die() {
  echo "rbac: FAIL: $*" >&2
  exit 1
}

# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ] ||
  die "KUBECONFIG is not set to a file: start a cluster first (eval \"\$(make -s cluster-up)\")"
command -v kubectl >/dev/null 2>&1 || die "kubectl not on PATH (eval \"\$(make -s cluster-up)\" puts it there)"
command -v curl >/dev/null 2>&1 || die "curl not found"
kubectl=(kubectl --request-timeout=20s)
"${kubectl[@]}" get --raw /readyz >/dev/null || die "the API server of $KUBECONFIG does not answer"

helm_bin=$(tests/helm/build.sh)
if [ -n "${GITFAAS_BIN:-}" ]; then
  bin=$GITFAAS_BIN
else
  log "building gitfaas (cargo build --release --locked)"
  cargo build --release --locked >&2
  bin=${CARGO_TARGET_DIR:-$root/target}/release/gitfaas
fi
[ -x "$bin" ] || die "no gitfaas binary at $bin"

suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
ns=gf-rbac-$suffix
fns=$ns-functions
other=gf-rbac-other-$suffix
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-rbac.XXXXXX")
gitfaas_pid=""
cleanup() {
  local rc=$?
  if [ -n "$gitfaas_pid" ] && kill -0 "$gitfaas_pid" 2>/dev/null; then
    kill -TERM "$gitfaas_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$gitfaas_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$gitfaas_pid" 2>/dev/null || true
    wait "$gitfaas_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$tmp/gitfaas.log" ]; then
    echo "rbac: last lines of the gitfaas log:" >&2
    tail -n 20 "$tmp/gitfaas.log" >&2 || true
  fi
  "${kubectl[@]}" delete namespace "$ns" "$fns" "$other" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the chart's RBAC for namespace $ns -------------------------------------
"${kubectl[@]}" create namespace "$ns" >/dev/null
"${kubectl[@]}" create namespace "$other" >/dev/null
"$helm_bin/helm" template gitfaas deploy/gitfaas --namespace "$ns" \
  --show-only templates/namespace.yaml --show-only templates/serviceaccount.yaml \
  --show-only templates/rbac.yaml --show-only templates/rbac-scheduler.yaml \
  --show-only templates/rbac-auth.yaml >"$tmp/rbac.yaml"
grep -q '^kind: Role$' "$tmp/rbac.yaml" || die "the chart rendered no Role for rbac.scope=namespaced"
if grep -q '^kind: ClusterRole$' "$tmp/rbac.yaml"; then
  die "the namespaced chart rendered a ClusterRole for gitfaas"
fi
# One cluster-wide grant: system:auth-delegator, to review callers' tokens and permissions.
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ "$(grep -c '^kind: ClusterRoleBinding$' "$tmp/rbac.yaml")" = 1 ] && grep -q '^  name: system:auth-delegator$' "$tmp/rbac.yaml" ||
  die "the namespaced chart should bind gitfaas to system:auth-delegator and nothing else cluster-wide"
"${kubectl[@]}" apply --server-side -f "$tmp/rbac.yaml" >&2
sa=$(awk '/^kind: ServiceAccount$/ { f = 1 } f && /^  name: / { print $2; exit }' "$tmp/rbac.yaml")
[ -n "$sa" ] || die "no ServiceAccount in the rendered RBAC"

# ---- a kubeconfig holding only the ServiceAccount's token -------------------
token=$("${kubectl[@]}" -n "$ns" create token "$sa" --duration=20m)
server=$("${kubectl[@]}" config view --minify --raw -o 'jsonpath={.clusters[0].cluster.server}')
ca=$("${kubectl[@]}" config view --minify --raw -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ -n "$server" ] && [ -n "$ca" ] || die "no server or certificate-authority-data in $KUBECONFIG"
kc=$tmp/token.kubeconfig
(
  umask 077
  cat >"$kc" <<KUBECONFIG_EOF
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $sa
  user:
    token: $token
contexts:
- name: sa
  context:
    cluster: cluster
    user: $sa
    namespace: $ns
current-context: sa
KUBECONFIG_EOF
)
sakubectl=(kubectl --kubeconfig="$kc" --request-timeout=20s)
can() { "${sakubectl[@]}" auth can-i "$@" 2>/dev/null || true; }
# The identity is the ServiceAccount (not admin), with exactly the namespaced rights.
[ "$(can create jobs.batch -n "$fns")" = yes ] || die "the ServiceAccount cannot create Jobs in $fns"
[ "$(can patch jobs.batch -n "$fns")" = yes ] || die "the ServiceAccount cannot patch Jobs in $fns"
[ "$(can create jobs.batch -n "$ns")" = no ] || die "the ServiceAccount can create Jobs in its own namespace $ns"
[ "$(can get secrets -n "$ns")" = no ] || die "the ServiceAccount can read the Secrets of its own namespace $ns"
[ "$(can create jobs.batch -n "$other")" = no ] || die "the ServiceAccount can create Jobs in $other"
[ "$(can create roles.rbac.authorization.k8s.io -n "$fns")" = no ] || die "the ServiceAccount can create Roles"
[ "$(can list jobs.batch --all-namespaces)" = no ] || die "the ServiceAccount can list Jobs cluster-wide"
# Its own namespace: the scheduler's Lease, and nothing else.
[ "$(can create leases.coordination.k8s.io -n "$ns")" = yes ] || die "the ServiceAccount cannot create its Lease in $ns"
[ "$(can get leases.coordination.k8s.io/gitfaas-scheduler -n "$ns")" = yes ] || die "the ServiceAccount cannot get its Lease in $ns"
[ "$(can update leases.coordination.k8s.io/gitfaas-scheduler -n "$ns")" = yes ] || die "the ServiceAccount cannot update its Lease in $ns"
[ "$(can get leases.coordination.k8s.io/another -n "$ns")" = no ] || die "the ServiceAccount can read another Lease of $ns"
[ "$(can update leases.coordination.k8s.io/another -n "$ns")" = no ] || die "the ServiceAccount can update another Lease of $ns"
[ "$(can delete leases.coordination.k8s.io/gitfaas-scheduler -n "$ns")" = no ] || die "the ServiceAccount can delete its Lease"
[ "$(can list leases.coordination.k8s.io -n "$ns")" = no ] || die "the ServiceAccount can list the Leases of $ns"
[ "$(can create leases.coordination.k8s.io -n "$other")" = no ] || die "the ServiceAccount can create Leases in $other"
# The callers' reviews (auth.mode kubernetes), and nothing more of authentication.
[ "$(can create tokenreviews.authentication.k8s.io)" = yes ] || die "the ServiceAccount cannot create TokenReviews"
[ "$(can create subjectaccessreviews.authorization.k8s.io)" = yes ] || die "the ServiceAccount cannot create SubjectAccessReviews"
[ "$(can create serviceaccounts/token -n "$ns")" = no ] || die "the ServiceAccount can mint tokens"
log "ServiceAccount $ns/$sa: Jobs in $fns: yes; its Lease in $ns: yes; Jobs or Secrets in $ns, other Leases, Jobs in $other, Roles, cluster-wide lists: no"

# ---- the functions ------------------------------------------------------------
dir=$tmp/functions
mkdir -p "$dir"
cat >"$dir/config.json" <<'CONFIG_EOF'
{"topics": [
  {"name": "inside", "configs": ["inside.yaml"]},
  {"name": "own", "configs": ["own.yaml"]},
  {"name": "outside", "configs": ["outside.yaml"]},
  {"name": "timer", "configs": ["inside.yaml"], "schedule": {"cron": "@yearly"}}
]}
CONFIG_EOF
job() { # NAME [NAMESPACE]
  echo "apiVersion: batch/v1"
  echo "kind: Job"
  echo "metadata:"
  echo "  name: $1-{{RANDOM}}"
  if [ -n "${2:-}" ]; then echo "  namespace: $2"; fi
  cat <<'JOB_EOF'
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 300
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox:1.36
          command: ["true"]
          env:
            - name: PAYLOAD
              value: "{{PAYLOAD}}"
JOB_EOF
}
job inside >"$dir/inside.yaml"
job own "$ns" >"$dir/own.yaml"
job outside "$other" >"$dir/outside.yaml"

# ---- gitfaas as the ServiceAccount ----------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${GITFAAS_RBAC_PORT:-}
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
[ -n "$port" ] && port_free "$port" || die "no free port (set GITFAAS_RBAC_PORT)"
base=http://127.0.0.1:$port
# Without KUBECONFIG in its environment, the token kubeconfig is all it has.
env -u KUBECONFIG "$bin" serve --dir "$dir" --kubeconfig "$kc" --listen "127.0.0.1:$port" \
  --namespace "$fns" --data-dir "$tmp/data" --log-level debug --auth kubernetes >"$tmp/gitfaas.log" 2>&1 </dev/null &
gitfaas_pid=$!
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base/readyz" 2>/dev/null)" = 200 ]; do
  kill -0 "$gitfaas_pid" 2>/dev/null || die "gitfaas exited before becoming ready"
  [ "$SECONDS" -lt "$deadline" ] || die "gitfaas not ready on $base after 60 s"
  sleep 0.5
done
log "gitfaas (pid $gitfaas_pid) ready on $base as $ns/$sa"

# A caller: a ServiceAccount of gitfaas' namespace that may publish every
# topic (the chart's gitfaas-publisher, as a Role here), its token minted
# for gitfaas' audience.
"${kubectl[@]}" -n "$ns" create serviceaccount caller >/dev/null
# (kubectl create role checks its resources against discovery, which has no
# gitfaas.io: the Role is applied as YAML.)
"${kubectl[@]}" -n "$ns" apply -f - >/dev/null <<'ROLE_EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: gitfaas-publisher
rules:
  - apiGroups: ["gitfaas.io"]
    resources: ["topics"]
    verbs: ["create"]
ROLE_EOF
"${kubectl[@]}" -n "$ns" create rolebinding caller-publishes --role=gitfaas-publisher --serviceaccount="$ns:caller" >/dev/null
caller_token=$("${kubectl[@]}" -n "$ns" create token caller --audience=gitfaas --duration=20m)
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 30 -X POST -H 'Content-Type: text/plain' \
  --data 'hello' "$base/publish/inside")
[ "$code" = 401 ] || die "publish without a token under --auth kubernetes: HTTP $code, expected 401: $(cat "$tmp/body")"
log "publish without a token -> 401"

publish() { # TOPIC -> sets code and body
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 30 -X POST \
    -H "Authorization: Bearer $caller_token" -H 'Content-Type: text/plain' --data 'hello' "$base/publish/$1")
  body=$(cat "$tmp/body")
}
jobs_in() { # NAMESPACE [SELECTOR]
  "${kubectl[@]}" -n "$1" get jobs ${2:+-l "$2"} -o name
}

publish inside
[ "$code" = 202 ] || die "publish inside: HTTP $code, expected 202: $body"
created=$(jobs_in "$fns" gitfaas.io/topic=inside)
[ -n "$created" ] || die "publish inside answered 202 but there is no Job in $fns"
log "publish inside -> 202; $created in $fns"

publish own
[ "$code" = 403 ] || die "publish own: HTTP $code, expected 403: $body"
printf '%s' "$body" | grep -qi forbidden || die "publish own: the message does not say forbidden: $body"
printf '%s' "$body" | grep -qF -- "namespace \\\"$ns\\\"" || die "publish own: the message does not name namespace $ns: $body"
[ -z "$(jobs_in "$ns")" ] || die "publish own created a Job in gitfaas' own namespace $ns"
log "publish own -> 403; nothing created in $ns"

publish outside
[ "$code" = 403 ] || die "publish outside: HTTP $code, expected 403: $body"
printf '%s' "$body" | grep -Eq '"error": ?true' || die "publish outside: no \"error\": true in $body"
printf '%s' "$body" | grep -Eq '"message": ?"' || die "publish outside: no JSON message in $body"
printf '%s' "$body" | grep -qi forbidden || die "publish outside: the message does not say forbidden: $body"
printf '%s' "$body" | grep -q -- "$other" || die "publish outside: the message does not name namespace $other: $body"
[ -z "$(jobs_in "$other")" ] || die "publish outside created a Job in $other"
log "publish outside -> 403: $body"
log "nothing created in $other"

# The scheduler's Lease: taken in gitfaas' own namespace, under its identity.
deadline=$((SECONDS + 30))
until holder=$("${kubectl[@]}" -n "$ns" get lease gitfaas-scheduler -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null) &&
  [ -n "$holder" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "gitfaas did not take its Lease gitfaas-scheduler in $ns within 30 s"
  sleep 0.5
done
case $holder in
*"_${gitfaas_pid}_"*) ;;
*) die "the Lease's holder $holder does not name gitfaas' process $gitfaas_pid" ;;
esac
curl -s --max-time 5 "$base/status" | grep -q '"leader":true' || die "/status does not say this gitfaas leads"
log "Lease $ns/gitfaas-scheduler held by $holder"
log "ok"
