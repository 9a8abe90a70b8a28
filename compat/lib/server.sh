# Sourced by compat scripts: starts one server (real etcd or Cairn) with etcd's flags on
# free loopback ports and a fresh data dir, and stops it. Owns only the server process it
# starts; the caller owns the temp dir it passes in.
#
#   source compat/lib/server.sh
#   server_start BIN DIR       # sets SERVER_PID, CPORT, PPORT, CLIENT_URL; log in DIR/server.log
#                              # (the array SERVER_EXTRA_ARGS, if set, adds flags)
#   server_stop                # SIGTERM, bounded wait (20 s), then SIGKILL
#
# READY_TIMEOUT (seconds, default 30) bounds the wait for etcd's readiness log line.

SERVER_PID=""

# Two distinct free loopback ports (bound to port 0 and released; the small race with other
# processes is acceptable for a test harness).
server_pick_ports() {
  read -r CPORT PPORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)
  [ -n "${PPORT:-}" ]
}

server_start() {
  local bin=$1 dir=$2
  server_pick_ports || { echo "server: could not pick free ports" >&2; return 2; }
  CLIENT_URL="http://127.0.0.1:$CPORT"
  local purl="http://127.0.0.1:$PPORT"
  "$bin" --name s1 --data-dir "$dir/data" \
    --listen-client-urls "$CLIENT_URL" --advertise-client-urls "$CLIENT_URL" \
    --listen-peer-urls "$purl" --initial-advertise-peer-urls "$purl" \
    --initial-cluster "s1=$purl" --initial-cluster-state new \
    ${SERVER_EXTRA_ARGS[@]+"${SERVER_EXTRA_ARGS[@]}"} \
    >"$dir/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  local tries=$(( ${READY_TIMEOUT:-30} * 10 ))
  until grep -q 'ready to serve client requests' "$dir/server.log" 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$tries" -le 0 ]; then
      echo "server: $bin did not become ready within ${READY_TIMEOUT:-30} s; log tail:" >&2
      tail -n 30 "$dir/server.log" >&2
      server_stop
      return 1
    fi
    tries=$((tries - 1))
    sleep 0.1
  done
}

server_stop() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 200); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server: no exit within 20 s of SIGTERM; sending SIGKILL" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
