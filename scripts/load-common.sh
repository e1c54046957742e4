# Helpers shared by scripts/loadtest.sh and scripts/bench.sh (sourced, not run).
# Servers are started in the background, their pid kept, and stopped by that pid only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release"
OUT="${OUT:-$ROOT/target/loadtest}"
mkdir -p "$OUT"

# One process may hold this many sockets; the load generator raises its own soft limit too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=""

# wait_http URL [seconds]: until URL answers 2xx.
wait_http() {
  local url="$1" deadline=$((SECONDS + ${2:-30}))
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "no answer from $url" >&2; return 1; }
    sleep 0.2
  done
}

# wait_port PORT [seconds]: until something listens on 127.0.0.1:PORT.
wait_port() {
  local deadline=$((SECONDS + ${2:-30}))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "nothing listens on port $1" >&2; return 1; }
    sleep 0.2
  done
}

# start_chatwire PORT DATABASE_URL LOG: chatwire serve in the background (SERVER_PID).
start_chatwire() {
  "$BIN/chatwire" serve --host 127.0.0.1 --port "$1" --database-url "$2" \
    --dev-tokens true --rate-limit-conn-per-ip 0 --rate-limit-rest-ip-factor 0 --max-sessions-per-ip 0 >"$3" 2>&1 &
  SERVER_PID=$!
  wait_http "http://127.0.0.1:$1/healthz" 60
}

# start_peer NAME PORT LOG: a benchmark peer in the background (SERVER_PID).
start_peer() {
  bash -c "exec $("$ROOT/scripts/peers.sh" bin "$1" "$2")" >"$3" 2>&1 &
  SERVER_PID=$!
  wait_port "$2" 30
}

# stop_server: SIGTERM the server we started, wait for it.
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# cpu_cgroup NAME CORES: creates a cgroup limited to CORES cores of CPU time (cgroup v1 `cpu`
# or v2 `cpu.max`) and prints its directory; fails where no writable CPU controller exists.
cpu_cgroup() {
  local name="$1" quota
  quota=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * 100000))' "$2") || return 1
  if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] && [ -w /sys/fs/cgroup/cpu ]; then
    mkdir -p "/sys/fs/cgroup/cpu/$name" 2>/dev/null || return 1
    echo 100000 >"/sys/fs/cgroup/cpu/$name/cpu.cfs_period_us" || return 1
    echo "$quota" >"/sys/fs/cgroup/cpu/$name/cpu.cfs_quota_us" || return 1
    echo "/sys/fs/cgroup/cpu/$name"
  elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null && [ -w /sys/fs/cgroup ]; then
    mkdir -p "/sys/fs/cgroup/$name" 2>/dev/null || return 1
    echo "$quota 100000" >"/sys/fs/cgroup/$name/cpu.max" || return 1
    echo "/sys/fs/cgroup/$name"
  else
    return 1
  fi
}

# ensure_pg_database URL: creates the database named in a postgres:// URL when missing.
ensure_pg_database() {
  local url="$1" db admin
  db="${url##*/}"; db="${db%%\?*}"
  admin="${url%/*}/postgres"
  if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql "$admin" -qc "CREATE DATABASE \"$db\""
  fi
}
