"""Reference MCP server used ONLY to self-test the client scripts (run.sh --self-test).

This is NOT mcpcluster. It is the Python SDK's own MCPServer (mcp 2.x), which
serves both the legacy session era (initialize + Mcp-Session-Id) and the
stateless 2026-07-28 era (server/discover + per-request _meta) on one
Streamable HTTP endpoint — the same surface mcpcluster exposes. It has the
fixtures the client checks expect: tools `echo` and `test_simple_text`, one
resource and one prompt.

Usage: <py-mcp2-venv>/bin/python server.py PORT   (serves http://127.0.0.1:PORT/mcp)
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("selftest-reference", version="0.0.1")


@server.tool()
def echo(text: str) -> str:
    """Echo the given text back."""
    return text


@server.tool()
def test_simple_text() -> str:
    """Return a fixed text content."""
    return "This is a simple text response for testing."


@server.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    return "static resource text"


@server.prompt()
def greeting(name: str = "world") -> str:
    """A tiny prompt."""
    return f"Say hello to {name}."


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server.run("streamable-http", host="127.0.0.1", port=port, streamable_http_path="/mcp")
