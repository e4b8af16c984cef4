#!/usr/bin/env bash
# `make deploy-check`: checks the Helm chart deploy/gitfaas and the plain
# manifests deploy/kubernetes/gitfaas.yaml.
#   1. builds helm if it is not cached (tests/helm/build.sh);
#   2. `helm lint --strict` with the default values, rbac.scope=clusterWide,
#      and tests/helm/values-full.yaml (every option on);
#   3. re-renders the plain manifests and fails if deploy/kubernetes/ drifted
#      (fix: `make deploy-render`);
#   4. renders variants and checks them: clusterWide RBAC, secrets never in
#      clear, existingSecret, values that must be refused;
#   5. server-side dry-run applies the plain manifests, the clusterWide and
#      the full render against the cluster (`kubectl apply --server-side
#      --dry-run=server`), their namespace created first;
#   6. runs tests/helm/rbac.sh (least-privilege proof; GITFAAS_SKIP_RBAC=1
#      skips it; GITFAAS_BIN picks the gitfaas binary it runs).
# Cluster: the one of $KUBECONFIG when it answers, else the local control
# plane (tests/cluster/up.sh), stopped at the end if this script started it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

log() { echo "deploy-check: $*" >&2; }
die() {
  echo "deploy-check: FAIL: $*" >&2
  exit 1
}

