#!/usr/bin/env python3
"""make bench-scale: the cluster at 100K held sessions on one machine, under failures.

NODES mcp-node processes (release, replication factor R, each on its own 127.0.2.i address,
QUIC peer links with the dev certificates from `mcp-node --write-dev-certs`) and one
`mcp-load cluster` run (as many load processes as RLIMIT_NOFILE needs, from 127.2.K.x source
addresses) through these stages, all under load:

1. ramp: STAGES (1K -> 10K -> 25K -> 50K -> 100K held legacy sessions, each with its GET
   stream, most relayed through a node other than the one that created it), `tools/call` of
   `echo` at RATE/s (open loop, latency from the due time) from the end of the first stage;
   `test_trigger_tool_change` every ANNOUNCE_EVERY s puts an event on every stream;
2. hold: HOLD_SECONDS at the last stage;
3. kill -9 of the node with the most sessions; wait until every session is served again (or
   60 s), restart it, wait until every node sees it alive;
4. rolling restart (not in QUICK): each node in turn SIGTERM, wait for its exit, restart, wait
   until every node sees it alive;
5. final check: every held session must answer one more call and have its stream up.

Per stage: sessions held, ramp rate, p50/p95/p99/p99.9 from the due time, error rate, false
deaths (a live node declared down: "this node was declared down; rejoined" in the nodes' logs,
and "member down" where no node was stopped), take-overs (mcp_cluster_failovers), sessions lost,
events missed (gaps, duplicates, forgotten streams), time until every session is served again,
RSS and CPU per node and of the load processes, peer bytes (mcp_cluster_peer_bytes_sent).
Plots (through `mcp-load plot`) go to docs/bench/scale-*.png, figures into the "Scale" section
of docs/BENCHMARKS.md. Every wait is bounded; every process started here is killed at exit.

QUICK=1: 20K sessions (stages 5000,20000), a 20 s hold, one kill, no rolling restart, no doc
unless DOC=1; exits 1 when a session was lost, an event missed or a stage not reached — the
`make test` stage.

Env: NODES (0: enough for the fd limit, at least 6), STAGES, HOLD_SECONDS, RATE, RAMP_RATE,
STAGE_HOLD, ANNOUNCE_EVERY, RELAY_FRACTION (0.8), REPLICATION_FACTOR (2), DEADLINE (15),
ROLLING (1; QUICK 0), CARGO, NO_BUILD=1, NO_DOC=1, KEEP_LOGS=1, PROFILE=debug (debug binaries).
"""

import atexit
import calendar
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
import threading
import time
import urllib.request

import benchdoc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CARGO = os.environ.get("CARGO", "cargo")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
PROFILE = os.environ.get("PROFILE", "release")
NODE = os.path.join(TARGET, PROFILE, "mcp-node")
LOAD = os.path.join(TARGET, PROFILE, "mcp-load")
DOC = os.path.join(ROOT, "docs/BENCHMARKS.md")
PLOTS = os.path.join(ROOT, "docs/bench")
TITLE = "## Scale (`make bench-scale`)"
TITLE_QUICK = "## Scale, QUICK (`make bench-scale-quick`)"


def env(name, default):
    v = os.environ.get(name)
    return default if v in (None, "") else v


QUICK = env("QUICK", "0") == "1"
STAGES = [int(x) for x in env("STAGES", "5000,20000" if QUICK else "1000,10000,25000,50000,100000").split(",")]
SESSIONS = STAGES[-1]
HOLD = float(env("HOLD_SECONDS", 20 if QUICK else 300))
RATE = float(env("RATE", 500 if QUICK else 2000))
RAMP_RATE = float(env("RAMP_RATE", 1000))
STAGE_HOLD = float(env("STAGE_HOLD", 5 if QUICK else 10))
ANNOUNCE = float(env("ANNOUNCE_EVERY", 10 if QUICK else 30))
RELAY = float(env("RELAY_FRACTION", 0.8))
R = int(env("REPLICATION_FACTOR", 2))
DEADLINE = float(env("DEADLINE", 15))
ROLLING = env("ROLLING", "0" if QUICK else "1") == "1"
WRITE_DOC = env("DOC", "0" if QUICK else "1") == "1" and env("NO_DOC", "0") != "1"
NODE_NET = "127.0.2"
WAIT_CLUSTER_S = 60
RECOVERY_WAIT_S = 60
POOL = 4

PROCS = []


def log(msg):
    print(f"bench-scale: {msg}", file=sys.stderr, flush=True)


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


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def nofile():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)')


def parse_metrics(text):
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


def metric(m, name, **want):
    vals = [v for (n, labels), v in m.items()
            if n in (name, name + "_total") and all((k, w) in labels for k, w in want.items())]
    return sum(vals) if vals else 0.0


