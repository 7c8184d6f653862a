#!/usr/bin/env bash
# Garage (crate garage from crates.io) on loopback: a single node with sqlite
# metadata and replication factor 1, its layout applied, and one access key.
#
# Usage:
#   garage.sh build        cargo install the pinned version into the cache (about
#                          7 minutes on 2 cores), print the binary path
#   garage.sh cached       print the cached binary's path; fail when there is none
#   garage.sh run DIR      start it (fresh data in DIR), write DIR/env, touch
#                          DIR/ready once it serves S3, stay in the foreground and
#                          stop it on SIGTERM/SIGINT
#
# DIR/env holds GARAGE_ENDPOINT, GARAGE_ACCESS_KEY, GARAGE_SECRET_KEY,
# GARAGE_VERSION, GARAGE_BIN and GARAGE_CONFIG. Buckets meant for browsers and
# preflight requests must be made with
#   "$GARAGE_BIN" -c "$GARAGE_CONFIG" bucket create NAME
#   "$GARAGE_BIN" -c "$GARAGE_CONFIG" bucket allow --read --write --owner --key bucketcors NAME
# because Garage applies CORS rules to OPTIONS requests only for buckets with a
# global alias, and S3's CreateBucket makes a key-local one.
#
# Environment:
#   GARAGE                    use this binary instead of the cached one
#   BUCKETCORS_CACHE          cache root (default: $HOME/.cache/bucketcors)
#   BUCKETCORS_GARAGE_TIMEOUT start-up deadline in seconds (default: 60)
#
# shellcheck disable=SC2317,SC2329 # the stop function is invoked from traps
set -euo pipefail

readonly GARAGE_VERSION=2.5.0
# Only what a single S3 node needs: no LMDB, K2V or metrics (a shorter build).
readonly GARAGE_FEATURES=bundled-libs,sqlite
# Garage's key format: GK + 24 hex digits, and 64 hex digits of secret.
readonly ACCESS_KEY=GK0123456789abcdef01234567
readonly SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
readonly KEY_NAME=bucketcors

CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
TIMEOUT=${BUCKETCORS_GARAGE_TIMEOUT:-60}
CACHED_BIN=$CACHE/garage-$GARAGE_VERSION/bin/garage

log() { printf 'garage: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

find_binary() {
  if [[ -n ${GARAGE:-} ]]; then
    [[ -x $GARAGE ]] || die "GARAGE is not executable: $GARAGE"
    BIN=$GARAGE
    return 0
  fi
  BIN=$CACHED_BIN
  [[ -x $BIN ]]
}

cmd_build() {
  local start=$SECONDS
  if ! find_binary; then
    log "building Garage $GARAGE_VERSION (about 7 minutes on 2 cores)"
    cargo_install_cached garage "$GARAGE_VERSION" "$BIN" \
      --no-default-features --features "$GARAGE_FEATURES"
  fi
  log "binary available after $((SECONDS - start))s"
  printf '%s\n' "$BIN"
}

cmd_cached() {
  find_binary || die "no Garage binary at $CACHED_BIN (scripts/garage.sh build makes one)"
  printf '%s\n' "$BIN"
}

garage() { "$BIN" -c "$DIR/garage.toml" "$@"; }

# Polls `$2...` until it succeeds, the server exits, or the deadline passes.
await() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$PID" 2>/dev/null || ((SECONDS >= deadline)); then
      log "gave up waiting for $what; last lines of $DIR/garage.log:"
      tail -n 40 "$DIR/garage.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

stop_server() {
  [[ -n ${PID:-} ]] || return 0
  stop_child "$PID" TERM
  PID=
}

cmd_run() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  find_binary || die "no Garage binary at $CACHED_BIN (scripts/garage.sh build makes one)"
  rm -rf "$DIR/ready" "$DIR/env" "$DIR/meta" "$DIR/data"
  local s3_port rpc_port version endpoint node
  s3_port=$(free_port)
  rpc_port=$(free_port)
  # "garage cargo:2.5.0 [features: ...]"
  version=$("$BIN" --version)
  [[ $version =~ [0-9]+\.[0-9]+\.[0-9]+ ]] && version=${BASH_REMATCH[0]}
  cat >"$DIR/garage.toml" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
EOF
  endpoint=http://127.0.0.1:$s3_port

  trap 'stop_server' EXIT
  trap 'stop_server; exit 0' TERM INT
  RUST_LOG=garage=info "$BIN" -c "$DIR/garage.toml" server </dev/null >"$DIR/garage.log" 2>&1 &
  PID=$!
  echo "$PID" >"$DIR/garage.pid"

  await "the node to answer" garage status
  node=$(garage node id -q 2>/dev/null | cut -d@ -f1)
  [[ $node =~ ^[0-9a-f]{64}$ ]] || die "unexpected node id: $node"
  garage layout assign -z local -c 1G "$node" >/dev/null
  garage layout apply --version 1 >/dev/null
  garage key import --yes -n "$KEY_NAME" "$ACCESS_KEY" "$SECRET_KEY" >/dev/null
  garage key allow --create-bucket "$KEY_NAME" >/dev/null
  await "the S3 API" answers_http "$endpoint"
  # The layout takes effect asynchronously: a bucket can be made once it has.
  await "the layout to take effect" garage bucket create bucketcors-probe

  {
    printf 'GARAGE_ENDPOINT=%s\n' "$endpoint"
    printf 'GARAGE_ACCESS_KEY=%s\n' "$ACCESS_KEY"
    printf 'GARAGE_SECRET_KEY=%s\n' "$SECRET_KEY"
    printf 'GARAGE_VERSION=%s\n' "$version"
    printf 'GARAGE_BIN=%s\n' "$BIN"
    printf 'GARAGE_CONFIG=%s\n' "$DIR/garage.toml"
  } >"$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
  touch "$DIR/ready"
  log "ready at $endpoint"
  wait "$PID" || true
  PID=
  log "Garage exited; last lines of $DIR/garage.log:"
  tail -n 20 "$DIR/garage.log" >&2 || true
  exit 1
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    build) cmd_build ;;
    cached) cmd_cached ;;
    run) cmd_run "$@" ;;
    *) usage ;;
  esac
}

# Everything is parsed before anything runs, so editing this file while it is
# running cannot corrupt the running instance.
main "$@"; exit $?
