#!/usr/bin/env bash
# `make demo`: a local control plane, a local S3 server (moto), the operator, and the
# manifests of examples/, ending with what Kubernetes and S3 say.
#
# Usage: demo.sh up | check | down
#   check: does what the demo tells a user to try (delete a bucket's CORS behind the operator's
#   back) and fails unless the configuration comes back as it was within the resync.
# State (logs, pids, kubeconfig) lives in $BUCKETCORS_DEMO_DIR (default ~/.cache/bucketcors/demo).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${BUCKETCORS_CACHE:-$HOME/.cache/bucketcors}
dir=${BUCKETCORS_DEMO_DIR:-$cache/demo}
buckets=(web-assets uploads)

say() { printf '\n==> %s\n' "$*"; }
log() { printf 'demo: %s\n' "$*" >&2; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# Polls "$@" until it succeeds, or fails after $deadline seconds naming $what.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

stop_pid() {
  local file=$1 pid
  [[ -f $file ]] || return 0
  pid=$(<"$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for "pid $pid to exit" 20 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  stop_pid "$dir/operator.pid"
  stop_pid "$dir/moto.pid"
  "$root/scripts/control-plane.sh" down "$dir/control-plane" 2>/dev/null || true
  log "stopped"
}

up() {
  if [[ -f $dir/operator.pid ]] && kill -0 "$(<"$dir/operator.pid")" 2>/dev/null; then
    log "already running; run 'make demo-down' first"
    exit 1
  fi
  # Every demo starts from an empty cluster: objects an earlier demo (or version) left in its
  # etcd would be patched by `kubectl apply` rather than created.
  "$root/scripts/control-plane.sh" down "$dir/control-plane" 2>/dev/null || true
  rm -rf "$dir/control-plane"
  mkdir -p "$dir"
  trap 'log "failed; logs are in $dir"; down' ERR

  say "Installing tools (cached in $cache)"
  local bin
  bin=$("$root/scripts/tools.sh")
  export PATH=$bin:$PATH
  "$root/scripts/control-plane.sh" build
  "$root/scripts/crd-server.sh" build >/dev/null
  (cd "$root" && cargo build --quiet --locked)

  say "Starting a local Kubernetes control plane (kube-apiserver + etcd, and a CRD server)"
  export KUBECONFIG
  KUBECONFIG=$("$root/scripts/control-plane.sh" up "$dir/control-plane")

  say "Starting a local S3 server (moto)"
  local port
  port=$(free_port)
  MOTO_DISABLE_GLOBAL_CORS=true nohup moto_server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  local endpoint=http://127.0.0.1:$port
  echo "$endpoint" >"$dir/endpoint"
  wait_for "moto" 60 curl -fsS "$endpoint/moto-api/"
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
  for bucket in "${buckets[@]}"; do
    aws s3api create-bucket --bucket "$bucket" --endpoint-url "$endpoint" >/dev/null
  done

  say "Installing the CRDs"
  # BucketCors is served by the control plane's modern CRD server (CEL rules enforced),
  # behind the v1.20 core API server; the CRD goes to that server.
  local crd_kubeconfig
  crd_kubeconfig=$(sed -n 's/^CRD_SERVER_KUBECONFIG=//p' "$dir/control-plane/env")
  [[ -n $crd_kubeconfig ]] || { log "the control plane has no CRD server"; return 1; }
  kubectl --kubeconfig "$crd_kubeconfig" apply -f "$root/crds/bucketcors.yaml" \
    -f "$root/crds/clusterbucketstore.yaml"
  kubectl --kubeconfig "$crd_kubeconfig" wait --for=condition=Established \
    crd/bucketcors.bucketcors.dev crd/clusterbucketstores.bucketcors.dev --timeout=60s
  # The core re-checks its APIService with a back-off of up to 30 s; a change triggers it now.
  kubectl annotate apiservice v1alpha1.bucketcors.dev "bucketcors.dev/recheck=$(date +%s%N)" \
    --overwrite >/dev/null
  wait_for "the API server to serve bucketcors" 60 kubectl get bcors,cbstore -A

  say "Starting the operator (log: $dir/operator.log)"
  nohup "${CARGO_TARGET_DIR:-$root/target}/debug/bucketcors" run --default-endpoint "$endpoint" --resync-interval 30s \
    >"$dir/operator.log" 2>&1 &
  echo $! >"$dir/operator.pid"

  say "kubectl apply -f examples/"
  kubectl apply -f "$root/examples/"
  kubectl wait --for=condition=Ready bcors --all -n demo --timeout=120s

  say "kubectl get bcors -n demo"
  kubectl get bcors -n demo
  for bucket in "${buckets[@]}"; do
    say "aws s3api get-bucket-cors --bucket $bucket --endpoint-url $endpoint"
    aws s3api get-bucket-cors --bucket "$bucket" --endpoint-url "$endpoint"
  done
  trap - ERR
  cat <<MSG

The demo keeps running. Try it:
  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
  aws s3api delete-bucket-cors --bucket web-assets --endpoint-url $endpoint   # restored within 30 s
  kubectl describe bcors web-assets -n demo
Stop it with: make demo-down
MSG
}

# What the demo tells a user to try: delete a bucket's CORS with the aws CLI; it comes back.
check() {
  local endpoint before after
  endpoint=$(<"$dir/endpoint")
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
  local get=(aws s3api get-bucket-cors --bucket web-assets --endpoint-url "$endpoint")
  before=$("${get[@]}")
  aws s3api delete-bucket-cors --bucket web-assets --endpoint-url "$endpoint"
  if "${get[@]}" >/dev/null 2>&1; then
    log "web-assets still has a CORS configuration after delete-bucket-cors"
    return 1
  fi
  # The demo's resync is 30 s (±10%), then one pass.
  wait_for "web-assets' CORS configuration to come back" 45 "${get[@]}"
  after=$("${get[@]}")
  if [[ $after != "$before" ]]; then
    log "web-assets came back different: $after (before: $before)"
    return 1
  fi
  log "check: web-assets' CORS, deleted behind the operator's back, came back as it was"
}

case ${1:-} in
  up) up ;;
  check) check ;;
  down) down ;;
  *) echo "usage: $0 up|check|down" >&2; exit 2 ;;
esac
