#!/usr/bin/env bash
# The operator's container image, built on this machine with nothing pulled: the
# release binary and exactly what it needs at run time, all taken from Debian
# packages, in an image FROM scratch.
#
# Usage:
#   image.sh rootfs BINARY DEST   lay out the image's root file system in DEST (the
#                                 Dockerfile's build stage runs this too)
#   image.sh build                build the release binary, its root file system and
#                                 the image (podman), export it as an OCI archive;
#                                 prints the archive's path
#   image.sh ref                  print the image reference `build` tags
#   image.sh podman ARGS...       run podman on the storage `build` uses (e.g. to run
#                                 or inspect the image)
#   image.sh pause                the pod sandbox ("pause") image scripts/cluster.sh
#                                 gives containerd: a static program built with gcc,
#                                 cached as an OCI archive; prints its path, then its
#                                 reference
#
# The root file system: /usr/local/bin/bucketcors; the dynamic loader and each
# shared library the binary needs (its NEEDED entries, followed through the
# libraries' own), copied from the Debian packages that ship them, at the paths
# those packages use; /etc/ssl/certs/ca-certificates.crt made from the
# ca-certificates package the way update-ca-certificates makes it; /etc/passwd
# and /etc/group naming user and group 65532 (nonroot); each package's copyright
# file. No shell, no package manager, nothing else.
#
# `build` runs podman (Debian's 4.3, installed here when missing) with storage of
# its own under target/image/, runc as the runtime (crun refuses hybrid cgroup v1
# hosts) and ulimits within the machine's hard limits, through a containers.conf
# passed with CONTAINERS_CONF. The Containerfile is the Dockerfile's last stage,
# with the root file system copied from the build folder instead of the build
# stage: both produce the same layout.
#
# Environment:
#   BUCKETCORS_IMAGE_SOURCE   org.opencontainers.image.source label
#                             (default: https://github.com/bucketcors/bucketcors)
set -euo pipefail

log() { printf 'image: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
readonly ROOT
readonly IMAGE_NAME=localhost/bucketcors
readonly NONROOT=65532
readonly PODMAN_PACKAGES=(podman runc conmon containernetworking-plugins)
readonly PAUSE_REF=localhost/bucketcors/pause:1
CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}

version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1; }

# Waits for another apt-get instead of failing.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends "$@" >&2
}

# Downloads Debian package $1 at the version installed here (the one the binary
# was linked against) into the current folder, updating the lists once if needed.
download_installed() {
  local package=$1 version
  version=$(dpkg-query -W -f='${Version}' "$package") || die "$package is not installed"
  # Into a folder the unprivileged _apt user cannot write: download as root.
  apt-get -q -o APT::Sandbox::User=root download "$package=$version" >&2 ||
    { apt-get -q update >&2 && apt-get -q -o APT::Sandbox::User=root download "$package=$version" >&2; } ||
    die "cannot download $package $version"
}

