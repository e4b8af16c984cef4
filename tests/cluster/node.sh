# The real node beside kwok: containerd 2.x with Debian's runc, the CNI
# bridge plugin and a kubelet, all rooted in $NODE_DIR inside the state dir.
# Sourced by up.sh (node_up) and down.sh (node_down), after common.sh.
# shellcheck shell=bash
# shellcheck disable=SC2154 # BIN, PIDS_FILE, ... are set by common.sh / up.sh

NODE_NAME=gitfaas-node-0
NODE_DIR=$CLUSTER_DIR/node
NODE_SOCK=$NODE_DIR/containerd.sock
NODE_BRIDGE=${GITFAAS_NODE_BRIDGE:-gitfaas0}
# The pods' network: the bridge holds .1, which is also the node's address
# and where pods reach the host (gitfaas, the demo's file server).
NODE_PREFIX=${GITFAAS_NODE_PREFIX:-10.87.0}
NODE_IP=$NODE_PREFIX.1
KUBELET_PORT=${GITFAAS_KUBELET_PORT:-10650}
KUBELET_HEALTHZ_PORT=${GITFAAS_KUBELET_HEALTHZ_PORT:-10648}
# Pods land on the real node only when their namespace says so (see README).
NODE_TAINT_KEY=gitfaas.dev/real-node
NODE_NAMESPACE=${GITFAAS_NODE_NAMESPACE:-gitfaas-examples}
# The kubelet's cgroup parent, in every hierarchy: below the memory cgroup
# this script runs in, so the pods count against this machine's own limit.
NODE_CGROUP=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup 2>/dev/null)
# Named after the bridge, which no two running clusters share.
NODE_CGROUP=${NODE_CGROUP%/}/gitfaas-node-$NODE_BRIDGE

# Whether this run starts a real node: GITFAAS_REAL_NODE=0 keeps kwok only.
node_wanted() { [ "${GITFAAS_REAL_NODE:-1}" != 0 ]; }

node_ctr_up() { node_ctr version >/dev/null 2>&1; }
node_ctr() { "$NODE_BIN/ctr" --address "$NODE_SOCK" --namespace k8s.io "$@"; }

# Refuses to start, with the reason, when this machine cannot run the node.
node_check() {
  [ "$(id -u)" -eq 0 ] || cluster_die "the real node needs root (containerd, runc, a bridge); run as root or set GITFAAS_REAL_NODE=0 for kwok only"
  command -v runc >/dev/null 2>&1 || cluster_die "'runc' not found: scripts/ensure-deps.sh runc installs it (or set GITFAAS_REAL_NODE=0)"
  command -v ip >/dev/null 2>&1 || cluster_die "'ip' not found: install iproute2 (or set GITFAAS_REAL_NODE=0)"
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    cluster_die "network interface $NODE_BRIDGE exists already (a run not stopped by down.sh?): remove it with 'ip link del $NODE_BRIDGE' or choose another with GITFAAS_NODE_BRIDGE"
  fi
  local port
  for port in "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT"; do
    port_in_use "$port" && cluster_die "port $port (kubelet) is in use: set GITFAAS_KUBELET_PORT / GITFAAS_KUBELET_HEALTHZ_PORT"
  done
  return 0
}

node_write_config() {
  mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" "$NODE_DIR/images"
  cat >"$NODE_DIR/containerd.toml" <<TOML
version = 3
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$NODE_DIR/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "gitfaas.local/pause:1"
[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE in this sandbox: a negative oom_score_adj (the
  # kubelet asks -998 for the pause container) would fail every pod.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "$(command -v runc)"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$NODE_BIN/cni"]
    conf_dir = "$NODE_DIR/cni/net.d"
TOML
  cat >"$NODE_DIR/cni/net.d/10-gitfaas.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "gitfaas",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
              "ranges": [[{"subnet": "$NODE_PREFIX.0/24", "rangeStart": "$NODE_PREFIX.10", "gateway": "$NODE_IP"}]]}},
    {"type": "loopback"}
  ]
}
JSON
  cat >"$NODE_DIR/kubelet.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: gitfaas-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI_DIR/ca.crt
users:
- name: node
  user:
    client-certificate: $PKI_DIR/node.crt
    client-key: $PKI_DIR/node.key
contexts:
- name: node
  context: {cluster: gitfaas-local, user: node}
current-context: node
YAML
  cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 only; Kubernetes 1.36 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROUP
containerRuntimeEndpoint: unix://$NODE_SOCK
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
podLogsDir: $NODE_DIR/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization:
  mode: Webhook
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
failSwapOn: false
enforceNodeAllocatable: []
# A shared disk: the default 10-15 % free would evict every pod here.
evictionHard: {nodefs.available: "1%", imagefs.available: "1%", memory.available: "100Mi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
resolvConf: ""
YAML
}