def node_config(work):
    path = os.path.join(work, "node.yaml")
    with open(path, "w") as f:
        f.write("packs: [echo, conformance]\n"
                "limits:\n  sessionRatePerSec: 1000000000.0\n  sessionBurst: 1000000000\n"
                "log:\n  level: info\n  format: json\n"
                "security:\n  allowedHosts: ['*']\n")
    return path


class Node:
    """One mcp-node on its own loopback address; restartable on the same ports."""

    def __init__(self, i, work, config):
        self.i, self.name, self.ip = i, f"n{i}", f"{NODE_NET}.{i + 1}"
        self.mcp_port = free_port(self.ip)
        self.admin_port = free_port(self.ip)
        self.peer_port = free_port(self.ip, socket.SOCK_DGRAM)
        self.work, self.config = work, config
        self.log_path = os.path.join(work, f"{self.name}.log")
        self.proc = None
        self.starts = 0

    def start(self, seeds):
        certs = os.path.join(self.work, "certs")
        cmd = [NODE, "--config", self.config, "--listen", f"{self.ip}:{self.mcp_port}",
               "--admin-listen", f"{self.ip}:{self.admin_port}",
               "--admin-insecure-local",  # /cluster without credentials: loopback addresses only
               "--cluster=true", "--node-name", self.name,
               "--peer-listen", f"{self.ip}:{self.peer_port}", "--advertise", f"{self.ip}:{self.peer_port}",
               "--seeds", seeds, "--replication-factor", str(R),
               "--cluster-ca-file", os.path.join(certs, "ca.crt"),
               "--cluster-cert-file", os.path.join(certs, "tls.crt"),
               "--cluster-key-file", os.path.join(certs, "tls.key")]
        env_ = {k: v for k, v in os.environ.items() if not k.startswith("MCP_NODE_")}
        f = open(self.log_path, "a")
        self.proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env_)
        f.close()
        self.starts += 1

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def url(self):
        return f"http://{self.ip}:{self.mcp_port}/mcp"

    def admin(self, path, timeout=2.0):
        return http_get(f"http://{self.ip}:{self.admin_port}{path}", timeout)

    def view(self):
        return json.loads(self.admin("/cluster"))

    def status(self):
        return json.loads(self.admin("/status"))

    def kill9(self):
        if self.pid:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def term(self, timeout):
        """SIGTERM and wait for the exit; seconds it took, or None (then SIGKILLed)."""
        if not self.pid:
            return 0.0
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
            return time.monotonic() - t
        except subprocess.TimeoutExpired:
            self.kill9()
            return None


class Cluster:
    def __init__(self, n, work, config):
        self.nodes = [Node(i, work, config) for i in range(n)]
        self.seeds = ",".join(f"{x.ip}:{x.peer_port}" for x in self.nodes)

    def start(self):
        for x in self.nodes:
            x.start(self.seeds)
        return self.wait_all_alive(WAIT_CLUSTER_S)

    def wait_all_alive(self, limit):
        """Until every running node lists every node alive with its address (one row per
        name); seconds it took, or None."""
        t = time.monotonic()
        n = len(self.nodes)
        while time.monotonic() - t < limit:
            for x in self.nodes:
                if x.proc and x.proc.poll() is not None:
                    raise RuntimeError(f"{x.name} exited with {x.proc.returncode}: {tail(x.log_path)}")
            try:
                ok = True
                for x in self.nodes:
                    members = x.view()["members"]
                    alive = {m["name"] for m in members if m["state"] == "alive" and m.get("address")}
                    ok &= len(alive) == n
                if ok:
                    return time.monotonic() - t
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        return None

    def sees_dead(self, victim, limit):
        t = time.monotonic()
        while time.monotonic() - t < limit:
            try:
                if all(next((m["state"] for m in x.view()["members"] if m["name"] == victim.name), "dead") != "alive"
                       for x in self.nodes if x is not victim and x.pid):
                    return time.monotonic() - t
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        return None

    def stop(self):
        for x in self.nodes:
            x.kill9()


def tail(path, n=800):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def proc_cpu_rss(pid):
    """(CPU seconds, RSS bytes) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss
    except (OSError, IndexError, ValueError, StopIteration):
        return None


class Sampler(threading.Thread):
    """Every second: each node's CPU and RSS from /proc; every 2 s its /metrics."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.stop_ = cluster, threading.Event()
        self.proc = []     # (unix, node, pid, cpu_s, rss)
        self.metrics = []  # (unix, node, pid, {name: value})
        self.lock = threading.Lock()

    def run(self):
        k = 0
        while not self.stop_.wait(1.0):
            now = time.time()
            for x in self.cluster.nodes:
                pid = x.pid
                if not pid:
                    continue
                s = proc_cpu_rss(pid)
                if s:
                    with self.lock:
                        self.proc.append((now, x.i, pid, s[0], s[1]))
            k += 1
            if k % 2:
                continue
            for x in self.cluster.nodes:
                pid = x.pid
                if not pid:
                    continue
                try:
                    m = parse_metrics(x.admin("/metrics", timeout=3))
                except OSError:
                    continue
                row = {
                    "failovers": metric(m, "mcp_cluster_failovers"),
                    "down": metric(m, "mcp_cluster_membership_events", event="down"),
                    "rejoined": metric(m, "mcp_cluster_membership_events", event="rejoined"),
                    "wire": metric(m, "mcp_cluster_peer_bytes_sent", stage="wire"),
                    "raw": metric(m, "mcp_cluster_peer_bytes_sent", stage="raw"),
                    "sessions": metric(m, "mcp_sessions"),
                    "connections": metric(m, "mcp_connections"),
                }
                with self.lock:
                    self.metrics.append((time.time(), x.i, pid, row))

    def snapshot(self):
        with self.lock:
            return list(self.proc), list(self.metrics)


