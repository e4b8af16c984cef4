#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts a local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok with one fake node) on
# 127.0.0.1, building the binaries first if they are not cached.
#
# Usage: eval "$(tests/cluster/up.sh)"     (or: eval "$(make -s cluster-up)")
# Stdout is exactly two lines:
#   export KUBECONFIG=<state dir>/kubeconfig
#   export PATH=<bin dir>:$PATH
# Everything else goes to stderr. Idempotent: if the cluster is already up it
# only prints the two lines. Environment: see tests/cluster/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

print_exports() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  # shellcheck disable=SC2016 # $PATH is for the caller's eval to expand
  printf 'export PATH=%q:$PATH\n' "$BIN"
}

command -v openssl >/dev/null 2>&1 || cluster_die "'openssl' not found: install it (Debian/Ubuntu: apt-get install openssl) and retry"
command -v curl >/dev/null 2>&1 || cluster_die "'curl' not found: install it (Debian/Ubuntu: apt-get install curl) and retry"

if [ ! -f "$(cluster_bin_dir)/.complete" ] && ! command -v go >/dev/null 2>&1; then
  cluster_die "'go' not found and the control plane is not built yet ($(cluster_bin_dir)): install Go >= 1.26 and retry"
fi
# Build (or find in the cache) the binaries. build.sh prints the bin dir.
BIN=$("$here/build.sh") || cluster_die "building the control plane failed (see the messages above)"
[ -x "$BIN/kube-apiserver" ] || cluster_die "build.sh printed '$BIN', which has no kube-apiserver"

# One up.sh/down.sh at a time per state dir. Daemons must not inherit fd 9.
mkdir -p "$(dirname "$CLUSTER_DIR")"
exec 9>"$CLUSTER_DIR.lock"
flock -w 900 9 || cluster_die "another up.sh/down.sh holds $CLUSTER_DIR.lock"

if [ -d "$CLUSTER_DIR" ]; then
  if load_cluster_env && recorded_all_alive; then
    # All processes are there: give a busy API server some time before
    # declaring the cluster broken.
    deadline=$((SECONDS + 60))
    until apiserver_ready "$APISERVER_PORT"; do
      if [ "$SECONDS" -ge "$deadline" ] || ! recorded_all_alive; then
        deadline=broken
        break
      fi
      sleep 1
    done
    if [ "$deadline" != broken ]; then
      cluster_log "already up (state dir $CLUSTER_DIR)"
      print_exports
      exit 0
    fi
    cluster_log "the processes in $CLUSTER_DIR run but the API server is not ready: restarting the cluster"
  else
    cluster_log "stale state dir $CLUSTER_DIR (a killed or failed run?): stopping what is left of it and starting fresh"
  fi
  stop_recorded
  remove_state_dir
  # load_cluster_env set the stale run's ports: back to this run's settings.
  # shellcheck source=common.sh
  . "$here/common.sh"
fi

