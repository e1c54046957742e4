#!/usr/bin/env bash
# Benchmark peers: the load scenario's part of the chat contract on socketioxide and on Node's socket.io.
#
#   scripts/peers.sh build                 build/install both (idempotent)
#   scripts/peers.sh start <name> <port>   run one in the foreground (name: socketioxide | node)
#   scripts/peers.sh bin <name>            print the command that runs it (for scripts that need its pid)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SX_BIN="$CARGO_TARGET_DIR/release/chatwire-peer-socketioxide"
NODE_DIR="$ROOT/bench/peers/node"

build() {
  (cd "$ROOT/bench/peers/socketioxide" && cargo build --release --locked --quiet)
  if [ ! -d "$NODE_DIR/node_modules/socket.io" ] \
     || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

command_for() {
  case "$1" in
    socketioxide) echo "$SX_BIN --port $2" ;;
    node) echo "node $NODE_DIR/server.js --port $2" ;;
    *) echo "unknown peer '$1' (socketioxide | node)" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  build) build ;;
  start)
    [ $# -eq 3 ] || { echo "usage: $0 start <socketioxide|node> <port>" >&2; exit 2; }
    cmd="$(command_for "$2" "$3")"
    # shellcheck disable=SC2086
    exec $cmd ;;
  bin)
    [ $# -eq 3 ] || { echo "usage: $0 bin <socketioxide|node> <port>" >&2; exit 2; }
    command_for "$2" "$3" ;;
  *) echo "usage: $0 build | start <socketioxide|node> <port> | bin <name> <port>" >&2; exit 2 ;;
esac
