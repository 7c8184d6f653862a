#!/usr/bin/env bash
# The modern CRD server of the local control plane: apiextensions-apiserver (the
# server behind CustomResourceDefinitions, which enforces CEL validation and
# transition rules) and an etcd of its own. control-plane.sh runs them behind
# its v1.20 kube-apiserver, which drops x-kubernetes-validations.
#
# Usage:
#   crd-server.sh build     ensure apiextensions-apiserver and etcd binaries
#                           exist; print CRD_SERVER=<path> and CRD_ETCD=<path>
#
# Environment:
#   BUCKETCORS_CACHE          cache root (default: $HOME/.cache/bucketcors)
#   BUCKETCORS_DEBIAN_MIRROR  override the Debian mirror found in the apt sources
#
# Debian sid ships Kubernetes' Go libraries with their sources
# (golang-k8s-*-dev), so apiextensions-apiserver builds from them in GOPATH mode
# with sid's Go, offline and static, at the version of
# golang-k8s-apiextensions-apiserver-dev (0.X.Y is Kubernetes v1.X.Y), with one
# change: it serves the discovery root /apis, which upstream leaves to
# kube-apiserver's aggregator, so kubectl works against it directly. Only what
# the build imports is fetched, not the whole Depends closure (some 320
# packages, 2.3 GB unpacked): each round runs `go list -deps` and fetches the
# packages named after the missing imports, or else the Depends of those that
# provide what is imported, until no import is missing. etcd comes from sid's
# etcd-server package. Packages are fetched with a private apt configuration
# and unpacked, never installed. $BUCKETCORS_CACHE/crd-server.env names what was
# built; while it does, `build` does nothing (and uses no network).
set -euo pipefail

readonly DEBIAN_SUITE=sid
readonly SERVER_PACKAGE=golang-k8s-apiextensions-apiserver-dev
readonly SERVER_IMPORT=k8s.io/apiextensions-apiserver
# The oldest Kubernetes minor version the CRD server may have.
readonly MIN_K8S_MINOR=30
readonly MIN_ETCD_MINOR=5

CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
MANIFEST=$CACHE/crd-server.env

log() { printf 'crd-server: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# Sets SERVER_BIN and ETCD_BIN from the manifest; fails unless both are there.
read_manifest() {
  SERVER_BIN="" ETCD_BIN=""
  [[ -f $MANIFEST ]] || return 1
  local key value
  while IFS='=' read -r key value; do
    case $key in
      CRD_SERVER) SERVER_BIN=$value ;;
      CRD_ETCD) ETCD_BIN=$value ;;
    esac
  done <"$MANIFEST"
  [[ -x $SERVER_BIN && -x $ETCD_BIN ]]
}

ensure_binaries() {
  read_manifest && return 0
  mkdir -p "$CACHE"
  # Serialise concurrent builds; the loser then finds the winner's binaries.
  exec 9>"$CACHE/.crd-server.lock"
  flock 9
  if ! read_manifest; then
    # Leftovers of interrupted builds (safe to remove while holding the lock).
    local leftover
    for leftover in "$CACHE"/.crd-work.* "$CACHE"/.crd-trash.*; do discard_dir "$leftover"; done
    WORK=$(mktemp -d "$CACHE/.crd-work.XXXXXX")
    trap 'discard_dir "$WORK"' EXIT
    setup_private_apt
    fetch_etcd
    build_server
    write_atomically "$MANIFEST" "$(printf 'CRD_SERVER=%s\nCRD_ETCD=%s' "$SERVER_BIN" "$ETCD_BIN")"
    discard_dir "$WORK"
    trap - EXIT
    read_manifest || die "the binaries named in $MANIFEST are missing"
  fi
  exec 9>&-
}

# Removes folder $1 without waiting for it: renamed at once, deleted in the
# background. The work folder holds some 50,000 files, and deleting them takes
# minutes on a filesystem mounted with `discard`.
discard_dir() {
  [[ -d $1 ]] || return 0
  local trash
  trash=$(mktemp -u "$CACHE/.crd-trash.XXXXXX")
  mv -f "$1" "$trash" || return 0
  # Detached from this script's output, so that whoever reads it sees its end.
  rm -rf "$trash" >/dev/null 2>&1 &
}

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------

