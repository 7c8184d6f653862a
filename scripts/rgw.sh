#!/usr/bin/env bash
# Ceph RADOS Gateway (Debian bookworm's radosgw) on loopback: a single-node
# Ceph cluster (one mon, one memstore OSD, no authentication) with radosgw's
# S3 API in front of it. Everything lives in DIR; nothing system-wide is used.
#
# Usage:
#   rgw.sh install        apt-get install the Ceph packages if radosgw is missing
#   rgw.sh up DIR         start mon, osd and radosgw, create the test user,
#                         write DIR/env and print its path
#   rgw.sh down DIR       stop what `up DIR` started
#   rgw.sh run DIR        up, touch DIR/ready, stay in the foreground and take
#                         everything down on SIGTERM/SIGINT or when a daemon dies
#
# DIR/env holds RGW_ENDPOINT, RGW_ACCESS_KEY, RGW_SECRET_KEY and RGW_VERSION
# (the `radosgw --version` line, spaces included: read it as KEY=rest-of-line).
# Each `up` makes a fresh, empty cluster: memstore keeps no data across restarts.
#
# Environment:
#   BUCKETCORS_RGW_TIMEOUT  deadline in seconds for each start-up step (default: 90)
#
# shellcheck disable=SC2317,SC2329 # launchers and probes are invoked indirectly
set -euo pipefail

readonly PACKAGES=(ceph-mon ceph-osd radosgw)
readonly ACCESS_KEY=bucketcorsaccess
readonly SECRET_KEY=bucketcorssecret0123456789
readonly RGW_USER=bucketcors
readonly RGW_NAME=client.rgw

TIMEOUT=${BUCKETCORS_RGW_TIMEOUT:-90}

