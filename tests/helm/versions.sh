# shellcheck shell=bash
# shellcheck disable=SC2034 # used by the scripts that source this
# Pinned helm version for the chart checks; sourced by tests/helm/*.sh.
# helm v3.22.0 needs go >= 1.26.0 and builds with GOTOOLCHAIN=local.
# HELM_K8S_* match the k8s.io/client-go version in helm's go.mod (v0.37.0):
# the Kubernetes version `helm template`/`helm lint` assume without a cluster.
HELM_VERSION=v3.22.0
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37

helm_cache_root() { echo "${GITFAAS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas}"; }
helm_bin_dir() { echo "$(helm_cache_root)/helm-$HELM_VERSION/bin"; }
