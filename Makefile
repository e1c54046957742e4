# chatwire: the commands a developer needs. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
CARGO ?= cargo
TOOLS := tools

.PHONY: run test test-rust interop-deps bench loadtest fuzz fmt lint

## run: start the server on :3000 with the embedded SQLite store (./data/chatwire.db)
run:
	$(CARGO) run --release -p chatwire --bin chatwire -- serve

## test: unit, property, integration and interop tests (needs nothing but cargo, node and python3)
test: interop-deps
	$(CARGO) test --workspace --all-targets --no-fail-fast

## fmt / lint
fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

interop-deps:
	@true

bench:
	$(CARGO) bench -p chatwire-bench

loadtest:
	@echo "loadtest: not wired yet" && exit 1

fuzz:
	@echo "fuzz: not wired yet" && exit 1