class Timeline:
    """Follows the load's JSON-lines timeline as it grows."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, ""
        self.t0 = None
        self.seconds = []
        self.phases = []

    def poll(self):
        try:
            with open(self.path) as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except OSError:
            return
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("type") == "start":
                self.t0 = d["t0_unix_ms"] / 1000.0
            elif d.get("type") == "phase":
                self.phases.append((d["name"], d["t"]))
            elif d.get("type") == "second":
                self.seconds.append(d)

    def sec(self, unix):
        """The load's second index of a Unix time."""
        return int(unix - self.t0) if self.t0 else 0

    def last(self):
        return self.seconds[-1] if self.seconds else {}


# --- Figures from the load's seconds (the same sums as mcp_load::cluster::second::Span).

def percentile(bins, q):
    total = sum(c for _, c in bins)
    if total == 0:
        return 0
    rank, acc = q * total, 0
    for v, c in bins:
        acc += c
        if acc >= rank:
            return v
    return bins[-1][0]


def span(seconds, t_from, t_to):
    sel = [s for s in seconds if t_from <= s["t"] < t_to]
    merged = {}
    keys = ("opened", "open_failed", "calls_ok", "calls_failed", "unsent", "attempts", "retries", "events", "gaps",
            "duplicates", "resets", "resets_empty", "bad_ids", "resumes", "lost", "outages", "announces_ok",
            "announces_failed", "checked")
    out = {k: sum(s.get(k, 0) for s in sel) for k in keys}
    errors = {}
    for s in sel:
        for k, v in s.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
        for v, c in s.get("latency", []):
            merged[v] = merged.get(v, 0) + c
    bins = sorted(merged.items())
    out["errors"] = errors
    out["error_count"] = sum(errors.values())
    out["error_rate"] = out["error_count"] / out["attempts"] if out["attempts"] else 0.0
    out["lat"] = {q: percentile(bins, p) for q, p in (("p50", .5), ("p95", .95), ("p99", .99), ("p999", .999))}
    out["lat"]["max"] = bins[-1][0] if bins else 0
    out["held_end"] = sel[-1]["held"] if sel else 0
    out["held_max"] = max((s["held"] for s in sel), default=0)
    out["impaired_max"] = max((max(s["impaired"], s["impaired_max"]) for s in sel), default=0)
    out["outage_max_ms"] = max((s["outage_max_ms"] for s in sel), default=0)
    out["cpu"] = sum(s["cpu_user_s"] + s["cpu_sys_s"] for s in sel)
    out["cpu_sys"] = sum(s["cpu_sys_s"] for s in sel)
    out["seconds"] = max(t_to - t_from, 1)
    out["missed"] = out["gaps"] + out["duplicates"] + out["resets"] + out["bad_ids"]
    return out


def served_again(tl, t_event_unix, limit_unix):
    """Seconds from an event (a kill, a SIGTERM) until the last outage that followed it ended:
    outages are followed until the first 2 s in a row that end with no session impaired;
    None if that never came."""
    t0 = tl.t0
    first = tl.sec(t_event_unix)
    sel = [s for s in tl.seconds if first <= s["t"] <= tl.sec(limit_unix)]
    quiet = 0
    last_end_ms = None
    for s in sel:
        if s["recovered_at_ms"]:
            last_end_ms = max(last_end_ms or 0, s["recovered_at_ms"])
        if s["impaired"] == 0:
            quiet += 1
            if quiet >= 2:
                if last_end_ms is None:
                    return 0.0
                return max(0.0, (t0 * 1000 + last_end_ms) / 1000 - t_event_unix)
        else:
            quiet = 0
    return None


class Run:
    def __init__(self):
        self.stages = []   # {"name", "from", "to" (unix), "stops": n, "note"}
        self.events = []   # (unix, label)
        self.notes = []


