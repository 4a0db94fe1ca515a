#!/usr/bin/env bash
# Protocol e2e: starts a real mcp-node on free loopback ports, runs the official conformance
# suite (2025-11-25 line and the 2026-07-28 requirement set) and real MCP clients from the
# Python and TypeScript SDKs against it, then stops the node. Exits non-zero on any failure.
#
#   e2e/protocol.sh [path/to/mcp-node]     (default: target/debug/mcp-node)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/debug/mcp-node}"
[[ -x "$bin" ]] || { echo "protocol.sh: no mcp-node binary at $bin (run cargo build)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"; admin="$(free_port)"
log="$(mktemp -t mcp-node-e2e.XXXXXX.log)"
"$bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "mcp-node exited early:"; cat "$log"; exit 1; }
  sleep 0.1
done
url="http://127.0.0.1:$port/mcp"
echo "== mcp-node pid $pid on $url (log $log)"

status=0
"$here/conformance/run.sh" "$url" --line 0.1 || status=1
# Pending in 0.1.16 (not in --suite active) but part of 2025-11-25: run them explicitly.
"$here/conformance/run.sh" "$url" --line 0.1 --scenario server-sse-polling || status=1
"$here/conformance/run.sh" "$url" --line 0.1 --scenario json-schema-2020-12 || status=1
"$here/conformance/run.sh" "$url" --line 0.2 || status=1
"$here/clients/run.sh" "$url" || status=1

if [[ $status -eq 0 ]]; then echo "protocol e2e: 5 passed, 0 failed"; else echo "protocol e2e: FAILED (see above)"; fi
exit $status
