#!/usr/bin/env python3
"""make bench-cluster: three mcp-node processes as a cluster on loopback, measured in one run.

Nodes n0, n1, n2 listen on 127.0.0.11, .12, .13 (free ports), peer links over QUIC with the dev
certificates (`mcp-node --write-dev-certs`), `--cluster=true --peer-listen --advertise --seeds`
as in e2e/cluster/netns.sh. Load comes from `mcp-load` (legacy 2025-11-25 sessions, `tools/call`
of `echo`); sessions are created on n0 (`--url`) and used through `--call-url`.

1. Forwarding: the same open-loop rate with `--call-url` n0 (local) and n1 (forwarded to the
   owner n0), latency p50/p99 from each call's due time, and the ratio; then the highest rate
   whose forwarded p99 stays under P99_BOUND_MS with every call answered (doubling, then
   bisections, a failed trial retried once, as bench/node.py does).
2. Replication overhead: closed-loop throughput of session-creating load (`--calls-per-session
   1`: every call first creates its session on n0, then calls it there) on fresh clusters
   with replication factor 1 and 2, alternated; the ratio R=2 / R=1.
3. Peer traffic: messages per QUIC frame and compression ratio (raw / wire bytes), from the
   nodes' own /metrics counters, summed over the three nodes, for the forwarding cluster and
   for the replicating (R=2) cluster.
4. Failure detection: kill -9 one node of a loopback cluster and time until each survivor's
   /cluster shows it suspect and dead; plus the simulator's 10-node convergence and kill
   detection figures (`cargo test -p mcp-cluster --release --test sim_membership`).
5. Sessions lost on kill -9 under load: `mcp-failover` (if built) against the three nodes, one
   node killed mid-run.
6. Durable events (`cluster.durableEvents`): SSE-delivered `tools/call` (`mcp-load --progress`:
   `echo` reports progress once, so its answer is a progress event then the result event, both
   in the session's log) at the same open-loop rate, local (n0) and forwarded (through n1), on
   fresh R=2 clusters with the setting on and off alternated (on, off, on, off); p50/p99 of
   each and the on/off ratios, the wait for the replicas' acknowledgement
   (`mcp_cluster_event_durable_seconds`) and the events shown before it
   (`mcp_cluster_events_shown_undurable_total`).

Prints a table and rewrites the "Cluster (`make bench-cluster`)" section of docs/BENCHMARKS.md.
Every wait has a timeout; every process started here is killed at exit (also on Ctrl-C).

Env: QUICK=1 (a 1-2 minute smoke run), TRIAL_SECONDS (3; QUICK 2), RATE (fixed rate for the
local/forwarded comparison, 2000/s), P99_BOUND_MS (10), WORKERS (16), HELD (sessions held
through the call node during open-loop trials, 200), REPLICATION_FACTOR (of the forwarding
cluster, 2), CARGO (cargo), NO_BUILD=1 (use the binaries as they are), NO_DOC=1 (print only), KEEP_LOGS=1 (keep
the nodes' logs and name their folder).
"""

import atexit
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import benchdoc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CARGO = os.environ.get("CARGO", "cargo")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
NODE = os.path.join(TARGET, "release/mcp-node")
LOAD = os.path.join(TARGET, "release/mcp-load")
FAILOVER = os.path.join(TARGET, "release/mcp-failover")
DOC = os.path.join(ROOT, "docs/BENCHMARKS.md")
TITLE = "## Cluster (`make bench-cluster`)"

QUICK = os.environ.get("QUICK") == "1"
TRIAL = float(os.environ.get("TRIAL_SECONDS", "2" if QUICK else "3"))
RATE = float(os.environ.get("RATE", "2000"))
BOUND_US = float(os.environ.get("P99_BOUND_MS", "10")) * 1000
WORKERS = int(os.environ.get("WORKERS", "16"))
HELD = int(os.environ.get("HELD", "200"))
REPL_WORKERS = int(os.environ.get("REPL_WORKERS", str(4 * WORKERS)))
FAILOVER_SESSIONS = int(os.environ.get("FAILOVER_SESSIONS", "300"))
FAILOVER_RATE = float(os.environ.get("FAILOVER_RATE", "300"))
R_FWD = int(os.environ.get("REPLICATION_FACTOR", "2"))
BISECTIONS = 1 if QUICK else 3
REPL_PAIRS = 1 if QUICK else 2
REPL_SECONDS = TRIAL + (0 if QUICK else 2)
IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
NAMES = ["n0", "n1", "n2"]
WAIT_CLUSTER_S = 30
RUN_STARTED = time.monotonic()
RUN_BOUND_S = 300 if QUICK else 900  # past it, the remaining parts are skipped

