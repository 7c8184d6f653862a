#!/usr/bin/env bash
# The chart installed the way users install it, into a real single-node cluster
# (scripts/cluster.sh), running the image `make image` builds (scripts/image.sh),
# against moto on the host's address on the pod network.
#
# Usage: install-check.sh     run every check; prints "install-check: N passed, M failed"
#
# What it does, in order (each check waits for its condition with a deadline):
#   - the image: labels, user 65532, no shell, runs under podman (runc);
#   - the cluster up, the image imported into containerd;
#   - the chart as shipped is refused by this v1.20 cluster (kubeVersion >=1.25); the
#     BucketCors and ClusterBucketStore CRDs are applied to the CRD server (v1.36,
#     aggregated behind kube-apiserver), and a copy of the chart that differs only in
#     kubeVersion is installed with crds.install=false, the image reference, the
#     tenancy values an in-cluster http endpoint needs, and tenantSecrets=true (the tenants
#     below name Secrets of their own namespaces);
#   - the pod Running and Ready through its probes, the security context in force in the
#     running container (/proc of its process, through the CRI's PID), exec works and
#     finds no shell;
#   - a BucketCors in another namespace, with its Secret, reconciled against moto: the
#     bucket holds the rules (read back from moto);
#   - helm upgrade rolls the Deployment (Recreate: never two operators at once);
#   - leader election with 2 replicas: a rolling update hands the Lease to a new pod with
#     no S3 write; the new leader applies an edit with one write; deleting the leader pod
#     (node cordoned: no replacement starts) lets the standby take the Lease within the
#     Lease's duration;
#   - deleting a namespace holding a BucketCors and its Secret finishes, with the deletion
#     policy carried out (or, when the Secret went first, the skip reported); with the
#     Secret deleted first, the skip is in the operator's log;
#   - helm uninstall leaves the CRD and the objects.
#
# Environment:
#   BUCKETCORS_INSTALL_DIR   state folder (default: a new one under /tmp); kept on failure
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
STATE=${BUCKETCORS_INSTALL_DIR:-$(mktemp -d /tmp/bucketcors-install.XXXXXX)}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
readonly ROOT CACHE STATE
readonly CLUSTER=$STATE/cluster
readonly RELEASE=bucketcors
readonly RELEASE_NS=bucketcors-system
readonly SELECTOR=app.kubernetes.io/name=bucketcors
readonly LEASE=bucketcors
export PATH=$CACHE/bin:$PATH

log() { printf 'install-check: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

PASSED=0
FAILED=0
pass() {
  PASSED=$((PASSED + 1))
  printf 'PASS %s\n' "$1"
}
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL %s\n%s\n' "$1" "${2:-}"
}
# check NAME CMD...: runs CMD, a pass when it succeeds; its output is shown on failure. The
# run goes on after a failure (later checks then fail at their own deadlines).
check() {
  local name=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then pass "$name"; else fail "$name" "$(tail -n 30 <<<"$out")"; fi
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "$what: not within ${seconds}s"
      "$@" 2>&1 | tail -n 5 || true
      return 1
    fi
    sleep 0.5
  done
}

k() { KUBECONFIG=$KUBECONFIG_FILE kubectl "$@"; }
k_crd() { KUBECONFIG=$CRD_KUBECONFIG_FILE kubectl "$@"; }
helm_() { KUBECONFIG=$KUBECONFIG_FILE "$HELM" "$@"; }
ctr_() { ctr --address "$CONTAINERD_ADDRESS" --namespace k8s.io "$@"; }
aws_() {
  AWS_ACCESS_KEY_ID=AKIDINSTALLCHECK AWS_SECRET_ACCESS_KEY=install-check-secret AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url "$S3" "$@"
}

# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------

cleanup() {
  set +e
  if [[ -f $STATE/moto.pid ]]; then
    DIR=$STATE stop_pidfile "$STATE/moto.pid" moto 10
  fi
  "$ROOT/scripts/cluster.sh" down "$CLUSTER" >/dev/null 2>&1 || log "cluster.sh down $CLUSTER failed"
  if ((FAILED == 0)); then rm -rf "$STATE"; else log "state and logs kept in $STATE"; fi
}

