#!/usr/bin/env python3
"""Helper for e2e/cluster/netns.sh (Python 3.11 stdlib, run as root).

Reads `GET /cluster` of nodes that live in other network namespaces: each request's socket is
created inside the node's namespace (setns(2) on /run/netns/NAME, then back), so one process
polls every node every ~10 ms without spawning `ip netns exec curl` each time.

  wait   --nodes N --expect SPEC... [--do CMD] --timeout S --what TEXT [--record KEY]
         Runs CMD (if given), starts the clock, polls until every SPEC holds; prints when each
         observer first saw each watched member in each state. Exit 1 with the last views on
         timeout.
  watch  --nodes N --duration S [--record KEY]
         Polls for S seconds and reports every change of any member's state in any node's view
         (flaps). Exit 1 if any member was seen dead.
  rtt    NETNS IP:PORT      median TCP connect time (one round trip) in ms from NETNS.
  gen    --nodes N --observer A --member B     prints B's generation in A's view.
  delay  IF_A IF_B MS
         A userspace cable between two interfaces of the current namespace (AF_PACKET): frames
         from IF_A reach IF_B MS milliseconds late, frames from IF_B reach IF_A at once. Used
         when the kernel has no sch_netem (`tc qdisc ... netem` fails).

`/cluster` needs the nodes' admin token: it is read from the file named by
MCP_NODE_ADMIN_TOKEN_FILE (the variable the nodes read it from too).

N is "name=netns@ip:port,..." (admin ports). SPEC is "OBSERVERS:MEMBERS=STATES[>GEN]": comma
lists of node names (or `all`), STATES `|`-separated (alive, suspect, dead); `>GEN` also needs
the member's generation above GEN.
"""

import argparse
import ctypes
import heapq
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_home = None
_ns_fds = {}


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def ns_socket(ns):
    """A TCP socket that belongs to network namespace `ns`."""
    global _home
    if _home is None:
        _home = os.open("/proc/self/ns/net", os.O_RDONLY)
    if ns not in _ns_fds:
        _ns_fds[ns] = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    _setns(_ns_fds[ns])
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        _setns(_home)


_token = None


def admin_token():
    """The admin token (`Authorization: Bearer`), read once."""
    global _token
    if _token is None:
        path = os.environ.get("MCP_NODE_ADMIN_TOKEN_FILE")
        _token = open(path).read().strip() if path else ""
    return _token


