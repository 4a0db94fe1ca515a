#!/usr/bin/env bash
# The official conformance suite against a node whose content all comes from an upstream: node
# U serves the conformance pack; gateway node G serves no pack of its own and has U under
# `upstreams:` with an empty `prefix` (so the suite finds the tool, resource and prompt names
# it expects). The suite runs against G: both lines (2025-11-25 and the 2026-07-28
# requirement set), with U reached as `legacy` and as `auto` (detected as 2026-07-28).
#
#   e2e/upstream/conformance.sh [path/to/mcp-node] [--line 0.1|0.2] [--era legacy|auto]
#
# Without --line/--era it runs all four combinations. Exits non-zero when any scored
# scenario fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../../target/debug/mcp-node"
if [[ $# -gt 0 && "$1" != --* ]]; then bin="$1"; shift; fi
[[ -x "$bin" ]] || { echo "conformance.sh: no mcp-node binary at $bin (run cargo build)" >&2; exit 2; }
lines=(0.1 0.2); eras=(legacy auto)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --line) lines=("$2"); shift 2 ;;
    --era) eras=("$2"); shift 2 ;;
    *) echo "conformance.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d -t mcp-upstream-conformance.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME ADMIN_PORT ARGS...: a node in the background, waited for until ready.
start() {
  local name="$1" admin="$2"; shift 2
  "$bin" --admin-listen "127.0.0.1:$admin" "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name exited early:"; cat "$work/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "$name not ready in 10 s"; cat "$work/$name.log"; exit 1
}

up="$(free_port)"
start upstream "$(free_port)" --listen "127.0.0.1:$up"
status=0
runs=0
for era in "${eras[@]}"; do
  gw="$(free_port)"; gwa="$(free_port)"
  cat >"$work/gateway-$era.yaml" <<YAML
packs: []
upstreams:
  - name: conf
    url: http://127.0.0.1:$up/mcp
    prefix: ""
    era: $era
YAML
  start "gateway-$era" "$gwa" --config "$work/gateway-$era.yaml" --listen "127.0.0.1:$gw"
  # The gateway lists the upstream's tools once it fetched them (in the background at start).
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$gwa/metrics" 2>/dev/null | grep -q '^mcp_upstream_tools{.*} [1-9]' && break
    sleep 0.1
  done
  for line in "${lines[@]}"; do
    runs=$((runs + 1))
    echo "== conformance line $line through a gateway, upstream era: $era"
    "$here/../conformance/run.sh" "http://127.0.0.1:$gw/mcp" --line "$line" || status=1
  done
done
if [[ $status -eq 0 ]]; then echo "upstream conformance: $runs run(s) passed"; else echo "upstream conformance: FAILED (see above; logs in $work)"; fi
exit $status