def wait_recovered(tl, since_unix, limit_s):
    """Until the load's timeline shows no impaired session at the end of 3 seconds in a row
    after `since_unix`."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        tl.poll()
        sel = [s for s in tl.seconds if s["t"] > tl.sec(since_unix)]
        if len(sel) >= 3 and all(s["impaired"] == 0 for s in sel[-3:]):
            return True
        time.sleep(0.5)
    return False


def build():
    if env("NO_BUILD", "0") == "1":
        return
    flag = ["--release"] if PROFILE == "release" else []
    log(f"cargo build {' '.join(flag)} -p mcp-node -p mcp-load")
    subprocess.run([CARGO, "build", "-q"] + flag + ["-p", "mcp-node", "-p", "mcp-load"], cwd=ROOT, check=True,
                   timeout=3600)


def choose_nodes():
    n = int(env("NODES", "0"))
    if n:
        return n
    # One node's connection cap (RLIMIT_NOFILE minus its reserve): after one node is gone,
    # the others must still hold every stream plus the pools, with 10 % to spare.
    cap = max(nofile() - 256, 1000)
    n = 6
    while SESSIONS / (n - 1) + 64 > cap * 0.9:
        n += 1
    return n


def main():
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(kill_all)
    build()
    for b in (NODE, LOAD):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-scale: {b} is missing")
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="bench-scale.")
    if env("KEEP_LOGS", "0") == "1":
        log(f"logs in {work}")
    else:
        atexit.register(shutil.rmtree, work, True)
    subprocess.run([NODE, "--write-dev-certs", os.path.join(work, "certs")], check=True,
                   stdout=subprocess.DEVNULL, timeout=30)
    config = node_config(work)
    n_nodes = choose_nodes()
    loadavg = os.getloadavg()
    log(f"{n_nodes} nodes (R={R}), stages {STAGES}, hold {HOLD:g} s, {RATE:g} calls/s, ramp {RAMP_RATE:g}/s, "
        f"announce every {ANNOUNCE:g} s, RLIMIT_NOFILE {nofile()}, load average {loadavg[0]:.1f}")
    cluster = Cluster(n_nodes, work, config)
    conv = cluster.start()
    if conv is None:
        sys.exit(f"bench-scale: the {n_nodes} nodes did not converge within {WAIT_CLUSTER_S} s")
    log(f"cluster converged in {conv:.1f} s")
    sampler = Sampler(cluster)
    sampler.start()
    run = Run()

    timeline_path = os.path.join(work, "timeline.jsonl")
    report_path = os.path.join(work, "load.json")
    until = os.path.join(work, "until")
    ready = os.path.join(work, "ready")
    cmd = [LOAD, "cluster", "--nodes", ",".join(x.url() for x in cluster.nodes),
           "--stages", ",".join(map(str, STAGES)), "--stage-hold", str(STAGE_HOLD),
           "--hold", "7200", "--until-file", until, "--ready-file", ready,
           "--ramp-rate", str(RAMP_RATE), "--rate", str(RATE), "--pool", str(POOL),
           "--relay-fraction", str(RELAY), "--announce-every", str(ANNOUNCE), "--deadline", str(DEADLINE),
           "--timeline", timeline_path, "--json", report_path, "--label", "bench-scale"]
    load_out = open(os.path.join(work, "load.out"), "w")
    loader = spawn(cmd, stdout=load_out, stderr=subprocess.STDOUT)
    tl = Timeline(timeline_path)

    def loader_alive():
        return loader.poll() is None

    # 1. The ramp, as the load walks its stages (it bounds each one).
    log("ramp: " + " -> ".join(map(str, STAGES)))
    last_phase = 0
    while not os.path.exists(ready) and loader_alive():
        tl.poll()
        if len(tl.phases) > last_phase:
            for name, t in tl.phases[last_phase:]:
                log(f"  {name} at t={t}s (held {tl.last().get('held', 0)})")
            last_phase = len(tl.phases)
        time.sleep(0.5)
    if not loader_alive():
        log(f"mcp-load exited during the ramp: {tail(os.path.join(work, 'load.out'))}")
    tl.poll()
    for k, (name, t) in enumerate(tl.phases):
        if name.startswith("ramp"):
            end = tl.phases[k + 1][1] if k + 1 < len(tl.phases) else tl.sec(time.time())
            run.stages.append({"name": name, "from": tl.t0 + t, "to": tl.t0 + end, "stops": 0})
    log(f"ramp over: {tl.last().get('held', 0)} sessions held")

    # 2. The hold.
    t_hold = time.time()
    log(f"hold: {HOLD:g} s at {tl.last().get('held', 0)} sessions")
    end = time.monotonic() + HOLD
    while time.monotonic() < end and loader_alive():
        time.sleep(1.0)
        tl.poll()
    run.stages.append({"name": f"hold {HOLD:g} s", "from": t_hold, "to": time.time(), "stops": 0})

    # 3. kill -9 of the node with the most sessions.
    if loader_alive():
        counts = []
        for x in cluster.nodes:
            try:
                counts.append((x.status()["sessions"], x.i))
            except (OSError, ValueError, KeyError):
                counts.append((-1, x.i))
        sessions, victim_i = max(counts)
        victim = cluster.nodes[victim_i]
        log(f"kill -9 {victim.name} (owns {sessions} sessions; per node {[c for c, _ in sorted(counts, key=lambda c: c[1])]})")
        t_kill = time.time()
        victim.kill9()
        run.events.append((t_kill, f"kill -9 {victim.name}"))
        dead_after = cluster.sees_dead(victim, 30)
        recovered = wait_recovered(tl, t_kill, RECOVERY_WAIT_S)
        t_rec = time.time()
        log(f"  survivors saw it dead after {dead_after if dead_after is None else round(dead_after, 2)} s; "
            f"{'every session served again' if recovered else 'NOT every session served again'} "
            f"(waited {t_rec - t_kill:.1f} s)")
        victim.start(cluster.seeds)
        rejoin = cluster.wait_all_alive(WAIT_CLUSTER_S)
        run.events.append((time.time(), f"{victim.name} back"))
        log(f"  {victim.name} restarted; every node sees it alive after {rejoin if rejoin is None else round(rejoin, 1)} s")
        time.sleep(5)
        tl.poll()
        run.stages.append({"name": f"kill -9 {victim.name}", "from": t_kill, "to": time.time(), "stops": 1,
                           "victim_sessions": sessions, "kill": t_kill, "detect_s": dead_after,
                           "recovered": recovered, "rejoin_s": rejoin})

    # 4. Rolling restart.
    if ROLLING and loader_alive():
        t_roll = time.time()
        stops = []
        log("rolling restart: SIGTERM, wait for the exit, restart, wait until every node sees it alive")
        for x in cluster.nodes:
            if not loader_alive():
                break
            t_stop = time.time()
            run.events.append((t_stop, f"SIGTERM {x.name}"))
            took = x.term(60)
            x.start(cluster.seeds)
            rejoin = cluster.wait_all_alive(WAIT_CLUSTER_S)
            recovered = wait_recovered(tl, t_stop, 30)
            stops.append({"node": x.name, "t": t_stop, "exit_s": took, "rejoin_s": rejoin})
            log(f"  {x.name}: exited after {took if took is None else round(took, 1)} s"
                f"{' (SIGKILLed after 60 s)' if took is None else ''}; alive everywhere again after "
                f"{rejoin if rejoin is None else round(rejoin, 1)} s; {'no session impaired' if recovered else 'sessions still impaired'}")
            time.sleep(3)
        tl.poll()
        run.stages.append({"name": "rolling restart", "from": t_roll, "to": time.time(), "stops": len(stops),
                           "restarts": stops})

    # 5. Final check.
    t_final = time.time()
    with open(until, "w") as f:
        f.write(f"{t_final}\n")
    log("final check (every held session: one call, stream up)")
    bound = time.monotonic() + 3 * (DEADLINE + 5) + SESSIONS / 5000 + 120
    while loader_alive() and time.monotonic() < bound:
        time.sleep(0.5)
    if loader_alive():
        run.notes.append("mcp-load did not end within its bound after the final check was asked; killed")
        os.killpg(loader.pid, signal.SIGKILL)
    loader.wait()
    load_out.close()
    tl.poll()
    run.stages.append({"name": "final check", "from": t_final, "to": time.time(), "stops": 0})
    sampler.stop_.set()
    sampler.join(timeout=5)
    procs, metrics = sampler.snapshot()
    cluster.stop()
    report = None
    try:
        with open(report_path) as f:
            report = json.load(f)
    except (OSError, ValueError):
        run.notes.append(f"no report from mcp-load (exit {loader.returncode}): "
                         f"{tail(os.path.join(work, 'load.out'), 600)}")
    log_events = scan_logs(cluster)
    res = figures(run, tl, procs, metrics, log_events, cluster, report)
    res.update({"nodes": n_nodes, "loadavg": loadavg, "minutes": (time.monotonic() - started) / 60,
                "load_exit": loader.returncode, "load_text": tail(os.path.join(work, "load.out"), 4000)})
    text = render(res, run)
    print(text)
    plots = write_plots(res, run, tl, procs, metrics, cluster, work)
    if WRITE_DOC:
        benchdoc.replace_section(DOC, text + ("\nPlots: " + ", ".join(f"`{os.path.relpath(p, ROOT)}`" for p in plots)
                                              + ".\n" if plots else ""))
        log(f"wrote {os.path.relpath(DOC, ROOT)}")
    failed = res["failures"]
    if failed:
        log("FAILED: " + "; ".join(failed))
    else:
        log("passed: no session lost, no event missed, every stage reached")
    if QUICK and failed:
        sys.exit(1)


def scan_logs(cluster):
    """(unix, node, kind) of the membership lines in the nodes' JSON logs."""
    out = []
    for x in cluster.nodes:
        try:
            f = open(x.log_path, errors="replace")
        except OSError:
            continue
        with f:
            for line in f:
                if "declared down" not in line and "member down" not in line:
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if d.get("target") != "mcp_node::cluster::shell":
                    continue  # the cluster crate's driver logs the same events
                msg = d.get("fields", {}).get("message", "")
                ts = d.get("timestamp", "")
                try:
                    t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
                    t += float("0." + ts[20:].rstrip("Z")) if len(ts) > 21 else 0.0
                except ValueError:
                    continue
                kind = "rejoined" if "declared down; rejoined" in msg else (
                    "defunct" if "cannot rejoin" in msg else ("down" if msg == "member down" else None))
                if kind:
                    out.append((t, x.name, kind))
    return out


