# Helpers shared by the scripts in this folder: sourced, never run. The sourcing
# script defines log and die, CACHE for cargo_install_cached, and DIR (its state
# folder) for running and stop_pidfile.
# shellcheck shell=bash

# A loopback TCP port nothing listens on (the kernel's choice).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True when URL $1 answers HTTP at all: any status means the listener is up
# (S3 servers answer unauthenticated requests with 403).
answers_http() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/") || return 1
  [[ $code != 000 ]]
}

# Stops child process $1 with signal $2, KILLs it after 5 s, and reaps it.
stop_child() {
  local pid=$1 signal=$2
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$signal" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# True when the PID in pidfile $1 is alive and was started for $DIR (guards
# against PID reuse by unrelated processes).
running() {
  local pid
  [[ -f $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Zombies have an empty cmdline, so they count as stopped.
  local cmdline stat state ppid
  cmdline=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$DIR/"* ]] && return 0
  # A child of this shell that has not yet exec'd its program (a loaded machine can take a
  # while) still shows this script's command line: it is starting, not gone.
  { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
  read -r state ppid _ <<<"${stat##*) }"
  [[ $state != Z && $ppid == "$$" ]]
}

# Stops the process of pidfile $1 (named $2 in messages): SIGTERM, SIGKILL
# after $3 seconds, and fails when it is still there $3 seconds later. Reaps it
# when it is a child of this shell, and removes the pidfile.
stop_pidfile() {
  local pidfile=$1 name=$2 grace=$3 pid deadline
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if running "$pidfile"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while running "$pidfile" && ((SECONDS < deadline)); do sleep 0.1; done
    if running "$pidfile"; then
      log "$name still running ${grace}s after SIGTERM; killing"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + grace))
      while running "$pidfile" && ((SECONDS < deadline)); do sleep 0.1; done
      running "$pidfile" && die "$name (pid $pid) did not exit"
    fi
  fi
  wait "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# Makes BIN ($3) by `cargo install CRATE@VERSION` ($1, $2; the rest are more
# cargo install flags) unless it is already there. Concurrent callers serialise
# on a lock (the loser finds the winner's binary); the build goes to a scratch
# root and is moved into place, so an interrupted build leaves nothing at BIN.
cargo_install_cached() {
  local crate=$1 version=$2 bin=$3 work
  shift 3
  [[ -x $bin ]] && return 0
  command -v cargo >/dev/null || die "cargo is required to build $crate"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.$crate.lock"
  flock 9
  if [[ ! -x $bin ]]; then
    rm -rf "$CACHE/.$crate-work."*
    work=$(mktemp -d "$CACHE/.$crate-work.XXXXXX")
    # nice: the build should not starve whatever else runs on the machine.
    if ! nice -n 10 cargo install "$crate" --version "=$version" --locked \
      --root "$work/root" --target-dir "$work/target" "$@" >&2; then
      rm -rf "$work"
      die "cargo install $crate $version failed"
    fi
    local built
    built=$("$work/root/bin/$crate" --version)
    [[ $built == *"$version"* ]] || die "unexpected version: $built"
    mkdir -p "$(dirname "$bin")"
    mv -f "$work/root/bin/$crate" "$bin"
    rm -rf "$work"
  fi
  exec 9>&-
}

# Prints "URI SUITE" for every enabled deb entry in the system apt sources (one-line
# and deb822 formats). Readers take all of it (no `exit` at the first match): a reader that
# left early would kill this writer with SIGPIPE, and under pipefail fail the caller.
system_apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '$1 == "deb" {
           i = 2
           if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           print $i, $(i + 1)
         }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # deb822: one stanza per blank-line separated paragraph.
    awk 'function flush() {
           if (types ~ /(^| )deb( |$)/ && enabled != "no")
             for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print uris[u], suites[s]
           types = ""; enabled = ""; nu = 0; ns = 0
         }
         /^[[:space:]]*$/ { flush(); next }
         /^#/ { next }
         tolower($1) == "types:"   { types = $0; sub(/^[^:]*:[[:space:]]*/, "", types) }
         tolower($1) == "enabled:" { enabled = tolower($2) }
         tolower($1) == "uris:"    { for (i = 2; i <= NF; i++) uris[++nu] = $i }
         tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) suites[++ns] = $i }
         END { flush() }' "$f"
  done
}

# Copies executable $1 to $2 through a temporary name, so that $2 is never half-written.
install_atomically() {
  local src=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest.tmp.$$"
  chmod 0755 "$dest.tmp.$$"
  mv -f "$dest.tmp.$$" "$dest"
}
