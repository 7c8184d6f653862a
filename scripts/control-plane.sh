#!/usr/bin/env bash
# Local Kubernetes control plane (etcd + kube-apiserver) on loopback, for
# integration tests that need a real API server but no nodes, with a modern CRD
# server (crd-server.sh: apiextensions-apiserver + its own etcd) serving the
# bucketcors.dev group through kube-apiserver's aggregation layer, so CEL
# validation and transition rules are enforced. Everything else (Namespaces,
# Secrets, Events, Leases, RBAC, authentication) stays on kube-apiserver.
#
# Usage:
#   control-plane.sh build          ensure kube-apiserver and etcd binaries exist
#                                   (the CRD server's: crd-server.sh build)
#   control-plane.sh build-node     ensure kube-controller-manager, kube-scheduler,
#                                   kubelet and kube-proxy exist (scripts/cluster.sh
#                                   runs them), with kube-apiserver and etcd: built
#                                   together, they share one Go build cache; prints
#                                   NAME=PATH lines
#   control-plane.sh up DIR         start etcd + kube-apiserver and the CRD server
#                                   behind it, state kept in DIR
#   control-plane.sh down DIR       stop what `up DIR` started
#   control-plane.sh status DIR     report whether it is running and ready
#   control-plane.sh run DIR        up, touch DIR/ready, stay in the foreground
#                                   and take everything down on SIGTERM/SIGINT
#
# `up` writes DIR/kubeconfig (kube-apiserver, admin) and DIR/env: KUBECONFIG,
# CONTROL_PLANE_SERVER, CONTROL_PLANE_ETCD, and CRD_SERVER_KUBECONFIG,
# CRD_SERVER (URL), CRD_SERVER_VERSION for the CRD server itself. It does not
# create the BucketCors CRD: create it on the CRD server (CRD_SERVER_KUBECONFIG);
# kube-apiserver serves it once APIService v1alpha1.bucketcors.dev is Available.
# Until the CRD exists that check fails, and v1.20 retries it with a back-off
# that grows to 30 s; any change to the APIService makes it check at once:
#   kubectl annotate apiservice v1alpha1.bucketcors.dev recheck=$(date +%s) --overwrite
#
# Environment:
#   KUBE_APISERVER, ETCD   use these binaries instead of building/extracting
#   KUBEBUILDER_ASSETS     directory holding kube-apiserver and etcd (envtest)
#   BUCKETCORS_CACHE       cache root (default: $HOME/.cache/bucketcors)
#   BUCKETCORS_CP_TIMEOUT  start-up deadline in seconds (default: 120)
#   BUCKETCORS_CP_ADDRESS  kube-apiserver's address (default: 127.0.0.1); scripts/cluster.sh
#                          gives its bridge's, which pods reach
#   BUCKETCORS_CP_NODE     a node that will join (scripts/cluster.sh): kube-apiserver adds
#                          the Node authorizer, NodeRestriction and the kubernetes Service's
#                          endpoints, and tokens.csv identities for the node, the
#                          controller-manager, the scheduler and kube-proxy
#   BUCKETCORS_DEBIAN_MIRROR, BUCKETCORS_DEBIAN_SECURITY_MIRROR
#                          override the Debian mirrors found in the apt sources
#                          (crd-server.sh takes the first one for sid)
#
# No registry ships kube-apiserver, so it is built from Debian bookworm's
# `kubernetes` source package (upstream v1.20.2 with vendor/) using bookworm's
# Go 1.19. etcd comes from bookworm's etcd-server package. Packages are fetched
# with a private apt configuration and unpacked, never installed. The CRD
# server and its etcd come from Debian sid (see crd-server.sh).
#
# shellcheck disable=SC2317,SC2329 # launchers and probes are invoked indirectly
set -euo pipefail

readonly K8S_VERSION=1.20.2
readonly ETCD_VERSION=3.4.23
readonly GO_PACKAGE=golang-1.19
readonly DEBIAN_SUITE=bookworm
readonly SERVICE_CIDR=10.0.0.0/24
readonly SERVICE_IP=10.0.0.1
# What the CRD server serves through kube-apiserver, and the ExternalName
# Service that points kube-apiserver's aggregator at it.
readonly CRD_GROUP=bucketcors.dev
readonly CRD_GROUP_VERSIONS=(v1alpha1)
readonly CRD_SERVICE=bucketcors-crd-server
readonly CRD_SERVICE_NAMESPACE=kube-system

CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
TIMEOUT=${BUCKETCORS_CP_TIMEOUT:-120}
API_ADDRESS=${BUCKETCORS_CP_ADDRESS:-127.0.0.1}
NODE_NAME=${BUCKETCORS_CP_NODE:-}

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------