# A private apt configuration naming sid, so the machine's own apt sources,
# lists and cache stay untouched. The mirror is the one of the first Debian
# suite in the system sources (sid's binary packages are on every mirror).
setup_private_apt() {
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg opts=""
  mirror=${BUCKETCORS_DEBIAN_MIRROR:-$(system_apt_sources |
    awk '$2 ~ /^(bullseye|bookworm|trixie|forky|duke|sid|unstable|testing|stable|oldstable)$/ && !found { print $1; found = 1 }')}
  mirror=${mirror:-http://deb.debian.org/debian}
  [[ -f $keyring ]] && opts="[signed-by=$keyring] "
  local dir=$WORK/apt
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  printf 'deb %s%s %s main\n' "$opts" "$mirror" "$DEBIAN_SUITE" >"$dir/sources.list"
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$dir/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::Cache=$dir/cache"
    # Downloads land in directories the unprivileged _apt user cannot write.
    -o "APT::Sandbox::User=root"
    # Only the package lists are needed.
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  )
  log "updating private apt lists ($mirror $DEBIAN_SUITE)"
  apt-get -q "${APT_OPTS[@]}" update >&2
}

# Fails unless sid has package $1 ($2 says what needs it).
require_package() {
  local policy
  policy=$(apt-cache "${APT_OPTS[@]}" policy "$1")
  [[ $policy =~ Candidate:\ ([^[:space:]]+) && ${BASH_REMATCH[1]} != "(none)" ]] ||
    die "Debian $DEBIAN_SUITE no longer has the package $1 ($2)"
}

