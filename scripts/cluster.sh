#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for the tests that
# install the chart and run the image as a pod: the control plane of
# control-plane.sh (etcd, kube-apiserver, the CRD server behind it) plus
# kube-controller-manager, kube-scheduler, containerd, kubelet and kube-proxy,
# all built or unpacked from Debian bookworm's packages.
#
# Usage:
#   cluster.sh build          ensure every binary and package the cluster needs
#   cluster.sh up DIR         start the cluster, state kept in DIR; returns once
#                             the node is Ready
#   cluster.sh down DIR       stop what `up DIR` started and remove its pods,
#                             network and iptables rules; restores the kernel
#                             settings kubelet and kube-proxy changed
#   cluster.sh status DIR     report each process and the node's Ready condition
#
# `up` writes DIR/env: what control-plane.sh writes (KUBECONFIG, ...), plus
# CONTAINERD_ADDRESS (containerd's socket; `ctr --address` takes it), NODE_NAME,
# and HOST_ADDRESS, the host's address on the pod network (pods reach a server
# listening there; nothing else of the host).
#
# The network: a bridge this script creates (BUCKETCORS_CLUSTER_BRIDGE, default
# bcors0) with the host at .1 of a /24 (BUCKETCORS_CLUSTER_SUBNET, default
# 10.213.0.0/24) and the pods on it through CNI's bridge and host-local plugins
# (Debian's containernetworking-plugins). kube-apiserver and kubelet listen on
# the host's bridge address, everything else on loopback. No masquerading and no
# forwarding: pods reach the host and each other, nothing beyond. Service IPs
# (10.0.0.0/24) are kube-proxy's iptables rules; kubelet gives pods
# KUBERNETES_SERVICE_HOST, so no cluster DNS is needed (and none runs).
#
# The machine: no systemd (every daemon is started here), cgroups v1 (kubelet
# uses --cgroup-driver=cgroupfs), no CAP_SYS_RESOURCE (containerd runs with
# restrict_oom_score_adj). containerd keeps its root, state, sockets, runc state
# and the pods' network namespaces in DIR. kubelet sets vm.overcommit_memory,
# kernel.panic and kernel.panic_on_oops, and kube-proxy
# net.ipv4.conf.all.route_localnet: `up` records their values first and `down`
# puts them back.
#
# Environment: as control-plane.sh, plus
#   BUCKETCORS_CLUSTER_TIMEOUT  deadline in seconds for each start-up step (default 180)
#
# shellcheck disable=SC2317,SC2329 # launchers and probes are invoked indirectly
set -euo pipefail

readonly NODE=bucketcors-node
readonly PACKAGES=(containerd runc containernetworking-plugins iptables conntrack ipset)
readonly SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet)
readonly COMPONENTS=(containerd kube-controller-manager kube-scheduler kubelet kube-proxy)
readonly SERVICE_CIDR=10.0.0.0/24
BRIDGE=${BUCKETCORS_CLUSTER_BRIDGE:-bcors0}
SUBNET=${BUCKETCORS_CLUSTER_SUBNET:-10.213.0.0/24}
TIMEOUT=${BUCKETCORS_CLUSTER_TIMEOUT:-180}
CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die "BUCKETCORS_CLUSTER_SUBNET must be a /24: $SUBNET"
HOST_ADDRESS=${BASH_REMATCH[1]}.1
readonly HOST_ADDRESS

set_dir() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  LOGS=$DIR/logs
  CP=$DIR/control-plane
  RUNTIME=$DIR/containerd
  SOCK=$RUNTIME/containerd.sock
}

# ---------------------------------------------------------------------------
# What it runs
# ---------------------------------------------------------------------------

ensure_packages() {
  local missing=() package status
  for package in "${PACKAGES[@]}"; do
    # Captured, then matched: `grep -q` under pipefail can kill dpkg-query with SIGPIPE.
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == *"ok installed"* ]] || missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "installing ${missing[*]} needs root"
  log "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends "${missing[@]}" >&2
}