APISERVER_CACHED="$CACHE/kube-apiserver-v$K8S_VERSION/kube-apiserver"
ETCD_CACHED="$CACHE/etcd-$ETCD_VERSION/etcd"

# Sets APISERVER_BIN and ETCD_BIN from the overrides, or to the cache paths.
resolve_binaries() {
  APISERVER_BIN=$APISERVER_CACHED
  ETCD_BIN=$ETCD_CACHED
  if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
    APISERVER_BIN=$KUBEBUILDER_ASSETS/kube-apiserver
    ETCD_BIN=$KUBEBUILDER_ASSETS/etcd
  fi
  APISERVER_BIN=${KUBE_APISERVER:-$APISERVER_BIN}
  ETCD_BIN=${ETCD:-$ETCD_BIN}
  # Overrides are the caller's promise; a wrong one must fail, not trigger a build.
  if [[ -n ${KUBE_APISERVER:-}${KUBEBUILDER_ASSETS:-} && ! -x $APISERVER_BIN ]]; then
    die "kube-apiserver override is not executable: $APISERVER_BIN"
  fi
  if [[ -n ${ETCD:-}${KUBEBUILDER_ASSETS:-} && ! -x $ETCD_BIN ]]; then
    die "etcd override is not executable: $ETCD_BIN"
  fi
}

ensure_binaries() { ensure_builds; }