start_moto() {
  MOTO_PORT=$(free_port)
  S3=http://$HOST_ADDRESS:$MOTO_PORT
  mkdir -p "$STATE/moto"
  MOTO_DISABLE_GLOBAL_CORS=true MOTO_ENABLE_RECORDING=true MOTO_RECORDER_FILEPATH=$STATE/moto/requests.jsonl \
    nohup moto_server -H "$HOST_ADDRESS" -p "$MOTO_PORT" </dev/null >"$STATE/moto/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  wait_for 60 "moto on $S3" answers_http "$S3" || die "moto did not start"
}

# PutBucketCors and DeleteBucketCors requests moto has received for bucket $1.
cors_writes() {
  python3 - "$STATE/moto/requests.jsonl" "$1" <<'PY'
import json, sys
from urllib.parse import urlsplit
path, bucket = sys.argv[1], sys.argv[2]
count = 0
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    try:
        r = json.loads(line)
    except ValueError:
        continue
    url = urlsplit(r.get("url", ""))
    if r.get("method") in ("PUT", "DELETE") and url.path.strip("/") == bucket and "cors" in url.query.split("&"):
        count += 1
print(count)
PY
}

# The bucket's CORS rules as moto holds them, compact JSON ("none" without any).
bucket_cors() {
  local out
  if out=$(aws_ s3api get-bucket-cors --bucket "$1" --output json 2>&1); then
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["CORSRules"], sort_keys=True))' <<<"$out"
  elif [[ $out == *NoSuchCORSConfiguration* ]]; then
    echo none
  else
    echo "$out" >&2
    return 1
  fi
}

# bucket_cors_is BUCKET EXPECTED_JSON
bucket_cors_is() { [[ $(bucket_cors "$1") == "$2" ]]; }

# The BucketCors $2 in namespace $1 is Ready for its current generation, with reason $3
# (or one of the reasons in $3, separated by |).
bcors_ready() {
  local out gen observed status reason
  out=$(k get bucketcors "$2" -n "$1" -o jsonpath='{.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason}')
  read -r gen observed status reason <<<"$out"
  [[ $gen == "$observed" && $status == True && "|$3|" == *"|$reason|"* ]]
}

# Writes a namespace, its Secret and a BucketCors for bucket $2 with origin $3 to stdout.
tenant_manifest() {
  local ns=$1 bucket=$2 origin=$3
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
---
apiVersion: v1
kind: Secret
metadata:
  name: s3-credentials
  namespace: $ns
stringData:
  AWS_ACCESS_KEY_ID: AKIDINSTALLCHECK
  AWS_SECRET_ACCESS_KEY: install-check-secret
---
apiVersion: bucketcors.dev/v1alpha1
kind: BucketCors
metadata:
  name: web
  namespace: $ns
spec:
  bucket: $bucket
  endpoint: $S3
  region: us-east-1
  forcePathStyle: true
  credentialsSecretRef:
    name: s3-credentials
  deletionPolicy: Delete
  rules:
  - id: app
    allowedOrigins: ["$origin"]
    allowedMethods: [GET, PUT]
    allowedHeaders: ["*"]
    maxAgeSeconds: 600
EOF
}

expected_rules() {
  printf '[{"AllowedHeaders": ["*"], "AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["%s"], "ID": "app", "MaxAgeSeconds": 600}]' "$1"
}

# Names of the operator's pods that are not being deleted, sorted.
operator_pods() {
  k get pods -n "$RELEASE_NS" -l "$SELECTOR" -o json | python3 -c '
import json, sys
print(" ".join(sorted(p["metadata"]["name"] for p in json.load(sys.stdin)["items"]
                      if not p["metadata"].get("deletionTimestamp"))))'
}

