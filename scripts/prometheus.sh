#!/usr/bin/env bash
# Starts a throwaway Prometheus (Debian's package, 2.42) for the integration
# tests: loopback only, a free port, a temporary data directory, the
# remote-write receiver on, an out-of-order window wide enough to take
# history of any age, and no scrape targets.
#
#   scripts/prometheus.sh run -- go test ./collector/...
#       starts the server, exports IMMUNE_TEST_PROMETHEUS_URL and
#       IMMUNE_TEST_PROMETHEUS_DATA, runs the command, stops the server
#       and exits with the command's status. Ctrl-C or a kill of the
#       script stops the server too.
#
#   eval "$(scripts/prometheus.sh start)"   # prints the exports (and _PID)
#   scripts/prometheus.sh stop              # stops the one started above
#
#   run and start take --config FILE: FILE is the server's prometheus.yml
#   instead of the default one, with @PORT@ replaced by the server's port
#   (so that it can scrape itself).
#
# Environment: PROMETHEUS (the binary, default: prometheus on PATH),
# IMMUNE_KEEP_PROMETHEUS_DATA=1 keeps the data directory and log.
# PROMETHEUS_REMOTE_WRITE_URL (e.g. http://127.0.0.1:9797/api/v1/write)
# adds to the default configuration a remote_write to that URL and a job
# scraping the server itself every second, so that samples flow there;
# PROMETHEUS_REMOTE_WRITE_TOKEN_FILE sends the bearer token in that file.
set -euo pipefail
# shellcheck source=lib/server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

PROMETHEUS=${PROMETHEUS:-prometheus}

usage() {
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "prometheus.sh: $*" >&2
  exit 1
}

