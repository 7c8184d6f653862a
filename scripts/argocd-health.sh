#!/usr/bin/env bash
# Runs the Argo CD health checks in argocd/resource_customizations/ the way Argo CD's own
# test of its built-in checks does: for every `health_test.yaml`, each `inputPath` object is
# given to `health.lua` as the global `obj`, and the status and message it returns must be
# the expected ones. The interpreter is Debian's Lua 5.1 (Argo CD embeds gopher-lua, a Lua
# 5.1), installed when missing. The YAML is read by the project's Python environment
# (scripts/python-env.sh), which turns each object into a Lua table.
#
# Usage: argocd-health.sh        (part of make test)
#
# It also fails when a testdata file is not used by any test, or a test names a file that
# does not exist, and it checks that a broken script is caught (a check that cannot fail
# proves nothing).
set -euo pipefail

log() { printf 'argocd-health: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v lua5.1 >/dev/null; then
  ((EUID == 0)) || die "installing lua5.1 needs root"
  log "installing Debian's lua5.1"
  # Waits for another apt-get (e.g. a concurrent Ceph install) instead of failing.
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 \
    install -y --no-install-recommends lua5.1 >&2
fi
lua_version=$(lua5.1 -v 2>&1)
[[ $lua_version == "Lua 5.1"* ]] || die "lua5.1 is not Lua 5.1: $lua_version"
venv=${BUCKETCORS_VENV:-$("$root/scripts/python-env.sh")}

exec "$venv/bin/python3" - "$root/argocd/resource_customizations" "$lua_version" <<'PY'
import json, pathlib, subprocess, sys, tempfile
import yaml

base, lua_version = pathlib.Path(sys.argv[1]), sys.argv[2]

def lua(value):
    """A Lua literal for a JSON-like value, as gopher-lua sees a converted object."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid Lua 5.1 string literal here
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))

RUNNER = """
local script = assert(loadfile(arg[1]))
local hs = script()
io.write(tostring(hs.status), "\\n", tostring(hs.message))
"""

def health(script, obj):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("obj = " + lua(obj) + "\n" + RUNNER)
    try:
        out = subprocess.run(["lua5.1", f.name, str(script)], capture_output=True, text=True)
    finally:
        pathlib.Path(f.name).unlink()
    if out.returncode != 0:
        return None, out.stderr.strip()
    status, _, message = out.stdout.partition("\n")
    return status, message

def run(script, tests, kind_dir):
    failures, used = [], set()
    for t in tests:
        path = kind_dir / t["inputPath"]
        used.add(path.resolve())
        if not path.exists():
            failures.append(f"{path}: missing")
            continue
        obj = yaml.safe_load(path.read_text())
        status, message = health(script, obj)
        want = t["healthStatus"]
        if (status, message) != (want["status"], want.get("message", "")):
            failures.append(f"{t['inputPath']}: got {status!r} {message!r}, want {want['status']!r} {want.get('message', '')!r}")
    return failures, used

total, failures = 0, []
kinds = sorted(p.parent for p in base.glob("*/*/health.lua"))
if not kinds:
    sys.exit("argocd-health: no health.lua found")
for kind_dir in kinds:
    script = kind_dir / "health.lua"
    tests = yaml.safe_load((kind_dir / "health_test.yaml").read_text())["tests"]
    got, used = run(script, tests, kind_dir)
    failures += [f"{kind_dir.relative_to(base)}: {f}" for f in got]
    unused = {p.resolve() for p in (kind_dir / "testdata").glob("*.yaml")} - used
    failures += [f"{kind_dir.relative_to(base)}: {p.name} is not used by any test" for p in sorted(unused)]
    statuses = sorted({t["healthStatus"]["status"] for t in tests})
    print(f"argocd-health: {kind_dir.relative_to(base)}: {len(tests)} cases ({', '.join(statuses)})", file=sys.stderr)
    total += len(tests)
    # The same tests against a script that always says Healthy must fail, or they prove nothing.
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('return {status = "Healthy", message = ""}\n')
    broken, _ = run(pathlib.Path(f.name), tests, kind_dir)
    pathlib.Path(f.name).unlink()
    if not broken:
        failures.append(f"{kind_dir.relative_to(base)}: the tests pass with a script that always says Healthy")

if failures:
    print("\n".join(f"argocd-health: FAIL {f}" for f in failures), file=sys.stderr)
    sys.exit(1)
print(f"argocd-health: {total} cases pass under {lua_version}", file=sys.stderr)
PY