# True when exactly $1 operator pods exist, all Running and Ready, none terminating,
# and the Deployment's rollout is complete.
pods_ready() {
  k rollout status deployment/"$RELEASE" -n "$RELEASE_NS" --timeout=1s >/dev/null 2>&1 || return 1
  k get pods -n "$RELEASE_NS" -l "$SELECTOR" -o json | python3 -c '
import json, sys
want = int(sys.argv[1])
pods = json.load(sys.stdin)["items"]
ok = len(pods) == want and all(
    not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
    and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    for p in pods)
sys.exit(0 if ok else 1)' "$1"
}

lease_holder() { k get lease "$LEASE" -n "$RELEASE_NS" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null; }

# The Lease is held by one of the pods in $1 (space-separated) and by none of those in $2.
lease_held_by() {
  local holder
  holder=$(lease_holder)
  [[ -n $holder && " $1 " == *" $holder "* && " ${2:-} " != *" $holder "* ]]
}

equal() { [[ $1 == "$2" ]]; }



# diff -r of the chart and its copy shows the kubeVersion line and nothing else.
copy_differs_in_kube_version() {
  local changes
  changes=$(diff -r "$ROOT/charts/bucketcors" "$1" | grep '^[<>]' | tr '\n' '|') || true
  [[ $changes == '< kubeVersion: ">=1.25.0-0"|> kubeVersion: ">=1.20.0-0"|' ]] || { echo "$changes"; return 1; }
}

# kube-apiserver lists BucketCors through the aggregator (a changed APIService is checked at once).
aggregated() {
  k annotate apiservice v1alpha1.bucketcors.dev "recheck=$(date +%s%N)" --overwrite >/dev/null
  k get bucketcors -A >/dev/null
}

pod_probes() {
  k get pod "$1" -n "$RELEASE_NS" \
    -o 'jsonpath={.spec.containers[0].readinessProbe.httpGet.path} {.spec.containers[0].livenessProbe.httpGet.path}'
}

no_secret_in_logs() {
  local logs
  logs=$(k logs -n "$RELEASE_NS" -l "$SELECTOR" --tail=-1) || return 1
  [[ -n $logs && $logs != *install-check-secret* ]]
}

pod_args() { k get pod "$1" -n "$RELEASE_NS" -o 'jsonpath={.spec.containers[0].args}'; }

namespace_gone() { ! k get namespace "$1" >/dev/null 2>&1; }

no_operator_pods() { [[ -z $(k get pods -n "$RELEASE_NS" -l "$SELECTOR" -o name) ]]; }

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

image_checks() {
  local ref labels
  ref=$("$ROOT/scripts/image.sh" ref)
  labels=$("$ROOT/scripts/image.sh" podman image inspect --format \
    '{{index .Labels "org.opencontainers.image.source"}} {{index .Labels "org.opencontainers.image.version"}} {{index .Labels "org.opencontainers.image.revision"}} {{.Config.User}}' "$ref")
  check "the image has the OCI labels source, version, revision and user 65532 ($labels)" \
    grep -Eq "^https://[^ ]+ $(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1) [0-9a-f]{40}(-dirty)? 65532:65532$" <<<"$labels"
  check "the image runs under podman with runc, as uid 65532 (bucketcors --version)" \
    "$ROOT/scripts/image.sh" podman run --rm --network none "$ref" --version
  local out
  out=$("$ROOT/scripts/image.sh" podman run --rm --network none --entrypoint /bin/sh "$ref" -c true 2>&1) || true
  check "the image has no shell (/bin/sh: $(tail -n 1 <<<"$out" | cut -c1-120))" \
    grep -q 'no such file or directory' <<<"$out"
}

