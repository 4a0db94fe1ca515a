#!/usr/bin/env python3
"""The HTTP edge under hostile clients (issue 12), against a node binary this script starts.

Scenarios (pick with --scenario, default all):
  crafted  N x the chunked request whose chunk size wrapped the size check (`1\\r\\n{\\r\\n
           ffffffffffffffff\\r\\nxx\\r\\n`), C at a time; prints the answers and the node's open
           connections (`mcp_connections`) once every client is gone: 0 means no slot leaked.
  stalled  S connections each send a 4 MiB - 1 byte body but its last byte, and stall; prints
           the node's RSS before and while they stall, and how many were refused (503).
  idle     K connections each send one request and then stay idle; prints the node's RSS
           growth per idle connection and samples its open connections every 5 s until they
           are 0 or --idle-watch seconds passed.

Bounded: every socket has a deadline; the node is killed at the end. Uses only ports given by
--port (MCP) and --port + 1 (admin). Prints one JSON object per scenario.

  bench/edge.py target/release/mcp-node --port 20100
"""
import argparse, asyncio, json, os, signal, subprocess, sys, time, urllib.request

CRAFTED_BODY = b"1\r\n{\r\nffffffffffffffff\r\nxx\r\n"
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


def head(port, extra=""):
    return (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n"
            f"{extra}\r\n").encode()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metric(admin, name):
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def crafted(port, admin, n, c):
    statuses = {}
    sem = asyncio.Semaphore(c)
    request = head(port, "transfer-encoding: chunked\r\n") + CRAFTED_BODY

    async def one():
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                writer.write(request)
                await writer.drain()
                raw = await asyncio.wait_for(reader.read(), 5)
                key = raw.split(b" ", 2)[1].decode() if raw.startswith(b"HTTP/1.1 ") else "closed without an answer"
                writer.close()
            except (OSError, asyncio.TimeoutError) as e:
                key = type(e).__name__
            statuses[key] = statuses.get(key, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.monotonic() - t0
    await asyncio.sleep(1)
    return {"scenario": "crafted", "requests": n, "concurrency": c, "seconds": round(elapsed, 1),
            "answers": statuses, "connections_at_rest": metric(admin, "mcp_connections"),
            "panics": metric(admin, "mcp_connection_panics_total")}


async def stalled(port, admin, pid, s):
    size = 4 * 1024 * 1024 - 1
    before = rss_kib(pid)
    conns, refused, answers = [], 0, {}

    async def one():
        nonlocal refused
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(port, f"content-length: {size}\r\n"))
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < size - 1:
                part = chunk[: min(len(chunk), size - 1 - sent)]
                writer.write(part)
                await asyncio.wait_for(writer.drain(), 10)
                sent += len(part)
        except (OSError, asyncio.TimeoutError):
            pass
        conns.append((reader, writer))

    await asyncio.gather(*(one() for _ in range(s)), return_exceptions=True)
    await asyncio.sleep(2)
    during = rss_kib(pid)
    for reader, _ in conns:
        try:
            raw = await asyncio.wait_for(reader.read(200), 0.2)
        except (OSError, asyncio.TimeoutError):
            raw = b""
        key = raw.split(b" ", 2)[1].decode() if raw.startswith(b"HTTP/1.1 ") else "no answer yet"
        answers[key] = answers.get(key, 0) + 1
    buffered = metric(admin, "mcp_buffered_request_bytes")
    for _, writer in conns:
        writer.close()
    return {"scenario": "stalled", "connections": s, "body_bytes": size, "rss_before_kib": before,
            "rss_stalled_kib": during, "rss_growth_mib": round((during - before) / 1024, 1),
            "answers_while_stalled": answers, "buffered_request_bytes_metric": buffered}


async def idle(port, admin, pid, k, watch):
    conns = []
    before = rss_kib(pid)
    request = head(port, f"content-length: {len(PING)}\r\n") + PING
    for _ in range(k):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        conns.append((reader, writer))
    await asyncio.sleep(1)
    per_conn = round((rss_kib(pid) - before) * 1024 / k)
    t0 = time.monotonic()
    samples = []
    while True:
        open_ = metric(admin, "mcp_connections")
        samples.append([round(time.monotonic() - t0), open_])
        if open_ == 0 or time.monotonic() - t0 > watch:
            break
        await asyncio.sleep(5)
    async def closed(reader):
        # The rest of the answer's body, then the end of the stream if the node closed it.
        try:
            await asyncio.wait_for(reader.read(), 1)
            return reader.at_eof()
        except (OSError, asyncio.TimeoutError):
            return False
    closed_by_server = sum(await asyncio.gather(*(closed(r) for r, _ in conns)))
    for _, writer in conns:
        writer.close()
    return {"scenario": "idle", "connections": k, "rss_bytes_per_idle_connection": per_conn,
            "samples_s_open": samples,
            "closed_by_server": closed_by_server}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--port", type=int, default=20100)
    ap.add_argument("--scenario", choices=["crafted", "stalled", "idle", "all"], default="all")
    ap.add_argument("-n", type=int, default=20000, help="crafted requests")
    ap.add_argument("-c", type=int, default=100, help="crafted requests at a time")
    ap.add_argument("-s", type=int, default=100, help="stalled bodies")
    ap.add_argument("-k", type=int, default=1000, help="idle connections")
    ap.add_argument("--idle-watch", type=int, default=120, help="seconds to watch idle connections")
    args = ap.parse_args()
    admin = f"127.0.0.1:{args.port + 1}"
    node = subprocess.Popen([args.binary, "--listen", f"127.0.0.1:{args.port}", "--admin-listen", admin,
                             "--log-level", "error"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                metric(admin, "mcp_connections")
                break
            except OSError:
                time.sleep(0.1)
        scenarios = ["crafted", "stalled", "idle"] if args.scenario == "all" else [args.scenario]
        for s in scenarios:
            if s == "crafted":
                out = asyncio.run(crafted(args.port, admin, args.n, args.c))
            elif s == "stalled":
                out = asyncio.run(stalled(args.port, admin, node.pid, args.s))
            else:
                out = asyncio.run(idle(args.port, admin, node.pid, args.k, args.idle_watch))
            print(json.dumps(out), flush=True)
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()


if __name__ == "__main__":
    sys.exit(main())