def figures(run, tl, procs, metrics, log_events, cluster, report):
    n = len(cluster.nodes)
    stages = []
    for st in run.stages:
        a, b = st["from"], st["to"]
        sp = span(tl.seconds, tl.sec(a), max(tl.sec(b), tl.sec(a) + 1))
        # Node CPU (cores) and RSS over the stage.
        cpu, rss = {}, {}
        for x in cluster.nodes:
            rows = [p for p in procs if p[1] == x.i and a <= p[0] <= b]
            used = 0.0
            for pid in {p[2] for p in rows}:
                r = [p for p in rows if p[2] == pid]
                if len(r) >= 2:
                    used += r[-1][3] - r[0][3]
            cpu[x.name] = used / max(b - a, 1e-3)
            rss[x.name] = max((p[4] for p in rows), default=0)
        # Counters from /metrics (scraped every 2 s): per process (a restart starts again at
        # 0), the last value scraped by the stage's end minus the last one by its start (0 for
        # a process started during the stage).
        def delta(key):
            total = 0.0
            for x in cluster.nodes:
                for pid in {m[2] for m in metrics if m[1] == x.i}:
                    rows = [m for m in metrics if m[1] == x.i and m[2] == pid]
                    before = [m for m in rows if m[0] <= a]
                    upto = [m for m in rows if m[0] <= b]
                    if not upto:
                        continue
                    start = before[-1][3][key] if before else 0.0
                    total += max(0.0, upto[-1][3][key] - start)
            return total
        downs = [e for e in log_events if a <= e[0] <= b and e[2] == "down"]
        rejoined = [e for e in log_events if a <= e[0] <= b and e[2] in ("rejoined", "defunct")]
        expected_downs = st["stops"] * (n - 1)
        false_deaths = len(rejoined) + max(0, len(downs) - expected_downs)
        served = None
        held_at_event = max((x["held"] for x in tl.seconds if x["t"] <= tl.sec(a)), default=0) if tl.seconds else 0
        if not held_at_event:
            pass  # no session to serve again
        elif st.get("kill"):
            served = served_again(tl, st["kill"], st["to"])
        if st.get("restarts") and held_at_event:
            vals = [served_again(tl, r["t"], r["t"] + 60) for r in st["restarts"]]
            served = None if any(v is None for v in vals) else max(vals, default=0.0)
        stages.append({**st, "span": sp, "cpu": cpu, "rss": rss, "failovers": delta("failovers"), "held_before": held_at_event,
                       "wire": delta("wire"), "raw": delta("raw"), "downs": len(downs), "rejoined": len(rejoined),
                       "false_deaths": false_deaths, "served_again_s": served})
    failures = []
    if report is None:
        failures.append("no report from mcp-load")
    else:
        failures += report.get("failures", [])
    for s in stages:
        if s["false_deaths"]:
            failures.append(f"{s['name']}: {s['false_deaths']} false deaths")
    failures += run.notes
    return {"stages": stages, "failures": failures, "report": report}


