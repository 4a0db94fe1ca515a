#!/usr/bin/env python3
"""make bench-detector: can load fool the failure detector, and is a real death still seen fast?

Six mcp-node processes (release) on 127.0.3.1-6, each with its own mcp-load, and a CPU hog
(`stress-ng --cpu 4`) beside them on the same cores:

1. Soak (MINUTES, default 10): per node, one mcp-load opens SESSIONS legacy sessions (each
   with its GET stream) at RAMP sessions/s and holds them, and another sends RATE
   `tools/call`/s over 8 connections; with RELAY the streams and calls go through the next
   node (forwarded to the owner, as through a Kubernetes Service). A loader that ends (a ramp
   that gave up, a call phase that is over) is started again, so sessions churn for the whole
   soak. No node is stopped, so every "member down" is a false death.
2. Kills (KILLS, default 20): under the same hog and load, kill -9 one node (round robin),
   time until each survivor's membership declared it down (the membership thread's own log
   line, JSON, microsecond timestamps, against the kill's wall clock), restart it, wait until
   every node sees every node alive again, wait 1-3 s, next. Any "member down" about a node
   that was not killed is a false death too.

For both parts: every node's failure-detector metrics (`mcp_cluster_membership_*`: timer
lateness, gossip packet wait, probe RTT, late acks, suspicions raised and heard, verdicts
deferred, local health), the CPU each process group used, and the machine's load average.

Prints a summary, writes it as JSON (OUT, default target/bench-detector/result.json), and
rewrites the "Failure detector (`make bench-detector`)" section of docs/BENCHMARKS.md (NO_DOC=1:
print only).

Env: MINUTES (10), KILLS (20), NODES (6), SESSIONS (10000 per node), RAMP (700 sessions/s per
node), RATE (300 calls/s per node; 0: none), HOG (4: stress-ng --cpu workers; 0 = none), RELAY (1:
streams and calls through the next node; 0: on the session's own node), NODE_ARGS (extra
mcp-node flags for every node, e.g. "--cluster-membership-thread shared" or
"--cluster-suspect-to-down-ms 600"), NODE_BIN (another mcp-node binary, e.g. an older build to
compare), LABEL (names the variant in the output), NO_BUILD=1, NO_DOC=1,
QUICK=1 (1 minute, 4 kills, 2000 sessions per node), KEEP_LOGS=1, RENDER=result.json (write the
docs section from a saved result, run nothing).
Every process started here is killed at exit (also on Ctrl-C).
"""

import atexit
import datetime
import json
import os
import random
import re
import shutil
import signal
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
NODE = os.environ.get("NODE_BIN", os.path.join(TARGET, "release/mcp-node"))
LOAD = os.path.join(TARGET, "release/mcp-load")
DOC = os.path.join(ROOT, "docs/BENCHMARKS.md")
TITLE = "## Failure detector (`make bench-detector`)"

QUICK = os.environ.get("QUICK") == "1"
MINUTES = float(os.environ.get("MINUTES", "1" if QUICK else "10"))
KILLS = int(os.environ.get("KILLS", "4" if QUICK else "20"))
N = int(os.environ.get("NODES", "6"))
SESSIONS = int(os.environ.get("SESSIONS", "2000" if QUICK else "10000"))
RAMP = float(os.environ.get("RAMP", "700"))
RATE = float(os.environ.get("RATE", "300"))
HOG = int(os.environ.get("HOG", "4"))
RELAY = os.environ.get("RELAY", "1") == "1"
NODE_ARGS = os.environ.get("NODE_ARGS", "").split()
LABEL = os.environ.get("LABEL", "default")
OUT = os.environ.get("OUT", os.path.join(TARGET, "bench-detector", "result.json"))

IPS = [f"127.0.3.{i + 1}" for i in range(N)]
MCP_PORT = [24100 + i for i in range(N)]
ADMIN_PORT = [24000 + i for i in range(N)]
PEER_PORT = 24200
CONVERGE_S = 60
DETECT_BOUND_S = 10
LOADER_WORKERS = 8  # call connections per node (each with its own session)

