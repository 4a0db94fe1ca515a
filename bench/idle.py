#!/usr/bin/env python3
"""make bench-idle: what idle sessions cost a cluster — CPU per node and peer bytes per second.

NODES (3) release mcp-node processes (replication factor R = 2, each on its own 127.0.2.i
address) and one `mcp-load cluster` run that opens SESSIONS_PER_NODE x NODES legacy sessions,
each with its GET stream (RELAY_FRACTION of the streams on another node than the session's
owner, as through a Service), and then makes no calls. Once the ramp is over and SETTLE
seconds passed, it measures over WINDOW seconds, per node: CPU (% of one core, from
/proc/PID/stat), peer bytes sent per second (`mcp_cluster_peer_bytes_sent`, on the wire),
copies held (`mcp_cluster_replicas`), digest mismatches and copies dropped. Then it asks every
session for one call and its stream (the load's final check: nothing was lost while idle).

With BASE_NODE=path (an mcp-node binary of another commit), the same run is made first with
that binary, and the figures are set side by side (ratios: this machine is noisy).

Target (issue 11): a node holding 16K idle sessions with their streams uses < 1 % of a core
and near-zero peer bytes per second. Writes the "Idle cost" section of docs/BENCHMARKS.md
(NO_DOC=1: print only).

With PERF_DIR=dir, `perf record -g` samples node n0 over the window of each run (written to
dir/<label>.perf.data; read with `perf report -i ... --no-children`); n0's CPU figure then
includes some of perf's cost, so publish figures of a run without it.

Env: NODES, SESSIONS_PER_NODE (16000), RELAY_FRACTION (0.8), SETTLE (20), WINDOW (60),
BASE_NODE, BASE_LABEL, NO_DOC, KEEP_LOGS, PERF_DIR, SSE_KEEPALIVE_SECS (the nodes'
`limits.sseKeepaliveSecs`; default: theirs. Builds before it was a setting refuse it).
"""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchdoc
import scale
from detector import group_cpu
from scalecfg import LOAD, NODE, ROOT, env, nofile

TITLE = "## Idle cost (`make bench-idle`)"
NODES = int(env("NODES", 3))
PER_NODE = int(env("SESSIONS_PER_NODE", 16000))
RELAY = float(env("RELAY_FRACTION", 0.8))
SETTLE = float(env("SETTLE", 20))
WINDOW = float(env("WINDOW", 60))
PERF_DIR = env("PERF_DIR", "")
KEEPALIVE = env("SSE_KEEPALIVE_SECS", "")


def log(msg):
    print(f"bench-idle: {msg}", file=sys.stderr, flush=True)


def sample(cluster):
    """Per node: (cpu seconds, rss, metrics)."""
    out = []
    for x in cluster.nodes:
        cpu_rss = scale.proc_cpu_rss(x.pid) if x.pid else None
        try:
            m = scale.parse_metrics(x.admin("/metrics", timeout=5))
        except OSError:
            m = {}
        out.append((cpu_rss, m))
    return out


