#!/usr/bin/env bash
# make bench-memory: memory per idle session and per open idle connection (with its session
# and GET stream) at 1K and 10K, each measured on a fresh node. Prints the figures and
# rewrites the "Memory" section of docs/BENCHMARKS.md with the command and the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/mcp-node}"
counts="${COUNTS:-1000 10000}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
results="$(mktemp)"
for phase in sessions connections; do
  for n in $counts; do
    port="$(free_port)"; admin="$(free_port)"
    "$bin" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --log-level warn &
    pid=$!
    for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    python3 "$here/memory.py" --addr "127.0.0.1:$port" --pid "$pid" --phase "$phase" -n "$n" | tee -a "$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
python3 - "$results" "$here/../docs/BENCHMARKS.md" <<'PY'
import json, sys, platform, os, subprocess, datetime
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
commit = subprocess.run(["git","describe","--always","--dirty"],capture_output=True,text=True).stdout.strip()
out = ["## Memory (make bench-memory)", "",
       f"Command: `make bench-memory` (bench/memory.sh). Machine: {os.cpu_count()} cores, {cpu}, {int(mem)//1024} MiB; "
       f"commit {commit}; {datetime.date.today()}. Each row is a fresh node; RSS from /proc/PID/status.", "",
       "| what | N | RSS before (KiB) | RSS after (KiB) | bytes per item | ramp rate (/s) |", "|---|---|---|---|---|---|"]
label = {"sessions": "idle session (record only, no connection)", "connections": "open idle connection + session + GET stream"}
for r in rows:
    out.append(f"| {label[r['phase']]} | {r['n']} | {r['rss_base_kib']} | {r['rss_after_kib']} | {r['bytes_per_item']} | {r['rate_per_s']} |")
section = "\n".join(out) + "\n"
path = sys.argv[2]
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
start = text.find("## Memory (make bench-memory)")
if start >= 0:
    end = text.find("\n## ", start + 5)
    text = text[:start] + section + (text[end+1:] if end >= 0 else "")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
print(section)
PY