install_checks() {
  local pristine_out copy=$STATE/chart
  # The chart as shipped refuses v1.20.
  pristine_out=$(helm_ install "$RELEASE" "$ROOT/charts/bucketcors" -n "$RELEASE_NS" --create-namespace \
    --dry-run 2>&1) || true
  check "the chart as shipped is refused by Kubernetes v1.20 (kubeVersion)" \
    grep -q 'chart requires kubeVersion: >=1.25.0-0 which is incompatible with Kubernetes v1.20.2' <<<"$pristine_out"
  rm -rf "$copy"
  cp -r "$ROOT/charts/bucketcors" "$copy"
  sed -i 's/^kubeVersion: ">=1.25.0-0"$/kubeVersion: ">=1.20.0-0"/' "$copy/Chart.yaml"
  check "the installed copy differs from the chart in kubeVersion alone" copy_differs_in_kube_version "$copy"

  # The CRDs on the CRD server, which enforces their CEL rules, served through kube-apiserver.
  check "the CRDs are applied to the CRD server (v1.36)" \
    k_crd apply --server-side -f "$ROOT/crds/bucketcors.yaml" -f "$ROOT/crds/clusterbucketstore.yaml"
  check "kube-apiserver serves bucketcors.dev through the aggregator" \
    wait_for 120 "APIService v1alpha1.bucketcors.dev Available" aggregated

  # The tenants below name Secrets of their own namespaces: the operator reads them only with
  # tenantSecrets (off by default).
  INSTALL_ARGS=(-n "$RELEASE_NS" --set image.repository=localhost/bucketcors --set crds.install=false
    --set tenancy.allowHttpEndpoints=true --set "tenancy.allowedEndpointRanges[0]=$HOST_ADDRESS/32"
    --set tenancy.tenantSecrets=true)
  local start=$SECONDS
  check "helm install (chart defaults, image localhost/bucketcors, crds.install=false, http endpoint on $HOST_ADDRESS allowed, tenantSecrets=true)" \
    helm_ install "$RELEASE" "$copy" --create-namespace "${INSTALL_ARGS[@]}" --wait --timeout 4m
  check "the operator pod is Running and Ready through its probes ($((SECONDS - start))s after helm install)" \
    wait_for 120 "one Ready operator pod" pods_ready 1
  local pod
  pod=$(operator_pods)
  check "the pod has the chart's readiness and liveness probes (httpGet /readyz, /healthz)" \
    equal "$(pod_probes "$pod")" "/readyz /healthz"
  security_checks "$pod"
}

