#!/usr/bin/env bash
# Renders the plain manifests (deploy/kubernetes/gitfaas.yaml) from the chart
# with its default values: release "gitfaas" in namespace "gitfaas", preceded
# by the Namespace. Prints them on stdout; with --write, writes the file.
#   tests/helm/render.sh --write     (make deploy-render)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
helm_bin=$("$root/tests/helm/build.sh")

render() {
  cat <<'EOF_HEADER'
# gitfaas: plain Kubernetes manifests, rendered from the Helm chart
# deploy/gitfaas with its default values (tests/helm/render.sh --write; the
# check tests/helm/check.sh fails when this file and the chart drift apart).
#
# Before applying: set GIT_URL (and, for a private repository, create the
# credentials: see deploy/gitfaas/values.yaml, or better install the chart:
# `helm install gitfaas deploy/gitfaas -n gitfaas --create-namespace --set git.url=...`),
# and the image to the one you built from the Dockerfile.
#   kubectl apply --server-side -f deploy/kubernetes/gitfaas.yaml
#
# RBAC: namespaced. gitfaas runs in the namespace "gitfaas" and may apply
# Jobs, ConfigMaps and Secrets in the namespace "gitfaas-functions" only; in
# its own, where its Secret lives, nothing but its scheduler's Lease.
---
apiVersion: v1
kind: Namespace
metadata:
  name: gitfaas
EOF_HEADER
  (cd "$root" && "$helm_bin/helm" template gitfaas deploy/gitfaas --namespace gitfaas)
}

if [ "${1:-}" = --write ]; then
  mkdir -p "$root/deploy/kubernetes"
  out=$root/deploy/kubernetes/gitfaas.yaml
  render >"$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
  echo "render: wrote $out" >&2
else
  render
fi
