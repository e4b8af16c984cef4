# Shared settings and functions of the local control plane scripts
# (up.sh, down.sh, apiserver.sh, kubeconfig.sh). Sourced, never run.
# The caller sets `here` to this directory and `set -euo pipefail`.
# shellcheck shell=bash source-path=SCRIPTDIR
# shellcheck disable=SC2034 # variables are used by the scripts that source this
# shellcheck disable=SC2154 # `here` is set by the caller

# shellcheck source=versions.sh
. "$here/versions.sh"

cluster_log() { echo "cluster: $*" >&2; }
cluster_die() { echo "cluster: $*" >&2; exit 1; }

# State directory: always absolute, so the printed KUBECONFIG is absolute.
CLUSTER_DIR=${GITFAAS_CLUSTER_DIR:-${TMPDIR:-/tmp}/gitfaas-cluster}
case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;; esac
CLUSTER_DIR=${CLUSTER_DIR%/}

# Ports (all on 127.0.0.1). Unusual defaults so a developer's own cluster or
# etcd does not collide. up.sh records the values it used in $CLUSTER_DIR/env
# and the other scripts read them from there (load_cluster_env).
ETCD_PORT=${GITFAAS_ETCD_PORT:-23790}
ETCD_PEER_PORT=${GITFAAS_ETCD_PEER_PORT:-23800}
APISERVER_PORT=${GITFAAS_APISERVER_PORT:-16443}
KCM_PORT=${GITFAAS_KCM_PORT:-10357}
SCHEDULER_PORT=${GITFAAS_SCHEDULER_PORT:-10359}
KWOK_PORT=${GITFAAS_KWOK_PORT:-10447}
# Seconds each component gets to become ready.
READY_TIMEOUT=${GITFAAS_CLUSTER_TIMEOUT:-120}

PKI_DIR=$CLUSTER_DIR/pki
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
PIDS_FILE=$CLUSTER_DIR/pids
ENV_FILE=$CLUSTER_DIR/env

# Reads the ports a running cluster was started with.
load_cluster_env() {
  [ -f "$ENV_FILE" ] || return 1
  # shellcheck source=/dev/null
  . "$ENV_FILE"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if pid $1 is a live (not zombie) process whose argv[0] is $2.
# Guards against killing a recycled PID that now belongs to someone else.
pid_is() {
  local pid=$1 exe=$2 state arg0
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  arg0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) || return 1
  [ "$arg0" = "$exe" ]
}