# The security context as the kernel holds it for the operator's process.
security_checks() {
  local pod=$1 id pid status mountinfo
  id=$(k get pod "$pod" -n "$RELEASE_NS" -o 'jsonpath={.status.containerStatuses[0].containerID}')
  id=${id#containerd://}
  pid=$(ctr_ tasks ls | awk -v id="$id" '$1 == id { print $2 }')
  if [[ -z $pid || ! -r /proc/$pid/status ]]; then
    fail "the operator's process is found through the CRI (container $id)" "$(ctr_ tasks ls 2>&1)"
    return
  fi
  status=$(</proc/"$pid"/status)
  check "the container runs as uid and gid 65532, with no capabilities, no_new_privs and seccomp filtering" \
    python3 -c '
import sys
status = dict(line.split(":", 1) for line in sys.argv[1].splitlines())
get = lambda k: status[k].split()
assert get("Uid") == ["65532"] * 4, status["Uid"]
assert get("Gid") == ["65532"] * 4, status["Gid"]
for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
    assert int(get(cap)[0], 16) == 0, (cap, status[cap])
assert get("NoNewPrivs") == ["1"], status["NoNewPrivs"]
assert get("Seccomp") == ["2"], status["Seccomp"]
' "$status"
  mountinfo=$(</proc/"$pid"/mountinfo)
  # shellcheck disable=SC2016 # an awk program
  check "the container's root file system is mounted read-only" \
    awk '$5 == "/" { split($6, o, ","); if (o[1] == "ro") found = 1 } END { exit !found }' <<<"$mountinfo"
  check "kubectl exec reaches the container (bucketcors --version)" \
    k exec -n "$RELEASE_NS" "$pod" -- /usr/local/bin/bucketcors --version
  local out
  out=$(k exec -n "$RELEASE_NS" "$pod" -- /bin/sh -c true 2>&1) || true
  check "kubectl exec finds no shell in the container" grep -q 'no such file or directory' <<<"$out"
}

reconcile_checks() {
  aws_ s3api create-bucket --bucket install-web >/dev/null
  tenant_manifest team-a install-web https://app.example.com | k apply -f - >/dev/null
  check "a BucketCors in team-a, with its Secret, is Applied by the operator in the pod" \
    wait_for 120 "team-a/web Ready=True Applied" bcors_ready team-a web Applied
  check "the bucket holds the rules (read back from moto)" \
    bucket_cors_is install-web "$(expected_rules https://app.example.com)"
  check "the Secret's values appear in no operator log" no_secret_in_logs
}

# can AS VERB RESOURCE [NAMESPACE [SUBRESOURCE]]: kubectl auth can-i as user AS; succeeds on
# "yes". (RESOURCE/NAME would name an object, not a subresource.)
can() {
  local out
  out=$(k auth can-i --as "$1" "$2" "$3" ${4:+-n "$4"} ${5:+--subresource "$5"} 2>/dev/null) || true
  [[ $out == yes ]]
}
cannot() { ! can "$@"; }

# The chart's roles aggregated into Kubernetes' default ones, as a namespace's users get them.
team_role_checks() {
  k create rolebinding bcors-edit -n team-a --clusterrole=edit --user=alice >/dev/null
  k create rolebinding bcors-view -n team-a --clusterrole=view --user=bob >/dev/null
  check "the edit role (aggregated by kube-controller-manager) lets alice create BucketCors in team-a" \
    wait_for 60 "alice may create bucketcors" can alice create bucketcors.bucketcors.dev team-a
  check "alice may also update and delete them" \
    can alice delete bucketcors.bucketcors.dev team-a
  check "alice may not write bucketcors/status (where the operator records the holder)" \
    cannot alice patch bucketcors.bucketcors.dev team-a status
  check "alice may not create or change ClusterBucketStores" \
    cannot alice create clusterbucketstores.bucketcors.dev
  check "alice may not touch BucketCors of another namespace" \
    cannot alice create bucketcors.bucketcors.dev team-gone
  check "the view role lets bob list BucketCors in team-a" \
    wait_for 60 "bob may list bucketcors" can bob list bucketcors.bucketcors.dev team-a
  check "bob may not create them" cannot bob create bucketcors.bucketcors.dev team-a
}

# Samples the operator pods that run (not being deleted) until file $1 appears; writes the
# largest number seen at once to $2.
sample_pods() {
  local stop=$1 out=$2 most=0 n
  while [[ ! -e $stop ]]; do
    n=$(k get pods -n "$RELEASE_NS" -l "$SELECTOR" --no-headers 2>/dev/null | awk '$3 == "Running"' | wc -l)
    ((n > most)) && most=$n
    sleep 0.2
  done
  echo "$most" >"$out"
}

upgrade_checks() {
  local before after strategy most
  before=$(operator_pods)
  strategy=$(k get deployment "$RELEASE" -n "$RELEASE_NS" -o 'jsonpath={.spec.strategy.type}')
  rm -f "$STATE/sample.stop"
  sample_pods "$STATE/sample.stop" "$STATE/sample.most" &
  local sampler=$!
  check "helm upgrade with a changed value (resyncInterval=2m)" \
    helm_ upgrade "$RELEASE" "$STATE/chart" "${INSTALL_ARGS[@]}" --set resyncInterval=2m --wait --timeout 4m
  check "the upgrade rolled to a new Ready pod" wait_for 120 "a new Ready pod" pods_ready 1
  touch "$STATE/sample.stop"
  wait "$sampler" || true
  after=$(operator_pods)
  most=$(<"$STATE/sample.most")
  check "the Deployment rolled: pod $before replaced by $after, strategy $strategy, at most $most running at once" \
    equal "$([[ $before != "$after" ]] && echo new) $strategy $most" "new Recreate 1"
  check "the new pod runs with --resync-interval=2m" grep -q -- '--resync-interval=2m' <<<"$(pod_args "$after")"
}

leader_checks() {
  local args=("${INSTALL_ARGS[@]}" --set leaderElection.enabled=true --set replicas=2)
  check "helm upgrade to leaderElection.enabled=true, replicas=2" \
    helm_ upgrade "$RELEASE" "$STATE/chart" "${args[@]}" --wait --timeout 4m
  check "two Ready pods" wait_for 120 "two Ready pods" pods_ready 2
  local pods holder
  pods=$(operator_pods)
  check "one of them ($pods) holds the Lease" wait_for 60 "a holder among $pods" lease_held_by "$pods"
  check "the leader keeps team-a/web Ready" wait_for 60 "team-a/web Ready" bcors_ready team-a web 'InSync|Applied'

  # A rolling update: new pods start as followers, the old leader releases the Lease.
  local writes_before writes_after new_pods
  writes_before=$(cors_writes install-web)
  check "helm upgrade rolls the 2 replicas (podAnnotations.rollout=2)" \
    helm_ upgrade "$RELEASE" "$STATE/chart" "${args[@]}" --set-string podAnnotations.rollout=2 --wait --timeout 4m
  check "two new Ready pods after the rolling update" wait_for 120 "two Ready pods" pods_ready 2
  new_pods=$(operator_pods)
  check "the Lease moved to a new pod ($new_pods; old $pods)" \
    wait_for 60 "a holder among $new_pods" lease_held_by "$new_pods" "$pods"
  writes_after=$(cors_writes install-web)
  check "no S3 write across the rollout ($writes_before before, $writes_after after)" \
    equal "$writes_before" "$writes_after"
  k patch bucketcors web -n team-a --type=json \
    -p '[{"op": "replace", "path": "/spec/rules/0/allowedOrigins", "value": ["https://new.example.com"]}]' >/dev/null
  check "the new leader applies an edit" wait_for 60 "team-a/web Applied" bcors_ready team-a web Applied
  check "with exactly one write" equal "$(cors_writes install-web)" "$((writes_after + 1))"
  check "the bucket holds the edited rules" bucket_cors_is install-web "$(expected_rules https://new.example.com)"

  # The leader pod deleted with the node cordoned, so that no replacement can start: the
  # standby alone can take the Lease.
  holder=$(lease_holder)
  local duration start took standby=${new_pods/$holder/}
  standby=${standby// /}
  duration=$(k get lease "$LEASE" -n "$RELEASE_NS" -o 'jsonpath={.spec.leaseDurationSeconds}')
  k cordon "$NODE_NAME" >/dev/null
  start=$SECONDS
  k delete pod "$holder" -n "$RELEASE_NS" --wait=false >/dev/null
  if wait_for $((duration + 30)) "the standby $standby holds the Lease" lease_held_by "$standby" >/dev/null; then
    took=$((SECONDS - start))
    check "after kubectl delete pod of the leader $holder, the standby took the Lease in ${took}s (Lease ${duration}s)" \
      test "$took" -le "$duration"
  else
    fail "after kubectl delete pod of the leader $holder, the standby $standby takes the Lease" "holder: $(lease_holder)"
  fi
  check "the standby, now leader, keeps team-a/web Ready" bcors_ready team-a web 'InSync|Applied'
  k uncordon "$NODE_NAME" >/dev/null
  check "the Deployment is back to two Ready pods" wait_for 120 "two Ready pods" pods_ready 2
}

namespace_checks() {
  aws_ s3api create-bucket --bucket install-gone >/dev/null
  tenant_manifest team-gone install-gone https://gone.example.com | k apply -f - >/dev/null
  check "team-gone/web is Applied" wait_for 120 "team-gone/web Applied" bcors_ready team-gone web Applied
  check "install-gone holds its rules" bucket_cors_is install-gone "$(expected_rules https://gone.example.com)"
  local start=$SECONDS watcher
  # The namespace controller removes the Secret and the BucketCors together: when the Secret
  # goes first the operator cannot act, releases the object and says so (CleanupSkipped).
  k get events -n team-gone --watch -o 'custom-columns=REASON:.reason,MESSAGE:.message' \
    >"$STATE/team-gone-events" 2>&1 &
  watcher=$!
  k delete namespace team-gone --wait=false >/dev/null
  check "deleting namespace team-gone (a BucketCors and its Secret) finishes" \
    wait_for 180 "namespace team-gone gone" namespace_gone team-gone
  log "namespace team-gone deleted in $((SECONDS - start))s"
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
  local cors logs
  cors=$(bucket_cors install-gone)
  k logs -n "$RELEASE_NS" -l "$SELECTOR" --tail=-1 --prefix >"$STATE/operator-logs" 2>&1 || true
  logs=$(grep -F team-gone "$STATE/operator-logs") || true
  if [[ $cors == none ]]; then
    check "deletionPolicy Delete was carried out: install-gone has no CORS configuration" true
  else
    check "the deletion policy was skipped (the Secret went first) and the skip reported: $(grep -h -m1 -E 'CleanupSkipped|deleted without' "$STATE/team-gone-events" - <<<"$logs" | cut -c1-160)" \
      grep -q -E 'CleanupSkipped|deleted without' "$STATE/team-gone-events" - <<<"$logs"
  fi
}

# The skip made certain: the Secret deleted before the namespace.
skip_checks() {
  aws_ s3api create-bucket --bucket install-skip >/dev/null
  tenant_manifest team-skip install-skip https://skip.example.com | k apply -f - >/dev/null
  check "team-skip/web is Applied" wait_for 120 "team-skip/web Applied" bcors_ready team-skip web Applied
  k delete secret s3-credentials -n team-skip >/dev/null
  k delete namespace team-skip --wait=false >/dev/null
  check "deleting namespace team-skip, whose Secret went first, finishes" \
    wait_for 180 "namespace team-skip gone" namespace_gone team-skip
  check "install-skip keeps its rules (the policy could not be carried out)" \
    bucket_cors_is install-skip "$(expected_rules https://skip.example.com)"
  local logs
  logs=$(k logs -n "$RELEASE_NS" -l "$SELECTOR" --tail=-1 2>&1) || true
  logs=$(grep -F team-skip <<<"$logs" | grep -E 'CleanupSkipped') || true
  check "the operator's log reports the skip: $(head -n 1 <<<"$logs" | cut -c1-200)" test -n "$logs"
}

uninstall_checks() {
  check "helm uninstall" helm_ uninstall "$RELEASE" -n "$RELEASE_NS" --wait --timeout 2m
  check "the BucketCors CRD is still there" k_crd get crd bucketcors.bucketcors.dev
  check "team-a/web is still there" k get bucketcors web -n team-a
  check "its bucket keeps its rules" bucket_cors_is install-web "$(expected_rules https://new.example.com)"
  check "no operator pod is left" wait_for 60 "no operator pods" no_operator_pods
}

main() {
  local start=$SECONDS
  trap cleanup EXIT
  # A signal ends the run through the EXIT trap, which takes the cluster down.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  HELM=$("$ROOT/scripts/chart-check.sh" helm-path)
  "$ROOT/scripts/tools.sh" >/dev/null
  log "building the image"
  "$ROOT/scripts/image.sh" build >"$STATE/image-archive"
  image_checks
  log "starting the cluster in $CLUSTER"
  local up=$SECONDS
  "$ROOT/scripts/cluster.sh" up "$CLUSTER" >/dev/null || die "the cluster did not start"
  log "node Ready $((SECONDS - up))s after cluster.sh up"
  # shellcheck disable=SC1091 # written by cluster.sh up
  . "$CLUSTER/env"
  KUBECONFIG_FILE=$KUBECONFIG
  CRD_KUBECONFIG_FILE=$CRD_SERVER_KUBECONFIG
  local ref
  ref=$("$ROOT/scripts/image.sh" ref)
  check "ctr images import of the image's OCI archive" ctr_ images import "$(<"$STATE/image-archive")"
  check "containerd holds the image as $ref" grep -qx "$ref" <<<"$(ctr_ images ls -q)"
  start_moto
  install_checks
  reconcile_checks
  team_role_checks
  upgrade_checks
  leader_checks
  namespace_checks
  skip_checks
  uninstall_checks
  log "finished in $((SECONDS - start))s"
  echo "install-check: $PASSED passed, $FAILED failed"
  ((FAILED == 0))
}

main "$@"
