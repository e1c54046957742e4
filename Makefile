# chatwire: the commands a developer needs. A newcomer needs two: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Extra arguments for `make run`, e.g. `make run ARGS="--port 4000"`.
ARGS ?=

.PHONY: run test interop-deps bench bench-check bench-icount loadtest fuzz chaos cluster fmt lint peers help

help:
	@grep -E '^## ' Makefile | sed 's/^## //'

## run       start the server on 127.0.0.1:3000 (embedded SQLite at ./data/chatwire.db, dev tokens on,
##           the demo chat page at http://localhost:3000/ with socket.io-client from npm)
# Loopback unless HOST is set: dev tokens (on without a JWT key) refuse a public address.
run:
	-@bash scripts/interop-deps.sh --node-only
	HOST="$${HOST:-127.0.0.1}" $(CARGO) run --release -p chatwire --bin chatwire -- serve $(ARGS)

## test      every test: unit, property, integration (SQLite + PostgreSQL) and interop (node, python)
test: interop-deps
	$(CARGO) test --workspace --no-fail-fast

## interop-deps  install socket.io-client (npm) and python-socketio (PyPI) into tools/
interop-deps:
	bash scripts/interop-deps.sh

## bench     criterion benches, then chatwire (memory, PostgreSQL) beside both peers, pinned and
##           shared cores: knee msgs/s at p99<=50ms, CPU/msg and p50/p99 at fixed loads, medians
##           of 3 interleaved runs with spread, ratios to peers and baseline (under 10 min;
##           BENCH_QUICK=1 smoke form, BENCH_FULL=1 longer; --save-baseline via scripts/bench.sh)
bench:
	bash scripts/bench.sh

## bench-check  the instruction-count gate, then the same load run as a gate: fails when a hot
##           path's instructions rose > 2% or a chatwire figure is worse than
##           bench/baseline/bench.json beyond its noise margin (under 12 min; docs/bench.md)
bench-check:
	bash scripts/bench.sh --check

## bench-icount  instructions per iteration of the hot paths (codec, chat handler, fan-out to 50)
##           under valgrind's callgrind, against bench/baseline/icount.json: fails on a rise > 2%
##           (deterministic, whatever the machine's load; part of bench-check; docs/bench.md)
bench-icount:
	bash scripts/bench_icount.sh

## loadtest  release build, server + load generator, 60 s default scenario, reports in target/loadtest/
##           NODES=3: 3 nodes and a throwaway Redis, each room's members spread over the nodes,
##           Redis and fleet CPU printed; PostgreSQL store only (scripts/loadtest.sh)
loadtest:
	bash scripts/loadtest.sh

## cluster   a local fleet: 3 nodes on ports 3001-3003 behind a round-robin front on
##           http://localhost:3000/ (no sticky sessions), PostgreSQL (database chatwire_cluster)
##           and Redis (started when none answers); Ctrl-C stops what it started (scripts/cluster.sh)
cluster:
	bash scripts/cluster.sh

## fuzz      each fuzz target for FUZZ_SECONDS (default 60) seconds
fuzz:
	bash scripts/fuzz.sh

## chaos     reliability suite (not part of `make test`, ~15 min): slowloris, slow consumers, churn,
##           PostgreSQL outage, kill -9, SIGTERM, floods, fuzzing, WebSocket conformance; release
##           builds on PostgreSQL (its own databases), a PASS/FAIL table, exit 1 on any FAIL
chaos:
	bash scripts/chaos.sh

## peers     build the socketioxide and Node socket.io peer servers used by `make bench`
peers:
	bash scripts/peers.sh build

## fmt / lint
fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
