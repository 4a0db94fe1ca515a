#!/usr/bin/env python3
"""make bench-gateway: what a tools/call costs through the cluster's gateway, against the same
call made straight to the upstream, in one run.

The upstream is an `mcp-node` of its own (127.0.0.21, the echo pack, no cluster): a fast MCP
server, so the figures show the gateway's cost rather than a slow upstream's. Three `mcp-node`
processes form a cluster on 127.0.0.11-13 (`bench/cluster.py`'s `Cluster`), each with the
upstream under `upstreams:` as `up` (so its `echo` is served as `up__echo`). `mcp-load` sends
`tools/call` at one open-loop rate (legacy 2025-11-25 sessions, `HELD` sessions held open) to:

1. direct: the upstream itself, `echo`;
2. gateway: n0, `up__echo` in sessions n0 owns (n0 calls the upstream in its own session);
3. gateway, forwarded: n1, `up__echo` in sessions n0 owns (n1 forwards over QUIC to n0, which
   calls the upstream).

The three alternate for `ROUNDS` rounds; latency is from each call's due time (mcp-load's
p50/p99); the ratios are each path's p50 and p99 over the direct path's, in the same round.
Prints a table and rewrites the "Gateway (`make bench-gateway`)" section of docs/BENCHMARKS.md.
Every process started here is killed at exit (also on Ctrl-C).

Env: RATE (calls/s, 1000), TRIAL_SECONDS (5), ROUNDS (3), WORKERS (16), HELD (100), CARGO,
NO_BUILD=1 (use the release binaries as they are), NO_DOC=1 (print only), KEEP_LOGS=1.
"""

import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import benchdoc
import cluster as bc

