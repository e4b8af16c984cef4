# Pinned versions of the local control plane; sourced by the cluster scripts.
# shellcheck shell=bash disable=SC2034 # sourced; the variables are used by the sourcing scripts
# Keep K8S_VERSION in step with tests/cluster/go.mod and the k8s-openapi feature.
K8S_VERSION=v1.36.2
K8S_MAJOR=1
K8S_MINOR=36
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0

# The -ldflags of a Kubernetes binary: stripped, and stamped with its version.
k8s_ldflags() {
  local ldf="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean"
  done
  echo "$ldf"
}

cluster_cache_root() { echo "${GITFAAS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas}"; }
cluster_bin_dir() { echo "$(cluster_cache_root)/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"; }

# The real node (tests/cluster/node-build.sh): the kubelet comes from the
# module above; containerd, the CNI plugins and crane from their own modules.
CONTAINERD_VERSION=v2.2.9
CNI_PLUGINS_VERSION=v1.9.0
CRANE_VERSION=v0.22.1
node_bin_dir() { echo "$(cluster_cache_root)/node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_PLUGINS_VERSION-crane-$CRANE_VERSION/bin"; }
