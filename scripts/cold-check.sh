#!/usr/bin/env bash
# `make test` as a machine that has never seen the project runs it: a fresh clone of HEAD in a
# scratch folder (so a fresh target directory), with an empty tools cache and empty crate,
# pip and npm download caches, run the way CI runs it (`CI=true bash .ci/run`).
#
# Usage: cold-check.sh          (make cold-check)
#
# Environment:
#   BUCKETCORS_COLD_DIR   scratch folder (default: a new folder under ${TMPDIR:-/tmp});
#                         removed after a green run, kept after a failure for its logs
#
# What stays warm: Debian packages installed system-wide by earlier runs (Ceph, Chromium and
# the linter) and the Rust toolchain itself; everything the project builds or downloads into
# its own caches starts from nothing.
set -euo pipefail

log() { printf 'cold-check: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no) ]]; then
  log "warning: uncommitted changes are not part of the check (it clones HEAD)"
fi

scratch=${BUCKETCORS_COLD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/bucketcors-cold.XXXXXX")}
mkdir -p "$scratch"
[[ -z $(ls -A "$scratch") ]] || die "$scratch is not empty"
log "scratch folder: $scratch"

git clone --quiet --no-local "$root" "$scratch/src"
log "testing $(git -C "$scratch/src" log -1 --format='%h %s')"

# rustup's proxies stay on PATH; only the download caches move.
cargo_bin=$(dirname "$(command -v cargo)")
start=$SECONDS
rc=0
(
  cd "$scratch/src"
  env -u CARGO_TARGET_DIR CI=true \
    PATH="$cargo_bin:$PATH" \
    BUCKETCORS_CACHE="$scratch/cache" \
    CARGO_HOME="$scratch/cargo-home" \
    PIP_CACHE_DIR="$scratch/pip-cache" \
    npm_config_cache="$scratch/npm-cache" \
    bash .ci/run </dev/null
) >"$scratch/run.log" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
printf -v took '%dm%02ds' $((elapsed / 60)) $((elapsed % 60))

if ((rc != 0)); then
  tail -n 60 "$scratch/run.log" >&2
  die "make test failed after $took (exit $rc); the log is $scratch/run.log"
fi
# The test runner's own summary lines, so the result can be read without the log.
grep -E '^test result:|passed, .* failed' "$scratch/run.log" >&2 || true
log "green in $took from an empty cache"
rm -rf "$scratch"
