#!/usr/bin/env bash
# Makes sure the command-line tools the tests and the demo call are on hand, and links them
# into one directory ($BUCKETCORS_CACHE/bin) that the Makefile puts on PATH.
#
# Usage: tools.sh            ensure every tool, print the bin directory
#        tools.sh promtool   ensure promtool alone, print its path
#
# kubectl: the one on PATH when there is one; otherwise Debian's kubernetes-client package
# (kubectl 1.20), unpacked into the cache, never installed system-wide.
# promtool and prometheus: likewise, the ones on PATH, or those of Debian's prometheus package
# (2.42 on Debian 12), unpacked into the cache. promtool checks and unit-tests the chart's
# alerting rules and the operator's /metrics; the integration tests run the server against a
# real operator with the chart's rules.
set -euo pipefail

cache=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
bin=$cache/bin
mkdir -p "$bin"

log() { printf 'tools: %s\n' "$*" >&2; }

# unpack_debian PACKAGE DEST: extracts Debian's PACKAGE (downloaded with apt-get, not
# installed) into DEST, built aside and renamed into place.
unpack_debian() {
  local package=$1 dest=$2
  log "unpacking Debian's $package into $dest"
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt-get downloads as its own user where it can
  (cd "$tmp" && { apt-get download "$package" >&2 || { apt-get update -qq >&2 && apt-get download "$package" >&2; }; })
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  dpkg-deb -x "$tmp/${package}"_*.deb "$dest.tmp"
  rm -rf "$dest" "$tmp" && mv "$dest.tmp" "$dest"
}

# link_tool NAME PACKAGE DIR: links NAME into $bin: the one on PATH when there is one,
# otherwise usr/bin/NAME of Debian's PACKAGE, unpacked into $cache/DIR.
link_tool() {
  local name=$1 package=$2 dest=$cache/$3 own
  own=$(PATH=${PATH//$bin:/} command -v "$name" || true)
  if [[ -n $own ]]; then
    ln -sf "$own" "$bin/$name"
    return
  fi
  [[ -x $dest/usr/bin/$name ]] || unpack_debian "$package" "$dest"
  ln -sf "$dest/usr/bin/$name" "$bin/$name"
}

ensure_python_tools() {
  local venv
  venv=$("$(dirname "$0")/python-env.sh")
  ln -sf "$venv/bin/aws" "$bin/aws"
  ln -sf "$venv/bin/moto_server" "$bin/moto_server"
}

if [[ ${1:-} == promtool ]]; then
  link_tool promtool prometheus prometheus-debian
  "$bin/promtool" --version >/dev/null
  echo "$bin/promtool"
  exit 0
fi
link_tool kubectl kubernetes-client kubectl-debian
link_tool promtool prometheus prometheus-debian
link_tool prometheus prometheus prometheus-debian
ensure_python_tools
echo "$bin"