def fetch(ns, host, port, timeout=0.5):
    """The node's /cluster as a dict, or None when it does not answer."""
    s = ns_socket(ns)
    s.settimeout(timeout)
    auth = f"Authorization: Bearer {admin_token()}\r\n" if admin_token() else ""
    try:
        s.connect((host, port))
        s.sendall(f"GET /cluster HTTP/1.0\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] + b" ":
            return None
        return json.loads(body)
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def parse_nodes(text):
    nodes = {}
    for item in text.split(","):
        name, rest = item.split("=", 1)
        ns, addr = rest.split("@", 1)
        host, port = addr.rsplit(":", 1)
        nodes[name] = (ns, host, int(port))
    return nodes


def parse_spec(spec, names):
    obs, rest = spec.split(":", 1)
    members, states = rest.split("=", 1)
    gen = None
    if ">" in states:
        states, g = states.split(">", 1)
        gen = int(g)
    expand = lambda s: list(names) if s == "all" else s.split(",")
    return expand(obs), expand(members), set(states.split("|")), gen


def member(view, name):
    for m in (view or {}).get("members", []):
        if m.get("name") == name:
            return m
    return None


def record(key, value):
    path = os.environ.get("NETNS_E2E_RECORD")
    if key and path:
        with open(path, "a") as f:
            f.write(f"{key}={value}\n")


def views_of(nodes, names):
    return {n: fetch(*nodes[n]) for n in names}


def brief(view):
    if view is None:
        return "no answer"
    return ", ".join(f"{m['name']}={m['state']}" for m in view.get("members", []))


def cmd_wait(a):
    nodes = parse_nodes(a.nodes)
    specs = [parse_spec(s, nodes) for s in a.expect]
    observers = sorted({o for s in specs for o in s[0]})
    watched = sorted({m for s in specs for m in s[1]})
    if a.do:
        subprocess.run(a.do, shell=True, check=True)
    since = a.since
    if a.since_file:
        # Handshake so that our start-up is not counted: say we are ready, then the caller
        # writes the epoch it starts the processes at.
        open(a.since_file + ".ready", "w").close()
        deadline = time.monotonic() + 30
        while not (os.path.exists(a.since_file) and open(a.since_file).read().strip()):
            if time.monotonic() > deadline:
                print(f"FAIL: {a.what}: the caller never started")
                return 1
            time.sleep(0.002)
        time.sleep(0.005)
        since = float(open(a.since_file).read())
    # The clock starts after the action, or at `since` (a `date +%s.%N` taken by the caller).
    t0 = time.monotonic() - (time.time() - since if since else 0.0)
    first = {}  # (observer, member, state) -> seconds: when a change to `state` was first seen
    prev = {}  # (observer, member) -> state at the last poll (None: not listed)
    polls = 0
    while True:
        now = time.monotonic() - t0
        views = views_of(nodes, observers)
        for o in observers:
            if views[o] is None:
                continue
            for m in watched:
                row = member(views[o], m)
                st = row["state"] if row else None
                if (o, m) in prev and st is not None and prev[(o, m)] != st:
                    first.setdefault((o, m, st), now)
                prev[(o, m)] = st
        polls += 1
        ok = all(
            (row := member(views[o], m)) is not None
            and row["state"] in states
            and (gen is None or row.get("generation", 0) > gen)
            for obs, mems, states, gen in specs
            for o in obs
            for m in mems
            if o != m or "alive" in states
        )
        if ok:
            print(f"  {a.what}: {now:.3f} s ({polls} polls)")
            for (o, m, st), t in sorted(first.items(), key=lambda kv: kv[1]):
                if o != m and (st != "alive" or a.show_alive):
                    print(f"    {o} saw {m} {st} at {t:.3f} s")
            record(a.record, f"{now:.3f}")
            for key_state in ("suspect", "dead"):
                ts = [t for (o, m, st), t in first.items() if st == key_state and o != m]
                if a.record and ts:
                    record(f"{a.record}_first_{key_state}", f"{min(ts):.3f}")
            return 0
        if now > a.timeout:
            print(f"FAIL: {a.what}: not within {a.timeout} s; expected {' '.join(a.expect)}")
            for o in observers:
                print(f"  {o} sees: {brief(views[o])}")
            return 1
        time.sleep(0.01)


def cmd_watch(a):
    nodes = parse_nodes(a.nodes)
    names = list(nodes)
    t0 = time.monotonic()
    last, gens, changes, dead, renewed, unanswered = {}, {}, [], [], [], 0
    gap, prev_round = 0.0, None
    while (now := time.monotonic() - t0) < a.duration:
        if prev_round is not None:
            gap = max(gap, now - prev_round)
        prev_round = now
        for o, v in views_of(nodes, names).items():
            if v is None:
                unanswered += 1
                continue
            for m in v.get("members", []):
                key = (o, m["name"])
                if key in last and last[key] != m["state"]:
                    changes.append((now, o, m["name"], last[key], m["state"]))
                    if m["state"] == "dead":
                        dead.append(key)
                last[key] = m["state"]
                g = m.get("generation")
                if key in gens and g is not None and gens[key] != g:
                    # A new generation of a process that did not restart: the member was
                    # declared down (maybe between two polls) and rejoined under a new identity.
                    changes.append((now, o, m["name"], f"generation {gens[key]}", f"{g} (renewed)"))
                    renewed.append(key)
                if g is not None:
                    gens[key] = g
        time.sleep(0.01)
    for t, o, m, old, new in changes:
        print(f"    {t:7.3f} s  {o} saw {m}: {old} -> {new}")
    flaps = sum(1 for c in changes if c[4] == "suspect")
    print(f"  {a.duration:.0f} s watched: {flaps} suspicions, {len(dead)} dead seen, "
          f"{len(renewed)} identity renewals seen; {unanswered} polls unanswered")
    # This poller sleeps 10 ms between rounds of 3 requests: a much longer round means the
    # machine did not run it (nor, likely, the nodes) for that long.
    print(f"  longest round of this poller: {gap * 1000:.0f} ms (a stall indicator; ~15-40 ms idle)")
    record(a.record and f"{a.record}_max_poll_round_ms", f"{gap * 1000:.0f}")
    record(a.record and f"{a.record}_suspicions", flaps)
    record(a.record and f"{a.record}_dead", len(dead))
    record(a.record and f"{a.record}_renewals", len(renewed))
    if dead or renewed:
        print(f"FAIL: members declared dead on a slow but working link: "
              f"{sorted(set(dead + renewed))} (observer, member)")
        return 1
    return 0


def cmd_rtt(a):
    """Median TCP connect time (SYN -> SYN/ACK: one round trip) from `ns` to ip:port."""
    host, port = a.target.rsplit(":", 1)
    times = []
    for _ in range(a.count):
        s = ns_socket(a.ns)
        s.settimeout(2)
        t = time.monotonic()
        try:
            s.connect((host, int(port)))
            times.append((time.monotonic() - t) * 1000)
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.05)
    if not times:
        print("(no connection)")
        return 0
    times.sort()
    print(f"{times[len(times) // 2]:.1f}")
    return 0