# The Debian package that installed file $1 (merged /usr: try both spellings).
package_of() {
  local path=$1 alt owner
  alt=${path#/usr}
  [[ $alt == "$path" ]] && alt=/usr$path
  owner=$(dpkg-query -S "$path" 2>/dev/null || dpkg-query -S "$alt" 2>/dev/null) ||
    die "no installed package ships $path"
  owner=${owner%%:*}
  printf '%s\n' "${owner%%,*}"
}

# Prints the shared libraries binary $1 loads, one resolved path a line, and its
# loader, as ldd resolves them here.
needed_libraries() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

cmd_rootfs() {
  local binary=${1:-} dest=${2:-}
  [[ -x $binary && -n $dest ]] || usage
  command -v ldd >/dev/null || die "ldd is required"
  rm -rf "$dest"
  mkdir -p "$dest"
  dest=$(cd "$dest" && pwd)
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT

  local interp libs=() lib
  interp=$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  [[ -n $interp ]] || die "$binary is not dynamically linked"
  mapfile -t libs < <(needed_libraries "$binary" | sort -u)
  ((${#libs[@]} > 0)) || die "ldd found no libraries for $binary"

  # Library (by file name) -> package, then each package once.
  declare -A packages=()
  for lib in "${libs[@]}"; do packages[$(package_of "$lib")]=1; done
  packages[ca-certificates]=1
  local package deb
  mkdir -p "$work/debs"
  for package in "${!packages[@]}"; do
    (cd "$work/debs" && download_installed "$package")
  done
  for deb in "$work"/debs/*.deb; do
    package=$(dpkg-deb -f "$deb" Package)
    mkdir -p "$work/pkg/$package"
    dpkg-deb -x "$deb" "$work/pkg/$package"
    printf '%s %s\n' "$package" "$(dpkg-deb -f "$deb" Version)" >>"$work/versions"
  done

  # Each library from its package: the path the package puts it at, following
  # symlinks inside the package (the loader's /lib64 link among them).
  local name found rel target
  for lib in "${libs[@]}" "$interp"; do
    name=$(basename "$lib")
    package=$(package_of "$lib")
    # The path asked for, in either merged-/usr spelling, else any file of that name.
    rel=""
    for found in "${lib#/}" "${lib#/usr/}" "usr/${lib#/}"; do
      if [[ -e $work/pkg/$package/$found || -L $work/pkg/$package/$found ]]; then
        rel=$found
        break
      fi
    done
    if [[ -z $rel ]]; then
      found=$(cd "$work/pkg/$package" && find . \( -type f -o -type l \) -name "$name" -print | sort | head -n 1)
      [[ -n $found ]] || die "package $package has no $name"
      rel=${found#./}
    fi
    while :; do
      mkdir -p "$dest/$(dirname "$rel")"
      if [[ -L $work/pkg/$package/$rel ]]; then
        target=$(readlink "$work/pkg/$package/$rel")
        ln -sfn "$target" "$dest/$rel"
        if [[ $target == /* ]]; then rel=${target#/}; else rel=$(dirname "$rel")/$target; fi
      else
        cp "$work/pkg/$package/$rel" "$dest/$rel"
        break
      fi
    done
  done
  # The loader's path as the binary asks for it must exist in the image.
  [[ -e $dest$interp || -L $dest$interp ]] || die "the loader $interp is not in the image"

  # update-ca-certificates' bundle: every certificate the package ships, sorted.
  mkdir -p "$dest/etc/ssl/certs"
  find "$work/pkg/ca-certificates/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
    xargs -0 cat >"$dest/etc/ssl/certs/ca-certificates.crt"
  grep -q 'BEGIN CERTIFICATE' "$dest/etc/ssl/certs/ca-certificates.crt" || die "no CA certificates"

  # Each package's copyright; a package whose doc folder links to another's (libgcc-s1 to
  # gcc-12-base) gets that link and the other package's copyright.
  local doc other
  for package in "${!packages[@]}"; do
    doc=$work/pkg/$package/usr/share/doc/$package
    mkdir -p "$dest/usr/share/doc"
    if [[ -L $doc ]]; then
      other=$(readlink "$doc")
      [[ $other != */* ]] || die "unexpected doc link of $package: $other"
      ln -sfn "$other" "$dest/usr/share/doc/$package"
      (cd "$work/debs" && rm -f ./*.deb && download_installed "$other")
      mkdir -p "$work/pkg/$other" "$dest/usr/share/doc/$other"
      dpkg-deb -x "$work"/debs/"$other"_*.deb "$work/pkg/$other"
      printf '%s %s\n' "$other" "$(dpkg-deb -f "$work"/debs/"$other"_*.deb Version)" >>"$work/versions"
      doc=$work/pkg/$other/usr/share/doc/$other
      package=$other
    fi
    mkdir -p "$dest/usr/share/doc/$package"
    cp "$doc/copyright" "$dest/usr/share/doc/$package/"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$NONROOT" "$NONROOT" >"$dest/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT" >"$dest/etc/group"
  mkdir -p "$dest/usr/local/bin" "$dest/home/nonroot" "$dest/tmp"
  chmod 1777 "$dest/tmp"
  cp "$binary" "$dest/usr/local/bin/bucketcors"
  strip "$dest/usr/local/bin/bucketcors" 2>/dev/null || true
  chmod 0755 "$dest/usr/local/bin/bucketcors"
  sort "$work/versions" >"$dest/usr/share/doc/packages.txt"
  log "root file system in $dest: $(du -sh "$dest" | cut -f1), from $(tr '\n' ' ' <"$dest/usr/share/doc/packages.txt")"
}

# The Containerfile podman builds: the Dockerfile's last stage, copying the root
# file system from the build context instead of the build stage.
containerfile() {
  local stage
  stage=$(awk '/^FROM /{ last = NR } { line[NR] = $0 } END { for (i = last; i <= NR; i++) print line[i] }' \
    "$ROOT/Dockerfile")
  [[ $stage == "FROM scratch"* ]] || die "the Dockerfile's last stage is not FROM scratch"
  grep -qx 'COPY --from=build /rootfs/ /' <<<"$stage" || die "the Dockerfile's last stage does not copy /rootfs/ from the build stage"
  printf '%s\n' "${stage/$'\n'COPY --from=build \/rootfs\/ \/$'\n'/$'\n'COPY rootfs\/ \/$'\n'}"
}

cmd_ref() { printf '%s:%s\n' "$IMAGE_NAME" "$(version)"; }

# podman with storage, configuration and runtime of its own in $STATE (nothing
# in the machine's /var/lib/containers).
podman_() {
  CONTAINERS_CONF=$STATE/containers.conf podman --root "$STATE/storage" --runroot "$RUNROOT" \
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend none "$@"
}

# Installs podman when missing, writes $STATE/containers.conf and makes RUNROOT
# (podman's transient state: at most 50 characters, the same for the same storage),
# which the caller removes.
setup_podman() {
  local missing=() package status
  for package in "${PODMAN_PACKAGES[@]}"; do
    # Captured, then matched: `grep -q` under pipefail can kill dpkg-query with SIGPIPE.
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == *"ok installed"* ]] || missing+=("$package")
  done
  if ((${#missing[@]} > 0)); then
    ((EUID == 0)) || die "installing ${missing[*]} needs root"
    log "installing ${missing[*]} from Debian"
    apt_install "${missing[@]}"
  fi
  mkdir -p "$STATE"
  # Named after the storage, which records it.
  RUNROOT=/tmp/bucketcors-podman-$(sha256sum <<<"$STATE" | cut -c1-12)
  mkdir -p "$RUNROOT"
  cat >"$STATE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
EOF
}

cmd_pause() {
  local dir=$CACHE/pause-1 archive
  archive=$dir/pause.oci.tar
  if [[ ! -f $archive ]]; then
    command -v gcc >/dev/null || die "gcc is required to build the pause program"
    mkdir -p "$CACHE"
    local work
    work=$(mktemp -d "$CACHE/.pause-work.XXXXXX")
    STATE=$work/podman
    setup_podman
    # shellcheck disable=SC2064 # expand now: both are local
    trap "rm -rf '$work' '$RUNROOT'" EXIT
    mkdir -p "$work/context"
    # What a pod's sandbox container does: hold the namespaces, reap orphans, stop on a signal.
    cat >"$work/pause.c" <<'EOF'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction action = {0};
  action.sa_handler = stop;
  sigaction(SIGINT, &action, 0);
  sigaction(SIGTERM, &action, 0);
  action.sa_handler = reap;
  action.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &action, 0);
  for (;;) pause();
}
EOF
    gcc -static -Os -Wall -Werror -o "$work/context/pause" "$work/pause.c"
    strip "$work/context/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$work/context/Containerfile"
    podman_ build --network none --pull=never --timestamp 0 -t "$PAUSE_REF" \
      -f "$work/context/Containerfile" "$work/context" >&2
    mkdir -p "$dir"
    podman_ save --format oci-archive -o "$work/pause.oci.tar" "$PAUSE_REF" >&2
    mv -f "$work/pause.oci.tar" "$archive"
    rm -rf "$work" "$RUNROOT"
    trap - EXIT
    log "pause image ready: $archive"
  fi
  printf '%s\n%s\n' "$archive" "$PAUSE_REF"
}

cmd_build() {
  local start=$SECONDS
  STATE=$ROOT/target/image
  setup_podman
  # shellcheck disable=SC2064 # expand now
  trap "rm -rf '$RUNROOT'" EXIT
  log "building the release binary"
  (cd "$ROOT" && nice -n 10 cargo build --release --locked --bin bucketcors >&2)
  local context=$STATE/context
  rm -rf "$context"
  mkdir -p "$context"
  cmd_rootfs "$ROOT/target/release/bucketcors" "$context/rootfs"
  containerfile >"$context/Containerfile"
  local ref revision
  ref=$(cmd_ref)
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  if [[ $revision != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then
    revision=$revision-dirty
  fi
  log "building $ref (revision $revision)"
  podman_ build --network none --pull=never --timestamp 0 \
    --build-arg "VERSION=$(version)" --build-arg "REVISION=$revision" \
    --build-arg "SOURCE=${BUCKETCORS_IMAGE_SOURCE:-https://github.com/bucketcors/bucketcors}" \
    -t "$ref" -f "$context/Containerfile" "$context" >&2
  local archive
  archive=$STATE/bucketcors-$(version).oci.tar
  rm -f "$archive"
  podman_ save --format oci-archive -o "$archive" "$ref" >&2
  local size
  size=$(podman_ image inspect --format '{{.Size}}' "$ref")
  rm -rf "$RUNROOT"
  log "built $ref in $((SECONDS - start))s: $size bytes unpacked, $(stat -c %s "$archive") bytes as $archive"
  printf '%s\n' "$archive"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    rootfs) cmd_rootfs "$@" ;;
    build) cmd_build ;;
    ref) cmd_ref ;;
    pause) cmd_pause ;;
    podman)
      STATE=$ROOT/target/image
      setup_podman
      # shellcheck disable=SC2064 # expand now
      trap "rm -rf '$RUNROOT'" EXIT
      podman_ "$@"
      ;;
    *) usage ;;
  esac
}

main "$@"
