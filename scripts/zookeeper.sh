#!/usr/bin/env bash
# Starts a throwaway ZooKeeper (Debian's package, 3.8) for the integration
# tests: loopback only, a free port, a temporary data directory, a short
# tick (500 ms) so that sessions can expire within seconds.
#
#   scripts/zookeeper.sh run -- go test ./deploy/...
#       starts the server, exports IMMUNE_TEST_ZOOKEEPER_ADDR (host:port),
#       runs the command, stops the server and exits with the command's
#       status. Ctrl-C or a kill of the script stops the server too.
#
#   eval "$(scripts/zookeeper.sh start [--dir DIR] [--port PORT])"
#       starts a server in the background and prints the exports
#       (IMMUNE_TEST_ZOOKEEPER_ADDR, _PID, _DIR). With --dir and --port
#       of a stopped server it starts it again on the same data (a restart).
#   scripts/zookeeper.sh stop [PID]        # TERM, then KILL after 10 s
#
# Environment: ZOOKEEPER_CLASSPATH (default: Debian's /etc/zookeeper/conf
# and /usr/share/java/zookeeper.jar), JAVA (default: java on PATH),
# IMMUNE_KEEP_ZOOKEEPER_DATA=1 keeps the data directory and log.
set -euo pipefail
# shellcheck source=lib/server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

JAVA=${JAVA:-java}
CLASSPATH_ZK=${ZOOKEEPER_CLASSPATH:-/etc/zookeeper/conf:/usr/share/java/zookeeper.jar}

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "zookeeper.sh: $*" >&2
  exit 1
}

# serving PORT: true when the server serves requests (srvr names its
# mode; ruok answers imok earlier, before the server takes sessions).
serving() {
  local reply=
  { exec 9<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'srvr' >&9
  reply=$(timeout 2 cat <&9 2>/dev/null || true)
  exec 9<&- 9>&-
  [[ $reply == *Mode:* ]]
}

# Ports stay reserved for a data directory between a stop and a restart
# (zktest's Restart): a reservation names its directory and lapses when
# the directory is gone, so another server started meanwhile does not take
# the port of one that is only stopped.
PORTS_DIR=${TMPDIR:-/tmp}/immune-zookeeper-ports

reserved() {
  local f="$PORTS_DIR/$1" d
  [[ -f $f ]] || return 1
  d=$(cat "$f" 2>/dev/null) || return 1
  [[ -d $d && $d != "$ZK_DIR" ]]
}

reserve() {
  mkdir -p "$PORTS_DIR" 2>/dev/null || return 0
  printf '%s' "$ZK_DIR" >"$PORTS_DIR/$1" 2>/dev/null || true
}

have_server() {
  command -v "$JAVA" >/dev/null 2>&1 || return 1
  local jar=${CLASSPATH_ZK##*:}
  [[ -f $jar ]]
}

# start_server [DIR] [PORT]: sets ZK_PID, ZK_ADDR, ZK_DIR.
start_server() {
  have_server ||
    die "no ZooKeeper: install Debian's package (scripts/install-deps.sh, or apt-get install zookeeper)"
  local want_dir=${1:-} want_port=${2:-}
  if [[ -n $want_dir ]]; then
    ZK_DIR=$want_dir
    mkdir -p "$ZK_DIR"
  else
    ZK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/immune-zookeeper.XXXXXX")
  fi
  mkdir -p "$ZK_DIR/data"
  local attempt port
  for attempt in 1 2 3 4 5; do
    if [[ -n $want_port ]]; then
      port=$want_port
    else
      port=$((20000 + RANDOM % 40000))
      port_free "$port" || continue
      reserved "$port" && continue
    fi
    reserve "$port"
    printf 'tickTime=500\ninitLimit=10\nsyncLimit=5\nminSessionTimeout=1000\nmaxSessionTimeout=60000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,stat\n' \
      "$ZK_DIR/data" "$port" >"$ZK_DIR/zoo.cfg"
    # setsid: the server outlives this script (start) and is not hit by
    # a Ctrl-C meant for the test command (run stops it itself).
    setsid "$JAVA" -Xmx256m -Dzookeeper.log.dir="$ZK_DIR" -Dzookeeper.root.logger=WARN,CONSOLE \
      -cp "$CLASSPATH_ZK" org.apache.zookeeper.server.ZooKeeperServerMain "$ZK_DIR/zoo.cfg" \
      >>"$ZK_DIR/zookeeper.log" 2>&1 </dev/null &
    ZK_PID=$!
    ZK_ADDR="127.0.0.1:$port"
    local i
    for i in $(seq 1 300); do # 30 s
      kill -0 "$ZK_PID" 2>/dev/null || break
      if serving "$port"; then
        echo "$ZK_PID" >"$ZK_DIR/pid"
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "$ZK_PID" 2>/dev/null; then
      stop_server
      die "zookeeper on $ZK_ADDR not ready after 30 s; its log:
$(tail -n 20 "$ZK_DIR/zookeeper.log")"
    fi
    wait "$ZK_PID" 2>/dev/null || true
    ZK_PID=
    if [[ -n $want_port ]] || ! grep -q 'Address already in use' "$ZK_DIR/zookeeper.log"; then
      die "zookeeper exited at start; its log:
$(tail -n 20 "$ZK_DIR/zookeeper.log")"
    fi
    echo "zookeeper.sh: port $port taken, trying another (attempt $attempt)" >&2
  done
  die "no free port after 5 attempts"
}

stop_pid() {
  local pid=$1
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "zookeeper.sh: zookeeper (pid $pid) ignored TERM, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
}

stop_server() {
  stop_pid "${ZK_PID:-}"
  ZK_PID=
  if [[ -n ${ZK_DIR:-} && -d $ZK_DIR ]]; then
    if [[ ${IMMUNE_KEEP_ZOOKEEPER_DATA:-} == 1 ]]; then
      echo "zookeeper.sh: kept $ZK_DIR" >&2
    else
      rm -rf "$ZK_DIR"
    fi
  fi
  ZK_DIR=
}

cmd_run() {
  [[ ${1:-} == -- ]] && shift
  [[ $# -gt 0 ]] || usage
  ZK_PID= ZK_DIR= CHILD=
  install_traps
  start_server
  echo "zookeeper.sh: zookeeper $ZK_ADDR (pid $ZK_PID, data $ZK_DIR/data)" >&2
  export IMMUNE_TEST_ZOOKEEPER_ADDR=$ZK_ADDR
  run_command "$@"
}

cmd_start() {
  local dir= port=
  while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    *) usage ;;
    esac
  done
  ZK_PID= ZK_DIR=
  start_server "$dir" "$port"
  printf 'export IMMUNE_TEST_ZOOKEEPER_ADDR=%q\n' "$ZK_ADDR"
  printf 'export IMMUNE_TEST_ZOOKEEPER_PID=%q\n' "$ZK_PID"
  printf 'export IMMUNE_TEST_ZOOKEEPER_DIR=%q\n' "$ZK_DIR"
}

cmd_stop() {
  local pid=${1:-${IMMUNE_TEST_ZOOKEEPER_PID:-}}
  [[ -n $pid ]] || die "no pid given and IMMUNE_TEST_ZOOKEEPER_PID is not set: nothing to stop"
  stop_pid "$pid"
}

case ${1:-} in
run) shift; cmd_run "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) usage ;;
esac
