#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from Go modules into a cache directory keyed by
# version, outside the repository. A cache hit does nothing. All output goes to
# stderr; stdout prints only the bin directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

die() { echo "cluster build: $*" >&2; exit 1; }
bin=$(cluster_bin_dir)
stamp="$bin/.complete"
if [ -f "$stamp" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kwok" ] && [ -d "$bin/stage" ]; then
  echo "$bin"
  exit 0
fi

# Only a cache miss needs Go.
command -v go >/dev/null 2>&1 || die "'go' not found: install Go >= 1.26 (e.g. from https://go.dev/dl or your package manager) and retry"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin"
start=$(date +%s)
ldf=$(k8s_ldflags)

cd "$here"
echo "cluster build: building Kubernetes $K8S_VERSION into $bin (cold: 20-40 min on 2 cores)" >&2
go build -trimpath -ldflags "$ldf" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl >&2
echo "cluster build: building etcd $ETCD_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3 >&2
echo "cluster build: building kwok $KWOK_VERSION" >&2
# kwok is its own module without replaces: `go install mod@version` verifies it
# against the checksum database, so it needs no entry in our go.sum.
GOFLAGS="" GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
# kwok v0.8.0 ships no built-in stages; its stage configs live in the module.
modcache=$(go env GOMODCACHE)
rm -rf "$bin/stage"
cp -r "$modcache/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage" "$bin/stage"
chmod -R u+w "$bin/stage"
"$bin/kube-apiserver" --version >&2
touch "$stamp"
echo "cluster build: done in $(( $(date +%s) - start ))s" >&2
echo "$bin"