# Sets the *_BIN variables and PAUSE_ARCHIVE, PAUSE_REF.
ensure_binaries() {
  ensure_packages
  "$HERE/control-plane.sh" build >/dev/null
  local key value
  while IFS='=' read -r key value; do
    case $key in
      kube-controller-manager) KCM_BIN=$value ;;
      kube-scheduler) SCHEDULER_BIN=$value ;;
      kubelet) KUBELET_BIN=$value ;;
      kube-proxy) PROXY_BIN=$value ;;
    esac
  done < <("$HERE/control-plane.sh" build-node)
  [[ -x ${KCM_BIN:-} && -x ${SCHEDULER_BIN:-} && -x ${KUBELET_BIN:-} && -x ${PROXY_BIN:-} ]] ||
    die "control-plane.sh build-node printed no usable binaries"
  { read -r PAUSE_ARCHIVE && read -r PAUSE_REF; } < <("$HERE/image.sh" pause)
  [[ -f $PAUSE_ARCHIVE ]] || die "image.sh pause made no archive"
}

cmd_build() {
  local start=$SECONDS
  ensure_binaries
  log "everything available after $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

launch() {
  local name=$1
  shift
  nohup "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

# Polls `$3...` until it succeeds (0), the process of component $1 exits (1), or
# the deadline passes (2). $2 names what is awaited in messages.
await() {
  local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! running "$DIR/$name.pid"; then
      log "$name exited while waiting for $what"
      show_log_tail "$LOGS/$name.log"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$what not there after ${TIMEOUT}s"
      show_log_tail "$LOGS/$name.log"
      return 2
    fi
    sleep 0.2
  done
}

show_log_tail() {
  log "last lines of $1:"
  tail -n 30 "$1" >&2 || true
}

kubectl_() { KUBECONFIG=$CP/kubeconfig kubectl "$@"; }
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }

# Writes kubeconfig $1 for the token of user $2 (from tokens.csv).
component_kubeconfig() {
  local file=$1 user=$2 token
  token=$(awk -F, -v u="$user" '$2 == u { print $1 }' "$CP/pki/tokens.csv")
  [[ -n $token ]] || die "no token for $user"
  (
    umask 077
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$HOST_ADDRESS:$API_PORT
    certificate-authority: $CP/pki/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
EOF
  )
}

# The bridge the pods join, with the host's address on it; made here (not by the
# CNI plugin) because kube-apiserver listens on that address before any pod exists.
make_bridge() {
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    [[ -f $DIR/bridge ]] || die "a network interface $BRIDGE exists and is not this cluster's (BUCKETCORS_CLUSTER_BRIDGE names another)"
  else
    ip link add "$BRIDGE" type bridge
  fi
  echo "$BRIDGE" >"$DIR/bridge"
  ip addr replace "$HOST_ADDRESS/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

record_sysctls() {
  [[ -f $DIR/sysctls ]] && return 0
  local key
  for key in "${SYSCTLS[@]}"; do
    printf '%s=%s\n' "$key" "$(sysctl -n "$key")"
  done >"$DIR/sysctls.tmp"
  mv "$DIR/sysctls.tmp" "$DIR/sysctls"
}

restore_sysctls() {
  [[ -f $DIR/sysctls ]] || return 0
  local line
  while read -r line; do
    sysctl -q -w "$line" >/dev/null || log "could not restore $line"
  done <"$DIR/sysctls"
  rm -f "$DIR/sysctls"
}

write_containerd_config() {
  mkdir -p "$RUNTIME" "$DIR/cni/net.d"
  cat >"$RUNTIME/config.toml" <<EOF
version = 2
root = "$RUNTIME/root"
state = "$RUNTIME/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$RUNTIME/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$RUNTIME/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$RUNTIME/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
  local prefix=${HOST_ADDRESS%.1}
  cat >"$DIR/cni/net.d/10-bucketcors.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "bucketcors",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$SUBNET", "rangeStart": "$prefix.10", "rangeEnd": "$prefix.250", "gateway": "$HOST_ADDRESS"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$HOST_ADDRESS/32"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_answers() { ctr_ version; }

launch_containerd() {
  launch containerd containerd --config "$RUNTIME/config.toml"
}

launch_controller_manager() {
  mkdir -p "$DIR/kube-controller-manager"
  component_kubeconfig "$DIR/kube-controller-manager/kubeconfig" system:kube-controller-manager
  read -r KCM_PORT < <(free_port)
  launch kube-controller-manager "$KCM_BIN" \
    --kubeconfig="$DIR/kube-controller-manager/kubeconfig" \
    --authentication-kubeconfig="$DIR/kube-controller-manager/kubeconfig" \
    --authorization-kubeconfig="$DIR/kube-controller-manager/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --port=0 \
    --cert-dir="$DIR/kube-controller-manager" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$CP/pki/sa.key" \
    --root-ca-file="$CP/pki/ca.crt" \
    --cluster-name=bucketcors \
    --profiling=false
}

launch_scheduler() {
  mkdir -p "$DIR/kube-scheduler"
  component_kubeconfig "$DIR/kube-scheduler/kubeconfig" system:kube-scheduler
  read -r SCHEDULER_PORT < <(free_port)
  launch kube-scheduler "$SCHEDULER_BIN" \
    --kubeconfig="$DIR/kube-scheduler/kubeconfig" \
    --authentication-kubeconfig="$DIR/kube-scheduler/kubeconfig" \
    --authorization-kubeconfig="$DIR/kube-scheduler/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --port=0 \
    --cert-dir="$DIR/kube-scheduler" \
    --leader-elect=false \
    --profiling=false
}

launch_kubelet() {
  local root=$DIR/kubelet
  mkdir -p "$root/pki" "$root/manifests"
  component_kubeconfig "$root/kubeconfig" "system:node:$NODE"
  local ports
  read -r -a ports < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
  KUBELET_PORT=${ports[0]}
  KUBELET_HEALTHZ_PORT=${ports[1]}
  # Evictions and image garbage collection would act on this machine's disk, shared with
  # everything else; the thresholds are set so that they never do during a test.
  launch kubelet "$KUBELET_BIN" \
    --kubeconfig="$root/kubeconfig" \
    --root-dir="$root" \
    --cert-dir="$root/pki" \
    --pod-manifest-path="$root/manifests" \
    --hostname-override="$NODE" \
    --node-ip="$HOST_ADDRESS" \
    --address="$HOST_ADDRESS" --port="$KUBELET_PORT" --read-only-port=0 \
    --healthz-bind-address=127.0.0.1 --healthz-port="$KUBELET_HEALTHZ_PORT" \
    --anonymous-auth=false --client-ca-file="$CP/pki/ca.crt" --authorization-mode=AlwaysAllow \
    --container-runtime=remote \
    --container-runtime-endpoint="unix://$SOCK" \
    --image-service-endpoint="unix://$SOCK" \
    --runtime-request-timeout=5m \
    --cgroup-driver=cgroupfs \
    --fail-swap-on=false \
    --resolv-conf="$DIR/resolv.conf" \
    --eviction-hard='memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%' \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
    --register-node=true \
    --node-status-update-frequency=5s \
    --sync-frequency=10s \
    --serialize-image-pulls=false \
    --v=1
}

launch_proxy() {
  mkdir -p "$DIR/kube-proxy"
  component_kubeconfig "$DIR/kube-proxy/kubeconfig" system:kube-proxy
  local ports
  read -r -a ports < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
  # conntrack-* 0: leave the machine's conntrack table size and timeouts as they are.
  launch kube-proxy "$PROXY_BIN" \
    --kubeconfig="$DIR/kube-proxy/kubeconfig" \
    --hostname-override="$NODE" \
    --bind-address="$HOST_ADDRESS" \
    --cluster-cidr="$SUBNET" \
    --proxy-mode=iptables \
    --nodeport-addresses="$HOST_ADDRESS/32" \
    --healthz-bind-address="127.0.0.1:${ports[0]}" \
    --metrics-bind-address="127.0.0.1:${ports[1]}" \
    --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 \
    --conntrack-tcp-timeout-close-wait=0 \
    --oom-score-adj=0 \
    --profiling=false
}

node_ready() {
  # stderr: discovery complains about bucketcors.dev until its CRDs exist.
  [[ $(kubectl_ get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# The kubernetes Service reaches kube-apiserver through kube-proxy's rules.
service_proxied() {
  local rules
  rules=$(iptables -t nat -S KUBE-SERVICES 2>/dev/null)
  [[ $rules == *"-d ${SERVICE_CIDR%0/24}1/32"* ]]
}

# kube-controller-manager made the default ServiceAccount's token Secret.
service_account_ready() {
  [[ -n $(kubectl_ get serviceaccount default -n default -o 'jsonpath={.secrets[0].name}') ]]
}

cmd_up() {
  set_dir "${1:-}"
  local name
  for name in "${COMPONENTS[@]}"; do
    running "$DIR/$name.pid" && die "already running in $DIR (run: $0 down $DIR)"
  done
  ((EUID == 0)) || die "a node needs root"
  ensure_binaries
  local start=$SECONDS
  # A new cluster each time: etcd's data of an earlier one would hand pods a kube-apiserver
  # endpoint of its port.
  unmount_under_dir
  rm -rf "$CP" "$RUNTIME" "$DIR/kubelet" "$DIR/cni" "$LOGS" "$DIR/env" "$DIR/ready"
  mkdir -p "$LOGS"
  # Pods get a resolver on their own loopback, where nothing answers: the cluster has no DNS,
  # and no query of theirs leaves the machine.
  printf 'nameserver 127.0.0.1\n' >"$DIR/resolv.conf"
  trap 'stop_all' EXIT
  record_sysctls
  make_bridge

  write_containerd_config
  log "starting containerd"
  launch_containerd
  log "starting the control plane on $HOST_ADDRESS"
  BUCKETCORS_CP_ADDRESS=$HOST_ADDRESS BUCKETCORS_CP_NODE=$NODE "$HERE/control-plane.sh" up "$CP" >/dev/null ||
    die "the control plane did not start"
  API_PORT=$(sed -n 's|^CONTROL_PLANE_SERVER=https://.*:||p' "$CP/env")

  await containerd "containerd's socket" containerd_answers || die "containerd did not start"
  ctr_ images import --all-platforms "$PAUSE_ARCHIVE" >/dev/null
  local check
  check=$(ctr_ images check "name==$PAUSE_REF")
  [[ $check == *complete* ]] || die "the pause image did not import as $PAUSE_REF: $check"

  log "starting kube-controller-manager, kube-scheduler, kubelet and kube-proxy"
  launch_controller_manager
  launch_scheduler
  launch_kubelet
  launch_proxy
  await kubelet "node $NODE Ready" node_ready || die "the node did not become Ready"
  await kube-proxy "kube-proxy's rules for the kubernetes Service" service_proxied || die "kube-proxy did not start"
  await kube-controller-manager "the default ServiceAccount's token" service_account_ready ||
    die "kube-controller-manager did not start"
  running "$DIR/kube-scheduler.pid" || { show_log_tail "$LOGS/kube-scheduler.log"; die "kube-scheduler exited"; }

  {
    cat "$CP/env"
    printf 'CONTAINERD_ADDRESS=%q\n' "$SOCK"
    printf 'NODE_NAME=%q\n' "$NODE"
    printf 'HOST_ADDRESS=%q\n' "$HOST_ADDRESS"
  } >"$DIR/env"
  trap - EXIT
  touch "$DIR/ready"
  log "node $NODE Ready after $((SECONDS - start))s; kubeconfig $CP/kubeconfig"
  printf '%s\n' "$CP/kubeconfig"
}

# Stops and removes every pod sandbox through kubelet: pods deleted with the
# controllers stopped (nothing recreates them), then awaited until containerd runs
# no task but none. Falls back to killing containerd's tasks directly.
remove_pods() {
  running "$DIR/containerd.pid" || return 0
  if running "$DIR/kubelet.pid" && [[ -f $CP/kubeconfig ]]; then
    kubectl_ get pods --all-namespaces -o 'jsonpath={.items[*].metadata.uid}' >>"$DIR/pod-uids" 2>/dev/null || true
    kubectl_ delete pods --all-namespaces --all --grace-period=5 --wait=false >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
      [[ -z $(kubectl_ get pods --all-namespaces -o name 2>/dev/null) &&
        -z $(ctr_ tasks ls -q 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  local task
  for task in $(ctr_ tasks ls -q 2>/dev/null); do
    log "killing container $task"
    ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    ctr_ tasks delete --force "$task" >/dev/null 2>&1 || true
  done
}

# The iptables chains of kube-proxy (after its own --cleanup) and kubelet (which leaves
# its chains behind): every KUBE-* chain and the rules of the built-in chains that jump to one.
remove_kube_iptables() {
  local table rule chain
  for table in nat filter mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | while read -r rule; do
      # -S quotes comments the way the shell reads them.
      eval "iptables -t $table ${rule/#-A/-D}" || true
    done || true
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# kubelet writes the pods' logs under /var/log/pods (a fixed path in v1.20) and removes them
# only when it collects a deleted pod, once a minute; those of every pod this kubelet ran
# (named in its log, and in $DIR/pod-uids) go here.
remove_pod_logs() {
  local uid link uids=""
  [[ -f $DIR/pod-uids ]] && uids=$(<"$DIR/pod-uids")
  [[ -f $LOGS/kubelet.log ]] &&
    uids+=" $(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$LOGS/kubelet.log" | sort -u | tr '\n' ' ')"
  for uid in $uids; do
    [[ $uid =~ ^[0-9a-f-]{36}$ ]] || continue
    rm -rf /var/log/pods/*_"$uid"
  done
  for link in /var/log/containers/*.log; do
    [[ -L $link && ! -e $link ]] && rm -f "$link"
  done
  rm -f "$DIR/pod-uids"
}

# Network namespaces of pods whose sandboxes were not stopped through CNI: removing
# them removes their ends of the veth pairs.
remove_netns() {
  local ns
  for ns in "$RUNTIME"/state/io.containerd.grpc.v1.cri/netns/*; do
    [[ -e $ns ]] || continue
    umount "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
}

# Mounts kubelet and containerd left under DIR (volumes, snapshots, shm).
unmount_under_dir() {
  local mount
  awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
}

stop_all() {
  stop_pidfile "$DIR/kube-scheduler.pid" kube-scheduler 30
  stop_pidfile "$DIR/kube-controller-manager.pid" kube-controller-manager 30
  remove_pods
  stop_pidfile "$DIR/kubelet.pid" kubelet 30
  if [[ -f $DIR/kube-proxy.pid ]]; then
    stop_pidfile "$DIR/kube-proxy.pid" kube-proxy 30
    # kube-proxy's own clean-up of its iptables chains.
    [[ -n ${PROXY_BIN:-} ]] || PROXY_BIN=$CACHE/kubernetes-v1.20.2/kube-proxy
    "$PROXY_BIN" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 || log "kube-proxy --cleanup failed (see $LOGS/kube-proxy.log)"
  fi
  remove_kube_iptables
  remove_pod_logs
  stop_pidfile "$DIR/containerd.pid" containerd 30
  remove_netns
  unmount_under_dir
  "$HERE/control-plane.sh" down "$CP" >/dev/null 2>&1 || log "control-plane.sh down $CP failed"
  if [[ -f $DIR/bridge ]]; then
    ip link delete "$(<"$DIR/bridge")" 2>/dev/null || true
    rm -f "$DIR/bridge"
  fi
  restore_sysctls
  rm -f "$DIR/ready"
}

cmd_down() {
  [[ -n ${1:-} ]] || usage
  [[ -d $1 ]] || { log "nothing to stop: $1 does not exist"; return 0; }
  set_dir "$1"
  stop_all
  log "stopped"
}

cmd_status() {
  set_dir "${1:-}"
  local ok=0 name
  for name in "${COMPONENTS[@]}"; do
    if running "$DIR/$name.pid"; then
      printf '%s: running (pid %s)\n' "$name" "$(<"$DIR/$name.pid")"
    else
      printf '%s: stopped\n' "$name"
      ok=1
    fi
  done
  "$HERE/control-plane.sh" status "$CP" || ok=1
  if ((ok == 0)) && node_ready; then
    printf 'node %s: Ready\n' "$NODE"
  else
    printf 'node %s: not Ready\n' "$NODE"
    ok=1
  fi
  return "$ok"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) cmd_build ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
  esac
}

main "$@"
exit $?
