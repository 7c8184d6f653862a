#!/usr/bin/env bash
# s3s-fs (crate s3s-fs from crates.io) on loopback: a real S3 server that
# answers 501 NotImplemented to the bucket CORS operations, i.e. a store that
# does not support CORS at all.
#
# Usage:
#   s3s-fs.sh build        cargo install the pinned version into the cache,
#                          print the binary path
#   s3s-fs.sh run DIR      start it (fresh data in DIR/data, log in DIR/s3s-fs.log),
#                          write DIR/env, touch DIR/ready once it answers HTTP,
#                          stay in the foreground and stop it on SIGTERM/SIGINT
#
# DIR/env holds S3S_ENDPOINT, S3S_ACCESS_KEY, S3S_SECRET_KEY and S3S_VERSION.
#
# Environment:
#   S3S_FS                 use this binary instead of building one
#   BUCKETCORS_CACHE       cache root (default: $HOME/.cache/bucketcors)
#   BUCKETCORS_S3S_TIMEOUT start-up deadline in seconds (default: 30)
#
# shellcheck disable=SC2317,SC2329 # the stop function is invoked from traps
set -euo pipefail

# 0.15 and later require a newer Rust (1.96) than the project's toolchain.
readonly S3S_FS_VERSION=0.14.1
readonly ACCESS_KEY=bucketcorsaccess
readonly SECRET_KEY=bucketcorssecret0123456789

CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
TIMEOUT=${BUCKETCORS_S3S_TIMEOUT:-30}
CACHED_BIN=$CACHE/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs

log() { printf 's3s-fs: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

ensure_binary() {
  if [[ -n ${S3S_FS:-} ]]; then
    # An override is the caller's promise; a wrong one must fail, not build.
    [[ -x $S3S_FS ]] || die "S3S_FS is not executable: $S3S_FS"
    BIN=$S3S_FS
    return 0
  fi
  BIN=$CACHED_BIN
  [[ -x $BIN ]] || log "building s3s-fs $S3S_FS_VERSION (takes a few minutes)"
  cargo_install_cached s3s-fs "$S3S_FS_VERSION" "$BIN" --features binary
}

cmd_build() {
  local start=$SECONDS
  ensure_binary
  log "binary available after $((SECONDS - start))s"
  printf '%s\n' "$BIN"
}

stop_server() {
  [[ -n ${PID:-} ]] || return 0
  # s3s-fs shuts down gracefully only on SIGINT (it dies on TERM).
  stop_child "$PID" INT
  PID=
}

cmd_run() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  ensure_binary
  # A fresh, empty store each run, like rgw.sh.
  rm -rf "$DIR/ready" "$DIR/env" "$DIR/data"
  mkdir -p "$DIR/data"
  local logfile=$DIR/s3s-fs.log version
  version=$("$BIN" --version | awk '{ print $NF }')

  trap 'stop_server' EXIT
  trap 'stop_server; exit 0' TERM INT
  # Port 0 lets the kernel choose, so there is no race for a free port; the
  # chosen address is read back from the start-up log line.
  RUST_LOG=s3s_fs=info "$BIN" --host 127.0.0.1 --port 0 \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DIR/data" \
    </dev/null >"$logfile" 2>&1 &
  PID=$!
  echo "$PID" >"$DIR/s3s-fs.pid"

  local endpoint="" deadline=$((SECONDS + TIMEOUT))
  until [[ -n $endpoint ]] && answers_http "$endpoint"; do
    if ! kill -0 "$PID" 2>/dev/null || ((SECONDS >= deadline)); then
      log "s3s-fs did not start; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.1
    [[ -n $endpoint ]] ||
      endpoint=$(grep -o 'server is running at http://[0-9.:]*' "$logfile" | awk '{ print $NF }' || true)
  done

  {
    printf 'S3S_ENDPOINT=%s\n' "$endpoint"
    printf 'S3S_ACCESS_KEY=%s\n' "$ACCESS_KEY"
    printf 'S3S_SECRET_KEY=%s\n' "$SECRET_KEY"
    printf 'S3S_VERSION=%s\n' "$version"
  } >"$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
  touch "$DIR/ready"
  log "ready at $endpoint"
  # Returns when the server exits; a signal runs the TERM/INT trap instead.
  wait "$PID" || true
  PID=
  log "s3s-fs exited; last lines of $logfile:"
  tail -n 20 "$logfile" >&2 || true
  exit 1
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) cmd_build ;;
    run) cmd_run "$@" ;;
    *) usage ;;
  esac
}

# Everything is parsed before anything runs, so editing this file while it is
# running cannot corrupt the running instance.
main "$@"; exit $?
