#!/usr/bin/env bash
# Headless Chromium driven by Node (playwright-core), for the browser CORS tests
# (tests/it/browser.rs): a real browser's fetch() decides whether a bucket's
# CORS rules let a page on another origin read or write.
#
# Usage:
#   browser.sh install     apt-get install Debian's chromium if /usr/bin/chromium is
#                          missing; npm ci tests/browser into the cache; print the
#                          node_modules directory (usable as NODE_PATH)
#   browser.sh fetch ARGS  install, then run tests/browser/fetch.mjs ARGS
#
# Nothing is downloaded by Playwright itself: playwright-core never fetches a
# browser, and fetch.mjs launches /usr/bin/chromium.
#
# Environment:
#   BUCKETCORS_CACHE   cache root (default: $HOME/.cache/bucketcors); node_modules
#                      go to $BUCKETCORS_CACHE/browser-node/<hash of package*.json>
#   CHROMIUM           the browser binary (default: /usr/bin/chromium)
#
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
readonly ROOT
readonly PROJECT=$ROOT/tests/browser
CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

log() { printf 'browser: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

install_chromium() {
  [[ -x $CHROMIUM ]] && return 0
  [[ $CHROMIUM == /usr/bin/chromium ]] || die "$CHROMIUM is not an executable"
  ((EUID == 0)) || die "installing chromium needs root (or set CHROMIUM to a browser binary)"
  local start=$SECONDS
  log "installing chromium from Debian"
  # Waits for another apt-get (e.g. a concurrent Ceph install) instead of failing.
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends chromium >&2
  [[ -x $CHROMIUM ]] || die "apt-get installed chromium but $CHROMIUM is missing"
  log "installed after $((SECONDS - start))s: $("$CHROMIUM" --version 2>/dev/null)"
}

# Prints the node_modules directory for the current package-lock.json, making it
# when missing. Built in a temporary directory and renamed into place, so a
# half-installed tree is never used; a lock serialises concurrent installs.
install_node_modules() {
  command -v node >/dev/null || die "node is required (Node 20 or later)"
  command -v npm >/dev/null || die "npm is required"
  local key dir
  key=$(cat "$PROJECT/package.json" "$PROJECT/package-lock.json" | sha256sum | cut -c1-16)
  dir=$CACHE/browser-node/$key
  if [[ ! -d $dir/node_modules ]]; then
    mkdir -p "$CACHE/browser-node"
    exec 9>"$CACHE/browser-node/.lock"
    flock 9
    if [[ ! -d $dir/node_modules ]]; then
      local start=$SECONDS tmp
      tmp=$(mktemp -d "$CACHE/browser-node/.tmp-XXXXXX")
      chmod 755 "$tmp"
      trap 'rm -rf "$tmp"' EXIT
      cp "$PROJECT/package.json" "$PROJECT/package-lock.json" "$tmp/"
      log "npm ci into $dir"
      (cd "$tmp" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund \
        --loglevel=error >&2)
      rm -rf "$dir"
      mv "$tmp" "$dir"
      trap - EXIT
      log "node modules installed after $((SECONDS - start))s"
    fi
    flock -u 9
  fi
  echo "$dir/node_modules"
}

cmd_install() {
  install_chromium
  install_node_modules
}

cmd_fetch() {
  local modules
  modules=$(cmd_install)
  NODE_PATH=$modules CHROMIUM=$CHROMIUM exec node "$PROJECT/fetch.mjs" "$@"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    fetch) cmd_fetch "$@" ;;
    *) usage ;;
  esac
}

main "$@"; exit $?
