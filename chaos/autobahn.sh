#!/usr/bin/env bash
# Scenario 1 of `make chaos`: WebSocket conformance of the transport layer, against
# `chatwire conformance` (release build, 127.0.0.1, stopped by its PID).
#
# The Autobahn fuzzing client (autobahntestsuite 0.8.2, Python 2.7, pinned in
# chaos/autobahn-requirements.txt, installed into tools/chaos/py27) runs its case families 1-7, 9
# and 10 against the conformance server's `/echo`: a WebSocket that sends every message back,
# over the same transport as the chat (tungstenite over the shard-shared `Wire`). It passes when
# every case ran and none is FAILED (OK, NON-STRICT and INFORMATIONAL are Autobahn's passing
# verdicts). chaos/wsconf.py then runs the same families through Engine.IO and Socket.IO (the
# conformance app's `message` -> `message-back`), the path chat clients take; where no
# python2.7 exists it is the only verdict.
#   chaos/autobahn.sh RESULTS
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="$1"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
OUT="${CHAOS_OUT:-$ROOT/target/chaos}"
t0=$SECONDS
record() { CHAOS_STEP_SECS=$((SECONDS - t0)) python3 "$ROOT/chaos/main.py" record autobahn "$1" "$2" "$RESULTS"; }
echo
echo "== 1. WebSocket conformance"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CONFORMANCE_HOST=127.0.0.1 "$BIN/chatwire" conformance --port "$PORT" >"$OUT/conformance.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null' EXIT
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# Autobahn's own client against the raw echo.
py27=""
for c in python2.7 "$HOME"/.pyenv/versions/2.7*/bin/python2.7; do
  if "$c" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then py27="$c"; break; fi
done
autobahn_note="no python2.7 here: Autobahn not run"
autobahn_verdict=""
if [ -n "$py27" ]; then
  venv="$ROOT/tools/chaos/py27"
  want=$(sha256sum "$ROOT/chaos/autobahn-requirements.txt" | cut -c1-64)
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing autobahntestsuite into $venv"
    rm -rf "$venv" "$ROOT/tools/chaos/virtualenv"
    "$py27" -m pip install -q --disable-pip-version-check --target "$ROOT/tools/chaos/virtualenv" 'virtualenv==20.15.1' &&
      PYTHONPATH="$ROOT/tools/chaos/virtualenv" "$py27" -m virtualenv -q "$venv" &&
      "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/chaos/autobahn-requirements.txt" &&
      echo "$want" >"$venv/.stamp"
  fi
  if [ -x "$venv/bin/wstest" ]; then
    rm -rf "$OUT/autobahn"
    mkdir -p "$OUT/autobahn"
    cat >"$OUT/autobahn/spec.json" <<EOF
{"outdir": "$OUT/autobahn/reports", "servers": [{"agent": "chatwire",
 "url": "ws://127.0.0.1:$PORT/echo"}],
 "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
 "exclude-cases": [], "exclude-agent-cases": {}}
EOF
    (cd "$OUT/autobahn" && timeout 600 "$venv/bin/wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1)
    # Autobahn's verdicts: PASS when every case of the families ran and none FAILED.
    autobahn_note=$(python3 - "$OUT/autobahn/reports/index.json" <<'EOF'
import collections, json, sys
try:
    d = json.load(open(sys.argv[1]))["chatwire"]
except (OSError, ValueError, KeyError) as e:
    print(f"FAIL Autobahn wrote no report ({e})")
    sys.exit()
c = collections.Counter(v["behavior"] for v in d.values())
bad = sorted(k for k, v in d.items() if v["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
             or v.get("behaviorClose") not in ("OK", "INFORMATIONAL"))
# Families 1-7, 9 and 10 hold 301 cases in autobahntestsuite 0.8.2.
ok = not bad and len(d) >= 301
counts = ", ".join(f"{n} {b}" for b, n in sorted(c.items()))
names = "; not passed: " + " ".join(bad[:10]) if bad else ""
print(("PASS" if ok else "FAIL") + f" Autobahn fuzzing client (autobahntestsuite 0.8.2), families "
      f"1-7, 9, 10 against /echo: {len(d)} cases, {counts}{names}")
EOF
)
    autobahn_verdict=${autobahn_note%% *}
    autobahn_note=${autobahn_note#* }
  else
    autobahn_note="autobahntestsuite could not be installed for $py27: Autobahn not run"
  fi
fi
echo "   $autobahn_note"

log="$OUT/wsconf.log"
if timeout 300 python3 "$ROOT/chaos/wsconf.py" "$PORT" >"$log" 2>&1; then verdict=PASS; else verdict=FAIL; fi
grep -v '^FIGURE: ' "$log"
figure=$(grep '^FIGURE: ' "$log" | sed 's/^FIGURE: //')
[ "$autobahn_verdict" = FAIL ] && verdict=FAIL
record "$verdict" "$autobahn_note; through Engine.IO: ${figure:-wsconf.py did not finish, see $log}"
