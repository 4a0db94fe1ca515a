"""bench/scale.py's figures: per-stage sums of the load's per-second timeline, the nodes'
CPU, memory and counters, false deaths from their logs; the doc section and the charts."""

import calendar
import json
import os
import subprocess
import time

import benchdoc
from scalecfg import (ANNOUNCE, DEADLINE, DURABLE, LOAD, LOAD_NICE, PLOTS, POOL, PROFILE, QUICK, R, RAMP_RATE, RATE, RELAY, ROOT,
                      SPREAD_LIMIT, TITLE, TITLE_QUICK, WRITE_DOC, log, nofile)


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


def broadcast_split(seconds, t_from, t_to):
    """The stage's calls in two parts: the seconds in which the streams received events (an
    announcement's broadcast reaching the clients: every `ANNOUNCE` s one event per stream,
    paced over several seconds) and the other seconds. Says how much of the stage's tail the
    broadcasts make."""
    sel = [s for s in seconds if t_from <= s["t"] < t_to]
    parts = {}
    for name, keep in (("broadcast", lambda s: s.get("events", 0) > 0), ("quiet", lambda s: s.get("events", 0) == 0)):
        part = [s for s in sel if keep(s)]
        merged = {}
        for s in part:
            for v, c in s.get("latency", []):
                merged[v] = merged.get(v, 0) + c
        bins = sorted(merged.items())
        parts[name] = {"seconds": len(part), "calls": sum(c for _, c in bins),
                       "lat": {q: percentile(bins, p) for q, p in (("p50", .5), ("p95", .95), ("p99", .99), ("p999", .999))}}
    return parts


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
        # Sessions held in the load's last second before the stage began (not the most ever
        # held: after a collapse there is nothing left to be served again).
        before = [x for x in tl.seconds if x["t"] <= tl.sec(a)]
        held_at_event = max(before, key=lambda x: x["t"])["held"] if before else 0
        if not held_at_event:
            pass  # no session to serve again
        elif st.get("kill"):
            served = served_again(tl, st["kill"], st["to"])
        if st.get("restarts") and held_at_event:
            vals = [served_again(tl, r["t"], r["t"] + 60) for r in st["restarts"]]
            served = None if any(v is None for v in vals) else max(vals, default=0.0)
        split = broadcast_split(tl.seconds, tl.sec(a), max(tl.sec(b), tl.sec(a) + 1)) if st["name"].startswith("hold") else None
        stages.append({**st, "span": sp, "split": split, "cpu": cpu, "rss": rss, "failovers": delta("failovers"), "held_before": held_at_event,
                       "wire": delta("wire"), "raw": delta("raw"), "downs": len(downs), "rejoined": len(rejoined),
                       "false_deaths": false_deaths, "served_again_s": served})
    # What the load judged (sessions lost, events missed, stages not reached, the final
    # check), the false deaths seen in the nodes' logs and the run's own notes.
    failures = ["no report from mcp-load"] if report is None else list(report.get("failures", []))
    for s in stages:
        if s["false_deaths"]:
            failures.append(f"{s['name']}: {s['false_deaths']} false deaths")
        for r in s.get("restarts", []):
            if r["exit_s"] is None or r.get("exit_status"):
                failures.append(f"{r['node']}'s stop did not end by itself ({exit_text(r)})")
        sp = s.get("spread")
        if sp and (sp["max_ratio"] is None or sp["max_ratio"] > SPREAD_LIMIT):
            node = max(range(len(sp["counts"])), key=lambda i: sp["counts"][i]) if sp["counts"] else None
            failures.append(f"spread: {sp['after_s']:.0f} s after the last restart n{node} owned {max(sp['counts'], default=0):,} "
                            f"sessions, {sp['max_ratio'] or 0:.2f}x the share of {sp['share']:,.0f} "
                            f"(at most {SPREAD_LIMIT:.2f}x)")
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
             f"each on its own 127.0.2.x, QUIC with the dev certificates, `echo` + `conformance` packs, "
             f"durable SSE events {durable_text()}) and "
             f"`mcp-load cluster` ({rep.get('processes', '?')} processes from 127.2.K.x) on the same 2 cores"
             f"{f' (the load at nice {LOAD_NICE} relative to the nodes, as clients with CPUs of their own)' if LOAD_NICE else ''}: "
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
            f" | {sp['cpu'] / sp['seconds']:.2f} | {s['wire'] / secs:,.0f} |")
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
    staged = sum(s["span"]["lost"] for s in res["stages"])
    if staged != rep.get("lost", 0):
        # Stages are whole seconds of the load's timeline from their start to their end; a
        # second between two of them (the bench choosing its next step) is in neither.
        lines.append(f"The stages' rows add up to {staged:,} sessions lost; the whole run lost "
                     f"{rep.get('lost', 0):,} (the difference in seconds outside the stages).")
    for s in res["stages"]:
        if s.get("spread"):
            sp = s["spread"]
            lines.append(f"`spread`: {sp['after_s']:.0f} s after the last restart the nodes owned "
                         f"{', '.join(f'{c:,}' for c in sp['counts'])} sessions (share {sp['share']:,.0f}); the largest "
                         f"{sp['max_ratio'] or 0:.2f}x the share; every node within {SPREAD_LIMIT - 1:.0%} of it "
                         + (f"{sp['within_s']:.0f} s after the restart." if sp["within_s"] is not None else "not by then."))
        if s.get("split"):
            b, q = s["split"]["broadcast"], s["split"]["quiet"]
            lat = lambda x: " / ".join(fmt_ms(x["lat"][k]) for k in ("p50", "p95", "p99", "p999"))
            lines.append(f"`{s['name']}` split by the announcements' broadcasts (an event on every stream every "
                         f"{ANNOUNCE:g} s, paced): the {b['seconds']} s in which streams received events, "
                         f"{b['calls']:,} calls, p50 / p95 / p99 / p99.9 {lat(b)} ms; the other {q['seconds']} s, "
                         f"{q['calls']:,} calls, {lat(q)} ms.")
        if s.get("kill"):
            lines.append(f"`{s['name']}`: it owned {s['victim_sessions']:,} sessions; the survivors' `/cluster` showed it "
                         f"down after {s['detect_s'] if s['detect_s'] is None else round(s['detect_s'], 2)} s; restarted, "
                         f"alive everywhere after {s['rejoin_s'] if s['rejoin_s'] is None else round(s['rejoin_s'], 1)} s. "
                         f"Down events {s['downs']} (expected {res['nodes'] - 1}), "
                         f"'declared down; rejoined' {s['rejoined']}.")
        if s.get("restarts"):
            lines.append("Rolling restart, per node (SIGTERM to exit; restart to alive everywhere): "
                         + "; ".join(f"{r['node']} {exit_text(r)}, "
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


def exit_text(r):
    """How a node of the rolling restart ended: seconds to its exit, and how."""
    if r["exit_s"] is None:
        return f"SIGKILLed after {r.get('term_wait', 60):g} s"
    status = r.get("exit_status")
    if status == 70:
        return f"{r['exit_s']:.1f} s (its stop cut short at its bound: exit status 70)"
    if status:
        return f"{r['exit_s']:.1f} s (exit status {status})"
    return f"{r['exit_s']:.1f} s"


def durable_text():
    """The nodes' `cluster.durableEvents` as the run set it."""
    if DURABLE:
        return f"{'on' if DURABLE == 'true' else 'off'} (`DURABLE_EVENTS={DURABLE}`)"
    return "on (the default)"