log() { printf 'rgw: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e '/shellcheck/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

cmd_install() {
  if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
    return 0
  fi
  ((EUID == 0)) || die "installing ${PACKAGES[*]} needs root"
  local start=$SECONDS
  log "installing ${PACKAGES[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get -q update >&2
  DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends "${PACKAGES[@]}" >&2
  log "installed after $((SECONDS - start))s: $(radosgw --version)"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# Daemons run in the foreground (-f) as children of this shell, so `run` can
# `wait -n` on them.
launch() {
  local name=$1
  shift
  "$@" </dev/null >>"$LOGS/$name.out" 2>&1 &
  echo $! >"$DIR/$name.pid"
}

# Polls `$3...` until it succeeds (0), the daemon $1 exits (1), or the deadline
# passes (2). $2 names what is awaited in messages. Probes silence their own
# output: a redirection here would also swallow the messages of a signal trap
# that fires while a probe runs.
await() {
  local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@"; do
    running "$DIR/$name.pid" || return 1
    if ((SECONDS >= deadline)); then
      log "$what not ready after ${TIMEOUT}s"
      return 2
    fi
    sleep 0.2
  done
}

# Both the daemon's own log (e.g. mon.a.log) and its stdout/stderr (mon.out),
# since a failure can show up in either.
show_logs() {
  local f
  for f in "$LOGS/$1".*; do
    [[ -s $f ]] || continue
    log "last lines of $f:"
    tail -n 30 "$f" >&2 || true
  done
}

# Short: the harness's tether escalates to SIGKILL after 10 s in total.
stop_daemon() { stop_pidfile "$DIR/$1.pid" "$1" 3; }

stop_all() {
  # Gateway first, then the OSD, then the monitor they all talk to.
  stop_daemon rgw
  stop_daemon osd
  stop_daemon mon
}

set_dir() {
  [[ -n ${1:-} ]] || usage
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  CONF=$DIR/ceph.conf
  LOGS=$DIR/logs
}

# ---------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------

write_conf() {
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
# Loopback only; the OSD's heartbeat listeners otherwise bind 0.0.0.0.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
# Keep every path inside DIR, so nothing in /etc/ceph, /var/lib/ceph or
# /var/run/ceph is read or written.
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $LOGS/\$name.log
mon cluster log file = $LOGS/\$cluster.log
mon data = $DIR/mon
osd data = $DIR/osd
crash dir = $DIR/crash
# One OSD: pools of size 1, placement across OSDs rather than hosts.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
# radosgw creates about eight pools; few PGs each keep the OSD light and
# under the per-OSD PG limit.
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# radosgw creates its pools one by one at start-up, each an OSD map change the
# monitor batches for up to this long; 1 s by default.
paxos propose interval = 0.1
# Never refuse to start because the disk holding DIR is fairly full.
mon data avail crit = 0
mon data avail warn = 0
# Without a monitor to acknowledge, an OSD otherwise waits 5 s before exiting.
osd mon shutdown timeout = 1

[mon]
# A taken port stays taken; fail at once (default: 3 tries 5 s apart) so
# start-up retries with another port.
ms bind retry count = 1

[osd]
osd objectstore = memstore
memstore device bytes = 1073741824

[client]
# With auth none, msgr2 clients otherwise keep retrying authentication until
# rgw init timeout and exit.
ms mon client mode = crc
ms client mode = crc
rgw init timeout = $TIMEOUT

[$RGW_NAME]
log file = $LOGS/rgw.log
rgw data = $DIR/rgw
# The lifecycle threads sleep in 5 s steps and delay shutdown by as much.
rgw enable lc threads = false
EOF
}

ceph_cli() {
  timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"
}

# Prints the TCP port process $1 listens on (the monitor and radosgw listen
# on exactly one each).
listening_port() {
  python3 - "$1" <<'EOF'
import os, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
with open(f"/proc/{pid}/net/tcp") as f:
    next(f)
    for line in f:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
            print(int(fields[1].split(":")[1], 16))
            sys.exit(0)
sys.exit(1)
EOF
}

# Asking only once the monitor itself listens: if another process took the
# port, the CLI would wait out its connect timeout on that process instead.
mon_ready() {
  [[ $(listening_port "$(<"$DIR/mon.pid")" 2>/dev/null) == "$MON_PORT" ]] &&
    ceph_cli mon stat >/dev/null 2>&1
}

osd_up_in() {
  ceph_cli osd stat -f json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
s = s.get("osdmap", s)
sys.exit(0 if s["num_up_osds"] >= 1 and s["num_in_osds"] >= 1 else 1)' 2>/dev/null
}

rgw_answers() {
  local code
  if [[ -z $RGW_PORT ]]; then
    RGW_PORT=$(listening_port "$(<"$DIR/rgw.pid")" 2>/dev/null) || { RGW_PORT=; return 1; }
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$RGW_PORT/") || return 1
  [[ $code != 000 ]]
}

launch_mon() {
  MON_PORT=$(free_port)
  write_conf
  rm -rf "$DIR/mon" "$DIR/monmap"
  monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" \
    "$DIR/monmap" >>"$LOGS/mon.out" 2>&1
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" >>"$LOGS/mon.out" 2>&1
  launch mon ceph-mon -f -c "$CONF" -i a
}

launch_osd() {
  local id
  rm -rf "$DIR/osd"
  mkdir -p "$DIR/osd"
  id=$(ceph_cli osd create 2>>"$LOGS/osd.out")
  [[ $id == 0 ]] || { log "expected OSD id 0, got '$id'"; return 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs >>"$LOGS/osd.out" 2>&1
  launch osd ceph-osd -f -c "$CONF" -i 0
}

# radosgw binds its port only after initialising (seconds later), too wide a
# window for choosing a free port beforehand; port 0 lets the kernel choose
# and the port is read back from /proc.
launch_rgw() {
  RGW_PORT=
  launch rgw radosgw -f -c "$CONF" -n "$RGW_NAME" --rgw-frontends "beast endpoint=127.0.0.1:0"
}

# Starts daemon $1 via launcher $2 until readiness check $3... passes, picking
# fresh ports when one was taken between choosing and binding it.
start_with_retry() {
  local name=$1 launcher=$2 attempt rc
  shift 2
  for attempt in 1 2 3 4 5; do
    rc=0
    "$launcher" || { show_logs "$name"; return 1; }
    await "$name" "$name" "$@" || rc=$?
    ((rc == 0)) && return 0
    stop_daemon "$name"
    if grep -qsiE 'address already in use|unable to bind' "$LOGS/$name".*; then
      log "$name lost a port race (attempt $attempt); retrying"
      rm -f "$LOGS/$name".*
      continue
    fi
    ((rc == 1)) && log "$name exited during start-up"
    show_logs "$name"
    return 1
  done
  show_logs "$name"
  return 1
}

cmd_up() {
  set_dir "${1:-}"
  local start=$SECONDS
  if running "$DIR/mon.pid" || running "$DIR/osd.pid" || running "$DIR/rgw.pid"; then
    die "already running in $DIR (run: $0 down $DIR)"
  fi
  command -v radosgw >/dev/null || die "radosgw is not installed (run: $0 install)"
  command -v python3 >/dev/null || die "python3 is required to pick free ports"
  # A fresh cluster each time; only this script's own entries are removed.
  rm -rf "$LOGS" "$DIR/run" "$DIR/mon" "$DIR/osd" "$DIR/rgw" "$DIR/crash" \
    "$DIR/monmap" "$DIR/env" "$DIR/ready"
  mkdir -p "$LOGS" "$DIR/run" "$DIR/rgw" "$DIR/crash"
  FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')

  # Never leave half a cluster behind.
  trap 'stop_all' EXIT
  log "starting ceph-mon"
  start_with_retry mon launch_mon mon_ready || die "ceph-mon did not start"
  log "starting ceph-osd"
  start_with_retry osd launch_osd osd_up_in || die "ceph-osd did not start"
  log "starting radosgw"
  start_with_retry rgw launch_rgw rgw_answers || die "radosgw did not start"

  radosgw-admin -c "$CONF" user create --uid="$RGW_USER" \
    --display-name="bucketcors tests" --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" \
    >>"$LOGS/radosgw-admin.out" 2>&1 || {
    log "last lines of $LOGS/radosgw-admin.out:"
    tail -n 30 "$LOGS/radosgw-admin.out" >&2
    die "could not create the S3 user"
  }

  {
    printf 'RGW_ENDPOINT=http://127.0.0.1:%s\n' "$RGW_PORT"
    printf 'RGW_ACCESS_KEY=%s\n' "$ACCESS_KEY"
    printf 'RGW_SECRET_KEY=%s\n' "$SECRET_KEY"
    local version
    version=$(radosgw --version)
    printf 'RGW_VERSION=%s\n' "${version%%$'\n'*}"
  } >"$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
  trap - EXIT
  log "ready after $((SECONDS - start))s at http://127.0.0.1:$RGW_PORT"
  printf '%s\n' "$DIR/env"
}

cmd_down() {
  [[ -n ${1:-} ]] || usage
  [[ -d $1 ]] || { log "nothing to stop: $1 does not exist"; return 0; }
  set_dir "$1"
  stop_all
  log "stopped"
}

# Foreground mode for test harnesses: up, touch DIR/ready, then stay until
# signalled (or until a daemon dies) and take everything down.
cmd_run() {
  # A signal during start-up must still run up's EXIT trap, which stops the
  # daemons started so far.
  trap 'exit 143' TERM INT
  cmd_up "${1:-}" >/dev/null
  trap 'stop_all; exit 0' TERM INT
  trap 'stop_all' EXIT
  touch "$DIR/ready"
  # `wait -n` returns when any daemon exits or a signal arrives.
  wait -n "$(<"$DIR/mon.pid")" "$(<"$DIR/osd.pid")" "$(<"$DIR/rgw.pid")" 2>/dev/null || true
  log "a Ceph daemon exited; stopping"
  local name
  for name in mon osd rgw; do
    running "$DIR/$name.pid" || show_logs "$name"
  done
  exit 1
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    run) cmd_run "$@" ;;
    *) usage ;;
  esac
}

# Everything is parsed before anything runs, so editing this file while a
# cluster is running cannot corrupt the running instance.
main "$@"; exit $?
