"""Benchmark peer: the Python MCP SDK's FastMCP serving one `echo` tool over
Streamable HTTP (stateful sessions, SDK-default SSE responses) on uvicorn.

Usage: python server.py PORT      (binds 127.0.0.1 only; endpoint /mcp)
"""

import os
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        print("usage: server.py PORT", file=sys.stderr)
        sys.exit(2)
    port = int(sys.argv[1])

    # host=127.0.0.1 makes FastMCP enable DNS-rebinding protection with
    # allowed_hosts ["127.0.0.1:*", "localhost:*", "[::1]:*"], so requests to
    # 127.0.0.1:PORT pass. stateless_http=False (default) => Mcp-Session-Id issued;
    # json_response=False (default) => SSE responses. log_level WARNING: no
    # per-request "Processing request of type ..." lines.
    mcp = FastMCP("py-echo", host="127.0.0.1", port=port, log_level="WARNING")

    # structured_output=False: plain text content only (no outputSchema /
    # structuredContent), like the rmcp and ts peers.
    @mcp.tool(description="Echo back the given text", structured_output=False)
    def echo(text: str) -> str:
        return text

    print(f"py-echo listening on http://127.0.0.1:{port}/mcp (pid {os.getpid()})", file=sys.stderr)
    # Same as FastMCP.run("streamable-http"), but without uvicorn's access log.
    config = uvicorn.Config(
        mcp.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
