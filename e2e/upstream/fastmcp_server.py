"""A Python FastMCP server for the gateway tests (`make e2e-upstream`): two tools and a
prompt, over Streamable HTTP at http://127.0.0.1:PORT/mcp.

Usage: python fastmcp_server.py PORT   (the venv e2e/upstream/install.sh prints)
"""

import sys

from fastmcp import FastMCP

mcp = FastMCP("fastmcp-upstream")


@mcp.tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool
def greet(name: str) -> str:
    """Greets someone by name."""
    return f"Hello, {name}!"


@mcp.prompt
def review(code: str) -> str:
    """Asks for a review of a piece of code."""
    return f"Please review this code:\n\n{code}"


if __name__ == "__main__":
    mcp.run(
        transport="http",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        path="/mcp",
        show_banner=False,
        log_level="warning",
    )
