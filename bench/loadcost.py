#!/usr/bin/env python3
"""make bench-load-cost: is the load generator cheaper than the server it loads?

The same held sessions and calls, measured on both sides in the same run: NODES mcp-node
processes (release, R = 2, on 127.0.2.i, as bench/scale.py starts them) and `mcp-load cluster`
holding SESSIONS legacy sessions with their GET streams (RELAY_FRACTION through another node).

1. held: a fresh cluster, the sessions ramped, then WINDOW seconds with no call: CPU seconds
   per 1K held sessions per minute, of all mcp-load processes and of all nodes;
2. calls: a fresh cluster, the same sessions, then WINDOW seconds of `tools/call` at RATE/s:
   CPU seconds per 1K calls (the held figure of step 1 subtracted), both sides.

CPU comes from /proc/PID/stat for the nodes and from mcp-load's own per-second figures (its
processes read /proc/self/stat); the window starts SETTLE seconds after the ramp. Prints a
table and rewrites the "Load generator cost" section of docs/BENCHMARKS.md (NO_DOC=1: print
only).

Env: NODES (3), SESSIONS (16000), RATE (2000), WINDOW (60), SETTLE (10), RELAY_FRACTION (0.8),
PROCESSES (0: as RLIMIT_NOFILE needs), CARGO, NO_BUILD=1, KEEP_LOGS=1.
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchdoc
import scale
import scale_report

ROOT = scale.ROOT
TITLE = "## Load generator cost (`make bench-load-cost`)"
NODES = int(scale.env("NODES", 3))
SESSIONS = int(scale.env("SESSIONS", 16000))
RATE = float(scale.env("RATE", 2000))
WINDOW = float(scale.env("WINDOW", 60))
SETTLE = float(scale.env("SETTLE", 10))
RELAY = float(scale.env("RELAY_FRACTION", 0.8))
PROCESSES = int(scale.env("PROCESSES", 0))


def log(msg):
    print(f"bench-load-cost: {msg}", file=sys.stderr, flush=True)


def measure(work, config, rate, label):
    """One fresh cluster and one mcp-load run; CPU seconds of the load and of the nodes over
    the window, and what the load did in it."""
    cluster = scale.Cluster(NODES, work, config)
    try:
        if cluster.start() is None:
            raise RuntimeError("the nodes did not converge")
        tl_path = os.path.join(work, f"{label}.jsonl")
        ready, until = os.path.join(work, f"{label}.ready"), os.path.join(work, f"{label}.until")
        cmd = [scale.LOAD, "cluster", "--nodes", ",".join(x.url() for x in cluster.nodes),
               "--sessions", str(SESSIONS), "--ramp-rate", "2000", "--rate", str(rate), "--hold", "3600",
               "--relay-fraction", str(RELAY), "--until-file", until, "--ready-file", ready,
               "--timeline", tl_path, "--quiet", "--label", label, "--final-rate", "20000"]
        if PROCESSES:
            cmd += ["--processes", str(PROCESSES)]
        out = open(os.path.join(work, f"{label}.out"), "w")
        loader = scale.spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 300
        while not os.path.exists(ready) and loader.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
        if not os.path.exists(ready):
            raise RuntimeError(f"the ramp did not end: {scale.tail(out.name)}")
        time.sleep(SETTLE)
        tl = scale.Timeline(tl_path)
        tl.poll()
        a = time.time()
        nodes_a = [scale.proc_cpu_rss(x.pid) for x in cluster.nodes]
        time.sleep(WINDOW)
        b = time.time()
        nodes_b = [scale.proc_cpu_rss(x.pid) for x in cluster.nodes]
        time.sleep(2.5)  # the load's seconds up to `b` are written
        tl.poll()
        with open(until, "w") as f:
            f.write("1\n")
        sp = scale_report.span(tl.seconds, tl.sec(a), tl.sec(b))
        node_cpu = [nb[0] - na[0] for na, nb in zip(nodes_a, nodes_b)]
        loader.wait(timeout=300)
        out.close()
        return {"window": b - a, "load_cpu": sp["cpu"], "load_sys": sp["cpu_sys"], "node_cpu": node_cpu,
                "held": sp["held_end"], "calls": sp["calls_ok"], "lat": sp["lat"], "errors": sp["errors"],
                "processes": None, "lost": sp["lost"]}
    finally:
        cluster.stop()


def main():
    signal.signal(signal.SIGINT, scale.on_signal)
    signal.signal(signal.SIGTERM, scale.on_signal)
    atexit.register(scale.kill_all)
    scale.build()
    work = tempfile.mkdtemp(prefix="bench-load-cost.")
    if scale.env("KEEP_LOGS", "0") == "1":
        log(f"logs in {work}")
    else:
        atexit.register(shutil.rmtree, work, True)
    subprocess.run([scale.NODE, "--write-dev-certs", os.path.join(work, "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=30)
    config = scale.node_config(work)
    loadavg = os.getloadavg()
    log(f"{NODES} nodes, {SESSIONS} sessions; held for {WINDOW:g} s, then (fresh cluster) {RATE:g} calls/s for {WINDOW:g} s")
    held = measure(work, config, 0, "held")
    log(f"  held: {held}")
    calls = measure(work, config, RATE, "calls")
    log(f"  calls: {calls}")
    k = SESSIONS / 1000
    per_min = lambda cpu, w: cpu / k / (w / 60)  # noqa: E731
    h_load = per_min(held["load_cpu"], held["window"])
    h_node = per_min(sum(held["node_cpu"]), held["window"])
    # Per 1K calls: the window's CPU minus what holding the sessions costs for as long.
    kc = max(calls["calls"], 1) / 1000
    c_load = (calls["load_cpu"] - held["load_cpu"] / held["window"] * calls["window"]) / kc
    c_node = (sum(calls["node_cpu"]) - sum(held["node_cpu"]) / held["window"] * calls["window"]) / kc
    ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "–"  # noqa: E731
    lines = [TITLE, "",
             f"Command: `make bench-load-cost` (bench/loadcost.py). Machine: {benchdoc.machine(ROOT)}; "
             f"load average {loadavg[0]:.1f} at the start (a shared machine). {NODES} mcp-node (release, R = 2) "
             f"and `mcp-load cluster` on the same 2 cores, {SESSIONS:,} legacy sessions each with its GET stream "
             f"({RELAY:.0%} through another node than the session's); CPU over {WINDOW:g} s windows, "
             f"{SETTLE:g} s after the ramp, a fresh cluster for each window. Node CPU from /proc/PID/stat summed over "
             f"the nodes; mcp-load's from its processes' own per-second figures.", "",
             "| what | mcp-load (all processes) | mcp-node (all nodes) | load / nodes |", "|---|---|---|---|",
             f"| CPU s per 1K held sessions per minute (no calls; {held['held']:,} held) | {h_load:.3f} | {h_node:.3f} "
             f"| {ratio(h_load, h_node)} |",
             f"| CPU s per 1K `tools/call` ({calls['calls'] / calls['window']:,.0f}/s answered, held cost subtracted) "
             f"| {c_load:.3f} | {c_node:.3f} | {ratio(c_load, c_node)} |",
             f"| raw: CPU s in the held window | {held['load_cpu']:.2f} (system {held['load_sys']:.2f}) "
             f"| {sum(held['node_cpu']):.2f} ({', '.join(f'{c:.2f}' for c in held['node_cpu'])}) | |",
             f"| raw: CPU s in the calls window | {calls['load_cpu']:.2f} (system {calls['load_sys']:.2f}) "
             f"| {sum(calls['node_cpu']):.2f} ({', '.join(f'{c:.2f}' for c in calls['node_cpu'])}) | |",
             f"| calls window: latency from the due time p50 / p99 | {calls['lat']['p50'] / 1000:.2f} / "
             f"{calls['lat']['p99'] / 1000:.2f} ms; failed attempts {sum(calls['errors'].values())}, lost {calls['lost']} | | |",
             ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if scale.env("NO_DOC", "0") != "1":
        benchdoc.replace_section(scale.DOC, text)
        log(f"wrote {os.path.relpath(scale.DOC, ROOT)}")


if __name__ == "__main__":
    main()
