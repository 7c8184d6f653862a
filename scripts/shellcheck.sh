#!/usr/bin/env bash
# Runs shellcheck on every shell script of the project (installing Debian's shellcheck when
# it is missing), so that `make lint` fails on what shellcheck finds.
set -euo pipefail

log() { printf 'shellcheck: %s\n' "$*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v shellcheck >/dev/null; then
  log "installing Debian's shellcheck"
  # Waits for another apt-get (e.g. a concurrent Ceph install) instead of failing.
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends shellcheck >&2
fi
cd "$root"
scripts=(scripts/*.sh .ci/run)
shellcheck --external-sources "${scripts[@]}"
log "${#scripts[@]} scripts clean ($(shellcheck --version | sed -n 's/^version: //p'))"