real_node_ready() {
  [ "$("${kubectl[@]}" get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# Creates the kubelet's cgroup parent in each v1 hierarchy, recording every
# directory it made (node_down removes them, deepest first).
node_cgroups() {
  local hier dir part path
  : >"$NODE_DIR/cgroups"
  for hier in /sys/fs/cgroup/*/; do
    [ -d "$hier" ] || continue
    path=${hier%/}
    for part in ${NODE_CGROUP//\// }; do
      path=$path/$part
      [ -d "$path" ] && continue
      mkdir "$path"
      echo "$path" >>"$NODE_DIR/cgroups"
      # A new cpuset has no CPUs or memory nodes until given its parent's.
      if [ -f "$path/cpuset.cpus" ]; then
        cat "$(dirname "$path")/cpuset.cpus" >"$path/cpuset.cpus"
        cat "$(dirname "$path")/cpuset.mems" >"$path/cpuset.mems"
      fi
    done
  done
}

node_up() {
  NODE_BIN=$("$here/node-build.sh") || cluster_die "building the real node failed (see the messages above)"
  echo "NODE_BIN=$NODE_BIN" >>"$ENV_FILE"
  node_check
  node_write_config
  # The bridge and its address come first: the kubelet's node IP is on it.
  ip link add "$NODE_BRIDGE" type bridge
  echo "$NODE_BRIDGE" >"$NODE_DIR/bridge"
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  "$here/images/build.sh" "$NODE_DIR/images"
  node_cgroups
  PATH=$NODE_BIN:$PATH start containerd "$NODE_BIN/containerd" --config "$NODE_DIR/containerd.toml"
  WHAT=containerd wait_ready containerd node_ctr_up
  local image
  for image in pause examples; do
    node_ctr images import "$NODE_DIR/images/$image.tar" >/dev/null 2>&1 ||
      cluster_die "containerd refused image $image.tar (see $CLUSTER_DIR/containerd.log)"
  done
  start kubelet "$NODE_BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" --root-dir="$NODE_DIR/kubelet" \
    --cert-dir="$NODE_DIR/kubelet/pki" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --node-labels=type=real
  WHAT="node $NODE_NAME (kubelet, containerd)" wait_ready kubelet real_node_ready
  # Pods of this namespace (the examples', the demo's) land on the real node.
  "${kubectl[@]}" apply -f - >&2 <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $NODE_NAMESPACE
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: type=real
    scheduler.alpha.kubernetes.io/defaultTolerations: '[{"key":"$NODE_TAINT_KEY","operator":"Exists","effect":"NoSchedule"}]'
YAML
}

# Stops the node and removes all it left: containers and their shims,
# mounts under the node dir, the kubelet's cgroups, the bridge, the
# kubelet's log links. Safe when nothing of it is up.
node_down() {
  local pid exe
  [ -d "$NODE_DIR" ] || return 0
  NODE_BIN=${NODE_BIN:-}
  if [ -f "$PIDS_FILE" ]; then
    read -r _ pid exe < <(grep '^kubelet ' "$PIDS_FILE" | tail -n1) || true
    [ -n "${pid:-}" ] && stop_pid kubelet "$pid" "$exe"
  fi
  if [ -n "$NODE_BIN" ] && [ -S "$NODE_SOCK" ] && node_ctr version >/dev/null 2>&1; then
    local task
    for task in $(node_ctr tasks ls -q 2>/dev/null); do
      node_ctr tasks kill -s KILL "$task" >/dev/null 2>&1 || true
    done
    sleep 1
    for task in $(node_ctr tasks ls -q 2>/dev/null); do
      node_ctr tasks delete -f "$task" >/dev/null 2>&1 || true
    done
  fi
  if [ -f "$PIDS_FILE" ]; then
    read -r _ pid exe < <(grep '^containerd ' "$PIDS_FILE" | tail -n1) || true
    [ -n "${pid:-}" ] && stop_pid containerd "$pid" "$exe"
  fi
  # A shim outlives containerd: stop those serving this node's socket.
  local proc
  for proc in /proc/[0-9]*; do
    [ -r "$proc/cmdline" ] || continue
    if tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -q -- "containerd-shim-runc-v2 .*-address $NODE_SOCK "; then
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
  done
  # Whatever still runs in the kubelet's cgroups (a container whose shim
  # was killed) is stopped before its mounts and cgroups go.
  local dir procs
  if [ -f "$NODE_DIR/cgroups" ]; then
    for _ in 1 2 3 4 5; do
      procs=$(while read -r dir; do
        [ -d "$dir" ] && find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null
      done <"$NODE_DIR/cgroups" | sort -u)
      [ -n "$procs" ] || break
      # shellcheck disable=SC2086 # one pid per word
      kill -KILL $procs 2>/dev/null || true
      sleep 0.5
    done
  fi
  # Mounts under the node dir, deepest first.
  local target
  while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done < <(awk -v d="$NODE_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  # The kubelet's cgroups, leaves first, then the parents node_cgroups made.
  if [ -f "$NODE_DIR/cgroups" ]; then
    while read -r dir; do
      [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done < <(tac "$NODE_DIR/cgroups")
  fi
  if [ -f "$NODE_DIR/bridge" ]; then
    ip link del "$(cat "$NODE_DIR/bridge")" 2>/dev/null || true
  fi
  # The kubelet links each container's log into /var/log/containers.
  local link
  for link in /var/log/containers/*.log; do
    [ -L "$link" ] || continue
    case "$(readlink "$link")" in "$NODE_DIR"/*) rm -f "$link" ;; esac
  done
  return 0
}
