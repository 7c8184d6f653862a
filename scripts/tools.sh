#!/usr/bin/env bash
# Makes sure the command-line tools the tests and the demo call are on hand, and links them
# into one directory ($BUCKETCORS_CACHE/bin) that the Makefile puts on PATH.
#
# Usage: tools.sh            ensure every tool, print the bin directory
#
# kubectl: the one on PATH when there is one; otherwise Debian's kubernetes-client package
# (kubectl 1.20), unpacked into the cache, never installed system-wide.
set -euo pipefail

cache=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
bin=$cache/bin
mkdir -p "$bin"

log() { printf 'tools: %s\n' "$*" >&2; }

ensure_kubectl() {
  local own
  own=$(PATH=${PATH//$bin:/} command -v kubectl || true)
  if [[ -n $own ]]; then
    ln -sf "$own" "$bin/kubectl"
    return
  fi
  local dest=$cache/kubectl-debian
  if [[ ! -x $dest/usr/bin/kubectl ]]; then
    log "no kubectl on PATH: unpacking Debian's kubernetes-client"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && { apt-get download kubernetes-client >&2 || { apt-get update -qq >&2 && apt-get download kubernetes-client >&2; }; })
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$dest.tmp"
    rm -rf "$dest" "$tmp" && mv "$dest.tmp" "$dest"
  fi
  ln -sf "$dest/usr/bin/kubectl" "$bin/kubectl"
}

ensure_python_tools() {
  local venv
  venv=$("$(dirname "$0")/python-env.sh")
  ln -sf "$venv/bin/aws" "$bin/aws"
  ln -sf "$venv/bin/moto_server" "$bin/moto_server"
}

ensure_kubectl
ensure_python_tools
echo "$bin"