# Echo only, a per-session token bucket far above any rate here (the default, 200/s, would
# refuse a worker's share: the limit doing its job, not the cluster's speed), quiet logs.
NODE_CONFIG = """\
packs: [echo]
limits:
  sessionRatePerSec: 1000000000.0
  sessionBurst: 1000000000
log:
  level: warn
security:
  allowedHosts: [127.0.0.11, 127.0.0.12, 127.0.0.13]
"""

PROCS = []  # every process group started here, killed at exit
SERIAL = itertools.count()


def log(msg):
    print(f"bench-cluster: {msg}", file=sys.stderr, flush=True)


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def free_port(ip, kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def http_get(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def left():
    return RUN_BOUND_S - (time.monotonic() - RUN_STARTED)


def node_env(r, durable=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_NODE_")}
    env["MCP_NODE_CLUSTER_REPLICATION_FACTOR"] = str(r)
    env["MCP_NODE_CLUSTER_DURABLE_EVENTS"] = "true" if durable else "false"
    return env


class Cluster:
    """Three fresh nodes; `replication` is the replication factor."""

    def __init__(self, work, config, replication, durable=True):
        self.work, self.replication = work, replication
        self.mcp = [(ip, free_port(ip)) for ip in IPS]
        self.admin = [(ip, free_port(ip)) for ip in IPS]
        self.peer = [(ip, free_port(ip, socket.SOCK_DGRAM)) for ip in IPS]
        self.procs = [None, None, None]
        certs = os.path.join(work, "certs")
        seeds = ",".join(f"{ip}:{p}" for ip, p in self.peer)
        self.logs = []
        for i in range(3):
            log_path = os.path.join(work, f"{NAMES[i]}-r{replication}-{next(SERIAL)}.log")
            self.logs.append(log_path)
            cmd = [NODE, "--config", config,
                   "--listen", f"{self.mcp[i][0]}:{self.mcp[i][1]}",
                   "--admin-listen", f"{self.admin[i][0]}:{self.admin[i][1]}",
                   # /cluster without credentials: the explicit opt-in (loopback addresses only)
                   "--admin-insecure-local",
                   "--cluster=true", "--node-name", NAMES[i],
                   "--peer-listen", f"{self.peer[i][0]}:{self.peer[i][1]}",
                   "--advertise", f"{self.peer[i][0]}:{self.peer[i][1]}", "--seeds", seeds,
                   "--cluster-ca-file", os.path.join(certs, "ca.crt"),
                   "--cluster-cert-file", os.path.join(certs, "tls.crt"),
                   "--cluster-key-file", os.path.join(certs, "tls.key")]
            with open(log_path, "w") as f:
                self.procs[i] = spawn(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      env=node_env(replication, durable))
        self.wait_converged()

    def url(self, i):
        return f"http://{self.mcp[i][0]}:{self.mcp[i][1]}/mcp"

    def view(self, i):
        ip, port = self.admin[i]
        return json.loads(http_get(f"http://{ip}:{port}/cluster"))

    def metrics(self, i):
        ip, port = self.admin[i]
        return parse_metrics(http_get(f"http://{ip}:{port}/metrics", timeout=3))

    def wait_converged(self):
        end = time.monotonic() + WAIT_CLUSTER_S
        last = None
        while time.monotonic() < end:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    raise RuntimeError(f"{NAMES[i]} exited with {p.returncode}: {tail(self.logs[i])}")
            try:
                views = [self.view(i) for i in range(3)]
                last = views
                if all(len(v["members"]) == 3 and all(m["state"] == "alive" and m.get("address")
                                                      for m in v["members"]) for v in views):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the 3 nodes did not converge within {WAIT_CLUSTER_S} s: {last}")

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self):
        for i in range(3):
            self.kill(i)


def tail(path, n=600):
    try:
        with open(path) as f:
            return f.read()[-n:]
    except OSError:
        return ""


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)')


def parse_metrics(text):
    """Prometheus text into {(name, labels): value}; labels as a sorted tuple of pairs."""
    out = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def metric_sum(metrics, name, **want):
    """Sum of every series of `name` (with or without the OpenMetrics `_total` suffix) whose
    labels include `want`; None if no such series."""
    vals = [v for (n, labels), v in metrics.items()
            if n in (name, name + "_total", name.removesuffix("_total"))
            and all((k, w) in labels for k, w in want.items())]
    return sum(vals) if vals else None


def hist_quantile(metrics, name, q):
    """Quantile `q` of a Prometheus histogram `name` summed over series (linear within the
    bucket, as histogram_quantile does); None without observations."""
    buckets = {}
    for (n, labels), v in metrics.items():
        if n == name + "_bucket":
            le = dict(labels).get("le")
            if le is not None:
                buckets[float(le)] = buckets.get(float(le), 0.0) + v
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * ((rank - prev_c) / max(c - prev_c, 1e-12))
        prev_b, prev_c = b, c
    return bounds[-1]


def cluster_metrics(cluster):
    per = []
    for i in range(3):
        if cluster.procs[i].poll() is None:
            try:
                per.append(cluster.metrics(i))
            except OSError as e:
                log(f"/metrics of {NAMES[i]}: {e}")
    merged = {}
    for m in per:
        for k, v in m.items():
            merged[k] = merged.get(k, 0.0) + v
    return merged


def peer_traffic(m):
    """Messages per frame and compression ratio from summed /metrics counters."""
    frames = metric_sum(m, "mcp_cluster_peer_frames_sent_total")
    msgs = metric_sum(m, "mcp_cluster_peer_messages_sent_total")
    raw = metric_sum(m, "mcp_cluster_peer_bytes_sent_total", stage="raw")
    wire = metric_sum(m, "mcp_cluster_peer_bytes_sent_total", stage="wire")
    return {"frames": frames, "messages": msgs, "raw": raw, "wire": wire,
            "per_frame": msgs / frames if frames and msgs is not None else None,
            "compression": raw / wire if wire and raw is not None else None,
            "forwarded": {dict(l).get("outcome", "?"): v for (n, l), v in m.items()
                          if n in ("mcp_cluster_forwarded_total", "mcp_cluster_forwarded")},
            "forward_p50_s": hist_quantile(m, "mcp_cluster_forward_seconds", 0.5),
            "forward_p99_s": hist_quantile(m, "mcp_cluster_forward_seconds", 0.99),
            "ack_p50_s": hist_quantile(m, "mcp_cluster_replication_ack_seconds", 0.5),
            "ack_p99_s": hist_quantile(m, "mcp_cluster_replication_ack_seconds", 0.99),
            "replicas": metric_sum(m, "mcp_cluster_replicas"),
            "failovers": metric_sum(m, "mcp_cluster_failovers_total")}


def nofile():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def load(url, call_url, *, rate=0.0, closed=False, sessions=0, workers=WORKERS, duration=TRIAL,
         calls_per_session=0, label="bench", tool="echo", progress=False):
    """One mcp-load run (calls of `tool`); its JSON report, or None if it failed to run."""
    conns = sessions + workers * (2 if calls_per_session else 1)
    if conns + 256 > nofile():
        raise RuntimeError(f"{conns} connections do not fit RLIMIT_NOFILE {nofile()}")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [LOAD, "--url", url, "--call-url", call_url, "--sessions", str(sessions), "--ramp-rate", "0",
           "--workers", str(workers), "--duration", str(duration), "--timeout", "5", "--processes", "1",
           "--label", label, "--tool", tool, "--quiet", "--json", out]
    cmd += ["--closed-loop"] if closed else ["--rate", str(rate)]
    if calls_per_session:
        cmd += ["--calls-per-session", str(calls_per_session)]
    if progress:
        cmd += ["--progress"]
    try:
        p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, err = p.communicate(timeout=duration + 120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            log(f"mcp-load timed out: {' '.join(cmd)}")
            return None
        if p.returncode != 0:
            log(f"mcp-load failed ({p.returncode}): {err.strip()[-500:]}")
            return None
        with open(out) as f:
            return json.load(f)
    finally:
        os.unlink(out)


def passes(rep):
    return (rep is not None and rep["calls_ok"] == rep["calls_due"] > 0
            and not rep["errors"] and rep["latency"]["p99_us"] < BOUND_US)


def describe(rep):
    if not rep:
        return "failed to run"
    return (f"p50 {rep['latency']['p50_us']} us, p99 {rep['latency']['p99_us']} us, "
            f"ok {rep['calls_ok']}/{rep['calls_due']}, held {rep['sessions_held']}/{rep['sessions_requested']}, "
            f"errors {rep['errors']}")


SEARCH = []  # (rate, try, p99 µs or None, passed) of every trial of the search


def attempt(cluster, rate):
    for n in (1, 2):
        rep = load(cluster.url(0), cluster.url(1), rate=rate, sessions=HELD, label=f"forwarded {rate:.0f}/s")
        ok = passes(rep)
        SEARCH.append((rate, n, rep["latency"]["p99_us"] if rep else None, ok))
        log(f"  forwarded rate={rate:.0f}/s try {n} -> {describe(rep)}" + (" PASS" if ok else " fail"))
        if ok or rep is None:
            return ok, rep
    return False, rep


def max_rate(cluster, start):
    """Highest forwarded rate with p99 < bound and every call answered: doubling from `start`,
    then bisections of the gap."""
    best, best_rep, fail, rate = 0.0, None, None, start
    while fail is None and rate <= 200_000 and left() > 60:
        ok, rep = attempt(cluster, rate)
        if ok:
            best, best_rep, rate = rate, rep, rate * 2
        else:
            fail = rate
    if fail is None:
        return best, best_rep
    lo, hi = best, fail
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if mid < 50 or left() < 60:
            break
        ok, rep = attempt(cluster, mid)
        if ok:
            lo, best, best_rep = mid, mid, rep
        else:
            hi = mid
    return best, best_rep


DURABLE_PAIRS = 1 if QUICK else 2


def durable_trials(work, config):
    """Part 6: SSE-delivered calls, local and forwarded, durableEvents on and off alternated."""
    out = {True: [], False: []}
    for k in range(DURABLE_PAIRS):
        for durable in (True, False):
            if left() < 30:
                return out
            log(f"durable events: fresh R=2 cluster, durableEvents {str(durable).lower()}, run {k + 1}")
            c = Cluster(work, config, 2, durable=durable)
            try:
                load(c.url(0), c.url(0), rate=RATE / 4, sessions=HELD, duration=1, label="warm-up",
                     progress=True)
                loc = load(c.url(0), c.url(0), rate=RATE, sessions=HELD, progress=True,
                           label=f"SSE local durable={durable}")
                log(f"  local     {RATE:.0f}/s -> {describe(loc)}")
                fwd = load(c.url(0), c.url(1), rate=RATE, sessions=HELD, progress=True,
                           label=f"SSE forwarded durable={durable}")
                log(f"  forwarded {RATE:.0f}/s -> {describe(fwd)}")
                m = cluster_metrics(c)
                run = {"loc": loc, "fwd": fwd,
                       "undurable": metric_sum(m, "mcp_cluster_events_shown_undurable_total") or 0,
                       "wait_p50_s": hist_quantile(m, "mcp_cluster_event_durable_seconds", 0.5),
                       "wait_p99_s": hist_quantile(m, "mcp_cluster_event_durable_seconds", 0.99)}
                log(f"  undurable {run['undurable']:.0f}, durable wait p50 {run['wait_p50_s']} s, "
                    f"p99 {run['wait_p99_s']} s")
                out[durable].append(run)
            finally:
                c.stop()
    return out


def durable_lines(d):
    """The rows of part 6."""
    lines = []
    def q(rep, key):
        return rep["latency"][key] if rep else None
    for where, label in (("loc", "local (n0 → n0)"), ("fwd", "forwarded (n0's session through n1)")):
        for key in ("p50_us", "p99_us"):
            on = [q(r[where], key) for r in d[True] if q(r[where], key)]
            off = [q(r[where], key) for r in d[False] if q(r[where], key)]
            if not on or not off:
                lines.append(f"| SSE-delivered `tools/call`, {label}, {key[:3]}, durableEvents on vs off | a run failed (see the log) | |")
                continue
            mon, moff = sum(on) / len(on), sum(off) / len(off)
            lines.append(
                f"| SSE-delivered `tools/call` at {RATE:,.0f}/s (a progress event, then the result event), {label}, "
                f"{key[:3]}: durableEvents on vs off | "
                f"on {', '.join(ms(v) for v in on)}; off {', '.join(ms(v) for v in off)}; "
                f"mean on / mean off {ratio(mon, moff)} ({(mon - moff) / 1000:+.2f} ms) | |")
    for durable in (True, False):
        for k, r in enumerate(d[durable]):
            for where, label in (("loc", "local"), ("fwd", "forwarded")):
                rep = r[where]
                if rep and (rep["errors"] or rep["calls_ok"] != rep["calls_due"]):
                    lines.append(f"| durableEvents {str(durable).lower()} run {k + 1}, {label}: calls answered | "
                                 f"{rep['calls_ok']}/{rep['calls_due']}{errors_of(rep)} | |")
    waits = [r for r in d[True] if r["wait_p50_s"] is not None]
    if waits:
        lines.append("| durableEvents on: copy with held events sent → every replica acknowledged "
                     "(`mcp_cluster_event_durable_seconds`, all nodes; from its buckets) | "
                     + "; ".join(f"run {k + 1}: p50 {r['wait_p50_s'] * 1000:.2f} ms, p99 {r['wait_p99_s'] * 1000:.2f} ms"
                                 for k, r in enumerate(waits)) + " | |")
    if d[True]:
        lines.append("| durableEvents on: events shown before their replicas held them "
                     "(`mcp_cluster_events_shown_undurable_total`, all nodes) | "
                     + ", ".join(f"{r['undurable']:,.0f}" for r in d[True]) + " | 0 |")
    return lines


def poll_death(cluster, victim, observers, timeout=10.0):
    """Kills `victim` with SIGKILL; seconds until each observer's /cluster shows it suspect
    (or dead) and dead. Polls every ~10 ms."""
    name = NAMES[victim]
    seen = {o: {} for o in observers}
    cluster.kill(victim)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for o in observers:
            if "dead" in seen[o]:
                continue
            try:
                row = next((m for m in cluster.view(o)["members"] if m["name"] == name), None)
            except (OSError, ValueError, KeyError):
                continue
            state = row["state"] if row else "dead"  # a removed member counts as dead
            t = time.monotonic() - t0
            if state in ("suspect", "dead"):
                seen[o].setdefault("suspect", t)
            if state == "dead":
                seen[o]["dead"] = t
        if all("dead" in s for s in seen.values()):
            break
        time.sleep(0.01)
    return seen


DUR = re.compile(r"([0-9.]+)(ns|µs|us|ms|s)\b")


def secs(text):
    m = DUR.fullmatch(text.strip())
    if not m:
        return None
    return float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def sim_figures():
    """The simulator's convergence and kill-detection summaries (virtual time)."""
    cmd = [CARGO, "test", "--release", "-q", "-p", "mcp-cluster", "--test", "sim_membership", "--",
           "ten_nodes_converge_within_one_second", "a_killed_node_is_down_everywhere_within_one_second",
           "--nocapture", "--test-threads", "1"]
    try:
        p = spawn(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = p.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return {"error": "timed out"}
    figs = {}
    for line in out.splitlines():
        m = re.search(r"([a-z][^.:]*): n=(\d+) min=(\S+) median=(\S+) mean=(\S+) max=(\S+)$", line.strip())
        if m:
            key = "convergence" if m.group(1).startswith("convergence") else (
                "detection" if m.group(1).startswith("failure detection") else m.group(1))
            figs[key] = {"label": m.group(1), "n": int(m.group(2)),
                         **{k: secs(m.group(i)) for k, i in (("min", 3), ("median", 4), ("mean", 5), ("max", 6))}}
    if p.returncode != 0:
        figs["error"] = f"exit {p.returncode}: {out.strip()[-300:]}"
    return figs


def failover(work, config):
    """mcp-failover against a fresh R=2 cluster; one node (not the first target) SIGKILLed
    mid-run. Returns its JSON, or a dict with `error`."""
    if not os.access(FAILOVER, os.X_OK):
        return {"error": "mcp-failover is not built"}
    c = Cluster(work, config, 2)
    try:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        seconds = 8 if QUICK else 15
        ready = os.path.join(work, f"failover-ready-{next(SERIAL)}")
        cmd = [FAILOVER, "--targets", ",".join(c.url(i) for i in range(3)), "--json", out,
               "--sessions", str(FAILOVER_SESSIONS), "--rate", str(FAILOVER_RATE), "--duration", str(seconds),
               "--ready-file", ready, "--quiet"]
        p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while not os.path.exists(ready) and p.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        if not os.path.exists(ready):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return {"error": "mcp-failover did not open its sessions within 60 s"}
        time.sleep(seconds / 3)
        c.kill(2)
        try:
            so, se = p.communicate(timeout=seconds + 150)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return {"error": "mcp-failover timed out"}
        if p.returncode not in (0, 1) or not os.path.exists(out) or os.path.getsize(out) == 0:
            return {"error": f"mcp-failover exit {p.returncode}: {(se or so).strip()[-400:]}"}
        with open(out) as f:
            rep = json.load(f)
        rep["_exit"] = p.returncode
        rep["_metrics"] = peer_traffic(cluster_metrics(c))
        os.unlink(out)
        return rep
    finally:
        c.stop()


def build():
    if os.environ.get("NO_BUILD") == "1":
        return
    log("cargo build --release -p mcp-node -p mcp-load (and the membership simulator's test)")
    pkgs = ["-p", "mcp-node", "-p", "mcp-load"]
    subprocess.run([CARGO, "build", "--release", "-q"] + pkgs, cwd=ROOT, check=True, timeout=3600)
    subprocess.run([CARGO, "test", "--release", "-q", "--no-run", "-p", "mcp-cluster", "--test", "sim_membership"],
                   cwd=ROOT, check=True, timeout=3600, stdout=subprocess.DEVNULL)


def main():
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(kill_all)
    build()
    for b in (NODE, LOAD):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-cluster: {b} is missing")
    global RUN_STARTED
    RUN_STARTED = time.monotonic()
    log(f"RLIMIT_NOFILE {nofile()}; {'QUICK ' if QUICK else ''}trials {TRIAL:g} s")
    work = tempfile.mkdtemp(prefix="bench-cluster.")
    if os.environ.get("KEEP_LOGS") == "1":
        log(f"node logs in {work}")
    else:
        atexit.register(shutil.rmtree, work, True)
    subprocess.run([NODE, "--write-dev-certs", os.path.join(work, "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=30)
    config = os.path.join(work, "node.yaml")
    with open(config, "w") as f:
        f.write(NODE_CONFIG)
    res = {"rlimit": nofile(), "loadavg": os.getloadavg()}

    # 1 + 3: forwarding on one cluster; its peer traffic; then kill -9 detection on it.
    log(f"forwarding: cluster with replication factor {R_FWD}")
    c = Cluster(work, config, R_FWD)
    try:
        load(c.url(0), c.url(0), rate=RATE / 4, sessions=HELD, duration=1, label="warm-up")
        pairs = []
        for k in range(1 if QUICK else 2):
            loc = load(c.url(0), c.url(0), rate=RATE, sessions=HELD, label="local")
            log(f"  local     {RATE:.0f}/s -> {describe(loc)}")
            fwd = load(c.url(0), c.url(1), rate=RATE, sessions=HELD, label="forwarded")
            log(f"  forwarded {RATE:.0f}/s -> {describe(fwd)}")
            pairs.append((loc, fwd))
        res["pairs"] = pairs
        log(f"forwarding: highest rate with forwarded p99 < {BOUND_US / 1000:g} ms")
        res["max_rate"], res["max_rep"] = max_rate(c, 1000 if QUICK else 2000)
        res["fwd_traffic"] = peer_traffic(cluster_metrics(c))
        log(f"  peer traffic: {res['fwd_traffic']}")
        log("kill -9 n2; polling n0 and n1's /cluster")
        res["kill"] = poll_death(c, 2, [0, 1])
        log(f"  {res['kill']}")
    finally:
        c.stop()

    # 6: durable events on vs off, fresh clusters alternated.
    res["durable"] = durable_trials(work, config)

    # 2 + 3: replication overhead, fresh clusters, R=1 and R=2 alternated.
    res["repl"] = {1: [], 2: []}
    for k in range(REPL_PAIRS):
        for r in (1, 2):
            if left() < 30:
                break
            log(f"replication: fresh cluster R={r}, closed loop, a new session per call ({REPL_SECONDS:g} s)")
            c = Cluster(work, config, r)
            try:
                rep = load(c.url(0), c.url(0), closed=True, duration=REPL_SECONDS, calls_per_session=1,
                           workers=REPL_WORKERS, label=f"session per call, R={r}")
                traffic = peer_traffic(cluster_metrics(c))
                sessions = [c.view(i)["members"][0]["sessions"] for i in range(3)]
                log(f"  R={r}: " + (f"{rep['throughput_per_sec']:.0f}/s, {describe(rep)}" if rep else "failed")
                    + f"; sessions per node {sessions}; traffic {traffic}")
                res["repl"][r].append({"rep": rep, "traffic": traffic, "sessions": sessions})
            finally:
                c.stop()

    # 5: sessions lost on kill -9 under load.
    if left() > 40:
        log("failover: mcp-failover against a fresh R=2 cluster, kill -9 n2 mid-run")
        res["failover"] = failover(work, config)
        log(f"  {json.dumps(res['failover'])[:800]}")
    else:
        res["failover"] = {"error": "skipped: the run's time bound was reached"}

    # 4: the simulator's figures (virtual time).
    log("membership simulator: 10-node convergence and kill detection")
    res["sim"] = sim_figures()
    log(f"  {res['sim']}")
    res["seconds"] = time.monotonic() - RUN_STARTED
    write(res)


def ms(v_us):
    return f"{v_us / 1000:.2f} ms"


def ratio(a, b, fmt="{:.2f}×"):
    return fmt.format(a / b) if a and b else "–"


def fnum(v, fmt="{:,.0f}"):
    return fmt.format(v) if v is not None else "–"


def errors_of(rep):
    if not rep or not rep["errors"]:
        return ""
    return " (errors: " + ", ".join(f"{k} {v}" for k, v in rep["errors"].items()) + ")"


def write(res):
    lines = [TITLE, "",
             f"Command: `make bench-cluster` (bench/cluster.py{', QUICK=1' if QUICK else ''}, "
             f"{res['seconds'] / 60:.1f} min after the build). Machine: {benchdoc.machine(ROOT)}; kernel {os.uname().release}; "
             f"RLIMIT_NOFILE {res['rlimit']}; load average {res['loadavg'][0]:.1f} at the start (a shared machine). Three mcp-node processes on 127.0.0.11-13 (QUIC peer links, "
             f"mutual TLS with the dev certificates), no CPU pinning; load from `mcp-load` on the same "
             f"cores ({WORKERS} call connections, legacy 2025-11-25 sessions created on n0, "
             f"`tools/call` of `echo`; {HELD} more sessions hold their GET stream through the call node "
             f"in the open-loop trials). Latency is from each call's due time (open loop).", "",
             "| what | figure | target |", "|---|---|---|"]
    for k, (loc, fwd) in enumerate(res["pairs"]):
        if loc and fwd:
            lines.append(
                f"| `tools/call` at {RATE:,.0f}/s, local (n0 → n0) vs forwarded (n0's session through n1), run {k + 1} "
                f"| p50 {ms(loc['latency']['p50_us'])} vs {ms(fwd['latency']['p50_us'])} "
                f"({ratio(fwd['latency']['p50_us'], loc['latency']['p50_us'])}); "
                f"p99 {ms(loc['latency']['p99_us'])} vs {ms(fwd['latency']['p99_us'])} "
                f"({ratio(fwd['latency']['p99_us'], loc['latency']['p99_us'])}); "
                f"answered {loc['calls_ok']}/{loc['calls_due']} vs {fwd['calls_ok']}/{fwd['calls_due']}"
                f"{errors_of(fwd)} | |")
        else:
            lines.append(f"| local vs forwarded at {RATE:,.0f}/s, run {k + 1} | "
                         f"local: {describe(loc)}; forwarded: {describe(fwd)} | |")
    mr = res.get("max_rep")
    lines.append(f"| highest forwarded rate with p99 < {BOUND_US / 1000:g} ms, every call answered "
                 f"| {res['max_rate']:,.0f}/s" + (f" (p50 {ms(mr['latency']['p50_us'])}, p99 {ms(mr['latency']['p99_us'])})" if mr else "")
                 + " | |")
    if SEARCH:
        lines.append("| the search's trials (rate: p99, pass/fail; a failed trial is retried once) | "
                     + "; ".join(f"{r:,.0f}/s: {ms(p) if p is not None else 'no run'} {'pass' if ok else 'fail'}"
                                 for r, _, p, ok in SEARCH) + " | |")
    t = res["fwd_traffic"]
    if t.get("forward_p50_s") is not None:
        lines.append(f"| forwarding node, request sent → first reply (`mcp_cluster_forward_seconds`, all trials; from its buckets) "
                     f"| p50 {t['forward_p50_s'] * 1000:.2f} ms, p99 {t['forward_p99_s'] * 1000:.2f} ms | |")
    if t.get("forwarded"):
        lines.append("| forwarded requests by outcome (`mcp_cluster_forwarded_total`) | "
                     + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(t["forwarded"].items())) + " | |")
    lines += durable_lines(res["durable"])
    r1 = [x["rep"]["throughput_per_sec"] for x in res["repl"][1] if x["rep"]]
    r2 = [x["rep"]["throughput_per_sec"] for x in res["repl"][2] if x["rep"]]
    if r1 and r2:
        m1, m2 = sum(r1) / len(r1), sum(r2) / len(r2)
        share = f"mean R=2 = {m2 / m1:.0%} of mean R=1" if m1 > 0 else "no call answered"
        lines.append(f"| session-creating load, closed loop ({REPL_WORKERS} connections, each call: `initialize` on n0, "
                     f"then the call there), {REPL_SECONDS:g} s per fresh cluster, R=1 and R=2 alternated "
                     f"| R=2: {', '.join(f'{v:,.0f}' for v in r2)}; R=1: {', '.join(f'{v:,.0f}' for v in r1)} calls/s; "
                     f"{share} | |")
        errs = [f"R={r} run {k + 1}: " + ", ".join(f"{e} {n}" for e, n in x["rep"]["errors"].items())
                for r in (1, 2) for k, x in enumerate(res["repl"][r]) if x["rep"] and x["rep"]["errors"]]
        if errs:
            lines.append(f"| errors in those runs | {'; '.join(errs)} | |")
    else:
        lines.append("| session-creating load, R=2 vs R=1 | a run failed (see the log) | |")
    rt = [x["traffic"] for x in res["repl"][2]]
    for label, tr in [(f"forwarding cluster (R={R_FWD}, all open-loop trials: forwarded calls and streams, and the replication of their sessions)", t)] + [
            (f"replicating cluster (R=2, session per call, run {k + 1})", x) for k, x in enumerate(rt)]:
        lines.append(f"| peer messages per QUIC frame, {label} | "
                     + (f"{tr['per_frame']:.1f} ({fnum(tr['messages'])} messages / {fnum(tr['frames'])} frames)"
                        if tr["per_frame"] is not None else "– (no counters)") + " | ≥ 20 |")
        lines.append(f"| peer compression (raw / wire bytes), {label} | "
                     + (f"{tr['compression']:.1f}× ({fnum(tr['raw'])} / {fnum(tr['wire'])} B)"
                        if tr["compression"] is not None else "– (no counters)") + " | ≥ 4× |")
    for x in rt:
        if x.get("ack_p50_s") is not None:
            lines.append(f"| replication ack (`mcp_cluster_replication_ack_seconds`, R=2 session-per-call run; from its buckets) | "
                         f"p50 {x['ack_p50_s'] * 1000:.2f} ms, p99 {x['ack_p99_s'] * 1000:.2f} ms | |")
            break
    kill = res.get("kill") or {}
    parts = []
    for o, s in sorted(kill.items()):
        parts.append(f"{NAMES[o]}: suspect {s['suspect'] * 1000:.0f} ms, dead {s['dead'] * 1000:.0f} ms"
                     if "dead" in s else f"{NAMES[o]}: not dead within 10 s ({s})")
    lines.append(f"| kill -9 n2 (3 nodes, loopback): until the survivors' `/cluster` shows it | {'; '.join(parts)} | < 1 s |")
    sim = res.get("sim") or {}
    for key, label, target in (("convergence", "10 nodes converge (simulator, virtual time)", "< 1 s"),
                               ("detection", "kill → all 9 survivors see down (simulator, virtual time)", "< 1 s")):
        f = sim.get(key)
        lines.append(f"| {label} | " + (f"median {f['median'] * 1000:.0f} ms, max {f['max'] * 1000:.0f} ms over {f['n']} seeds"
                                         if f else f"not measured ({sim.get('error', 'no output line')})") + f" | {target} |")
    fo = res.get("failover") or {}
    if "error" in fo:
        lines.append(f"| sessions lost on kill -9 under load | not measured: {fo['error']} | 0 with R=2 |")
    else:
        lines.append(f"| sessions lost on kill -9 of n2 under load (`mcp-failover`, R=2) | {failover_figure(fo)} | 0 with R=2 |")
    lines += ["", "Same machine for the nodes and the load: every figure includes the other processes' CPU. "
              "The peer-traffic rows are the nodes' own counters summed over the three nodes "
              "(`mcp_cluster_peer_messages_sent_total` / `mcp_cluster_peer_frames_sent_total`, "
              "`mcp_cluster_peer_bytes_sent_total{stage=\"raw\"}` / `{stage=\"wire\"}`). The simulator rows come from "
              "`cargo test -p mcp-cluster --release --test sim_membership` (its summary lines); the netns e2e "
              "(`make e2e-netns`) prints the same detection figures over real links."]
    section = "\n".join(lines) + "\n"
    print(section)
    if os.environ.get("NO_DOC") != "1":
        benchdoc.replace_section(DOC, section)
        log(f"wrote {os.path.relpath(DOC, ROOT)}")


def failover_figure(fo):
    """The lost-session count and its context, from mcp-failover's JSON."""
    if "lost" not in fo:
        return "see JSON: " + json.dumps({k: v for k, v in fo.items() if not k.startswith("_")})[:300]
    out = f"{fo['lost']} of {fo.get('sessions_opened', '?')} open sessions"
    if fo.get("lost_reasons"):
        out += " (" + ", ".join(f"{k} {v}" for k, v in fo["lost_reasons"].items()) + ")"
    if fo.get("open_failed"):
        out += "; failed to open: " + ", ".join(f"{k} {v}" for k, v in fo["open_failed"].items())
    out += (f"; calls ok {fo.get('calls_ok', '?')} ({fo.get('calls_ok_elsewhere', '?')} after a retry elsewhere), "
            f"failed {fo.get('calls_failed', '?')}; longest outage {fo.get('longest_outage_s', 0):.2f} s; "
            f"final check ok {fo.get('final_check_ok', '?')}")
    return out


if __name__ == "__main__":
    main()
