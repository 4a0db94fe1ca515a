# mcpcluster: one entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 30
FUZZ_SMOKE_SECONDS ?= 20

.PHONY: help run build release test crds-check test-unit lint layers fmt e2e-protocol e2e-auth fuzz fuzz-smoke bench-edge bench-memory bench-memory-peers bench-node bench-cluster bench-gateway bench-scale bench-scale-quick bench-load-cost bench-idle bench-detector sim sim-smoke clean

help: ## List targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

run: ## Run one node on 127.0.0.1:8080/mcp (admin 127.0.0.1:9090) with the default config
	$(CARGO) run --release -p mcp-node -- $(ARGS)

build: ## Debug build of the workspace
	$(CARGO) build --workspace

release: ## Optimized build
	$(CARGO) build --release --workspace

test: lint crds-check test-unit sim-smoke fuzz-smoke e2e-protocol e2e-auth e2e-upstream e2e-upstream-conformance e2e-cluster e2e-netns e2e-failover bench-scale-quick manifests-check helm-lint image e2e e2e-chart e2e-k8s-auth ## Everything CI runs: lint, CRD check, unit + black-box, a bounded random simulator run, short fuzz pass, protocol, auth, upstream MCP servers, conformance through an upstream, cluster (processes, netns), 20K sessions on 6+ release nodes with a kill -9 (bench-scale-quick), chart, image, Kubernetes e2e
	e2e/k8s/cluster.sh down  # e2e-chart leaves the control plane up; a test run leaves nothing running
	@echo "make test: all stages passed"

crds-check: ## Fail when crds/generated/ differs from what crdgen prints for the Rust types
	$(CARGO) run -q -p mcpcluster-api --features resource --bin crdgen -- --check crds/generated/mcpclusters.mcpcluster.dev.yaml

test-unit: ## Unit and black-box tests (cargo test)
	$(CARGO) test --workspace

lint: layers ## rustfmt --check, clippy -D warnings, rustdoc links -D warnings and the node's layer rules
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

layers: ## Fail when node/src has an import cycle, or its session/cluster layer or node.rs imports what sits above (node/tools/modcycle.py)
	python3 node/tools/modcycle.py --max-scc 1 --forbid cluster/:http/ --forbid session/:http/ --forbid session/:cluster/ --forbid node.rs:cluster/ --forbid node/:cluster/ --forbid node/:http/

fmt: ## Format the code
	$(CARGO) fmt --all

e2e-protocol: build ## Conformance suite (both eras) and real SDK clients against a real node
	e2e/protocol.sh target/debug/mcp-node

e2e-auth: build ## OAuth 2.1: a node with auth on, Keycloak (from Maven Central, cached) and the real SDK clients (client_credentials, both eras); expired, wrong audience/issuer, unknown key, alg none, missing scope, session hijack refused
	e2e/auth/run.sh target/debug/mcp-node

.PHONY: e2e-upstream
e2e-upstream: ## MCP servers behind a node: @modelcontextprotocol/server-everything (npm, cached) tools listed and called, prompts got, resources listed and read, in both eras; its elicitation and sampling answered by clients of both eras; killed (clear error) and restarted (next call works); a Python FastMCP server (PyPI, cached venv) listed and called in both eras
	eval "$$(e2e/upstream/install.sh)" && export MCPCLUSTER_NODE22 MCPCLUSTER_SERVER_EVERYTHING MCPCLUSTER_FASTMCP_PYTHON MCPCLUSTER_FASTMCP_SERVER && \
	  $(CARGO) test -p mcp-node --test upstream --test upstream_bridge -- --ignored --nocapture

.PHONY: e2e-upstream-conformance
e2e-upstream-conformance: build ## The conformance suite against a node whose content all comes from an upstream node (prefix ""): 2025-11-25 through a legacy and a detected 2026-07-28 upstream, 2026-07-28 through the latter (ALL=1: also 2026-07-28 through a legacy upstream, which does not pass)
	e2e/upstream/conformance.sh target/debug/mcp-node $(if $(ALL),--all)

# --- The cluster layer with real processes (node/tests/cluster_processes.rs)
.PHONY: e2e-cluster
e2e-cluster: ## 3 mcp-node processes on 127.0.0.1: converge, SIGKILL one (prints detection time), restart it (rejoins); relayed streams follow their session
	$(CARGO) test -p mcp-node --test cluster_processes --test relayed_streams -- --nocapture