def cmd_gen(a):
    nodes = parse_nodes(a.nodes)
    deadline = time.monotonic() + 5
    # Right after a renewal a row is named by its peer address until the metadata arrives.
    while (row := member(fetch(*nodes[a.observer]), a.member)) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if row is None:
        print(f"FAIL: {a.observer} does not list {a.member}", file=sys.stderr)
        return 1
    print(row["generation"])
    return 0


def _sum16(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def fix_checksum(frame):
    """Fills in the TCP/UDP checksum of an IPv4 frame. veth leaves it to the receiver
    (CHECKSUM_PARTIAL), so the bytes a packet socket reads carry only the pseudo-header sum;
    re-sent as they are, the receiver would drop them."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    off = {6: 16, 17: 6}.get(proto)
    total_len = int.from_bytes(frame[16:18], "big")
    start, end = 14 + ihl, 14 + total_len
    if off is None or end > len(frame) or end - start < off + 2:
        return frame
    f = bytearray(frame)
    f[start + off:start + off + 2] = b"\0\0"
    seg = bytes(f[start:end])
    pseudo = bytes(f[26:34]) + bytes([0, proto]) + (end - start).to_bytes(2, "big")
    c = (~_sum16(pseudo + seg)) & 0xFFFF
    # _sum16 adds native-order halves; the ones' complement sum is byte-order independent
    # as long as the result is stored in the same order.
    if proto == 17 and c == 0:
        c = 0xFFFF
    f[start + off:start + off + 2] = c.to_bytes(2, sys.byteorder)
    return bytes(f)


def cmd_delay(a):
    ETH_P_ALL = 3
    PACKET_OUTGOING = 4
    socks = {}
    for ifname in (a.if_a, a.if_b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((ifname, ETH_P_ALL))  # CPython applies htons to the protocol
        s.setblocking(False)
        socks[ifname] = s
    other = {a.if_a: socks[a.if_b], a.if_b: socks[a.if_a]}
    lag = {a.if_a: a.ms / 1000.0, a.if_b: 0.0}
    by_fd = {s.fileno(): name for name, s in socks.items()}
    queue, seq, dropped, sent = [], 0, 0, 0

    def stop(*_):
        print(f"delay: {sent} frames forwarded, {dropped} dropped", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    poller = select.poll()
    for s in socks.values():
        poller.register(s, select.POLLIN)
    print(f"delay: {a.if_a} -> {a.if_b} +{a.ms} ms, {a.if_b} -> {a.if_a} +0 ms", flush=True)
    while True:
        wait_ms = -1
        if queue:
            wait_ms = max(0, int((queue[0][0] - time.monotonic()) * 1000) + 1)
        for fd, _ in poller.poll(wait_ms):
            name = by_fd[fd]
            while True:
                try:
                    frame, addr = socks[name].recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own send on this interface
                seq += 1
                heapq.heappush(queue, (time.monotonic() + lag[name], seq, name, frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, name, frame = heapq.heappop(queue)
            try:
                other[name].send(fix_checksum(frame))
                sent += 1
            except OSError:
                dropped += 1  # e.g. a GSO frame above the MTU


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--nodes", required=True)
    w.add_argument("--expect", action="append", required=True)
    w.add_argument("--do")
    w.add_argument("--timeout", type=float, required=True)
    w.add_argument("--what", required=True)
    w.add_argument("--record")
    w.add_argument("--show-alive", action="store_true")
    w.add_argument("--since", type=float, help="epoch seconds the clock starts at")
    w.add_argument("--since-file", help="handshake: touch FILE.ready, then read the epoch from FILE")
    w.set_defaults(run=cmd_wait)
    v = sub.add_parser("watch")
    v.add_argument("--nodes", required=True)
    v.add_argument("--duration", type=float, required=True)
    v.add_argument("--record")
    v.set_defaults(run=cmd_watch)
    g = sub.add_parser("gen")
    g.add_argument("--nodes", required=True)
    g.add_argument("--observer", required=True)
    g.add_argument("--member", required=True)
    g.set_defaults(run=cmd_gen)
    r = sub.add_parser("rtt")
    r.add_argument("ns")
    r.add_argument("target")
    r.add_argument("--count", type=int, default=7)
    r.set_defaults(run=cmd_rtt)
    d = sub.add_parser("delay")
    d.add_argument("if_a")
    d.add_argument("if_b")
    d.add_argument("ms", type=int)
    d.set_defaults(run=cmd_delay)
    a = p.parse_args()
    sys.exit(a.run(a))


if __name__ == "__main__":
    main()
