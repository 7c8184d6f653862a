#!/usr/bin/env bash
# Makes (or reuses) the Python virtualenv the tests need and prints its directory.
# Cached outside the repository, keyed by the requirements, so a fresh clone reuses it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/tests/requirements.txt"
cache=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
key=$(sha256sum < "$req" | cut -c1-16)
venv="$cache/venv-$key"
# A venv cannot be moved (its scripts name their interpreter by path), so it is built in
# place and marked complete last; a half-built one is thrown away.
if [ ! -e "$venv/.complete" ]; then
  python=${PYTHON:-python3}
  command -v "$python" >/dev/null || { echo "python3 is required" >&2; exit 1; }
  rm -rf "$venv"
  mkdir -p "$cache"
  echo "creating Python environment in $venv" >&2
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
