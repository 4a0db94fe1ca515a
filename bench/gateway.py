#!/usr/bin/env python3
"""make bench-gateway: what a tools/call costs through the cluster's gateway, against the same
call made straight to the upstream, in one run.

The upstream is an `mcp-node` of its own (127.0.0.21, the echo pack, no cluster): a fast MCP
server, so the figures show the gateway's cost rather than a slow upstream's. Three `mcp-node`
processes form a cluster on 127.0.0.11-13 (`bench/cluster.py`'s `Cluster`), each with the
upstream under `upstreams:` as `up` (so its `echo` is served as `up__echo`). `mcp-load` sends
`tools/call` at one open-loop rate (legacy 2025-11-25 sessions, `HELD` sessions held open) to:

1. direct: the upstream itself, `echo`;
2. gateway: n0, `up__echo` in sessions n0 owns (`sessions: perClient`, the default: n0 calls
   the upstream in the client session's own upstream session);
3. gateway, shared: n0, `sh__echo` — the same upstream as `sh` with `sessions: shared` (n0
   calls it in its one session for every client);
4. gateway, forwarded: n1, `up__echo` in sessions n0 owns (n1 forwards over QUIC to n0, which
   calls the upstream).

The four alternate for `ROUNDS` rounds; latency is from each call's due time (mcp-load's
p50/p99); the ratios are each path's p50 and p99 over the direct path's, in the same round.

Then sessions held through the gateway at scale, for each `sessions:` mode: a fresh gateway
node alone (127.0.0.14) in front of the same upstream, and `mcp-load` creating a legacy session
for every call (`--calls-per-session 1`) at `SCALE_RATE` for `SCALE_SECONDS`, so each of those
sessions used the upstream once and stays held (idle) afterwards. Reported: the sessions the
gateway holds, the upstream sessions it opened (`mcp_upstream_initializations_total`), the
gateway's and the upstream's RSS growth per session (VmRSS before and after), and the latency
of those first calls (each includes its `initialize`, and with `perClient` the upstream
session's opening).

Prints the tables and rewrites the "Gateway (`make bench-gateway`)" section of
docs/BENCHMARKS.md. Every process started here is killed at exit (also on Ctrl-C).

Env: RATE (calls/s, 1000), TRIAL_SECONDS (5), ROUNDS (3), WORKERS (16), HELD (100),
SCALE_RATE (1000), SCALE_SECONDS (100: 100,000 sessions per mode, the cluster's target), CARGO, NO_BUILD=1 (use the release binaries as they are),
NO_DOC=1 (print only), KEEP_LOGS=1.
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
SCALE_RATE = float(os.environ.get("SCALE_RATE", "1000"))
SCALE_SECONDS = float(os.environ.get("SCALE_SECONDS", "100"))
UPSTREAM_IP = "127.0.0.21"
ALONE_IP = "127.0.0.14"
PATHS = [("direct", "upstream `echo`"), ("gateway", "n0 `up__echo` (owner, `perClient`)"),
         ("shared", "n0 `sh__echo` (owner, `shared`)"),
         ("forwarded", "n1 `up__echo` (forwarded to n0, `perClient`)")]
MODES = [("perClient", "up__echo"), ("shared", "sh__echo")]


def log(msg):
    print(f"bench-gateway: {msg}", file=sys.stderr, flush=True)


def start_upstream(work):
    """The upstream node: its MCP URL once it answers, and its process."""
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
            return f"http://{UPSTREAM_IP}:{port}/mcp", p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the upstream did not start within 20 s")


def gateway_config(work, upstream_url):
    """The gateway's configuration: the upstream as `up` (`perClient`) and as `sh` (`shared`)."""
    path = os.path.join(work, "gateway.yaml")
    with open(path, "w") as f:
        f.write(bc.NODE_CONFIG.replace("allowedHosts: [", f"allowedHosts: [{ALONE_IP}, "))
        f.write("upstreams:\n")
        for name, mode in (("up", "perClient"), ("sh", "shared")):
            f.write(f"  - name: {name}\n    url: {upstream_url}\n    maxConcurrency: 1024\n"
                    f"    sessions: {mode}\n")
    return path


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def scale(work, config, upstream_pid, mode, tool):
    """Sessions held through one gateway node at scale (module docs); a dict of figures."""
    port, admin = bc.free_port(ALONE_IP), bc.free_port(ALONE_IP)
    with open(os.path.join(work, f"alone-{mode}.log"), "w") as out:
        p = bc.spawn([bc.NODE, "--config", config, "--listen", f"{ALONE_IP}:{port}",
                      "--admin-listen", f"{ALONE_IP}:{admin}", "--admin-insecure-local"],
                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{ALONE_IP}:{port}/mcp"

    def metrics():
        return bc.parse_metrics(bc.http_get(f"http://{ALONE_IP}:{admin}/metrics", timeout=3))

    try:
        end = time.monotonic() + 20
        while True:
            if p.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the gateway did not start: {bc.tail(out.name)}")
            try:
                m = metrics()
                if (bc.metric_sum(m, "mcp_upstream_tools", upstream="up") or 0) > 0:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        # A few calls first, so what every node allocates once is not counted per session.
        bc.load(url, url, rate=50, workers=4, duration=1, label="warm-up", tool=tool,
                calls_per_session=1)
        time.sleep(1)
        m0, rss0, up0 = metrics(), rss_kib(p.pid), rss_kib(upstream_pid)
        rep = bc.load(url, url, rate=SCALE_RATE, workers=WORKERS, duration=SCALE_SECONDS,
                      label=f"scale-{mode}", tool=tool, calls_per_session=1)
        time.sleep(2)
        m1, rss1, up1 = metrics(), rss_kib(p.pid), rss_kib(upstream_pid)
    finally:
        p.kill()
        p.wait()
    sessions = (bc.metric_sum(m1, "mcp_sessions") or 0) - (bc.metric_sum(m0, "mcp_sessions") or 0)
    opened = ((bc.metric_sum(m1, "mcp_upstream_initializations") or 0)
              - (bc.metric_sum(m0, "mcp_upstream_initializations") or 0))
    fig = {"mode": mode, "rep": rep, "sessions": int(sessions), "opened": int(opened),
           "rss_kib": rss1 - rss0, "upstream_rss_kib": up1 - up0}
    log(f"  scale {mode}: {fig['sessions']} sessions, {fig['opened']} upstream sessions opened, "
        f"gateway +{rss1 - rss0} KiB, upstream +{up1 - up0} KiB; {bc.describe(rep)}")
    return fig

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
    upstream, upstream_proc = start_upstream(work)
    config = gateway_config(work, upstream)
    c = bc.Cluster(work, config, 2)
    rounds = []
    try:
        targets = {"direct": (upstream, upstream, "echo"),
                   "gateway": (c.url(0), c.url(0), "up__echo"),
                   "shared": (c.url(0), c.url(0), "sh__echo"),
                   "forwarded": (c.url(0), c.url(1), "up__echo")}
        for name, (url, call_url, tool) in targets.items():
            bc.load(url, call_url, rate=RATE / 4, sessions=HELD, workers=WORKERS, duration=1,
                    label="warm-up", tool=tool)
        for k in range(ROUNDS):
            log(f"round {k + 1}/{ROUNDS}")
            order = [n for n, _ in PATHS]
            order = order[k % len(order):] + order[:k % len(order)]  # another path first each round
            rounds.append({n: run(*targets[n], n) for n in order})
    finally:
        c.stop()
    scaled = []
    try:
        for mode, tool in MODES:
            scaled.append(scale(work, config, upstream_proc.pid, mode, tool))
    finally:
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
    slines = ["| `sessions:` | client sessions held | upstream sessions opened | gateway RSS per session | upstream RSS per session | first call p50 / p99 µs (with `initialize`) |",
              "|---|---|---|---|---|---|"]
    for r in scaled:
        n = r["sessions"]

        def per(kib):
            return f"{kib * 1024 / n:.0f} B" if n > 0 else "—"
        rep = r["rep"]
        lat_s = (f"{rep['latency']['p50_us']} / {rep['latency']['p99_us']}"
                 if rep else "— (the run failed)")
        slines.append(f"| `{r['mode']}` | {n} | {r['opened']} | {per(r['rss_kib'])} | "
                      f"{per(r['upstream_rss_kib'])} | {lat_s} |")
    scale_table = "\n".join(slines)
    print(scale_table)
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
forwarded). `up` and `sh` are the same upstream: the held sessions opened their own upstream
sessions (`perClient`) during the warm-up, so the two n0 rows compare steady calls.

Sessions held through the gateway at scale: one gateway node alone ({ALONE_IP}) in front of the
same upstream, `mcp-load --calls-per-session 1` at {SCALE_RATE:g}/s for {SCALE_SECONDS:g} s (a
new legacy session per call, each calling the upstream's tool once, then held idle; a held
session costs the gateway no connection, so one node holds them all); RSS growth from the
processes' VmRSS before and after, over the sessions the gateway holds.

{scale_table}
"""
    if os.environ.get("NO_DOC") != "1":
        benchdoc.replace_section(DOC, section)
        log(f"wrote {TITLE[3:]} in {DOC}")


if __name__ == "__main__":
    main()
