# mcpcluster: one entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 30

.PHONY: help run build release test test-unit lint fmt e2e-protocol fuzz bench-memory bench-memory-peers clean

help: ## List targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

run: ## Run one node on 127.0.0.1:8080/mcp (admin 127.0.0.1:9090) with the default config
	$(CARGO) run --release -p mcp-node -- $(ARGS)

build: ## Debug build of the workspace
	$(CARGO) build --workspace

release: ## Optimized build
	$(CARGO) build --release --workspace

test: lint test-unit e2e-protocol ## Everything CI runs: lint, unit + black-box tests, protocol e2e
	@echo "make test: all stages passed"

test-unit: ## Unit and black-box tests (cargo test)
	$(CARGO) test --workspace

lint: ## rustfmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

e2e-protocol: build ## Conformance suite (both eras) and real SDK clients against a real node
	e2e/protocol.sh target/debug/mcp-node

fuzz: ## Run each cargo-fuzz target for FUZZ_SECONDS (needs the nightly toolchain)
	node/fuzz/run.sh $(FUZZ_SECONDS)

bench-memory: release ## Memory per idle session / open connection at 1K and 10K (writes docs/BENCHMARKS.md)
	bench/memory.sh target/release/mcp-node

bench-memory-peers: release ## The same at 1K for mcp-node and the peers (rmcp, TypeScript SDK, Python SDK)
	SERVERS="node rmcp ts py" COUNTS="1000" bench/memory.sh target/release/mcp-node

clean: ## Remove build output
	$(CARGO) clean