# http_ok URL: true when GET URL answers 2xx.
http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    return
  fi
  local hostport=${1#http://}
  local path=/${hostport#*/}
  hostport=${hostport%%/*}
  local status
  exec 9<>"/dev/tcp/${hostport%:*}/${hostport#*:}" 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&9
  read -r -t 2 _ status _ <&9 || status=
  exec 9<&- 9>&-
  [[ $status == 2* ]]
}

# write_config PORT: writes $PROM_DIR/prometheus.yml: CONFIG_FILE with
# @PORT@ replaced, or the default configuration.
write_config() {
  if [[ -n ${CONFIG_FILE:-} ]]; then
    sed "s/@PORT@/$1/g" "$CONFIG_FILE" >"$PROM_DIR/prometheus.yml"
    return
  fi
  cat >"$PROM_DIR/prometheus.yml" <<'EOF'
global:
  scrape_interval: 1m
  evaluation_interval: 1m
storage:
  tsdb:
    # Tests push history (NAB data is from 2011-2015) next to recent data.
    out_of_order_time_window: 100y
EOF
  if [[ -n ${PROMETHEUS_REMOTE_WRITE_URL:-} ]]; then
    cat >>"$PROM_DIR/prometheus.yml" <<EOF
scrape_configs:
  - job_name: prometheus
    scrape_interval: 1s
    static_configs:
      - targets: ['127.0.0.1:$1']
remote_write:
  - url: '$PROMETHEUS_REMOTE_WRITE_URL'
    queue_config:
      batch_send_deadline: 1s
EOF
    if [[ -n ${PROMETHEUS_REMOTE_WRITE_TOKEN_FILE:-} ]]; then
      cat >>"$PROM_DIR/prometheus.yml" <<EOF
    authorization:
      credentials_file: '$PROMETHEUS_REMOTE_WRITE_TOKEN_FILE'
EOF
    fi
  fi
}

# start_server: sets PROM_PID, PROM_URL, PROM_DIR; fails with the log.
start_server() {
  command -v "$PROMETHEUS" >/dev/null 2>&1 ||
    die "no $PROMETHEUS binary: install Debian's package (scripts/install-deps.sh, or apt-get install prometheus)"
  PROM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/immune-prometheus.XXXXXX")
  mkdir -p "$PROM_DIR/data"
  local attempt port
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    write_config "$port"
    "$PROMETHEUS" \
      --config.file="$PROM_DIR/prometheus.yml" \
      --storage.tsdb.path="$PROM_DIR/data" \
      --storage.tsdb.retention.time=100y \
      --web.listen-address="127.0.0.1:$port" \
      --web.enable-remote-write-receiver \
      --log.level=warn \
      >"$PROM_DIR/prometheus.log" 2>&1 </dev/null &
    PROM_PID=$!
    PROM_URL="http://127.0.0.1:$port"
    local i
    for i in $(seq 1 150); do # 15 s
      if ! kill -0 "$PROM_PID" 2>/dev/null; then
        break
      fi
      if http_ok "$PROM_URL/-/ready"; then
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "$PROM_PID" 2>/dev/null; then
      stop_server
      die "prometheus on $PROM_URL not ready after 15 s; its log:
$(tail -n 20 "$PROM_DIR/prometheus.log")"
    fi
    wait "$PROM_PID" 2>/dev/null || true
    PROM_PID=
    if ! grep -q 'address already in use' "$PROM_DIR/prometheus.log"; then
      local log
      log=$(tail -n 20 "$PROM_DIR/prometheus.log")
      rm -rf "$PROM_DIR"
      die "prometheus exited at start; its log:
$log"
    fi
    echo "prometheus.sh: port $port taken, trying another (attempt $attempt)" >&2
  done
  rm -rf "$PROM_DIR"
  die "no free port after 5 attempts"
}

# stop_server: stops PROM_PID (TERM, then KILL after 10 s) and removes
# PROM_DIR unless IMMUNE_KEEP_PROMETHEUS_DATA=1.
stop_server() {
  if [[ -n ${PROM_PID:-} ]] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill -TERM "$PROM_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$PROM_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$PROM_PID" 2>/dev/null; then
      echo "prometheus.sh: prometheus (pid $PROM_PID) ignored TERM, killing it" >&2
      kill -KILL "$PROM_PID" 2>/dev/null || true
    fi
    wait "$PROM_PID" 2>/dev/null || true
  fi
  PROM_PID=
  if [[ -n ${PROM_DIR:-} && -d $PROM_DIR ]]; then
    if [[ ${IMMUNE_KEEP_PROMETHEUS_DATA:-} == 1 ]]; then
      echo "prometheus.sh: kept $PROM_DIR" >&2
    else
      rm -rf "$PROM_DIR"
    fi
  fi
  PROM_DIR=
}

# parse_config_flag ARGS...: sets CONFIG_FILE from a leading --config
# FILE and NSHIFT to the number of arguments it took.
parse_config_flag() {
  CONFIG_FILE= NSHIFT=0
  if [[ ${1:-} == --config ]]; then
    [[ $# -ge 2 ]] || usage
    [[ -r $2 ]] || die "cannot read config file $2"
    CONFIG_FILE=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
    NSHIFT=2
  fi
}

cmd_run() {
  parse_config_flag "$@"
  shift "$NSHIFT"
  [[ ${1:-} == -- ]] && shift
  [[ $# -gt 0 ]] || usage
  PROM_PID= PROM_DIR= CHILD=
  install_traps
  start_server
  echo "prometheus.sh: prometheus $PROM_URL (pid $PROM_PID, data $PROM_DIR/data)" >&2
  export IMMUNE_TEST_PROMETHEUS_URL=$PROM_URL
  export IMMUNE_TEST_PROMETHEUS_DATA=$PROM_DIR/data
  run_command "$@"
}

cmd_start() {
  parse_config_flag "$@"
  shift "$NSHIFT"
  [[ $# -eq 0 ]] || usage
  PROM_PID= PROM_DIR=
  start_server
  printf 'export IMMUNE_TEST_PROMETHEUS_URL=%q\n' "$PROM_URL"
  printf 'export IMMUNE_TEST_PROMETHEUS_DATA=%q\n' "$PROM_DIR/data"
  printf 'export IMMUNE_TEST_PROMETHEUS_PID=%q\n' "$PROM_PID"
}

cmd_stop() {
  [[ -n ${IMMUNE_TEST_PROMETHEUS_PID:-} ]] || die "IMMUNE_TEST_PROMETHEUS_PID is not set: nothing started by 'start' to stop"
  PROM_PID=$IMMUNE_TEST_PROMETHEUS_PID
  PROM_DIR=
  if [[ -n ${IMMUNE_TEST_PROMETHEUS_DATA:-} ]]; then
    PROM_DIR=$(dirname "$IMMUNE_TEST_PROMETHEUS_DATA")
    [[ $(basename "$PROM_DIR") == immune-prometheus.* ]] || PROM_DIR=
  fi
  # Not our child: wait by polling.
  stop_server
}

case ${1:-} in
run) shift; cmd_run "$@" ;;
start) shift; cmd_start "$@" ;;
stop) cmd_stop ;;
*) usage ;;
esac
