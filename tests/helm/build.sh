#!/usr/bin/env bash
# Builds helm from its Go module (`go install helm.sh/helm/v3/cmd/helm@VERSION`)
# into a cache directory keyed by version, outside the repository. A cache hit
# does nothing. All output goes to stderr; stdout prints only the bin directory.
#   PATH="$(tests/helm/build.sh):$PATH" helm version
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

die() { echo "helm build: $*" >&2; exit 1; }
bin=$(helm_bin_dir)
stamp="$bin/.complete"
if [ -f "$stamp" ] && [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi

# Only a cache miss needs Go.
command -v go >/dev/null 2>&1 || die "'go' not found: install Go >= 1.26 (e.g. from https://go.dev/dl or your package manager) and retry"

# Same flags as helm's own Makefile: version, and the Kubernetes version that
# `helm template` and `helm lint` assume when they do not talk to a cluster.
ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldf="$ldf -X $pkg.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done

mkdir -p "$bin"
rm -f "$stamp"
start=$(date +%s)
echo "helm build: building helm $HELM_VERSION into $bin (cold: 5-11 min on 2 cores)" >&2
# `go install mod@version` builds helm's own module with its own go.sum,
# verified against the checksum database; it ignores any go.mod around us.
(cd / && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="" GOBIN="$bin" \
  go install -trimpath -ldflags "$ldf" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2 \
  || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed (see above)"
"$bin/helm" version --short >&2 || die "the built $bin/helm does not run"
touch "$stamp"
echo "helm build: done in $(( $(date +%s) - start ))s" >&2
echo "$bin"
