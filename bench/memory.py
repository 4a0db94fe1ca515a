#!/usr/bin/env python3
"""Memory per idle session and per open idle connection of a running mcp-node.

Two phases against a node started fresh for each (by memory.sh):
  sessions    N x `initialize` over 32 keep-alive connections, then idle: RSS delta / N
  connections N connections, each with its own session and an open GET SSE stream: RSS delta / N
RSS comes from /proc/PID/status (VmRSS). Bounded: N connections, a 120 s deadline per phase.
"""
import argparse, asyncio, json, sys, time

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
NOTIFIED = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def request(host, port, method, body=None, headers=()):
    lines = [f"{method} /mcp HTTP/1.1", f"host: {host}:{port}", "accept: application/json, text/event-stream"]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode()


async def read_response(reader, body=True):
    head = await reader.readuntil(b"\r\n\r\n")
    text = head.decode()
    status = int(text.split()[1])
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in text.split("\r\n")[1:] if ":" in l}
    if not body:
        return status, hdrs
    if "content-length" in hdrs:
        await reader.readexactly(int(hdrs["content-length"]))
    elif "chunked" in hdrs.get("transfer-encoding", ""):
        while True:  # SSE answers to POST end after the JSON-RPC response
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, hdrs


async def initialize(reader, writer, host, port):
    writer.write(request(host, port, "POST", INIT))
    status, hdrs = await read_response(reader)
    if status != 200:
        raise RuntimeError(f"initialize answered {status}")
    sid = hdrs["mcp-session-id"]
    writer.write(request(host, port, "POST", NOTIFIED, [f"mcp-session-id: {sid}", "mcp-protocol-version: 2025-11-25"]))
    status, _ = await read_response(reader)
    if status != 202:
        raise RuntimeError(f"initialized answered {status}")
    return sid


async def phase_sessions(host, port, n):
    conns = [await asyncio.open_connection(host, port) for _ in range(32)]
    async def worker(i):
        r, w = conns[i]
        for _ in range(i, n, 32):
            await initialize(r, w, host, port)
    await asyncio.gather(*(worker(i) for i in range(32)))
    for _, w in conns:
        w.close()


async def phase_connections(host, port, n, held):
    sem = asyncio.Semaphore(256)
    async def one():
        async with sem:
            r, w = await asyncio.open_connection(host, port)
            sid = await initialize(r, w, host, port)
            w.write(request(host, port, "GET", None, [f"mcp-session-id: {sid}", "mcp-protocol-version: 2025-11-25"]))
            status, hdrs = await read_response(r, body=False)
            if status != 200 or "text/event-stream" not in hdrs.get("content-type", ""):
                raise RuntimeError(f"GET stream answered {status}")
            held.append((r, w))  # not every server sends an event right away: don't wait for one
    await asyncio.gather(*(one() for _ in range(n)))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--phase", choices=["sessions", "connections"], required=True)
    ap.add_argument("-n", type=int, required=True)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    await asyncio.sleep(0.5)
    base = rss_kib(a.pid)
    held = []
    t0 = time.monotonic()
    if a.phase == "sessions":
        await asyncio.wait_for(phase_sessions(host, port, a.n), 120)
    else:
        await asyncio.wait_for(phase_connections(host, port, a.n, held), 120)
    ramp = time.monotonic() - t0
    await asyncio.sleep(2.0)
    after = rss_kib(a.pid)
    per = (after - base) * 1024 / a.n
    print(json.dumps({"phase": a.phase, "n": a.n, "rss_base_kib": base, "rss_after_kib": after,
                      "bytes_per_item": round(per), "ramp_s": round(ramp, 2), "rate_per_s": round(a.n / ramp)}))
    for _, w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