.PHONY: e2e-netns
e2e-netns: ## (root) 3 mcp-node in their own network namespaces: converge, cut/heal a link, 50 ms delay, SIGKILL/restart (prints times)
	$(CARGO) build -p mcp-node
	e2e/cluster/netns.sh target/debug/mcp-node

.PHONY: e2e-failover
e2e-failover: ## (root) sessions survive node failures: 3 netns nodes + mcp-failover (200 sessions, 100 calls/s): kill -9 under load and a rolling SIGTERM restart lose 0 sessions; R=1 control loses some; prints time to recover
	$(CARGO) build -p mcp-node -p mcp-load
	e2e/cluster/failover.sh target/debug/mcp-node target/debug/mcp-failover

fuzz: ## Run each cargo-fuzz target (HTTP connection loop, peer frames and wire, config, JSON-RPC, /mcp bodies, upstream SSE, relayed bodies read for what must not run twice) for FUZZ_SECONDS (default 30); installs nightly/cargo-fuzz if missing
	node/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: ## CI's short fuzz pass: every target for FUZZ_SMOKE_SECONDS (default 20) from its seeds
	node/fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

bench-edge: ## The HTTP edge under hostile clients (bench/edge.py): crafted chunk x20,000, 100 stalled 4 MiB bodies, 1,000 idle keep-alive connections
	$(CARGO) build --release -p mcp-node
	bench/edge.py target/release/mcp-node --port $${EDGE_PORT:-20100}

bench-memory: release ## Memory per idle session / open connection at 1K and 10K (writes docs/BENCHMARKS.md)
	bench/memory.sh target/release/mcp-node

bench-memory-peers: release ## The same at 1K for mcp-node and the peers (rmcp, TypeScript SDK, Python SDK)
	SERVERS="node rmcp ts py" COUNTS="1000" bench/memory.sh target/release/mcp-node

bench-node: ## One node at 1K-19K connections, max rate at p99 < 5 ms, vs bare hyper and the peers (writes docs/BENCHMARKS.md)
	$(CARGO) build --release -p mcp-node -p mcp-load -p hyper-baseline
	bench/node.py

bench-cluster: ## 3 nodes on loopback: local vs forwarded tools/call, max forwarded rate at p99 < 10 ms, R=2 vs R=1, frames/compression, detection, sessions lost on kill -9 (writes docs/BENCHMARKS.md; QUICK=1: smoke)
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) bench/cluster.py

bench-gateway: ## tools/call of an upstream's tool through 3 clustered nodes (owner, forwarded) vs straight to the upstream, same run, p50/p99 ratios (writes docs/BENCHMARKS.md)
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) NO_BUILD=1 bench/gateway.py

bench-scale: ## >= 6 release nodes + mcp-load cluster: 1K -> 100K held sessions with GET streams, 5 min hold at 2,000 calls/s, kill -9 of the busiest node, rolling restart (writes docs/BENCHMARKS.md, docs/bench/scale-*.png)
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) NO_BUILD=1 bench/scale.py

bench-scale-quick: ## bench-scale with QUICK=1: 20K sessions, a 20 s hold, one kill -9; fails when a session is lost, an event missed, a stage not reached, the final check fails or a node dies falsely
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) NO_BUILD=1 QUICK=1 bench/scale.py

bench-idle: ## What idle sessions cost: 3 release nodes holding 16K idle sessions each with their GET streams, CPU per node and peer bytes/s over 60 s, then a final check (BASE_NODE=binary: the same run first with another build, as ratios; writes docs/BENCHMARKS.md)
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) NO_BUILD=1 bench/idle.py

bench-load-cost: ## mcp-load cluster vs the nodes it loads, same run: CPU per 1K held sessions per minute and per 1K calls (writes docs/BENCHMARKS.md)
	$(CARGO) build --release -p mcp-node -p mcp-load
	CARGO=$(CARGO) NO_BUILD=1 bench/loadcost.py

bench-detector: ## 6 nodes + mcp-load + stress-ng on 2 cores: false deaths in 10 min, then 20 x kill -9 detection at every survivor (writes docs/BENCHMARKS.md; QUICK=1: 1 min, 4 kills)
	$(CARGO) build --release -p mcp-node -p mcp-load
	NO_BUILD=1 CARGO=$(CARGO) bench/detector.py