NODE_CONFIG = """\
packs: [echo]
limits:
  sessionRatePerSec: 1000000000.0
  sessionBurst: 1000000000
log:
  level: "warn,mcp_cluster::transport::driver=info,mcp_node::cluster::shell=info"
  format: json
security:
  allowedHosts: [%s]
""" % ", ".join(IPS)

PROCS = []


def log(msg):
    print(f"bench-detector: {msg}", file=sys.stderr, flush=True)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def kill_group(p, sig=signal.SIGKILL):
    if p is not None and p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def kill_all():
    for p in PROCS:
        kill_group(p)


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# --- metrics ---------------------------------------------------------------------------------

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


def msum(m, name, **want):
    vals = [v for (n, labels), v in m.items()
            if n in (name, name + "_total") and all((k, w) in labels for k, w in want.items())]
    return sum(vals) if vals else 0.0


def buckets(m, name):
    out = {}
    for (n, labels), v in m.items():
        if n == name + "_bucket":
            le = float(dict(labels)["le"])
            out[le] = out.get(le, 0.0) + v
    return out


def bucket_delta(after, before):
    return {le: after[le] - before.get(le, 0.0) for le in after}


def quantile(b, q):
    """Quantile of cumulative buckets (linear within a bucket); the upper bound for the top."""
    if not b:
        return None
    bounds = sorted(b)
    total = b[bounds[-1]]
    if total <= 0:
        return None
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for le in bounds:
        c = b[le]
        if c >= rank:
            if le == float("inf"):
                return prev_b
            return prev_b + (le - prev_b) * ((rank - prev_c) / max(c - prev_c, 1e-12))
        prev_b, prev_c = le, c
    return bounds[-1]


def max_bucket(b):
    """Upper bound of the highest non-empty bucket (inf when past the last bound)."""
    bounds = sorted(b)
    prev = 0.0
    top = None
    for le in bounds:
        if b[le] > prev:
            top = le
        prev = b[le]
    return top


HISTOS = {
    "timer_late": "mcp_cluster_membership_timer_lateness_seconds",
    "packet_wait": "mcp_cluster_membership_packet_wait_seconds",
    "probe_rtt": "mcp_cluster_membership_probe_rtt_seconds",
}