def fmt_ms(us):
    return f"{us / 1000:.2f}"


def render(res, run):
    rep = res["report"] or {}
    lines = [TITLE_QUICK if QUICK else TITLE, "",
             f"Command: `{'make bench-scale-quick' if QUICK else 'make bench-scale'}` (bench/scale.py{', QUICK=1' if QUICK else ''}, {res['minutes']:.1f} min). "
             f"Machine: {benchdoc.machine(ROOT)}; kernel {os.uname().release}; RLIMIT_NOFILE {nofile()}; "
             f"load average {res['loadavg'][0]:.1f} at the start. {res['nodes']} mcp-node ({PROFILE}, R = {R}, "
             f"each on its own 127.0.2.x, QUIC with the dev certificates, `echo` + `conformance` packs) and "
             f"`mcp-load cluster` ({rep.get('processes', '?')} processes from 127.2.K.x) on the same 2 cores: "
             f"legacy sessions with their GET stream ({RELAY:.0%} opened through a node other than the one that "
             f"created the session), `initialize` round-robin over the nodes at {RAMP_RATE:g}/s, `tools/call` of "
             f"`echo` at {RATE:g}/s over {POOL} keep-alive connections per node per load process (round-robin over the "
             f"nodes, so most are forwarded), `test_trigger_tool_change` every {ANNOUNCE:g} s (an event on every "
             f"stream). Latency is from each call's due time (open loop); a session is lost on a 404 or "
             f"{DEADLINE:g} s without a success; failed exchanges are retried on the next node, never re-initialized.",
             "",
             "| stage | sessions held | ramp /s | p50 / p95 / p99 / p99.9 ms | error rate | false deaths | take-overs "
             "| lost | events missed | served again after | node CPU (cores, max / all) | node RSS max | load CPU (cores) "
             "| peer bytes/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in res["stages"]:
        sp = s["span"]
        ramp = next((p.get("ramp_rate") for p in rep.get("phases", []) if p["name"] == s["name"]), None)
        target = next((p.get("target") for p in rep.get("phases", []) if p["name"] == s["name"]), None)
        reached = next((p.get("reached") for p in rep.get("phases", []) if p["name"] == s["name"]), None)
        held_n = next((p.get("held") for p in rep.get("phases", []) if p["name"] == s["name"]), None)
        if s["name"] == "final check" and rep:
            held_n, target = rep.get("final_ok", 0), rep.get("final_checked", 0)
        held = f"{held_n if held_n is not None else sp['held_end']:,}" + (f" of {target:,}" if target else "") + (
            " (NOT reached)" if reached is False else "")
        secs = max(s["to"] - s["from"], 1e-3)
        served = "–" if (s["served_again_s"] is None and not s["stops"]) else (
            "no session held" if not s["held_before"] else
            "not within the wait" if s["served_again_s"] is None else f"{s['served_again_s']:.2f} s")
        cpu_vals = list(s["cpu"].values())
        lines.append(
            f"| {s['name']} | {held} | {ramp:,.0f} |" if ramp else f"| {s['name']} | {held} | |")
        lines[-1] += (
            f" {fmt_ms(sp['lat']['p50'])} / {fmt_ms(sp['lat']['p95'])} / {fmt_ms(sp['lat']['p99'])} / {fmt_ms(sp['lat']['p999'])}"
            f" | {sp['error_rate']:.3%} | {s['false_deaths']} | {s['failovers']:,.0f} | {sp['lost']} | {sp['missed']}"
            f" | {served} | {max(cpu_vals, default=0):.2f} / {sum(cpu_vals):.2f} | {max(s['rss'].values(), default=0) / 2**20:,.0f} MiB"
            f" | {sp['cpu'] / secs:.2f} | {s['wire'] / secs:,.0f} |")
    lines.append("")
    total = rep.get("total", {}).get("sum", {})
    lines.append(
        f"Whole run: {total.get('opened', 0):,} sessions opened, {total.get('open_failed', 0):,} failed to open, "
        f"{rep.get('lost', 0):,} lost ({', '.join(f'{k} {v}' for k, v in rep.get('lost_reasons', {}).items()) or 'none'}); "
        f"{total.get('calls_ok', 0):,} calls answered, {total.get('calls_failed', 0):,} never answered; "
        f"{rep.get('events', {}).get('received', 0):,} events, {rep.get('events', {}).get('gaps', 0)} gaps, "
        f"{rep.get('events', {}).get('duplicates', 0)} duplicates, {rep.get('events', {}).get('resets', 0)} forgotten streams; "
        f"final check {rep.get('final_ok', 0):,} of {rep.get('final_checked', 0):,}; "
        f"failed attempts by kind: {', '.join(f'{k} {v:,}' for k, v in sorted(total.get('errors', {}).items(), key=lambda kv: -kv[1])[:12]) or 'none'}.")
    for s in res["stages"]:
        if s.get("kill"):
            lines.append(f"`{s['name']}`: it owned {s['victim_sessions']:,} sessions; the survivors' `/cluster` showed it "
                         f"down after {s['detect_s'] if s['detect_s'] is None else round(s['detect_s'], 2)} s; restarted, "
                         f"alive everywhere after {s['rejoin_s'] if s['rejoin_s'] is None else round(s['rejoin_s'], 1)} s. "
                         f"Down events {s['downs']} (expected {res['nodes'] - 1}), "
                         f"'declared down; rejoined' {s['rejoined']}.")
        if s.get("restarts"):
            lines.append("Rolling restart, per node (SIGTERM to exit; restart to alive everywhere): "
                         + "; ".join(f"{r['node']} {('%.1f s' % r['exit_s']) if r['exit_s'] is not None else 'SIGKILLed after 60 s'}, "
                                     f"{('%.1f s' % r['rejoin_s']) if r['rejoin_s'] is not None else 'not within 60 s'}"
                                     for r in s["restarts"]) + ".")
    lines.append("")
    if res["failures"]:
        lines.append("Not met in this run: " + "; ".join(res["failures"]) + ".")
    else:
        lines.append("Every session survived, every event arrived, every stage was reached.")
    lines.append("")
    return "\n".join(lines) + "\n"


def write_plots(res, run, tl, procs, metrics, cluster, work):
    """PNG charts via `mcp-load plot`; the files written."""
    if not tl.t0:
        return []
    # Into docs/bench/ only when the doc is written (a QUICK run in `make test` leaves the
    # tree as it was); else beside the logs.
    out_dir = PLOTS if WRITE_DOC else work
    os.makedirs(out_dir, exist_ok=True)
    prefix = "scale-quick" if QUICK else "scale"
    t0 = tl.t0
    markers = [(s["from"] - t0, s["name"]) for s in run.stages] + [(t - t0, label) for t, label in run.events
                                                                   if not label.startswith("SIGTERM")]
    secs = tl.seconds

    def series(name, f):
        return {"name": name, "points": [(s["t"], f(s)) for s in secs]}

    def lat(q):
        out = []
        for s in secs:
            if s["calls_ok"]:
                b = sorted((v, c) for v, c in s["latency"])
                out.append((s["t"], (b[-1][0] if q >= 1 else percentile(b, q)) / 1000))
        return out

    node_sessions = {}
    for t, i, pid, row in metrics:
        node_sessions.setdefault(i, []).append((t - t0, row["sessions"]))
    cpu_series, rss_series = [], []
    for x in cluster.nodes:
        rows = [p for p in procs if p[1] == x.i]
        pts, rpts = [], []
        for a, b in zip(rows, rows[1:]):
            if a[2] == b[2] and b[0] > a[0]:
                pts.append((b[0] - t0, (b[3] - a[3]) / (b[0] - a[0])))
            rpts.append((b[0] - t0, b[4] / 2**20))
        cpu_series.append({"name": x.name, "points": pts})
        rss_series.append({"name": x.name, "points": rpts})
    cpu_series.append(series("mcp-load (all processes)", lambda s: s["cpu_user_s"] + s["cpu_sys_s"]))
    wire = []
    for x in cluster.nodes:
        rows = [(t, pid, row["wire"]) for t, i, pid, row in metrics if i == x.i]
        for a, b in zip(rows, rows[1:]):
            if a[1] == b[1] and b[0] > a[0]:
                wire.append((b[0] - t0, (b[2] - a[2]) / (b[0] - a[0])))
    wire_total = {}
    for t, v in wire:
        k = round(t / 2) * 2
        wire_total[k] = wire_total.get(k, 0) + v
    charts = {
        "sessions": {"title": "bench-scale: sessions (as the load sees them)", "x_label": "seconds",
                     "y_label": "sessions",
                     "series": [series("held", lambda s: s["held"]),
                                series("streams up", lambda s: s["streams_up"]),
                                series("impaired (most in the second)", lambda s: s["impaired_max"])]},
        "nodes": {"title": "bench-scale: sessions owned by each node (mcp_sessions)", "x_label": "seconds",
                  "y_label": "sessions",
                  "series": [{"name": cluster.nodes[i].name, "points": p} for i, p in sorted(node_sessions.items())]},
        "rate": {"title": "bench-scale: per second", "x_label": "seconds", "y_label": "per second",
                 "series": [series("calls answered", lambda s: s["calls_ok"]),
                            series("failed attempts", lambda s: sum(s["errors"].values())),
                            series("sessions opened", lambda s: s["opened"])]},
        "latency": {"title": "bench-scale: tools/call latency from the due time", "x_label": "seconds",
                    "y_label": "ms (log)", "log_y": True,
                    "series": [{"name": "p50", "points": lat(.5)}, {"name": "p99", "points": lat(.99)},
                               {"name": "max", "points": lat(1)}]},
        "cpu": {"title": "bench-scale: CPU per process (cores)", "x_label": "seconds", "y_label": "cores",
                "series": cpu_series},
        "rss": {"title": "bench-scale: node RSS", "x_label": "seconds", "y_label": "MiB", "series": rss_series},
        "peer": {"title": "bench-scale: peer bytes sent on the wire, all nodes", "x_label": "seconds",
                 "y_label": "bytes/s", "series": [{"name": "all nodes", "points": sorted(wire_total.items())}]},
    }
    written = []
    for name, c in charts.items():
        c.setdefault("log_y", False)
        c["markers"] = markers
        spec = os.path.join(work, f"{name}.json")
        with open(spec, "w") as f:
            json.dump(c, f)
        out = os.path.join(out_dir, f"{prefix}-{name}.png")
        p = subprocess.run([LOAD, "plot", spec, out], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            written.append(out)
        else:
            log(f"plot {name}: {p.stderr.strip()[-300:]}")
    return written


if __name__ == "__main__":
    main()