SIM_SEEDS ?= 10000
SIM_FROM ?= 1
sim: ## The session layer's simulator: SIM_SEEDS (default 10,000) random scenarios from seed SIM_FROM (kill, restart, partition, stall, drain, message faults); exits 1 and prints a replay command per failing seed
	$(CARGO) run -p mcp-custody --release --example sim -- --seeds $(SIM_SEEDS) --from $(SIM_FROM) --jobs 2

# The bounded random run of `make test`. The build (profile `sim`: the simulation's crates
# optimized, dependencies as in a debug build — a cold build costs half the CPU of a release
# build, and seeds run as fast) and the run share SIM_SMOKE_BUDGET seconds; the run gets what
# the build left, at least SIM_SMOKE_MIN. Seeds start at SIM_SMOKE_FROM: by default "random",
# a random point past 10,000 (seeds 1-20,000 all pass, docs/BENCHMARKS.md), so each run of
# `make test` tries seeds nobody ran before; a number starts there (1: the seeds every
# version so far was run on). The first line says where the seeds start; a failing seed fails
# the stage and prints the command that replays it.
SIM_SMOKE_BUDGET ?= 85
SIM_SMOKE_MIN ?= 20
SIM_SMOKE_FROM ?= random
sim-smoke: ## (in make test) Random simulator scenarios for about SIM_SMOKE_BUDGET s (default 85, build included) from seed SIM_SMOKE_FROM (default "random": past 10,000; or a number); fails on any failing seed and prints its replay command
	@set -e; start=$$(date +%s); \
	$(CARGO) build -q -p mcp-custody --profile sim --example sim; \
	built=$$(( $$(date +%s) - start )); \
	secs=$$(( $(SIM_SMOKE_BUDGET) - built )); [ $$secs -ge $(SIM_SMOKE_MIN) ] || secs=$(SIM_SMOKE_MIN); \
	from="$(SIM_SMOKE_FROM)"; [ "$$from" != random ] || from=$$(( 10001 + RANDOM * 32768 + RANDOM )); \
	echo "sim-smoke: built in $${built} s; seeds from $$from for $${secs} s"; \
	target/sim/examples/sim --seeds 1000000000 --from $$from --seconds $$secs --jobs 1

clean: ## Remove build output
	$(CARGO) clean

# --- Kubernetes packaging and the e2e control plane (e2e/k8s/, image/, helm/, manifests/)
.PHONY: k8s-tools k8s-up k8s-down image helm-lint manifests manifests-check e2e-chart e2e-kind e2e-k8s-auth

k8s-tools: ## Build kube-apiserver/-controller-manager/-scheduler, etcd, kwok, kwokctl, helm from Go modules (cached)
	e2e/k8s/install.sh

k8s-up: k8s-tools ## Start the local control plane (kwokctl --runtime binary); e2e/k8s/cluster.sh env prints its KUBECONFIG
	e2e/k8s/cluster.sh up

k8s-down: ## Stop the local control plane and remove its state
	e2e/k8s/cluster.sh down

image: ## Build the mcp-node image with buildah from target/release (else debug) and check it runs
	image/build.sh $(IMAGE_ARGS)

helm-lint: k8s-tools ## helm lint --strict the chart (default values and every optional part on)
	helm/render.sh --lint

manifests: k8s-tools ## Regenerate manifests/ and the chart's CRD copy from the chart and crds/generated
	helm/render.sh

manifests-check: k8s-tools ## Fail with a diff when manifests/ or the chart's CRD copy is stale
	helm/render.sh --check

e2e-chart: k8s-up ## manifests/ and helm install on the local control plane; RBAC checked, mcp-operator run under it
	$(CARGO) build -p mcp-operator
	e2e/k8s/cluster.sh smoke
	e2e/k8s/chart.sh --operator target/debug/mcp-operator

e2e-k8s-auth: k8s-tools ## An McpCluster with spec.auth on the local control plane: Keycloak, the operator, real nodes; SDK clients with tokens, a session through another node for its principal only
	e2e/k8s/auth.sh

e2e-kind: ## For users with Docker + kind (not run in CI): image, kind cluster, helm install
	e2e/k8s/kind.sh

# --- The operator end to end (e2e/k8s/e2e.sh; starts the control plane when it is not up)
.PHONY: e2e
e2e: k8s-tools ## mcp-operator on the local control plane: children, rollout, scale, CEL, autoscaling on real nodes, drained scale-down, GC
	e2e/k8s/e2e.sh