def one_run(binary, label, work_root):
    """Starts the cluster with `binary`, holds the idle sessions, measures; returns a dict."""
    work = tempfile.mkdtemp(prefix="run.", dir=work_root)
    subprocess.run([binary, "--write-dev-certs", os.path.join(work, "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=30)
    config = scale.node_config(work)
    if KEEPALIVE:
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("limits:\n", f"limits:\n  sseKeepaliveSecs: {KEEPALIVE}\n", 1))
    cluster = scale.Cluster(NODES, work, config)
    for x in cluster.nodes:
        x.binary = binary
    conv = cluster.start()
    if conv is None:
        raise RuntimeError(f"{label}: the {NODES} nodes did not converge")
    total = PER_NODE * NODES
    until, ready = os.path.join(work, "until"), os.path.join(work, "ready")
    report_path = os.path.join(work, "load.json")
    cmd = [LOAD, "cluster", "--nodes", ",".join(x.url() for x in cluster.nodes),
           "--stages", str(total), "--stage-hold", "0", "--hold", "3600",
           "--until-file", until, "--ready-file", ready, "--ramp-rate", "1000", "--rate", "0",
           "--final-rate", "2000", "--relay-fraction", str(RELAY), "--deadline", "30",
           "--json", report_path, "--label", f"bench-idle {label}", "--quiet"]
    if KEEPALIVE:
        # The load reopens a stream silent for --stream-idle (default 70 s, for 30 s keep-alives).
        cmd += ["--stream-idle", str(min(3600, max(70, 2 * int(KEEPALIVE) + 10)))]
    out = open(os.path.join(work, "load.out"), "w")
    loader = scale.spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
    t_ramp = time.monotonic()
    bound = t_ramp + total / 200 + 120
    while not os.path.exists(ready) and loader.poll() is None and time.monotonic() < bound:
        time.sleep(0.5)
    if not os.path.exists(ready):
        raise RuntimeError(f"{label}: the ramp did not finish: {scale.tail(os.path.join(work, 'load.out'))}")
    ramp_s = time.monotonic() - t_ramp
    log(f"{label}: {total} sessions opened in {ramp_s:.0f} s; settling {SETTLE:g} s")
    time.sleep(SETTLE)
    load_cpu0 = group_cpu(loader.pid)
    t0, before = time.monotonic(), sample(cluster)
    log(f"{label}: measuring {WINDOW:g} s of idleness")
    perf = None
    if PERF_DIR:
        os.makedirs(PERF_DIR, exist_ok=True)
        data = os.path.join(PERF_DIR, f"{label.split()[0]}.perf.data")
        perf = subprocess.Popen(["perf", "record", "-g", "-q", "-o", data, "-p", str(cluster.nodes[0].pid),
                                 "--", "sleep", str(WINDOW)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(WINDOW)
    t1, after = time.monotonic(), sample(cluster)
    if perf:
        perf.wait(timeout=60)
    load_cpu1 = group_cpu(loader.pid)
    dt = t1 - t0
    rows = []
    for x, (c0, m0), (c1, m1) in zip(cluster.nodes, before, after):
        def delta(name, **want):
            return scale.metric(m1, name, **want) - scale.metric(m0, name, **want)
        rows.append({
            "node": x.name,
            "sessions": scale.metric(m1, "mcp_sessions"),
            "copies": scale.metric(m1, "mcp_cluster_replicas"),
            "cpu_pct": 100.0 * (c1[0] - c0[0]) / dt if c0 and c1 else None,
            "rss_mib": c1[1] / 2**20 if c1 else None,
            "peer_bytes_per_s": delta("mcp_cluster_peer_bytes_sent", stage="wire") / dt,
            "peer_messages_per_s": delta("mcp_cluster_peer_messages_sent") / dt,
            "digest_mismatches": delta("mcp_cluster_digest_mismatches"),
            "copies_dropped": delta("mcp_cluster_copies_dropped"),
        })
    with open(until, "w") as f:
        f.write(f"{time.time()}\n")
    log(f"{label}: final check (one call per session, streams up)")
    try:
        loader.wait(timeout=total / 1000 + 180)
    except subprocess.TimeoutExpired:
        os.killpg(loader.pid, signal.SIGKILL)
        loader.wait()
    out.close()
    report = {}
    try:
        with open(report_path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        pass
    cluster.stop()
    return {"label": label, "binary": binary, "rows": rows, "ramp_s": ramp_s, "window_s": dt,
            "sessions": total, "load_exit": loader.returncode, "report": report,
            "load_tail": scale.tail(os.path.join(work, "load.out"), 1500),
            "load_cpu_pct": 100.0 * (load_cpu1 - load_cpu0) / dt}


def lost(run):
    r = run["report"] or {}
    for key in ("sessions_lost", "lost"):
        if key in r:
            return r[key]
    return r.get("totals", {}).get("sessions_lost")


def render(runs):
    envs = "".join(f"{k}={os.environ[k]} " for k in ("BASE_NODE", "SSE_KEEPALIVE_SECS") if os.environ.get(k))
    lines = [TITLE, "", benchdoc.machine(ROOT), "",
             f"Command: `{envs}make bench-idle` ({NODES} release nodes, R = 2, {PER_NODE:,} idle legacy sessions per "
             f"node with their GET streams, {RELAY:.0%} of the streams relayed through another node, no calls; "
             f"measured over {WINDOW:g} s after a {SETTLE:g} s settle). RLIMIT_NOFILE {nofile()}.", "",
             "| binary | node | sessions owned | copies held | CPU % of a core | peer bytes/s | peer messages/s "
             "| digest mismatches | copies dropped | RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for r in run["rows"]:
            cpu = "?" if r["cpu_pct"] is None else f"{r['cpu_pct']:.2f}"
            rss = "?" if r["rss_mib"] is None else f"{r['rss_mib']:.0f}"
            lines.append(f"| {run['label']} | {r['node']} | {r['sessions']:.0f} | {r['copies']:.0f} | {cpu} | "
                         f"{r['peer_bytes_per_s']:.0f} | {r['peer_messages_per_s']:.1f} | "
                         f"{r['digest_mismatches']:.0f} | {r['copies_dropped']:.0f} | {rss} |")
    lines.append("")
    for run in runs:
        cpus = [r["cpu_pct"] for r in run["rows"] if r["cpu_pct"] is not None]
        peer = sum(r["peer_bytes_per_s"] for r in run["rows"])
        load = f"{run['load_cpu_pct']:.2f} %"
        lines.append(f"- {run['label']}: mean node CPU {sum(cpus) / max(len(cpus), 1):.2f} % of a core, "
                     f"peer bytes {peer:.0f}/s over all nodes, load generator (all its processes) {load} of a core; final check: mcp-load "
                     f"exit {run['load_exit']}, sessions lost {lost(run)}.")
    if len(runs) == 2:
        a, b = runs
        ca = sum(r["cpu_pct"] or 0 for r in a["rows"])
        cb = sum(r["cpu_pct"] or 0 for r in b["rows"])
        pa = sum(r["peer_bytes_per_s"] for r in a["rows"])
        pb = sum(r["peer_bytes_per_s"] for r in b["rows"])
        lines.append(f"- {b['label']} / {a['label']}: node CPU {cb / ca:.3f}x, peer bytes "
                     f"{(pb / pa) if pa else float('nan'):.4f}x (same run, same machine).")
    lines.append("")
    return "\n".join(lines)


def main():
    signal.signal(signal.SIGINT, scale.on_signal)
    signal.signal(signal.SIGTERM, scale.on_signal)
    atexit.register(scale.kill_all)
    for b in (NODE, LOAD):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-idle: {b} is missing (make bench-idle builds it)")
    work = tempfile.mkdtemp(prefix="bench-idle.")
    if env("KEEP_LOGS", "0") == "1":
        log(f"logs in {work}")
    else:
        atexit.register(shutil.rmtree, work, True)
    runs = []
    base = env("BASE_NODE", "")
    if base:
        runs.append(one_run(base, env("BASE_LABEL", "base"), work))
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    runs.append(one_run(NODE, commit, work))
    text = render(runs)
    print(text)
    if env("NO_DOC", "0") != "1":
        benchdoc.replace_section(os.path.join(ROOT, "docs/BENCHMARKS.md"), text)
        log("wrote docs/BENCHMARKS.md")
    if any(lost(r) for r in runs) or any(r["load_exit"] != 0 for r in runs):
        log("FAILED: sessions lost or the load generator failed (see the table)")
        sys.exit(1)


if __name__ == "__main__":
    main()
