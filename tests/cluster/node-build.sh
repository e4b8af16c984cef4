#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the real node's parts from Go modules into a cache directory keyed by
# version, outside the repository: the kubelet (from the control plane's
# Kubernetes module), containerd with its runc shim and ctr, the CNI plugins a
# bridge network needs, and crane (OCI image archives without a registry). runc
# itself is Debian's (scripts/ensure-deps.sh). A cache hit does nothing. All
# output goes to stderr; stdout prints only the bin directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

die() { echo "node build: $*" >&2; exit 1; }
bin=$(node_bin_dir)
stamp="$bin/.complete"
if [ -f "$stamp" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "'go' not found: install Go >= 1.26 and retry"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin/cni"
start=$(date +%s)
ldf=$(k8s_ldflags)
cd "$here"
echo "node build: building kubelet $K8S_VERSION (cold: 10-20 min on 2 cores)" >&2
go build -trimpath -ldflags "$ldf" -o "$bin/" k8s.io/kubernetes/cmd/kubelet >&2

# containerd, its plugins and crane are modules without replaces: `go install
# mod@version` verifies them against the checksum database.
export GOFLAGS=""
echo "node build: building containerd $CONTAINERD_VERSION" >&2
cldf="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
GOBIN="$bin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$cldf" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" >&2
echo "node build: building CNI plugins $CNI_PLUGINS_VERSION" >&2
GOBIN="$bin/cni" go install -trimpath -ldflags "-s -w" \
  "github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
  "github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_PLUGINS_VERSION" >&2
echo "node build: building crane $CRANE_VERSION" >&2
GOBIN="$bin" go install -trimpath -ldflags "-s -w" \
  "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" >&2
"$bin/kubelet" --version >&2
"$bin/containerd" --version >&2
touch "$stamp"
echo "node build: done in $(( $(date +%s) - start ))s" >&2
echo "$bin"
