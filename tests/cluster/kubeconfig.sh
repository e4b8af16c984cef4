#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Usage: tests/cluster/kubeconfig.sh [PORT]
# Writes an admin kubeconfig for the running cluster pointing to
# https://127.0.0.1:PORT (default: the main API server's port) and prints its
# absolute path. Use it with an extra API server started by apiserver.sh; the
# serving certificate is valid for 127.0.0.1 on any port.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

load_cluster_env || cluster_die "no cluster in $CLUSTER_DIR: run \`eval \"\$(make -s cluster-up)\"\` first"
port=${1:-$APISERVER_PORT}
case "$port" in *[!0-9]*) cluster_die "usage: $0 [PORT]" ;; esac
if [ "$port" = "$APISERVER_PORT" ]; then
  echo "$KUBECONFIG_FILE"
  exit 0
fi
file=$CLUSTER_DIR/kubeconfig-$port
write_kubeconfig "$file" "$port"
echo "$file"