# True once pid $1 is gone: no /proc entry, or a zombie that is not our
# child (its parent reaps it). A zombie child of ours is reaped here. A
# multi-threaded process shows its leader as a zombie while other threads are
# still exiting and holding its sockets, so "zombie" alone is not "gone".
pid_gone() {
  local pid=$1
  [ -e "/proc/$pid" ] || return 0
  if [ "$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
    wait "$pid" 2>/dev/null || true
    [ -e "/proc/$pid" ] || return 0
    # Only the leader left: everything is released; its parent will reap it.
    [ "$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)" -le 1 ]
    return
  fi
  return 1
}

# Stops one recorded process if it is still the binary that was started:
# TERM, up to 15 s grace, then KILL; returns once it is gone.
stop_pid() {
  local name=$1 pid=$2 exe=$3 i
  pid_is "$pid" "$exe" || return 0
  cluster_log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    pid_gone "$pid" && return 0
    sleep 0.1
  done
  cluster_log "$name (pid $pid) still running 15 s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_gone "$pid" && return 0
    sleep 0.1
  done
  cluster_log "warning: $name (pid $pid) still not gone after SIGKILL"
}

# Stops everything recorded in the state directory, newest first: extra
# API servers started by apiserver.sh, then the lines of $PIDS_FILE
# ("name pid exe") in reverse order.
stop_recorded() {
  local f name pid exe
  node_down
  for f in "$CLUSTER_DIR"/apiserver-*.pid; do
    [ -f "$f" ] || continue
    read -r name pid exe <"$f" || true
    [ -n "${pid:-}" ] && stop_pid "$name" "$pid" "$exe"
    rm -f "$f"
  done
  [ -f "$PIDS_FILE" ] || return 0
  while read -r name pid exe; do
    [ -n "${pid:-}" ] && stop_pid "$name" "$pid" "$exe"
  done < <(tac "$PIDS_FILE")
}

# True if every process in $PIDS_FILE is alive and is what was started.
recorded_all_alive() {
  local name pid exe n=0
  [ -s "$PIDS_FILE" ] || return 1
  while read -r name pid exe; do
    pid_is "$pid" "$exe" || return 1
    n=$((n + 1))
  done <"$PIDS_FILE"
  [ "$n" -ge 5 ]
}

apiserver_ready() {
  curl -fsS --max-time 5 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://127.0.0.1:${1:-$APISERVER_PORT}/readyz" >/dev/null 2>&1
}

# kube-apiserver flags for secure port $1, shared by up.sh and apiserver.sh.
# Sets the array APISERVER_ARGS.
apiserver_args() {
  local port=$1
  # shellcheck disable=SC2054 # the commas are inside flag values
  APISERVER_ARGS=(
    --etcd-servers="http://127.0.0.1:$ETCD_PORT"
    --bind-address=127.0.0.1
    --secure-port="$port"
    # Loopback on purpose: several API servers (see apiserver.sh) share
    # this host, so none of them manages the `kubernetes` Service endpoints
    # (nothing in this cluster talks to the API through it).
    --advertise-address=127.0.0.1
    --endpoint-reconciler-type=none
    --cert-dir="$CLUSTER_DIR/apiserver-certs"
    --tls-cert-file="$PKI_DIR/apiserver.crt"
    --tls-private-key-file="$PKI_DIR/apiserver.key"
    --client-ca-file="$PKI_DIR/ca.crt"
    --authorization-mode=Node,RBAC
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$PKI_DIR/sa.pub"
    --service-account-signing-key-file="$PKI_DIR/sa.key"
    --service-cluster-ip-range=10.96.0.0/16
    --allow-privileged=true
    # The real node's kubelet (logs, exec) is reached with the admin's
    # certificate, at its InternalIP on the pods' bridge.
    --kubelet-client-certificate="$PKI_DIR/admin.crt"
    --kubelet-client-key="$PKI_DIR/admin.key"
    --kubelet-preferred-address-types=InternalIP
    # A namespace's annotations send its pods to the real node (node.sh).
    --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction
  )
}

# Writes a kubeconfig for the admin user pointing to port $2 into file $1.
write_kubeconfig() {
  local file=$1 port=$2 tmp
  tmp="$file.tmp.$$"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gitfaas-local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$PKI_DIR/ca.crt")
users:
- name: kubernetes-admin
  user:
    client-certificate-data: $(base64 -w0 <"$PKI_DIR/admin.crt")
    client-key-data: $(base64 -w0 <"$PKI_DIR/admin.key")
contexts:
- name: gitfaas-local
  context:
    cluster: gitfaas-local
    user: kubernetes-admin
current-context: gitfaas-local
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$file"
}

# Removes the state directory, refusing to delete a directory that does not
# look like one of ours (GITFAAS_CLUSTER_DIR pointing somewhere precious).
remove_state_dir() {
  [ -d "$CLUSTER_DIR" ] || return 0
  case "$CLUSTER_DIR" in / | "$HOME" | /tmp | /root | /home | "") cluster_die "refusing to remove '$CLUSTER_DIR'" ;; esac
  if [ -n "$(ls -A "$CLUSTER_DIR")" ] && [ ! -e "$ENV_FILE" ] && [ ! -e "$PIDS_FILE" ] && [ ! -d "$PKI_DIR" ]; then
    cluster_die "refusing to remove $CLUSTER_DIR: it does not look like a gitfaas cluster state dir (no env, pids or pki)"
  fi
  rm -rf "$CLUSTER_DIR"
}

# shellcheck source=node.sh
. "$here/node.sh"