# Downloads binary packages $2... and unpacks them into $1. Appends
# "PACKAGE VERSION" to $1.versions, and "DIR PACKAGE" to $1.owners for every
# folder below usr/share/gocode/src that holds .go files of the package.
apt_extract() {
  local dest=$1 deb package listing
  shift
  mkdir -p "$WORK/debs" "$dest"
  rm -f "$WORK"/debs/*.deb
  (cd "$WORK/debs" && apt-get -q "${APT_OPTS[@]}" download "$@" >&2) ||
    die "could not download from Debian $DEBIAN_SUITE: $*"
  for deb in "$WORK"/debs/*.deb; do
    package=$(dpkg-deb -f "$deb" Package)
    printf '%s %s\n' "$package" "$(dpkg-deb -f "$deb" Version)" >>"$dest.versions"
    listing=$(dpkg-deb -X "$deb" "$dest")
    awk -v p="$package" 'sub(/^\.\/usr\/share\/gocode\/src\//, "") && sub(/\/[^\/]*\.go$/, "") { print $0, p }' \
      <<<"$listing" | sort -u >>"$dest.owners"
  done
  rm -f "$WORK"/debs/*.deb
}

# Prints the version of package $2 recorded by apt_extract in $1.versions.
extracted_version() {
  awk -v p="$2" '$1 == p { print $2; exit }' "$1.versions"
}

# Prints the golang-*-dev packages that packages $@ depend on (for a virtual
# package, its providers).
go_depends() {
  local deps
  deps=$(apt-cache "${APT_OPTS[@]}" depends --important "$@")
  awk '/^[[:space:]]/ && $NF ~ /^golang-.*-dev$/ { print $NF }' <<<"$deps" | sort -u
}

# Prints the Debian package names that the Go team's naming could give Go
# package $1, longest first (github.com/a/b/c: golang-github-a-b-c-dev, then
# golang-github-a-b-dev; sigs.k8s.io/yaml: golang-k8s-sigs-yaml-dev).
package_names_for() {
  local host=${1%%/*} prefix min=1 parts joined
  IFS=/ read -r -a parts <<<"${1#*/}"
  case $host in
    github.com | gitlab.com) prefix=${host%.com} min=2 ;;
    golang.org) prefix=golang min=2 ;;
    google.golang.org) prefix=google ;;
    sigs.k8s.io) prefix=k8s-sigs ;;
    go.opentelemetry.io) prefix=opentelemetry ;;
    *) prefix=${host%.*} ;;
  esac
  while ((${#parts[@]} >= min)); do
    printf -v joined '%s-' "${parts[@]}"
    joined=${joined,,}
    printf 'golang-%s-%sdev\n' "$prefix" "${joined//_/-}"
    unset 'parts[${#parts[@]}-1]'
  done
}

# Prints, for each Go package $@, the longest package name of package_names_for
# that Debian sid has.
guess_packages() {
  local path name names=()
  for path; do
    while read -r name; do names+=("$name"); done < <(package_names_for "$path")
  done
  ((${#names[@]})) || return 0
  local policy
  policy=$(apt-cache "${APT_OPTS[@]}" policy "${names[@]}" 2>/dev/null)
  local -A known=()
  while read -r name; do
    known[$name]=1
  done < <(awk '/^[^ ].*:$/ { p = substr($0, 1, length($0) - 1) }
                $1 == "Candidate:" && $2 != "(none)" { print p }' <<<"$policy")
  for path; do
    while read -r name; do
      if [[ -n ${known[$name]:-} ]]; then
        printf '%s\n' "$name"
        break
      fi
    done < <(package_names_for "$path")
  done | sort -u
}

write_atomically() {
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" >"$1.tmp.$$"
  mv -f "$1.tmp.$$" "$1"
}

# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------

fetch_etcd() {
  require_package etcd-server "the CRD server's etcd"
  apt_extract "$WORK/etcd" etcd-server
  local bin=$WORK/etcd/usr/bin/etcd out version
  out=$("$bin" --version)
  [[ $out =~ etcd\ Version:\ ([0-9]+)\.([0-9]+)\.([0-9]+) ]] || die "unexpected etcd --version: $out"
  version=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
  ((BASH_REMATCH[1] > 3 || BASH_REMATCH[2] >= MIN_ETCD_MINOR)) ||
    die "Debian $DEBIAN_SUITE's etcd-server is etcd $version; the CRD server needs 3.$MIN_ETCD_MINOR or later"
  ETCD_BIN=$CACHE/etcd-$version/etcd
  install_atomically "$bin" "$ETCD_BIN"
  write_atomically "$CACHE/etcd-$version/VERSION" "$version"
  log "etcd $version ready: $ETCD_BIN"
}

# Runs $@ with the Go toolchain of $GOROOT on the sources of $GOSRC only.
go_env() {
  env -u GOFLAGS -u GOBIN -u GOARCH -u GOOS \
    PATH="$GOROOT/bin:$PATH" \
    GOROOT="$GOROOT" \
    GOPATH="$GOSRC/usr/share/gocode" \
    GOCACHE="$WORK/gocache" \
    XDG_CONFIG_HOME="$WORK/config" \
    GO111MODULE=off \
    GOENV=off \
    GOPROXY=off \
    GOTOOLCHAIN=local \
    CGO_ENABLED=0 \
    "$@"
}

# Unpacks into $GOSRC the golang-*-dev packages that $SERVER_IMPORT imports,
# directly or not, plus some of their Depends: a round fetches the packages
# wanted, runs `go list -deps`, and wants next the not yet fetched Depends of
# every package that provides an imported Go package (or ships none:
# transitional packages), until no import is missing. Depends are not always
# complete (golang-k8s-apiserver-dev declares none, golang-k8s-apimachinery-dev
# gets go-difflib only through testify), so a round first wants the packages
# named after the missing imports (guess_packages), and when neither those nor
# the Depends bring anything new, the Depends of every package fetched so far.
fetch_go_sources() {
  local -A fetched=() expanded=() used=() shipping_go=()
  local wanted=("$SERVER_PACKAGE") round=0 golist path dir package owners pass
  local how="the server's" start=$SECONDS
  while :; do
    round=$((round + 1))
    log "Go sources, round $round: ${#wanted[@]} package(s), $how"
    apt_extract "$GOSRC" "${wanted[@]}"
    for package in "${wanted[@]}"; do fetched[$package]=1; done

    golist=$(go_env go list -e -deps -f '{{if not .Standard}}{{.ImportPath}} {{.Dir}}{{end}}' "$SERVER_IMPORT")
    local dirs=() missing=()
    while read -r path dir; do
      [[ -n $path ]] || continue
      if [[ -n $dir ]]; then dirs+=("$dir"); else missing+=("$path"); fi
    done <<<"$golist"
    ((${#missing[@]} == 0)) && break

    # Who provides what is imported (through symlinked folders too).
    used=() shipping_go=()
    if ((${#dirs[@]})); then
      owners=$(realpath --relative-to="$GOSRC/usr/share/gocode/src" -- "${dirs[@]}" |
        awk 'NR == FNR { owner[$1] = $2; next } $0 in owner { print owner[$0] }' "$GOSRC.owners" - | sort -u)
      for package in $owners; do used[$package]=1; done
    fi
    while read -r _ package; do shipping_go[$package]=1; done <"$GOSRC.owners"
    wanted=()
    how="named after ${#missing[@]} missing Go package(s)"
    for package in $(guess_packages "${missing[@]}"); do
      [[ -n ${fetched[$package]:-} ]] || wanted+=("$package")
    done
    for pass in used all; do
      ((${#wanted[@]})) && break
      how="Depends of the packages in use"
      [[ $pass == all ]] && how="Depends of every package fetched"
      local expand=()
      for package in "${!fetched[@]}"; do
        [[ -n ${expanded[$package]:-} ]] && continue
        if [[ $pass == all || -n ${used[$package]:-} || -z ${shipping_go[$package]:-} ]]; then
          expand+=("$package")
          expanded[$package]=1
        fi
      done
      ((${#expand[@]})) || continue
      for package in $(go_depends "${expand[@]}"); do
        [[ -n ${fetched[$package]:-} ]] || wanted+=("$package")
      done
    done
    ((${#wanted[@]})) ||
      die "Debian $DEBIAN_SUITE has no package (among the Depends of those fetched) providing: ${missing[*]}"
  done
  log "Go sources: ${#fetched[@]} packages in $((SECONDS - start))s"
}

build_server() {
  require_package golang-go "the Go toolchain"
  local deps gopackage
  deps=$(apt-cache "${APT_OPTS[@]}" depends --important golang-go)
  [[ $deps =~ Depends:\ (golang-[0-9.]+)-go ]] || die "cannot tell which Go golang-go of Debian $DEBIAN_SUITE is: $deps"
  gopackage=${BASH_REMATCH[1]}
  require_package "$gopackage-src" "the Go toolchain's standard library"
  require_package "$SERVER_PACKAGE" "the sources of apiextensions-apiserver"
  log "fetching $gopackage from Debian $DEBIAN_SUITE"
  apt_extract "$WORK/go" "$gopackage-go" "$gopackage-src"
  GOROOT=$WORK/go/usr/lib/go-${gopackage#golang-}
  [[ -x $GOROOT/bin/go ]] || die "Go toolchain missing after extraction: $GOROOT"

  GOSRC=$WORK/gosrc
  fetch_go_sources

  local debian_version upstream minor version
  debian_version=$(extracted_version "$GOSRC" "$SERVER_PACKAGE")
  upstream=${debian_version#*:}
  upstream=${upstream%-*}
  upstream=${upstream%%[+~]*}
  [[ $upstream =~ ^0\.([0-9]+)\.([0-9]+)$ ]] || die "unexpected version of $SERVER_PACKAGE: $debian_version"
  minor=${BASH_REMATCH[1]}
  version=v1.$minor.${BASH_REMATCH[2]}
  ((minor >= MIN_K8S_MINOR)) ||
    die "Debian $DEBIAN_SUITE's $SERVER_PACKAGE $debian_version is Kubernetes $version; the CRD server must be v1.$MIN_K8S_MINOR or later"

  # Standalone, nothing else serves /apis: without it kubectl cannot map
  # kinds to resources on this server (it finds apiextensions.k8s.io there,
  # and the custom resources in the aggregated form of discovery).
  local apiserver_go=$GOSRC/usr/share/gocode/src/$SERVER_IMPORT/pkg/apiserver/apiserver.go
  local setting='^\([[:space:]]*c\.GenericConfig\.EnableDiscovery = \)'
  grep -q "${setting}false\$" "$apiserver_go" ||
    die "$SERVER_PACKAGE $debian_version changed: no 'EnableDiscovery = false' in $apiserver_go"
  sed -i "s/${setting}false\$/\1true/" "$apiserver_go"

  # The sources are not a git checkout; pin what the server reports.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=archive"
  done
  log "building apiextensions-apiserver $version ($SERVER_PACKAGE $debian_version) with $gopackage (several CPU-minutes)"
  local start=$SECONDS
  # nice: the build should not starve whatever else runs on the machine.
  go_env nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$WORK/apiextensions-apiserver" "$SERVER_IMPORT" >&2 ||
    die "go build $SERVER_IMPORT failed"
  log "built in $((SECONDS - start))s"

  # The server has no --version; control-plane.sh checks its /version.
  SERVER_BIN=$CACHE/apiextensions-apiserver-$version/apiextensions-apiserver
  install_atomically "$WORK/apiextensions-apiserver" "$SERVER_BIN"
  write_atomically "$CACHE/apiextensions-apiserver-$version/VERSION" "$version"
  log "apiextensions-apiserver $version ready: $SERVER_BIN"
}

cmd_build() {
  local start=$SECONDS
  ensure_binaries
  log "binaries available after $((SECONDS - start))s"
  printf 'CRD_SERVER=%s\nCRD_ETCD=%s\n' "$SERVER_BIN" "$ETCD_BIN"
}

main() {
  case ${1:-} in
    build) cmd_build ;;
    *) usage ;;
  esac
}

# Everything is parsed before anything runs, so editing this file while a
# long build is in progress cannot corrupt the running instance.
main "$@"; exit $?
