# Shared by scripts/prometheus.sh and scripts/zookeeper.sh: what runs a
# command against a throwaway server. Source it; the sourcing script
# defines stop_server (stops its server, removes its directory).

# port_free PORT: true when nothing accepts connections on it.
port_free() {
  ! { (exec 8<>"/dev/tcp/127.0.0.1/$1"); } 2>/dev/null
}

# install_traps: stop the server when the script exits, and on INT, TERM
# or HUP stop the command first (on_signal).
install_traps() {
  CHILD=
  trap 'stop_server' EXIT
  trap 'on_signal 130 INT' INT
  trap 'on_signal 143 TERM' TERM
  trap 'on_signal 129 HUP' HUP
}

# on_signal CODE SIG: stops the command (its whole process group: go test
# and the test binaries it started), then the server, and exits with CODE.
on_signal() {
  trap - INT TERM HUP
  if [[ -n ${CHILD:-} ]] && kill -0 "$CHILD" 2>/dev/null; then
    kill -"$2" -- "-$CHILD" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$CHILD" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  stop_server
  trap - EXIT
  exit "$1"
}

# run_command CMD...: runs the command, stops the server, and exits with
# the command's status. The command runs in a process group of its own,
# in the background, so that a signal to the script is handled at once
# (bash runs traps only between foreground commands) and reaches
# everything it started.
run_command() {
  local rc=0
  set -m
  "$@" <&0 &
  CHILD=$!
  set +m
  wait "$CHILD" || rc=$?
  CHILD=
  stop_server
  trap - EXIT INT TERM HUP
  exit "$rc"
}