ROOT = bc.ROOT
DOC = os.path.join(ROOT, "docs/BENCHMARKS.md")
TITLE = "## Gateway (`make bench-gateway`)"
RATE = float(os.environ.get("RATE", "1000"))
TRIAL = float(os.environ.get("TRIAL_SECONDS", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
WORKERS = int(os.environ.get("WORKERS", "16"))
HELD = int(os.environ.get("HELD", "100"))
UPSTREAM_IP = "127.0.0.21"
PATHS = [("direct", "upstream `echo`"), ("gateway", "n0 `up__echo` (owner)"),
         ("forwarded", "n1 `up__echo` (forwarded to n0)")]


def log(msg):
    print(f"bench-gateway: {msg}", file=sys.stderr, flush=True)


def start_upstream(work):
    """The upstream node; its MCP URL once it answers."""
    port = bc.free_port(UPSTREAM_IP)
    admin = bc.free_port(UPSTREAM_IP)
    config = os.path.join(work, "upstream.yaml")
    with open(config, "w") as f:
        f.write(bc.NODE_CONFIG.replace("allowedHosts: [", f"allowedHosts: [{UPSTREAM_IP}, "))
    with open(os.path.join(work, "upstream.log"), "w") as out:
        p = bc.spawn([bc.NODE, "--config", config, "--listen", f"{UPSTREAM_IP}:{port}",
                      "--admin-listen", f"{UPSTREAM_IP}:{admin}"],
                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"the upstream exited: {bc.tail(os.path.join(work, 'upstream.log'))}")
        try:
            urllib.request.urlopen(f"http://{UPSTREAM_IP}:{admin}/healthz", timeout=1).read()
            return f"http://{UPSTREAM_IP}:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the upstream did not start within 20 s")


def gateway_config(work, upstream_url):
    path = os.path.join(work, "gateway.yaml")
    with open(path, "w") as f:
        f.write(bc.NODE_CONFIG)
        f.write(f"upstreams:\n  - name: up\n    url: {upstream_url}\n    maxConcurrency: 1024\n")
    return path


def run(url, call_url, tool, label):
    rep = bc.load(url, call_url, rate=RATE, sessions=HELD, workers=WORKERS, duration=TRIAL,
                  label=label, tool=tool)
    ok = rep is not None and rep["calls_ok"] == rep["calls_due"] > 0 and not rep["errors"]
    log(f"  {label:9} {RATE:.0f}/s -> {bc.describe(rep)}")
    return rep if ok else None


def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(r):
    return f"{r:.2f}×" if r is not None else "—"


def main():
    signal.signal(signal.SIGINT, bc.on_signal)
    signal.signal(signal.SIGTERM, bc.on_signal)
    atexit.register(bc.kill_all)
    if os.environ.get("NO_BUILD") != "1":
        log("cargo build --release -p mcp-node -p mcp-load")
        subprocess.run([bc.CARGO, "build", "--release", "-q", "-p", "mcp-node", "-p", "mcp-load"],
                       cwd=ROOT, check=True, timeout=3600)
    for b in (bc.NODE, bc.LOAD):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-gateway: {b} is missing")
    work = tempfile.mkdtemp(prefix="bench-gateway.")
    if os.environ.get("KEEP_LOGS") == "1":
        log(f"logs in {work}")
    else:
        atexit.register(shutil.rmtree, work, True)
    subprocess.run([bc.NODE, "--write-dev-certs", os.path.join(work, "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=30)
    upstream = start_upstream(work)
    c = bc.Cluster(work, gateway_config(work, upstream), 2)
    rounds = []
    try:
        targets = {"direct": (upstream, upstream, "echo"),
                   "gateway": (c.url(0), c.url(0), "up__echo"),
                   "forwarded": (c.url(0), c.url(1), "up__echo")}
        for name, (url, call_url, tool) in targets.items():
            bc.load(url, call_url, rate=RATE / 4, sessions=HELD, workers=WORKERS, duration=1,
                    label="warm-up", tool=tool)
        for k in range(ROUNDS):
            log(f"round {k + 1}/{ROUNDS}")
            order = [n for n, _ in PATHS]
            order = order[k % 3:] + order[:k % 3]  # each path first once in three rounds
            rounds.append({n: run(*targets[n], n) for n in order})
    finally:
        c.stop()
        bc.kill_all()

    def lat(rep, q):
        return rep["latency"][f"{q}_us"] if rep else None

    rows = []
    for name, what in PATHS:
        p50 = [lat(r[name], "p50") for r in rounds]
        p99 = [lat(r[name], "p99") for r in rounds]
        r50 = [ratio(lat(r[name], "p50"), lat(r["direct"], "p50")) for r in rounds]
        r99 = [ratio(lat(r[name], "p99"), lat(r["direct"], "p99")) for r in rounds]
        ok = [x for x in r50 if x is not None]
        rows.append((name, what, p50, p99, r50, r99, len(ok)))
    lines = ["| path | p50 µs per round | p99 µs per round | p50 ratio to direct | p99 ratio to direct |",
             "|---|---|---|---|---|"]
    for name, what, p50, p99, r50, r99, _ in rows:
        def us(v):
            return " / ".join("—" if x is None else str(x) for x in v)

        def rs(v):
            good = [x for x in v if x is not None]
            med = f" (median {statistics.median(good):.2f}×)" if good else ""
            return " / ".join(fmt_ratio(x) for x in v) + med
        lines.append(f"| {what} | {us(p50)} | {us(p99)} | {rs(r50)} | {rs(r99)} |")
    table = "\n".join(lines)
    print(table)
    failed = sum(1 for r in rounds for v in r.values() if v is None)
    section = f"""{TITLE}

{benchdoc.machine(ROOT)}. Command: `make bench-gateway` (`bench/gateway.py`; RATE={RATE:g},
TRIAL_SECONDS={TRIAL:g}, ROUNDS={ROUNDS}, WORKERS={WORKERS}, HELD={HELD}).

`tools/call` of an upstream's tool through the cluster against the same call straight to the
upstream, in one run: the upstream is a single `mcp-node` (echo pack) on {UPSTREAM_IP}; three
clustered nodes have it under `upstreams:` as `up`. `mcp-load` holds {HELD} legacy sessions
and calls at {RATE:g}/s open loop ({WORKERS} connections); latency from each call's due time.
The three paths alternate, each round in another order; ratios are to the direct path of the
same round.

{table}

Trials that failed (an error, a call not answered): {failed}. Every path shares the machine's
2 cores with the load generator and the other processes, so the overhead includes the
gateway's CPU as well as the extra hop (client → node → upstream, plus QUIC to the owner when
forwarded).
"""
    if os.environ.get("NO_DOC") != "1":
        benchdoc.replace_section(DOC, section)
        log(f"wrote {TITLE[3:]} in {DOC}")


if __name__ == "__main__":
    main()
