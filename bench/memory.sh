#!/usr/bin/env bash
# make bench-memory: memory per idle session and per open idle connection (with its session
# and GET stream) at 1K and 10K, each measured on a fresh server. SERVERS picks what to
# measure: `node` (ours, default) and the peers `rmcp ts py` (bench/peers, same echo tool,
# same client, same run). Prints the figures and rewrites the "Memory" section of
# docs/BENCHMARKS.md with the command and the machine.
#
#   bench/memory.sh [path/to/mcp-node]
#   SERVERS="node rmcp ts py" COUNTS="1000" bench/memory.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/mcp-node}"
counts="${COUNTS:-1000 10000}"
servers="${SERVERS:-node}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "server on port $1 did not start" >&2; return 1; }
results="$(mktemp)"
for server in $servers; do
  # Build/install a peer once before measuring, so the measured start is quick.
  if [[ "$server" != node ]]; then timeout 600 "$here/peers/run.sh" "$server" 0 >/dev/null 2>&1 & sleep 0.1; kill $! 2>/dev/null || true; wait $! 2>/dev/null || true; fi
  for phase in sessions connections; do
    for n in $counts; do
      port="$(free_port)"
      if [[ "$server" == node ]]; then
        "$bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" --log-level warn &
      else
        "$here/peers/run.sh" "$server" "$port" 2>/dev/null &
      fi
      pid=$!
      wait_port "$port"
      python3 "$here/memory.py" --addr "127.0.0.1:$port" --pid "$pid" --phase "$phase" -n "$n" \
        | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['server']='$server'; print(json.dumps(r))" \
        | tee -a "$results" || echo "{\"server\":\"$server\",\"phase\":\"$phase\",\"n\":$n,\"failed\":true}" | tee -a "$results"
      kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    done
  done
done
BENCH_DIR="$here" python3 - "$results" "$here/../docs/BENCHMARKS.md" "$servers" <<'PY'
import json, sys, os
sys.path.insert(0, os.environ["BENCH_DIR"])
import benchdoc
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers = sys.argv[3].split() != ["node"]
title = "## Memory against peers (SERVERS=\"" + sys.argv[3] + "\" bench/memory.sh)" if peers else "## Memory (make bench-memory)"
names = {"node": "mcp-node", "rmcp": "rmcp 3.11 stock", "ts": "TypeScript SDK 1.32.2", "py": "Python mcp 1.30.0"}
label = {"sessions": "idle session", "connections": "open idle connection + session + GET stream"}
command = (f"`SERVERS=\"{sys.argv[3]}\" bench/memory.sh` (`make bench-memory-peers`)" if peers
           else "`make bench-memory` (bench/memory.sh)")
out = [title, "",
       f"Command: {command}. Machine: {benchdoc.machine(os.path.join(os.environ['BENCH_DIR'], '..'))}. Each row is a fresh server; RSS from /proc/PID/status.", "",
       "| server | what | N | RSS before (KiB) | RSS after (KiB) | bytes per item | ramp rate (/s) |", "|---|---|---|---|---|---|---|"]
for r in rows:
    if r.get("failed"):
        out.append(f"| {names.get(r['server'], r['server'])} | {label[r['phase']]} | {r['n']} | – | – | failed | – |")
        continue
    out.append(f"| {names.get(r['server'], r['server'])} | {label[r['phase']]} | {r['n']} | {r['rss_base_kib']} | {r['rss_after_kib']} | {r['bytes_per_item']} | {r['rate_per_s']} |")
if peers:
    ours = {(r["phase"], r["n"]): r["bytes_per_item"] for r in rows if r["server"] == "node" and not r.get("failed")}
    out += ["", "Ratios (peer bytes per item / mcp-node bytes per item, same N, same run):", ""]
    for r in rows:
        if r["server"] != "node" and not r.get("failed") and (r["phase"], r["n"]) in ours and ours[(r["phase"], r["n"])] > 0:
            out.append(f"- {names.get(r['server'])}, {label[r['phase']]}, N={r['n']}: {r['bytes_per_item'] / ours[(r['phase'], r['n'])]:.1f}x")
section = "\n".join(out) + "\n"
benchdoc.replace_section(sys.argv[2], section)
print(section)
PY