def add_metrics(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def sub_metrics(a, b):
    return {k: v - b.get(k, 0.0) for k, v in a.items()}


def detector_figures(before, after):
    """Per node: quantiles of the detector's histograms and its counters over the window
    (`after` − `before`; a restarted node's figures are made whole by the caller)."""
    rows = []
    for i in range(N):
        a, b = after.get(i), before.get(i, {})
        if a is None:
            rows.append(None)
            continue
        row = {}
        for key, name in HISTOS.items():
            d = bucket_delta(buckets(a, name), buckets(b, name))
            row[key] = {"count": d.get(float("inf"), 0.0), "p50": quantile(d, 0.5),
                        "p99": quantile(d, 0.99), "p999": quantile(d, 0.999), "max_le": max_bucket(d)}
        for key, name, want in [
            ("acks_in_time", "mcp_cluster_membership_probe_acks", {"ack": "in_time"}),
            ("acks_late", "mcp_cluster_membership_probe_acks", {"ack": "late"}),
            ("suspicions_raised", "mcp_cluster_membership_suspicions", {"suspicion": "raised"}),
            ("suspected_here", "mcp_cluster_membership_suspicions", {"suspicion": "of_this_node"}),
            ("verdicts_deferred", "mcp_cluster_membership_verdicts_deferred", {}),
            ("down_events", "mcp_cluster_membership_events", {"event": "down"}),
            ("rejoined", "mcp_cluster_membership_events", {"event": "rejoined"}),
            ("superseded", "mcp_cluster_superseded", {}),
            ("failovers", "mcp_cluster_failovers", {}),
            ("ack_timeouts", "mcp_cluster_replication_ack_timeouts", {}),
        ]:
            row[key] = msum(a, name, **want) - msum(b, name, **want)
        row["health_now"] = msum(a, "mcp_cluster_membership_local_health")
        rows.append(row)
    return rows


# --- processes -------------------------------------------------------------------------------

def cpu_seconds(pid):
    """User + system CPU seconds of a process and its reaped children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return sum(int(x) for x in parts[11:15]) / tick
    except (OSError, IndexError, ValueError):
        return 0.0


def group_cpu(pgid):
    """CPU seconds of every live process in a process group."""
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.getpgid(int(d)) == pgid:
                total += cpu_seconds(int(d))
        except (ProcessLookupError, PermissionError):
            pass
    return total


def others_running():
    """The busiest processes that are not ours (what else shared the machine)."""
    ours = {p.pid for p in PROCS if p.poll() is None}
    try:
        out = subprocess.run(["ps", "-eo", "pid,pgid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = []
    for line in out.splitlines():
        f = line.split(None, 3)
        if len(f) < 4 or int(f[1]) in ours or f[3] in ("ps", "python3"):
            continue
        if float(f[2]) >= 5.0:
            rows.append(f"{f[3]} {f[2]}%")
    return rows[:8]


class Cluster:
    def __init__(self, work):
        self.work = work
        self.certs = os.path.join(work, "certs")
        self.config = os.path.join(work, "node.yaml")
        with open(self.config, "w") as f:
            f.write(NODE_CONFIG)
        subprocess.run([NODE, "--write-dev-certs", self.certs], check=True, capture_output=True)
        self.procs = [None] * N
        self.logs = [[] for _ in range(N)]
        self.cpu_done = [0.0] * N  # CPU of node processes that ended
        for i in range(N):
            self.start(i)

    def peer(self, i):
        return f"{IPS[i]}:{PEER_PORT}"

    def start(self, i):
        path = os.path.join(self.work, f"n{i}-{len(self.logs[i])}.log")
        self.logs[i].append(path)
        seeds = ",".join(self.peer(j) for j in range(N))
        cmd = [NODE, "--config", self.config,
               "--listen", f"{IPS[i]}:{MCP_PORT[i]}", "--admin-listen", f"{IPS[i]}:{ADMIN_PORT[i]}",
               "--cluster=true", "--node-name", f"n{i}",
               "--peer-listen", self.peer(i), "--advertise", self.peer(i), "--seeds", seeds,
               "--cluster-ca-file", os.path.join(self.certs, "ca.crt"),
               "--cluster-cert-file", os.path.join(self.certs, "tls.crt"),
               "--cluster-key-file", os.path.join(self.certs, "tls.key"),
               # Loopback only: /cluster without the admin token.
               "--admin-insecure-local"] + NODE_ARGS
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_NODE_")}
        with open(path, "w") as f:
            self.procs[i] = spawn(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env)

    def kill(self, i):
        p = self.procs[i]
        self.cpu_done[i] += cpu_seconds(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def url(self, i):
        return f"http://{IPS[i]}:{MCP_PORT[i]}/mcp"

    def view(self, i):
        return json.loads(http_get(f"http://{IPS[i]}:{ADMIN_PORT[i]}/cluster"))

    def metrics(self, i):
        return parse_metrics(http_get(f"http://{IPS[i]}:{ADMIN_PORT[i]}/metrics", timeout=5))

    def all_metrics(self):
        out = {}
        for i in range(N):
            try:
                out[i] = self.metrics(i)
            except OSError as e:
                log(f"/metrics of n{i}: {e}")
        return out

    def converged(self, nodes=None):
        nodes = range(N) if nodes is None else nodes
        try:
            for i in nodes:
                v = self.view(i)
                alive = [m for m in v["members"] if m["state"] == "alive" and m.get("address")]
                if len({m["name"] for m in alive}) != N:
                    return False
        except (OSError, ValueError, KeyError):
            return False
        return True

    def wait_converged(self, bound=CONVERGE_S):
        t0 = time.monotonic()
        while time.monotonic() - t0 < bound:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    raise RuntimeError(f"n{i} exited with {p.returncode}: {tail(self.logs[i][-1])}")
            if self.converged():
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"the {N} nodes did not converge within {bound} s")

    def cpu(self):
        return sum(self.cpu_done) + sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)


def tail(path, n=800):
    try:
        with open(path) as f:
            return f.read()[-n:]
    except OSError:
        return ""


def reap(p):
    """If `p` ended: its exit code is set and the CPU seconds it and its reaped children used
    are returned (from wait4); else None."""
    if p.returncode is not None:
        return None
    try:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    except ChildProcessError:
        p.returncode = -1
        return 0.0
    if pid == 0:
        return None
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


class Loaders:
    """Per node, one mcp-load holding sessions (SESSIONS at RAMP/s, then a few calls while it
    holds them) and one sending RATE `tools/call`/s from 8 sessions of its own; with RELAY,
    streams and calls go through the next node. Each is started again whenever it ends (a ramp
    that gives up, a call phase that is over), until stop()."""

    KINDS = ("hold", "call")

    def __init__(self, cluster, work):
        self.cluster, self.work = cluster, work
        self.procs = {}
        self.runs = {}
        self.failed = 0
        self.cpu_done = 0.0
        self.stopped = False

    def start(self, i, kind):
        call = (i + 1) % N if RELAY else i
        n = self.runs.get((i, kind), 0)
        name = f"{kind}{i}-{n}"
        cmd = [LOAD, "--url", self.cluster.url(i), "--call-url", self.cluster.url(call),
               "--duration", "600", "--timeout", "10", "--processes", "1", "--label", name, "--quiet"]
        if kind == "hold":
            cmd += ["--sessions", str(SESSIONS), "--ramp-rate", str(RAMP), "--workers", "2", "--rate", "2"]
        else:
            cmd += ["--sessions", "0", "--workers", str(LOADER_WORKERS), "--rate", str(RATE)]
        errf = open(os.path.join(self.work, f"{name}.err"), "w")
        self.procs[(i, kind)] = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
        self.runs[(i, kind)] = n + 1

    def start_all(self):
        for i in range(N):
            for kind in self.KINDS:
                if kind == "call" and RATE <= 0:
                    continue
                self.start(i, kind)

    def tick(self):
        """Starts again the loaders that ended."""
        for key, p in list(self.procs.items()):
            cpu = reap(p)
            if cpu is None:
                continue
            self.cpu_done += cpu
            if p.returncode != 0:
                self.failed += 1
            if not self.stopped:
                self.start(*key)

    def total_runs(self):
        return sum(self.runs.values())

    def cpu(self):
        live = sum(group_cpu(p.pid) for p in self.procs.values() if p.returncode is None)
        return self.cpu_done + live

    def stop(self):
        self.stopped = True
        for p in self.procs.values():
            if p.returncode is None:
                self.cpu_done += group_cpu(p.pid)
                kill_group(p)


# --- the membership's log lines ------------------------------------------------------------------

class Verdicts:
    """Reads the nodes' JSON logs as they grow: every `member down` the membership thread
    logged (observer, member address, wall-clock time) and every rejoin."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.offsets = {}
        self.downs = []  # (t, observer, member addr, member id)
        self.rejoins = []  # (t, node)

    def poll(self):
        for i in range(N):
            for path in self.cluster.logs[i]:
                off = self.offsets.get(path, 0)
                try:
                    with open(path) as f:
                        f.seek(off)
                        chunk = f.read()
                except OSError:
                    continue
                end = chunk.rfind("\n")
                if end < 0:
                    continue
                self.offsets[path] = off + end + 1
                for line in chunk[:end].splitlines():
                    self.line(i, line)

    def line(self, i, line):
        if "member down" not in line and "rejoined" not in line:
            return
        try:
            j = json.loads(line)
        except ValueError:
            return
        msg = j.get("fields", {}).get("message", "")
        t = datetime.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00")).timestamp()
        if msg == "member down" and j.get("target") == "mcp_cluster::transport::driver":
            member = j["fields"].get("member", "")
            self.downs.append((t, i, member.split("#")[0], member))
        elif msg.startswith("this node was declared down"):
            self.rejoins.append((t, i))


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --- the two parts ---------------------------------------------------------------------------

def soak(cluster, loaders, verdicts):
    log(f"soak: {MINUTES:g} min, {N} nodes x {SESSIONS} sessions at {RAMP:g}/s, "
        f"{RATE:g} calls/s each, relay={RELAY}, hog={HOG}")
    m0 = cluster.all_metrics()
    cpu0, lcpu0 = cluster.cpu(), loaders.cpu()
    t0, w0 = time.monotonic(), time.time()
    load_avg = []
    peak = [0] * N
    while time.monotonic() - t0 < MINUTES * 60:
        time.sleep(5)
        loaders.tick()
        verdicts.poll()
        load_avg.append(os.getloadavg()[0])
        for i in range(N):
            try:
                st = json.loads(http_get(f"http://{IPS[i]}:{ADMIN_PORT[i]}/status"))
                peak[i] = max(peak[i], st.get("connections", 0))
            except (OSError, ValueError):
                pass
        downs = [d for d in verdicts.downs if d[0] >= w0]
        log(f"  {time.monotonic() - t0:5.0f} s: false downs {len(downs)}, rejoins "
            f"{len([r for r in verdicts.rejoins if r[0] >= w0])}, load avg {load_avg[-1]:.1f}, "
            f"connections {sum(peak)} (peak sum), loader runs {loaders.total_runs()}")
    elapsed = time.monotonic() - t0
    m1 = cluster.all_metrics()
    verdicts.poll()
    downs = [d for d in verdicts.downs if d[0] >= w0]
    return {
        "seconds": round(elapsed, 1),
        "false_down_events": len(downs),
        "false_verdicts": len({d[3] for d in downs}),
        "rejoins": len([r for r in verdicts.rejoins if r[0] >= w0]),
        "downs": [(round(t - w0, 3), f"n{o}", m) for t, o, _, m in downs][:200],
        "detector": detector_figures(m0, m1),
        "node_cpu_s": round(cluster.cpu() - cpu0, 1),
        "loader_cpu_s": round(loaders.cpu() - lcpu0, 1),
        "loader_runs": loaders.total_runs(),
        "loader_failures": loaders.failed,
        "peak_connections": peak,
        "load_avg": [round(min(load_avg), 1), round(sum(load_avg) / len(load_avg), 1),
                     round(max(load_avg), 1)] if load_avg else None,
    }


def kills(cluster, loaders, verdicts):
    log(f"kills: {KILLS} x kill -9 under the same load")
    m0 = cluster.all_metrics()
    # A killed node's counters start again at 0 in its next process: what its old process
    # counted since m0 (or its start) is kept here and added back at the end.
    done = {i: {} for i in range(N)}
    since = dict(m0)
    rounds = []
    false_downs = []
    for k in range(KILLS):
        loaders.tick()
        victim = k % N
        survivors = [i for i in range(N) if i != victim]
        verdicts.poll()
        mark = len(verdicts.downs)
        try:
            last = cluster.metrics(victim)
            done[victim] = add_metrics(done[victim], sub_metrics(last, since.get(victim, {})))
        except OSError as e:
            log(f"  /metrics of n{victim} before the kill: {e}")
        since[victim] = {}
        t_kill = time.time()
        cluster.kill(victim)
        addr = cluster.peer(victim)
        seen = {}
        while time.time() - t_kill < DETECT_BOUND_S and len(seen) < len(survivors):
            time.sleep(0.02)
            verdicts.poll()
            for t, o, a, _ in verdicts.downs[mark:]:
                if a == addr and o in survivors and o not in seen:
                    seen[o] = t - t_kill
        for t, o, a, m in verdicts.downs[mark:]:
            if a != addr:
                false_downs.append((round(t - t_kill, 3), f"n{o}", m))
        delays = [seen.get(o) for o in survivors]
        missed = sum(1 for d in delays if d is None)
        rounds.append({"victim": f"n{victim}", "delays_s": [round(d, 4) if d is not None else None for d in delays],
                       "missed": missed})
        got = [d for d in delays if d is not None]
        log(f"  kill {k + 1}/{KILLS} n{victim}: seen down by {len(got)}/{len(survivors)} after "
            f"{min(got) * 1000 if got else float('nan'):.0f}-{max(got) * 1000 if got else float('nan'):.0f} ms")
        cluster.start(victim)
        try:
            cluster.wait_converged()
        except RuntimeError as e:
            log(f"  after restarting n{victim}: {e}")
        time.sleep(random.uniform(1.0, 3.0))
    verdicts.poll()
    m1 = cluster.all_metrics()
    whole = {i: add_metrics(done[i], sub_metrics(m1.get(i, {}), since.get(i, {}))) for i in range(N)}
    all_delays = [d for r in rounds for d in r["delays_s"] if d is not None]
    last_seen = [max(d for d in r["delays_s"] if d is not None) for r in rounds
                 if any(d is not None for d in r["delays_s"])]
    return {
        "kills": len(rounds),
        "observations": len(all_delays),
        "missed": sum(r["missed"] for r in rounds),
        "p50_s": pct(all_delays, 0.5), "p99_s": pct(all_delays, 0.99), "max_s": max(all_delays, default=None),
        "all_survivors_p50_s": pct(last_seen, 0.5), "all_survivors_max_s": max(last_seen, default=None),
        "false_downs": false_downs,
        "rounds": rounds,
        "detector": detector_figures({}, whole),
    }


def fmt_ms(s):
    return "—" if s is None else f"{s * 1000:.0f} ms"


def fmt_us(s):
    if s is None:
        return "—"
    return f"{s * 1e6:.0f} µs" if s < 0.001 else f"{s * 1000:.1f} ms"


def detector_table(rows):
    out = ["| node | timer lateness p50 / p99 / max ≤ | packet wait p99 / max ≤ | probe RTT p50 / p99 / max ≤ | "
           "late acks | suspicions raised / heard | verdicts deferred |",
           "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows):
        if r is None:
            continue
        tl, pw, pr = r["timer_late"], r["packet_wait"], r["probe_rtt"]
        total_acks = r["acks_in_time"] + r["acks_late"]
        out.append(f"| n{i} | {fmt_us(tl['p50'])} / {fmt_us(tl['p99'])} / {fmt_us(tl['max_le'])} | "
                   f"{fmt_us(pw['p99'])} / {fmt_us(pw['max_le'])} | "
                   f"{fmt_us(pr['p50'])} / {fmt_us(pr['p99'])} / {fmt_us(pr['max_le'])} | "
                   f"{r['acks_late']:.0f} of {total_acks:.0f} | {r['suspicions_raised']:.0f} / "
                   f"{r['suspected_here']:.0f} | {r['verdicts_deferred']:.0f} |")
    return out


def write_doc(result):
    s, k, r = result["soak"], result["kills"], result
    lines = [TITLE, "",
             f"Command: `make bench-detector` (bench/detector.py; variant `{r['label']}`, node flags "
             f"`{' '.join(r['node_args']) or '(defaults)'}`). Machine: {r['machine']}; kernel "
             f"{r.get('kernel', '?')}. {r['nodes']} release `mcp-node` on 127.0.3.1-{r['nodes']} (loopback), "
             f"each with its own `mcp-load`s ({r['sessions']} legacy sessions with GET streams opened at "
             f"{r['ramp']:g}/s and held, and {r['rate']:g} `tools/call`/s over 8 connections, "
             f"{'streams and calls through the next node' if r['relay'] else 'on the owner'}; "
             f"each started again whenever it ends), and `stress-ng --cpu {r['hog']}` on the same 2 cores. "
             f"Load average min/mean/max {s['load_avg']}. Other processes seen using ≥ 5 % of a core "
             f"at the start: {', '.join(r['others']) or 'none'}; at the end: "
             f"{', '.join(r.get('others_end', [])) or 'none'}.",
             "",
             "| what | result | target |",
             "|---|---|---|",
             f"| false deaths in {s['seconds'] / 60:.1f} min (no node stopped) | {s['false_verdicts']} verdicts, "
             f"{s['false_down_events']} `member down` events, {s['rejoins']} rejoins | 0 |",
             f"| kill -9 → each survivor's verdict ({k['kills']} kills, {k['observations']} observations, "
             f"{k['missed']} missed) | p50 {fmt_ms(k['p50_s'])}, p99 {fmt_ms(k['p99_s'])}, max "
             f"{fmt_ms(k['max_s'])} | p99 < 1 s |",
             f"| kill -9 → the last survivor's verdict | p50 {fmt_ms(k['all_survivors_p50_s'])}, max "
             f"{fmt_ms(k['all_survivors_max_s'])} | |",
             f"| false deaths during the kills | {len(k['false_downs'])} | 0 |",
             f"| CPU used in the soak | nodes {s['node_cpu_s']} s, loaders {s['loader_cpu_s']} s "
             f"({s['loader_runs']} loader runs, {s['loader_failures']} ended with an error) | |",
             "",
             "The failure detector during the soak (from each node's `mcp_cluster_membership_*`; "
             "histogram quantiles are interpolated within buckets, `max ≤` is the bucket bound):",
             ""] + detector_table(s["detector"]) + [""]
    benchdoc.replace_section(DOC, "\n".join(lines) + "\n")


def main():
    if os.environ.get("RENDER"):
        with open(os.environ["RENDER"]) as f:
            write_doc(json.load(f))
        log(f"wrote the section of {DOC} from {os.environ['RENDER']}")
        return
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    atexit.register(kill_all)
    if os.environ.get("NO_BUILD") != "1":
        subprocess.run([CARGO, "build", "--release", "-p", "mcp-node", "-p", "mcp-load"], cwd=ROOT, check=True)
    if HOG > 0 and not shutil.which("stress-ng"):
        sys.exit("bench-detector: stress-ng is needed for the CPU hog (apt-get install -y stress-ng), "
                 "or run with HOG=0")
    work = tempfile.mkdtemp(prefix="bench-detector-")
    log(f"work dir {work}")
    cluster = Cluster(work)
    took = cluster.wait_converged()
    log(f"{N} nodes converged in {took:.1f} s")
    hog = None
    if HOG > 0:
        hog = spawn(["stress-ng", "--cpu", str(HOG), "--quiet"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    loaders = Loaders(cluster, work)
    loaders.start_all()
    verdicts = Verdicts(cluster)
    others = others_running()
    result = {"label": LABEL, "node_args": NODE_ARGS, "nodes": N, "sessions": SESSIONS, "ramp": RAMP,
              "rate": RATE, "hog": HOG, "relay": RELAY, "machine": benchdoc.machine(ROOT),
              "kernel": os.uname().release,
              "others": others}
    result["soak"] = soak(cluster, loaders, verdicts)
    result["kills"] = kills(cluster, loaders, verdicts) if KILLS > 0 else None
    loaders.stop()
    kill_group(hog)
    result["others_end"] = others_running()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
    s, k = result["soak"], result["kills"]
    log(f"soak {s['seconds']:.0f} s: {s['false_verdicts']} false verdicts ({s['false_down_events']} down "
        f"events, {s['rejoins']} rejoins); node CPU {s['node_cpu_s']} s, loader CPU {s['loader_cpu_s']} s")
    for line in detector_table(s["detector"]):
        print(line)
    if k:
        log(f"kills {k['kills']}: p50 {fmt_ms(k['p50_s'])}, p99 {fmt_ms(k['p99_s'])}, max {fmt_ms(k['max_s'])}, "
            f"missed {k['missed']}, false downs {len(k['false_downs'])}")
    log(f"result in {OUT}")
    if os.environ.get("NO_DOC") != "1" and k:
        write_doc(result)
        log(f"wrote the section of {DOC}")
    if os.environ.get("KEEP_LOGS") == "1":
        log(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
