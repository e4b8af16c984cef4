#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Usage: tests/cluster/apiserver.sh PORT
# Runs one extra kube-apiserver in the foreground on 127.0.0.1:PORT against the
# running cluster's etcd and PKI, with the same flags as the main one (see
# apiserver_args in common.sh). It execs, so the caller's child PID is the API
# server itself: kill it to simulate an API-server outage, run this again to
# bring it back. Its output goes to <state dir>/apiserver-PORT.log; nothing is
# written to stdout. A kubeconfig for it: tests/cluster/kubeconfig.sh PORT.
# down.sh also stops it (its PID is recorded in <state dir>/apiserver-PORT.pid).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

port=${1:-}
case "$port" in '' | *[!0-9]*) cluster_die "usage: $0 PORT (a TCP port number for the extra API server)" ;; esac
load_cluster_env || cluster_die "no cluster in $CLUSTER_DIR: run \`eval \"\$(make -s cluster-up)\"\` first"
[ -f "$PKI_DIR/ca.crt" ] || cluster_die "no PKI in $PKI_DIR: run \`make cluster-up\` first"
[ "$port" != "$APISERVER_PORT" ] || cluster_die "port $port is the main API server's"
if port_in_use "$port"; then cluster_die "port $port on 127.0.0.1 is already in use"; fi

apiserver_args "$port"
echo "kube-apiserver-$port $$ $BIN/kube-apiserver" >"$CLUSTER_DIR/apiserver-$port.pid"
exec "$BIN/kube-apiserver" "${APISERVER_ARGS[@]}" >>"$CLUSTER_DIR/apiserver-$port.log" 2>&1