# ensure_builds [node]: etcd and kube-apiserver, and with "node" also the node
# commands, all in one work folder: they share the prepared source and the Go
# build cache, so the node commands compile only what kube-apiserver did not.
ensure_builds() {
  local with_node=${1:-} name missing=()
  resolve_binaries
  if [[ $with_node == node ]]; then
    for name in "${NODE_COMMANDS[@]}"; do
      [[ -x $NODE_CACHE/$name ]] || missing+=("$name")
    done
  fi
  if [[ -x $APISERVER_BIN && -x $ETCD_BIN ]] && ((${#missing[@]} == 0)); then
    return 0
  fi
  mkdir -p "$CACHE"
  # Serialise concurrent builds; the loser then finds the winner's binaries.
  exec 9>"$CACHE/.lock"
  flock 9
  # Leftovers of interrupted builds (safe to remove while holding the lock).
  rm -rf "$CACHE"/.work.*
  WORK=$(mktemp -d "$CACHE/.work.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  if [[ ! -x $ETCD_BIN ]]; then
    fetch_etcd
  fi
  if [[ ! -x $APISERVER_BIN ]]; then
    build_apiserver
  fi
  for name in "${missing[@]}"; do
    [[ -x $NODE_CACHE/$name ]] || build_kubernetes_command "$name" "$NODE_CACHE/$name"
  done
  rm -rf "$WORK"
  trap - EXIT
  exec 9>&-
}

# A private apt configuration with deb-src entries, so the machine's own apt
# sources, lists and cache stay untouched.
setup_private_apt() {
  [[ -n ${APT_OPTS+x} ]] && return 0
  local main security keyring=/usr/share/keyrings/debian-archive-keyring.gpg opts=""
  main=${BUCKETCORS_DEBIAN_MIRROR:-$(system_apt_sources | awk -v s="$DEBIAN_SUITE" '$2 == s && !found { print $1; found = 1 }')}
  main=${main:-http://deb.debian.org/debian}
  security=${BUCKETCORS_DEBIAN_SECURITY_MIRROR:-$(system_apt_sources | awk -v s="$DEBIAN_SUITE-security" '$2 == s && !found { print $1; found = 1 }')}
  security=${security:-${main%/}-security}
  [[ -f $keyring ]] && opts="[signed-by=$keyring] "
  local dir=$WORK/apt
  mkdir -p "$dir/sources.list.d" "$dir/lists/partial" "$dir/cache/archives/partial"
  cat >"$dir/sources.list" <<EOF
deb ${opts}$main $DEBIAN_SUITE main
deb-src ${opts}$main $DEBIAN_SUITE main
deb ${opts}$security $DEBIAN_SUITE-security main
deb-src ${opts}$security $DEBIAN_SUITE-security main
EOF
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$dir/sources.list"
    -o "Dir::Etc::SourceParts=$dir/sources.list.d"
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::Cache=$dir/cache"
    # Downloads land in directories the unprivileged _apt user cannot write.
    -o "APT::Sandbox::User=root"
  )
  log "updating private apt lists ($main, $security)"
  apt-get -q "${APT_OPTS[@]}" update >&2
}

# Downloads and unpacks binary packages into $1.
apt_extract() {
  local dest=$1 deb
  shift
  setup_private_apt
  mkdir -p "$WORK/debs" "$dest"
  (cd "$WORK/debs" && apt-get -q "${APT_OPTS[@]}" download "$@" >&2)
  for deb in "$WORK"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dest"
  done
  rm -f "$WORK"/debs/*.deb
}

fetch_etcd() {
  log "fetching etcd $ETCD_VERSION from Debian $DEBIAN_SUITE"
  apt_extract "$WORK/etcd" etcd-server
  local bin=$WORK/etcd/usr/bin/etcd
  local version
  version=$("$bin" --version)
  grep -q "etcd Version: $ETCD_VERSION\$" <<<"$version" ||
    die "etcd-server package does not carry etcd $ETCD_VERSION: ${version%%$'\n'*}"
  install_atomically "$bin" "$ETCD_CACHED"
  log "etcd ready: $ETCD_CACHED"
}

# Unpacks Go and Debian's kubernetes source (patched, with the reflect2 fix) into
# $WORK, once per run; sets KUBE_SRC and KUBE_GOROOT.
prepare_kubernetes_source() {
  [[ -n ${KUBE_SRC:-} ]] && return 0
  local tools=$WORK/tools src=$WORK/kubernetes
  apt_extract "$tools" "$GO_PACKAGE-go" "$GO_PACKAGE-src" golang-github-modern-go-reflect2-dev
  local goroot=$tools/usr/lib/go-${GO_PACKAGE#golang-}
  [[ -x $goroot/bin/go ]] || die "Go toolchain missing after extraction: $goroot"

  mkdir -p "$WORK/source" "$src"
  (cd "$WORK/source" && apt-get -q "${APT_OPTS[@]}" source --download-only kubernetes >&2)
  local orig
  orig=$(find "$WORK/source" -maxdepth 1 -name "kubernetes_*really${K8S_VERSION}.orig.tar.gz" -print -quit)
  [[ -n $orig ]] || die "Debian kubernetes source is not upstream v$K8S_VERSION: $(ls "$WORK/source")"
  tar -xzf "$orig" -C "$src" --strip-components=1
  tar -xJf "${orig%.orig.tar.gz}"-*.debian.tar.xz -C "$src"
  local patch
  while read -r patch _; do
    [[ -z $patch || $patch == \#* ]] && continue
    log "applying debian/patches/$patch"
    patch -d "$src" -p1 -s --batch --forward -i "debian/patches/$patch"
  done <"$src/debian/patches/series"

  # reflect2 1.0.1 (vendored) crashes the apiserver under Go >= 1.18 on the
  # first custom resource write; 1.0.2 is API compatible and fixes it.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$tools/usr/share/gocode/src/github.com/modern-go/reflect2" "$src/vendor/github.com/modern-go/reflect2"

  # The tarball is not a git checkout; pin what `--version` reports.
  cat >"$WORK/version.env" <<EOF
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='archive'
KUBE_GIT_VERSION='v$K8S_VERSION'
KUBE_GIT_MAJOR='${K8S_VERSION%%.*}'
KUBE_GIT_MINOR='$(cut -d. -f2 <<<"$K8S_VERSION")'
EOF

  mkdir -p "$WORK/bin"
  # A real rsync says so; anything else on PATH under that name is not trusted.
  local rsync_version
  rsync_version=$(rsync --version 2>/dev/null || true)
  if ! [[ $rsync_version =~ ^rsync\ +version ]]; then
    # The build only uses rsync as `rsync -pc FILE... DIR` to place binaries.
    cat >"$WORK/bin/rsync" <<'EOF'
#!/bin/sh
files=""
for arg; do
  case $arg in -*) ;; *) files="$files $arg" ;; esac
done
# shellcheck disable=SC2086
set -- $files
eval "dest=\${$#}"
while [ $# -gt 1 ]; do cp -p "$1" "$dest"/; shift; done
EOF
    chmod +x "$WORK/bin/rsync"
  fi
  KUBE_SRC=$src
  KUBE_GOROOT=$goroot
}

# Builds cmd/$1 of the kubernetes source and installs it at $2, checking the
# version it reports. Builds in one run share their Go build cache.
build_kubernetes_command() {
  local name=$1 dest=$2 start=$SECONDS
  log "building $name v$K8S_VERSION from Debian $DEBIAN_SUITE sources (takes several minutes)"
  prepare_kubernetes_source
  # GOPATH mode with vendor/, offline, static: the way upstream 1.20 builds.
  env -u GOFLAGS -u GOPATH \
    PATH="$KUBE_GOROOT/bin:$WORK/bin:$PATH" \
    GOROOT="$KUBE_GOROOT" \
    GOCACHE="$WORK/gocache" \
    GOENV=off \
    GOPROXY=off \
    GO111MODULE=off \
    CGO_ENABLED=0 \
    KUBE_GIT_VERSION_FILE="$WORK/version.env" \
    nice -n 10 make -C "$KUBE_SRC" WHAT="cmd/$name" >&2

  local bin=$KUBE_SRC/_output/bin/$name
  local version
  version=$("$bin" --version)
  [[ $version == "Kubernetes v$K8S_VERSION" ]] || die "unexpected $name version: $version"
  install_atomically "$bin" "$dest"
  log "$name ready after $((SECONDS - start))s: $dest"
}

build_apiserver() { build_kubernetes_command kube-apiserver "$APISERVER_CACHED"; }

# What a node and the rest of the control plane run (scripts/cluster.sh), from
# the same source as kube-apiserver.
readonly NODE_COMMANDS=(kube-controller-manager kube-scheduler kubelet kube-proxy)
NODE_CACHE="$CACHE/kubernetes-v$K8S_VERSION"

cmd_build_node() {
  local start=$SECONDS name
  ensure_builds node
  log "node binaries available after $((SECONDS - start))s"
  for name in "${NODE_COMMANDS[@]}"; do
    printf '%s=%s\n' "$name" "$NODE_CACHE/$name"
  done
}

cmd_build() {
  local start=$SECONDS
  ensure_binaries
  log "binaries available after $((SECONDS - start))s"
  printf 'KUBE_APISERVER=%s\nETCD=%s\n' "$APISERVER_BIN" "$ETCD_BIN"
}

# Sets CRD_SERVER_BIN, CRD_ETCD_BIN and CRD_SERVER_VERSION from
# `crd-server.sh build` (a no-op once its binaries are cached).
ensure_crd_server() {
  local out key value
  out=$("$(dirname "$0")/crd-server.sh" build) || die "scripts/crd-server.sh build failed"
  CRD_SERVER_BIN="" CRD_ETCD_BIN=""
  while IFS='=' read -r key value; do
    case $key in
      CRD_SERVER) CRD_SERVER_BIN=$value ;;
      CRD_ETCD) CRD_ETCD_BIN=$value ;;
    esac
  done <<<"$out"
  [[ -x $CRD_SERVER_BIN && -x $CRD_ETCD_BIN ]] || die "crd-server.sh build printed no usable binaries: $out"
  CRD_SERVER_VERSION=$(<"$(dirname "$CRD_SERVER_BIN")/VERSION")
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# Prints N distinct currently-free loopback ports.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

launch() {
  local pidfile=$1 logfile=$2
  shift 2
  nohup "$@" </dev/null >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
}

# Polls `$3...` until it succeeds (0), the process in pidfile $1 exits (1), or
# the deadline passes (2). $2 names what is awaited in messages.
await() {
  local pidfile=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    running "$pidfile" || return 1
    if ((SECONDS >= deadline)); then
      log "$what not ready after ${TIMEOUT}s"
      return 2
    fi
    sleep 0.2
  done
}

show_log_tail() {
  log "last lines of $1:"
  tail -n 40 "$1" >&2 || true
}

set_dir() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  PKI=$DIR/pki
  LOGS=$DIR/logs
}

# Subshell: the umask keeps keys and the token file private.
gen_pki() (
  umask 077
  mkdir -p "$PKI"
  [[ -f $PKI/server.crt && -f $PKI/sa.key && -f $PKI/tokens.csv && -f $PKI/crd-server.crt &&
    -f $PKI/front-proxy-client.crt && -f $PKI/kubelet-client.crt ]] && exit 0
  log "generating certificates and keys in $PKI"
  # rustls/webpki refuse a CA certificate as the server certificate, so use a
  # separate CA and a leaf with IP SANs.
  cat >"$PKI/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = bucketcors-local
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:$API_ADDRESS, IP:$SERVICE_IP, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc
[v3_crd_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
# kube-apiserver's aggregator checks the name <service>.<namespace>.svc.
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:$CRD_SERVICE.$CRD_SERVICE_NAMESPACE.svc
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -config "$PKI/openssl.cnf" \
    -extensions v3_ca -subj /CN=bucketcors-local-ca -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -config "$PKI/openssl.cnf" \
    -subj /CN=kube-apiserver -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null
  openssl x509 -req -days 3650 -in "$PKI/server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -CAserial "$PKI/ca.srl" -extfile "$PKI/openssl.cnf" -extensions v3_server \
    -out "$PKI/server.crt" 2>/dev/null
  # P-256 keys for what the CRD server adds: generated at once, unlike RSA.
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
  openssl req -new -nodes "${ec[@]}" -config "$PKI/openssl.cnf" \
    -subj /CN=bucketcors-crd-server -keyout "$PKI/crd-server.key" -out "$PKI/crd-server.csr" 2>/dev/null
  openssl x509 -req -days 3650 -in "$PKI/crd-server.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAserial "$PKI/ca.srl" -extfile "$PKI/openssl.cnf" -extensions v3_crd_server \
    -out "$PKI/crd-server.crt" 2>/dev/null
  # The aggregator's client certificate, from a CA of its own: the CRD server
  # takes the X-Remote-* identity headers only from a client it proves.
  openssl req -x509 -new -nodes "${ec[@]}" -days 3650 -config "$PKI/openssl.cnf" \
    -extensions v3_ca -subj /CN=bucketcors-front-proxy-ca \
    -keyout "$PKI/front-proxy-ca.key" -out "$PKI/front-proxy-ca.crt" 2>/dev/null
  openssl req -new -nodes "${ec[@]}" -config "$PKI/openssl.cnf" \
    -subj /CN=front-proxy-client -keyout "$PKI/front-proxy-client.key" -out "$PKI/front-proxy-client.csr" 2>/dev/null
  openssl x509 -req -days 3650 -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" \
    -CAkey "$PKI/front-proxy-ca.key" -CAcreateserial -CAserial "$PKI/front-proxy-ca.srl" \
    -extfile "$PKI/openssl.cnf" -extensions v3_client -out "$PKI/front-proxy-client.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  # kube-apiserver's client certificate toward kubelets (scripts/cluster.sh).
  openssl req -new -nodes "${ec[@]}" -config "$PKI/openssl.cnf" \
    -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$PKI/kubelet-client.key" -out "$PKI/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -days 3650 -in "$PKI/kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAserial "$PKI/ca.srl" -extfile "$PKI/openssl.cnf" -extensions v3_client \
    -out "$PKI/kubelet-client.crt" 2>/dev/null
  # token,user,uid,"groups"
  printf '%s,admin,admin,"system:masters"\n' "$(openssl rand -hex 32)" >"$PKI/tokens.csv"
  if [[ -n $NODE_NAME ]]; then
    # The identities the default RBAC roles and the Node authorizer know.
    {
      printf '%s,system:kube-controller-manager,kcm\n' "$(openssl rand -hex 32)"
      printf '%s,system:kube-scheduler,scheduler\n' "$(openssl rand -hex 32)"
      printf '%s,system:kube-proxy,kube-proxy\n' "$(openssl rand -hex 32)"
      printf '%s,system:node:%s,node,"system:nodes"\n' "$(openssl rand -hex 32)" "$NODE_NAME"
    } >>"$PKI/tokens.csv"
  fi
)

admin_token() { awk -F, '$2 == "admin" { print $1 }' "$PKI/tokens.csv"; }

# curl against the API server as admin, keeping the token out of argv.
api_get() {
  printf 'header = "Authorization: Bearer %s"\n' "$(admin_token)" |
    curl -K - -fsS --max-time 5 --cacert "$PKI/ca.crt" "https://$API_ADDRESS:$API_PORT$1"
}

# api_get with method $1 on path $2, and body $3 (of media type $4, default
# JSON) when given.
api_send() {
  local body=()
  (($# > 2)) && body=(-H "Content-Type: ${4:-application/json}" --data-binary "$3")
  printf 'header = "Authorization: Bearer %s"\n' "$(admin_token)" |
    curl -K - -fsS --max-time 10 --cacert "$PKI/ca.crt" -X "$1" "${body[@]}" \
      "https://$API_ADDRESS:$API_PORT$2"
}

# True when the etcd on port $1 reports itself healthy.
etcd_answers() {
  local health
  health=$(curl -fsS --max-time 5 "http://127.0.0.1:$1/health") || return 1
  [[ $health == *'"health":"true"'* ]]
}

etcd_healthy() { etcd_answers "$ETCD_PORT"; }
crd_etcd_healthy() { etcd_answers "$CRD_ETCD_PORT"; }

apiserver_ready() {
  [[ $(curl -fsS --max-time 5 --cacert "$PKI/ca.crt" "https://$API_ADDRESS:$API_PORT/readyz") == ok ]]
}

crd_server_ready() {
  [[ $(curl -fsS --max-time 5 --cacert "$PKI/ca.crt" "https://127.0.0.1:$CRD_PORT/readyz") == ok ]]
}

# The bootstrap controller creates these shortly after /readyz turns ok.
apiserver_bootstrapped() {
  api_get /api/v1/namespaces/default/services/kubernetes
}

# Starts a component on fresh ports, retrying when a port was taken between
# choosing and binding it. $1 = name, $2 = function that picks ports and
# launches, $3... = readiness check. A component already launched ahead (by
# cmd_up, so that it starts while others do) is awaited first.
start_with_retry() {
  local name=$1 launcher=$2 attempt rc
  shift 2
  for attempt in 1 2 3 4 5; do
    if ((attempt > 1)) || ! running "$DIR/$name.pid"; then
      "$launcher"
    fi
    rc=0
    await "$DIR/$name.pid" "$name" "$@" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 1)) && grep -q 'address already in use' "$LOGS/$name.log"; then
      log "$name lost a port race (attempt $attempt); retrying"
      rm -f "$DIR/$name.pid"
      continue
    fi
    ((rc == 1)) && log "$name exited during start-up"
    show_log_tail "$LOGS/$name.log"
    return 1
  done
  show_log_tail "$LOGS/$name.log"
  return 1
}

# Starts etcd binary $2 as component $1 (data in DIR/$1-data) on fresh ports
# and sets the variable named $3 to its client port.
launch_etcd_as() {
  local name=$1 bin=$2 client_port peer_port
  read -r client_port peer_port < <(free_ports 2)
  printf -v "$3" '%s' "$client_port"
  launch "$DIR/$name.pid" "$LOGS/$name.log" "$bin" \
    --name=bucketcors \
    --data-dir="$DIR/$name-data" \
    --listen-client-urls="http://127.0.0.1:$client_port" \
    --advertise-client-urls="http://127.0.0.1:$client_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="bucketcors=http://127.0.0.1:$peer_port" \
    --logger=zap --log-outputs=stderr
}

launch_etcd() { launch_etcd_as etcd "$ETCD_BIN" ETCD_PORT; }
launch_crd_etcd() { launch_etcd_as crd-etcd "$CRD_ETCD_BIN" CRD_ETCD_PORT; }

launch_apiserver() {
  read -r API_PORT < <(free_ports 1)
  # Without nodes no Service is proxied: the kubernetes Service gets no endpoints.
  local endpoint_reconciler=none authorization=RBAC node_args=()
  if [[ -n $NODE_NAME ]]; then
    endpoint_reconciler=lease
    authorization=Node,RBAC
    node_args=(
      --enable-admission-plugins=NodeRestriction
      --kubelet-client-certificate="$PKI/kubelet-client.crt"
      --kubelet-client-key="$PKI/kubelet-client.key"
      # The node's address, never its name: nothing resolves it.
      --kubelet-preferred-address-types=InternalIP
    )
  fi
  launch "$DIR/kube-apiserver.pid" "$LOGS/kube-apiserver.log" "$APISERVER_BIN" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$API_ADDRESS" \
    --advertise-address="$API_ADDRESS" \
    --secure-port="$API_PORT" \
    --insecure-port=0 \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/server.crt" \
    --tls-private-key-file="$PKI/server.key" \
    --client-ca-file="$PKI/ca.crt" \
    --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode="$authorization" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --endpoint-reconciler-type="$endpoint_reconciler" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --profiling=false \
    "${node_args[@]}"
}

# The CRD server trusts the identity headers of the aggregator's front-proxy
# certificate, takes client certificates of the cluster CA, and hands bearer
# tokens (TokenReview) and every authorization decision (SubjectAccessReview)
# to kube-apiserver, so RBAC there governs bucketcors.dev too. NamespaceLifecycle
# checks namespaces on kube-apiserver, as v1.20 does for its own resources.
# Admission policies (which v1.20 does not serve), webhooks (none here) and
# priority and fairness (v1.20 has only its flowcontrol v1beta1) are off.
launch_crd_server() {
  read -r CRD_PORT < <(free_ports 1)
  launch "$DIR/crd-server.pid" "$LOGS/crd-server.log" "$CRD_SERVER_BIN" \
    --etcd-servers="http://127.0.0.1:$CRD_ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --secure-port="$CRD_PORT" \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/crd-server.crt" \
    --tls-private-key-file="$PKI/crd-server.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --authentication-skip-lookup \
    --kubeconfig="$PKI/core-admin.kubeconfig" \
    --authentication-kubeconfig="$PKI/core-admin.kubeconfig" \
    --authorization-kubeconfig="$PKI/core-admin.kubeconfig" \
    --enable-priority-and-fairness=false \
    --disable-admission-plugins=MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
    --profiling=false
}

# Writes kubeconfig file $1 for the admin at URL $2 (privately, atomically).
write_kubeconfig_file() {
  local tmp=$1.tmp.$$
  (
    umask 077
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bucketcors-local
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: admin
  user:
    token: $(admin_token)
contexts:
- name: bucketcors-local
  context:
    cluster: bucketcors-local
    user: admin
    namespace: default
current-context: bucketcors-local
EOF
  )
  mv -f "$tmp" "$1"
}

write_kubeconfig() {
  write_kubeconfig_file "$DIR/kubeconfig" "https://$API_ADDRESS:$API_PORT"
  write_kubeconfig_file "$DIR/crd-server.kubeconfig" "https://127.0.0.1:$CRD_PORT"
  {
    printf 'KUBECONFIG=%q\n' "$DIR/kubeconfig"
    printf 'CONTROL_PLANE_SERVER=%q\n' "https://$API_ADDRESS:$API_PORT"
    printf 'CONTROL_PLANE_ETCD=%q\n' "http://127.0.0.1:$ETCD_PORT"
    printf 'CRD_SERVER_KUBECONFIG=%q\n' "$DIR/crd-server.kubeconfig"
    printf 'CRD_SERVER=%q\n' "https://127.0.0.1:$CRD_PORT"
    printf 'CRD_SERVER_VERSION=%q\n' "$CRD_SERVER_VERSION"
  } >"$DIR/env"
}

# The CRD server must report the version crd-server.sh built.
crd_server_version_matches() {
  local version
  version=$(curl -fsS --max-time 5 --cacert "$PKI/ca.crt" "https://127.0.0.1:$CRD_PORT/version") ||
    die "the CRD server does not answer /version"
  [[ $version == *"\"gitVersion\": \"$CRD_SERVER_VERSION\""* ]] ||
    die "the CRD server is not $CRD_SERVER_VERSION: $version"
}

# Points kube-apiserver's aggregator at the CRD server for every version of
# $CRD_GROUP: an ExternalName Service (the aggregator resolves it to
# externalName:port) and one APIService per version, recreated so that no
# status of an earlier run (another port) lingers.
register_crd_server() {
  api_send PATCH "/api/v1/namespaces/$CRD_SERVICE_NAMESPACE/services/$CRD_SERVICE?fieldManager=control-plane&force=true" \
    "$(printf '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "%s", "namespace": "%s"}, "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}' \
      "$CRD_SERVICE" "$CRD_SERVICE_NAMESPACE")" application/apply-patch+yaml >/dev/null
  local version name ca
  ca=$(base64 -w0 <"$PKI/ca.crt")
  for version in "${CRD_GROUP_VERSIONS[@]}"; do
    name=$version.$CRD_GROUP
    api_send DELETE "/apis/apiregistration.k8s.io/v1/apiservices/$name" >/dev/null 2>&1 || true
    api_send POST /apis/apiregistration.k8s.io/v1/apiservices \
      "$(printf '{"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "%s"}, "spec": {"group": "%s", "version": "%s", "service": {"namespace": "%s", "name": "%s", "port": %s}, "caBundle": "%s", "groupPriorityMinimum": 1000, "versionPriority": 100}}' \
        "$name" "$CRD_GROUP" "$version" "$CRD_SERVICE_NAMESPACE" "$CRD_SERVICE" "$CRD_PORT" "$ca")" >/dev/null
  done
}

# Prints the Available condition of APIService $1 as "STATUS REASON MESSAGE"
# (nothing when it has none yet).
apiservice_condition() {
  local json
  json=$(api_get "/apis/apiregistration.k8s.io/v1/apiservices/$1") || return 0
  python3 -c '
import json, sys
for c in json.load(sys.stdin).get("status", {}).get("conditions", []):
    if c.get("type") == "Available":
        print(c.get("status"), c.get("reason"), c.get("message"))' <<<"$json"
}

# True when the aggregator reached the CRD server for APIService $1: it is
# Available, or (no CRD of that version yet) its discovery check got a 404 from
# the CRD server, which proves routing, TLS and front-proxy authentication.
apiservice_reached() {
  local condition
  condition=$(apiservice_condition "$1")
  [[ $condition == "True "* || $condition == *": 404" ]]
}

readonly COMPONENTS=(etcd kube-apiserver crd-etcd crd-server)

cmd_up() {
  set_dir "${1:-}"
  local name
  for name in "${COMPONENTS[@]}"; do
    if running "$DIR/$name.pid"; then
      die "already running in $DIR (run: $0 down $DIR)"
    fi
  done
  command -v python3 >/dev/null || die "python3 is required to pick free ports"
  ensure_binaries
  ensure_crd_server
  local start=$SECONDS
  mkdir -p "$LOGS"
  rm -f "$DIR/kubeconfig" "$DIR/crd-server.kubeconfig" "$DIR/env" "$DIR/ready"

  # Never leave half a control plane behind.
  trap 'stop_all' EXIT
  # Both etcds need nothing: they start while the keys are made, and the CRD
  # server's while kube-apiserver starts.
  log "starting etcd and the CRD server's etcd"
  launch_etcd
  launch_crd_etcd
  gen_pki
  start_with_retry etcd launch_etcd etcd_healthy || die "etcd did not start"
  log "starting kube-apiserver"
  start_with_retry kube-apiserver launch_apiserver apiserver_ready ||
    die "kube-apiserver did not start"
  start_with_retry crd-etcd launch_crd_etcd crd_etcd_healthy || die "the CRD server's etcd did not start"
  # The CRD server has kube-apiserver review its clients' tokens and requests:
  # it starts once kube-apiserver answers, while that finishes bootstrapping.
  write_kubeconfig_file "$PKI/core-admin.kubeconfig" "https://$API_ADDRESS:$API_PORT"
  log "starting the CRD server (apiextensions-apiserver $CRD_SERVER_VERSION)"
  launch_crd_server
  local rc=0
  await "$DIR/kube-apiserver.pid" "default/kubernetes service" apiserver_bootstrapped || rc=$?
  if ((rc != 0)); then
    show_log_tail "$LOGS/kube-apiserver.log"
    die "kube-apiserver did not finish bootstrapping"
  fi
  start_with_retry crd-server launch_crd_server crd_server_ready || die "the CRD server did not start"
  crd_server_version_matches
  register_crd_server
  local version
  for version in "${CRD_GROUP_VERSIONS[@]}"; do
    rc=0
    await "$DIR/kube-apiserver.pid" "APIService $version.$CRD_GROUP" apiservice_reached "$version.$CRD_GROUP" || rc=$?
    if ((rc != 0)); then
      show_log_tail "$LOGS/kube-apiserver.log"
      show_log_tail "$LOGS/crd-server.log"
      die "kube-apiserver does not reach the CRD server for $version.$CRD_GROUP: $(apiservice_condition "$version.$CRD_GROUP")"
    fi
  done
  write_kubeconfig
  trap - EXIT
  log "ready after $((SECONDS - start))s at https://$API_ADDRESS:$API_PORT (etcd http://127.0.0.1:$ETCD_PORT)," \
    "CRD server $CRD_SERVER_VERSION at https://127.0.0.1:$CRD_PORT (etcd http://127.0.0.1:$CRD_ETCD_PORT)"
  printf '%s\n' "$DIR/kubeconfig"
}

stop_all() {
  stop_pidfile "$DIR/crd-server.pid" crd-server 30
  stop_pidfile "$DIR/crd-etcd.pid" crd-etcd 30
  stop_pidfile "$DIR/kube-apiserver.pid" kube-apiserver 30
  stop_pidfile "$DIR/etcd.pid" etcd 30
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
  if ((ok == 0)) && [[ -f $DIR/env ]]; then
    local server
    server=$(sed -n 's|^CONTROL_PLANE_SERVER=https://||p' "$DIR/env")
    API_ADDRESS=${server%:*}
    API_PORT=${server##*:}
    CRD_PORT=$(sed -n 's|^CRD_SERVER=https://127.0.0.1:||p' "$DIR/env")
    if apiserver_ready; then
      printf 'readyz: ok\n'
    else
      printf 'readyz: not ready\n'
      ok=1
    fi
    if [[ -n $CRD_PORT ]] && crd_server_ready; then
      printf 'crd-server readyz: ok\n'
    else
      printf 'crd-server readyz: not ready\n'
      ok=1
    fi
  fi
  return "$ok"
}

# Foreground mode for test harnesses: up, touch DIR/ready, then stay until
# signalled (or until one of the four processes dies) and take everything down.
cmd_run() {
  cmd_up "${1:-}" >/dev/null
  trap 'stop_all; exit 0' TERM INT
  trap 'stop_all' EXIT
  touch "$DIR/ready"
  local pids=() name
  for name in "${COMPONENTS[@]}"; do pids+=("$(<"$DIR/$name.pid")"); done
  # `wait -n` returns when any of them exits or a signal arrives.
  wait -n "${pids[@]}" 2>/dev/null || true
  log "a control-plane process exited; stopping"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) cmd_build ;;
    build-node) cmd_build_node ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    run) cmd_run "$@" ;;
    *) usage ;;
  esac
}

# Everything is parsed before anything runs, so editing this file while a
# long build is in progress cannot corrupt the running instance.
main "$@"; exit $?
