#!/usr/bin/env bash
# Installs the real Socket.IO clients the interop tests drive:
#   tools/node/node_modules  <- tools/node/package-lock.json   (socket.io-client v4, and socket.io +
#                               @socket.io/redis-adapter 8.3 + @socket.io/redis-emitter for the
#                               mixed-fleet test, `npm ci`)
#   tools/python/.venv       <- tools/python/requirements.txt  (python-socketio, websocket-client)
#   chromium                 <- Debian package, for the browser test (only as root with apt-get;
#                               elsewhere that test is skipped with a note, except under CI=true)
# Each is (re)installed only when missing or when its lock/requirements file changed since the
# last install (a stamp holding the file's checksum sits inside the installed tree).
# Usage: scripts/interop-deps.sh [--check] [--node-only]
#   --check: exit 1 if an install would be needed
#   --node-only: only tools/node (what `make run` needs for the demo page's socket.io-client)
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
node_only=false
for arg in "$@"; do
    case "$arg" in
        --check) check_only=true ;;
        --node-only) node_only=true ;;
        *) echo "interop-deps: unknown argument $arg" >&2; exit 2 ;;
    esac
done

sum() { sha256sum "$@" | sha256sum | cut -c1-64; }

node_dir=tools/node
node_stamp=$node_dir/node_modules/.chatwire-stamp
node_want=$(sum "$node_dir/package.json" "$node_dir/package-lock.json")
if [[ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]]; then
    $check_only && { echo "interop-deps: $node_dir/node_modules missing or outdated" >&2; exit 1; }
    command -v npm >/dev/null || { echo "interop-deps: npm not found (install Node.js 18+)" >&2; exit 1; }
    echo "interop-deps: installing socket.io-client into $node_dir/node_modules"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$node_want" > "$node_stamp"
fi

if $node_only; then
    echo "interop-deps: socket.io-client up to date in $node_dir/node_modules"
    exit 0
fi

py_dir=tools/python
venv=$py_dir/.venv
py_stamp=$venv/.chatwire-stamp
py_want=$(sum "$py_dir/requirements.txt")
if [[ "$(cat "$py_stamp" 2>/dev/null)" != "$py_want" || ! -x "$venv/bin/python" ]]; then
    $check_only && { echo "interop-deps: $venv missing or outdated" >&2; exit 1; }
    python=${PYTHON:-python3}
    command -v "$python" >/dev/null || { echo "interop-deps: $python not found (install Python 3.8+)" >&2; exit 1; }
    echo "interop-deps: installing python-socketio into $venv"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        echo "interop-deps: '$python -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2
        rm -rf "$venv"
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt"
    echo "$py_want" > "$py_stamp"
fi
if ! command -v "${CHROMIUM:-chromium}" >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        $check_only && { echo "interop-deps: chromium missing" >&2; exit 1; }
        echo "interop-deps: installing chromium (Debian package) for the browser interop test"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "interop-deps: chromium not found and cannot be installed here (not root or no apt-get):" \
             "the browser interop test will be skipped; install the 'chromium' package to run it" >&2
    fi
fi
echo "interop-deps: up to date"