helm="$(tests/helm/build.sh)/helm"
chart=deploy/gitfaas
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-deploy-check.XXXXXX")
created_namespaces=()
stop_cluster=0
cleanup() {
  if [ ${#created_namespaces[@]} -gt 0 ]; then
    kubectl --request-timeout=20s delete namespace "${created_namespaces[@]}" \
      --wait=false --ignore-not-found >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  if [ "$stop_cluster" = 1 ]; then tests/cluster/down.sh || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

template() { "$helm" template gitfaas "$chart" "$@"; }
# doc KIND FILE: the documents of kind KIND in a rendered FILE.
doc() { awk -v k="kind: $1" '/^---/ { if (f) exit; buf = ""; next } { buf = buf $0 "\n" } $0 == k { f = 1 } END { if (f) printf "%s", buf }' "$2"; }
# doc_in KIND NAMESPACE FILE: the first document of kind KIND in NAMESPACE.
doc_in() {
  awk -v k="kind: $1" -v n="  namespace: $2" '
    function done() { if (kf && nf && !out) { out = 1; printf "%s", buf; exit } }
    /^---/ { done(); buf = ""; kf = 0; nf = 0; next }
    { buf = buf $0 "\n" } $0 == k { kf = 1 } $0 == n { nf = 1 }
    END { done() }' "$3"
}
has_kind() { grep -q "^kind: $1\$" "$2"; }

# ---- 2. lint ------------------------------------------------------------------
"$helm" lint --strict "$chart" >&2
"$helm" lint --strict "$chart" --set rbac.scope=clusterWide >&2
"$helm" lint --strict "$chart" -f tests/helm/values-full.yaml >&2
log "helm lint: ok (defaults, clusterWide, values-full)"

# ---- 3. drift of the plain manifests ------------------------------------------------
tests/helm/render.sh >"$tmp/plain.yaml"
if ! diff -u deploy/kubernetes/gitfaas.yaml "$tmp/plain.yaml" >"$tmp/drift.diff"; then
  cat "$tmp/drift.diff" >&2
  die "deploy/kubernetes/gitfaas.yaml is not what the chart renders (diff above): run \`make deploy-render\` and commit it"
fi
log "deploy/kubernetes/gitfaas.yaml: up to date with the chart"

# ---- 4. rendered variants -------------------------------------------------------------
# Defaults: namespaced RBAC, probes, hardening, emptyDirs, public URL.
p=$tmp/plain.yaml
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
has_kind Role "$p" && has_kind RoleBinding "$p" || die "default render: no Role/RoleBinding"
# Cluster-scoped RBAC of the namespaced render: the callers' ClusterRoles,
# on gitfaas.io's virtual resources only, and the binding to
# system:auth-delegator (TokenReview, SubjectAccessReview); nothing else.
awk '/^---/ { if (k) printf "%s", buf; buf = ""; k = 0; next } { buf = buf $0 "\n" } /^kind: ClusterRole$/ { k = 1 } END { if (k) printf "%s", buf }' "$p" >"$tmp/callers.yaml"
[ "$(grep -c '^kind: ClusterRole$' "$p")" = 3 ] || die "default render: the callers' three ClusterRoles expected"
grep 'apiGroups:' "$tmp/callers.yaml" | grep -qv '"gitfaas.io"' &&
  die "default render: a ClusterRole grants more than gitfaas.io's virtual resources: $(cat "$tmp/callers.yaml")"
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ "$(grep -c '^kind: ClusterRoleBinding$' "$p")" = 1 ] && doc ClusterRoleBinding "$p" | grep -q '^  name: system:auth-delegator$' ||
  die "default render: one ClusterRoleBinding expected, gitfaas' to system:auth-delegator"
template --namespace gf-check --set auth.mode=none --set auth.callerRoles=false >"$tmp/open.yaml"
grep -q '^kind: ClusterRole' "$tmp/open.yaml" && die "auth.mode=none, callerRoles=false: a ClusterRole or ClusterRoleBinding rendered"
has_kind Secret "$p" && die "default render has a Secret though no credential is set"
doc Deployment "$p" >"$tmp/deploy.yaml"
for want in 'path: /healthz' 'path: /readyz' 'runAsNonRoot: true' 'readOnlyRootFilesystem: true' \
  'allowPrivilegeEscalation: false' '- ALL' 'type: RuntimeDefault' 'mountPath: /tmp' \
  'mountPath: /var/cache/gitfaas' 'value: "http://gitfaas.gitfaas.svc:5000"' \
  'name: GITFAAS_CACHE_DIR' 'value: "gitfaas-functions"'; do
  grep -qF -- "$want" "$tmp/deploy.yaml" || die "default Deployment lacks '$want'"
done
# Functions run apart from gitfaas' own namespace, which gets no right but its scheduler's Lease.
awk '/^# Source: gitfaas\/templates\/namespace.yaml$/ { f = 1; next } /^---/ { f = 0 } f' "$p" >"$tmp/fns.yaml"
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
grep -q '^kind: Namespace$' "$tmp/fns.yaml" && grep -q '^  name: gitfaas-functions$' "$tmp/fns.yaml" ||
  die "default render: no Namespace gitfaas-functions"
grep -q 'pod-security.kubernetes.io/enforce: baseline' "$tmp/fns.yaml" ||
  die "default render: the functions' Namespace does not enforce baseline"
[ "$(grep -c '^kind: Role$' "$p")" = 2 ] ||
  die "default render: two Roles expected, the functions' in gitfaas-functions and the scheduler's Lease in gitfaas"
[ -n "$(doc_in Role gitfaas-functions "$p")" ] || die "default render: no Role in gitfaas-functions"
# In its own namespace gitfaas may only create Leases, and get and update its own.
doc_in Role gitfaas "$p" >"$tmp/own-role.yaml"
grep -q '^  name: gitfaas-scheduler$' "$tmp/own-role.yaml" || die "default render: no scheduler Role in gitfaas"
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ "$(grep -c 'resources: \["leases"\]' "$tmp/own-role.yaml")" = 2 ] &&
  [ "$(grep -c 'resources:' "$tmp/own-role.yaml")" = 2 ] &&
  grep -q 'resourceNames: \["gitfaas-scheduler"\]' "$tmp/own-role.yaml" &&
  grep -q 'verbs: \["get", "update"\]' "$tmp/own-role.yaml" ||
  die "default render: the Role in gitfaas grants more than the scheduler's Lease: $(cat "$tmp/own-role.yaml")"
for want in 'name: GITFAAS_NAMESPACE' 'name: GITFAAS_ALLOWED_NAMESPACES'; do
  grep -A1 -- "$want" "$tmp/deploy.yaml" | grep -qF 'value: "gitfaas-functions"' ||
    die "default Deployment: $want is not gitfaas-functions"
done
for verb in create patch; do
  doc_in Role gitfaas-functions "$p" | grep -q "\b$verb\b" || die "default Role lacks verb $verb (server-side apply needs create and patch)"
done

# clusterWide.
template --namespace gf-check --set rbac.scope=clusterWide >"$tmp/cluster.yaml"
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
has_kind ClusterRole "$tmp/cluster.yaml" && has_kind ClusterRoleBinding "$tmp/cluster.yaml" ||
  die "clusterWide render: no ClusterRole/ClusterRoleBinding"
# shellcheck disable=SC2015 # `A && B || die`: die unless both hold, which is the intent (no if-then-else meant)
[ "$(grep -c '^kind: Role$' "$tmp/cluster.yaml")" = 1 ] && [ -n "$(doc_in Role gf-check "$tmp/cluster.yaml")" ] ||
  die "clusterWide render: one namespaced Role expected, the scheduler's Lease in the release namespace"
grep -q GITFAAS_ALLOWED_NAMESPACES "$tmp/cluster.yaml" && die "clusterWide render restricts namespaces"

# Every option on: credentials only in the Secret (base64) and referenced.
template --namespace gf-check -f tests/helm/values-full.yaml >"$tmp/full.yaml"
for secret in check-token-0f3b9c check-ssh-key-5d1e77 check-redis-pass-8a2c check-api-token-71c0aa check-webhook-secret-3e9f01 \
  whsec_Y2hlY2stc2lnbmluZy1zZWNyZXQtYzRkMmU2LTI0Yg==; do
  grep -q "$secret" "$tmp/full.yaml" && die "a credential ($secret) is in clear in the rendered manifests"
done
doc Deployment "$tmp/full.yaml" >"$tmp/full-deploy.yaml"
[ "$(grep -c secretKeyRef "$tmp/full-deploy.yaml")" = 2 ] || die "full render: expected GIT_PERSONAL_TOKEN and GITFAAS_REDIS_URL from secretKeyRef"
for want in 'name: GIT_PERSONAL_TOKEN' 'name: GITFAAS_REDIS_URL' 'value: /etc/gitfaas/secrets/ssh-key' \
  'value: /etc/gitfaas/known_hosts' 'value: "36h"' 'value: "https://gitfaas.example.com"' \
  'key: ssh-privatekey' 'key: api-tokens' 'key: webhook-secret' 'value: /etc/gitfaas/secrets/api-tokens' \
  'value: /etc/gitfaas/secrets/webhook-secret' 'mountPath: /etc/gitfaas/known_hosts' 'value: "prod"' '--max-payload-bytes' \
  'key: callback-signing-secret' 'name: GITFAAS_CALLBACK_SIGNING_SECRET_FILE' 'value: /etc/gitfaas/secrets/callback-signing-secret' \
  'value: "db-creds,shared-*"'; do
  grep -qF -- "$want" "$tmp/full-deploy.yaml" || die "full Deployment lacks '$want'"
done
for kind in Secret ConfigMap Ingress; do has_kind "$kind" "$tmp/full.yaml" || die "full render: no $kind"; done

# persistence: a PVC for the embedded store, one pod at a time.
template --set persistence.enabled=true >"$tmp/pvc.yaml"
has_kind PersistentVolumeClaim "$tmp/pvc.yaml" || die "persistence render: no PersistentVolumeClaim"
grep -q 'type: Recreate' "$tmp/pvc.yaml" || die "persistence render: the Deployment strategy is not Recreate"
grep -q 'claimName: gitfaas-data' "$tmp/pvc.yaml" || die "persistence render: the data volume is not the PVC"

# existingSecret: no Secret of ours, references to the given one.
template --set existingSecret.name=creds --set existingSecret.tokenKey=tok \
  --set existingSecret.redisUrlKey=redis --set git.user=robot >"$tmp/existing.yaml"
has_kind Secret "$tmp/existing.yaml" && die "existingSecret render creates a Secret"
[ "$(grep -c 'name: creds' "$tmp/existing.yaml")" = 2 ] || die "existingSecret render: expected two secretKeyRef to 'creds'"

# Refused values.
refuse() { # MESSAGE-PART ARGS...
  local want=$1
  shift
  if template "$@" >/dev/null 2>"$tmp/err"; then die "helm template $* was accepted"; fi
  grep -q -- "$want" "$tmp/err" || die "helm template $*: error does not mention '$want': $(cat "$tmp/err")"
}
refuse 'needs git.user' --set git.token=t
refuse 'rbac.scope must be' --set rbac.scope=cluster
refuse 'git.url is required' --set git.url=
refuse 'log.format must be' --set log.format=xml
refuse 'functionsNamespace must differ from the release namespace' --set functionsNamespace=default
refuse 'rbac.namespaces lists the release namespace' --set 'rbac.namespaces={default}'
refuse 'persistence.enabled with replicaCount > 1' --set persistence.enabled=true --set replicaCount=2
refuse 'must be a Standard Webhooks key' --set callbacks.signingSecret=not-a-whsec-key
log "rendered variants: ok (namespaced, clusterWide, full, existingSecret, refusals)"

# ---- 5. server-side dry run against the cluster ---------------------------------------
if [ -n "${KUBECONFIG:-}" ] && command -v kubectl >/dev/null 2>&1 &&
  kubectl --request-timeout=10s get --raw /readyz >/dev/null 2>&1; then
  log "using the cluster of KUBECONFIG=$KUBECONFIG"
else
  here=$root/tests/cluster
  # shellcheck source=../cluster/common.sh
  . "$here/common.sh"
  if ! recorded_all_alive 2>/dev/null; then stop_cluster=1; fi
  eval "$(tests/cluster/up.sh)"
  log "using the local control plane (KUBECONFIG=$KUBECONFIG)"
fi
k=(kubectl --request-timeout=30s)
ensure_namespace() {
  if ! "${k[@]}" get namespace "$1" >/dev/null 2>&1; then
    "${k[@]}" create namespace "$1" >/dev/null
    created_namespaces+=("$1")
  fi
}
dry_run() { # FILE WHAT
  "${k[@]}" apply --server-side --dry-run=server -f "$1" >"$tmp/dry-run.out" 2>&1 ||
    die "server-side dry-run apply of $2 failed: $(cat "$tmp/dry-run.out")"
  log "server-side dry run of $2: $(grep -c . "$tmp/dry-run.out") objects accepted"
}
# The functions' namespace too: a dry run creates no namespace for the Role in it.
ensure_namespace gitfaas
ensure_namespace gitfaas-functions
dry_run deploy/kubernetes/gitfaas.yaml "deploy/kubernetes/gitfaas.yaml"
suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
ns=gf-check-$suffix
ensure_namespace "$ns"
ensure_namespace "$ns-functions"
template --namespace "$ns" --set rbac.scope=clusterWide >"$tmp/cluster.yaml"
dry_run "$tmp/cluster.yaml" "the clusterWide render"
template --namespace "$ns" -f tests/helm/values-full.yaml >"$tmp/full.yaml"
dry_run "$tmp/full.yaml" "the values-full render"

# ---- 6. least privilege ------------------------------------------------------------------
if [ "${GITFAAS_SKIP_RBAC:-}" = 1 ]; then
  log "GITFAAS_SKIP_RBAC=1: least-privilege proof skipped"
else
  tests/helm/rbac.sh
fi
log "ok"