# Refuse to start if any port is taken, before starting anything.
taken=""
for spec in "etcd client:$ETCD_PORT" "etcd peer:$ETCD_PEER_PORT" "kube-apiserver:$APISERVER_PORT" \
  "kube-controller-manager:$KCM_PORT" "kube-scheduler:$SCHEDULER_PORT" "kwok:$KWOK_PORT"; do
  port=${spec##*:}
  if port_in_use "$port"; then taken="$taken ${spec%:*}=$port"; fi
done
if [ -n "$taken" ]; then
  cluster_die "port(s) already in use on 127.0.0.1:$taken; stop whatever listens there or choose other ports with GITFAAS_ETCD_PORT, GITFAAS_ETCD_PEER_PORT, GITFAAS_APISERVER_PORT, GITFAAS_KCM_PORT, GITFAAS_SCHEDULER_PORT, GITFAAS_KWOK_PORT"
fi

started=0
cleanup_on_failure() {
  local rc=$?
  [ "$started" = 1 ] && return 0
  trap - EXIT INT TERM
  cluster_log "start failed: stopping what was started (logs kept in $CLUSTER_DIR)"
  stop_recorded
  rm -f "$PIDS_FILE"
  [ "$rc" -ne 0 ] || rc=1
  exit "$rc"
}
trap cleanup_on_failure EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$CLUSTER_DIR" "$PKI_DIR"
cat >"$ENV_FILE" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
BIN=$BIN
EOF
: >"$PIDS_FILE"

# ---- PKI -------------------------------------------------------------------
cluster_log "generating PKI in $PKI_DIR"
(
  cd "$PKI_DIR"
  umask 077
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout ca.key -out ca.crt -subj "/CN=gitfaas-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
  sign() { # name subject extensions...
    local name=$1 subj=$2
    shift 2
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$@" >"$name.ext"
    openssl x509 -req -sha256 -days 3650 -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out "$name.crt" -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
  }
  sign apiserver "/CN=kube-apiserver" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "authorityKeyIdentifier=keyid" \
    "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
  # The real node's kubelet: the Node authorizer knows it by this name.
  sign node "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" \
    "authorityKeyIdentifier=keyid"
  sign admin "/O=system:masters/CN=kubernetes-admin" \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=clientAuth" \
    "authorityKeyIdentifier=keyid"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 644 ca.crt apiserver.crt admin.crt sa.pub
) || cluster_die "openssl failed to generate the PKI in $PKI_DIR"
write_kubeconfig "$KUBECONFIG_FILE" "$APISERVER_PORT"

# ---- processes ---------------------------------------------------------------
# start NAME BINARY ARGS...: runs BINARY (a path, or a name in $BIN) in its
# own session, stdin from /dev/null, stdout+stderr to $CLUSTER_DIR/NAME.log,
# fd 9 (the lock) closed, and records "NAME PID BINARY" in $PIDS_FILE.
start() {
  local name=$1 exe=$2 pid
  case "$exe" in /*) ;; *) exe=$BIN/$exe ;; esac
  shift 2
  setsid "$exe" "$@" </dev/null >>"$CLUSTER_DIR/$name.log" 2>&1 9>&- &
  pid=$!
  echo "$name $pid $exe" >>"$PIDS_FILE"
  cluster_log "started $name (pid $pid, log $CLUSTER_DIR/$name.log)"
}

# [WHAT=text] wait_ready NAME CHECK-COMMAND...: polls until CHECK succeeds; on
# timeout or if process NAME dies, prints the tail of its log and fails.
wait_ready() {
  local name=$1 what=${WHAT:-$1} deadline pid
  shift
  read -r _ pid _ < <(grep "^$name " "$PIDS_FILE" | tail -n1)
  deadline=$((SECONDS + READY_TIMEOUT))
  until "$@"; do
    # Gone, not "no longer $exe": until setsid has exec'd the binary, the
    # pid's argv[0] is still setsid's (seen on a cold first start).
    if pid_gone "$pid"; then
      echo "cluster: $name exited before becoming ready; last lines of $CLUSTER_DIR/$name.log:" >&2
      tail -n 20 "$CLUSTER_DIR/$name.log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster: $what not ready after ${READY_TIMEOUT}s; last lines of $CLUSTER_DIR/$name.log:" >&2
      tail -n 20 "$CLUSTER_DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  cluster_log "$what ready"
}

http_ok() { curl -fsS --max-time 5 "$1" >/dev/null 2>&1; }
https_ok() { curl -fsSk --max-time 5 "$1" >/dev/null 2>&1; }

start etcd etcd \
  --name=node0 \
  --data-dir="$CLUSTER_DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster-state=new \
  --unsafe-no-fsync \
  --log-level=warn
wait_ready etcd http_ok "http://127.0.0.1:$ETCD_PORT/health"

apiserver_args "$APISERVER_PORT"
start kube-apiserver kube-apiserver "${APISERVER_ARGS[@]}"
wait_ready kube-apiserver apiserver_ready "$APISERVER_PORT"

# shellcheck disable=SC2054 # the commas are inside flag values
common_component_args=(
  --kubeconfig="$KUBECONFIG_FILE"
  --bind-address=127.0.0.1
  --leader-elect=false
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics
)
start kube-controller-manager kube-controller-manager "${common_component_args[@]}" \
  --secure-port="$KCM_PORT" \
  --cert-dir="$CLUSTER_DIR/kcm-certs" \
  --root-ca-file="$PKI_DIR/ca.crt" \
  --service-account-private-key-file="$PKI_DIR/sa.key" \
  --node-monitor-period=25s \
  --node-monitor-grace-period=3m20s
start kube-scheduler kube-scheduler "${common_component_args[@]}" \
  --secure-port="$SCHEDULER_PORT" \
  --cert-dir="$CLUSTER_DIR/scheduler-certs"
wait_ready kube-controller-manager https_ok "https://127.0.0.1:$KCM_PORT/healthz"
wait_ready kube-scheduler https_ok "https://127.0.0.1:$SCHEDULER_PORT/healthz"

stage=$BIN/stage
start kwok kwok \
  --kubeconfig="$KUBECONFIG_FILE" \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --config="$stage/node/fast" \
  --config="$stage/node/heartbeat-with-lease" \
  --config="$stage/pod/fast" \
  --config="$stage/pod/chaos/pod-container-running-failed.yaml" \
  --node-lease-duration-seconds=200 \
  --cidr=10.244.0.0/16 \
  --node-ip=127.0.0.1 \
  --server-address="127.0.0.1:$KWOK_PORT"
wait_ready kwok http_ok "http://127.0.0.1:$KWOK_PORT/healthz"

# ---- the fake node -------------------------------------------------------------
kubectl=("$BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" --request-timeout=20s)
"${kubectl[@]}" apply -f - >&2 <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
EOF
node_ready() {
  [ "$("${kubectl[@]}" get node kwok-node-0 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
WHAT="node kwok-node-0 (kwok)" wait_ready kwok node_ready

# ---- the real node ---------------------------------------------------------------
if node_wanted; then
  node_up
else
  cluster_log "GITFAAS_REAL_NODE=0: no real node, kwok only"
fi

started=1
trap - EXIT INT TERM
cluster_log "up: kubeconfig $KUBECONFIG_FILE, API server https://127.0.0.1:$APISERVER_PORT"
print_exports
