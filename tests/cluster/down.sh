#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops the local control plane started by up.sh: the processes recorded in
# the state dir, newest first (SIGTERM, then SIGKILL after 15 s), including
# extra API servers started by apiserver.sh, then removes the state dir.
# Never kills by name. Safe to run twice, and when nothing is up.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

if [ ! -d "$CLUSTER_DIR" ]; then
  cluster_log "nothing to stop ($CLUSTER_DIR does not exist)"
  exit 0
fi
exec 9>"$CLUSTER_DIR.lock"
flock -w 900 9 || cluster_die "another up.sh/down.sh holds $CLUSTER_DIR.lock"
# The recorded bin dirs (the real node's containerd client among them).
load_cluster_env || true
stop_recorded
remove_state_dir
cluster_log "down: removed $CLUSTER_DIR"
