# chatwire: the commands a developer needs. A newcomer needs two: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Extra arguments for `make run`, e.g. `make run ARGS="--port 4000"`.
ARGS ?=

.PHONY: run test interop-deps bench loadtest fuzz chaos fmt lint peers help

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

## bench     criterion benches and a short load run against chatwire and both peers, with ratios
bench:
	bash scripts/bench.sh

## loadtest  release build, server + load generator, 60 s default scenario, reports in target/loadtest/
loadtest:
	bash scripts/loadtest.sh

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
