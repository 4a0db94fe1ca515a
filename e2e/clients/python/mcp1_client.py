"""Interop check with the REAL Python MCP SDK 1.x client (`mcp` on PyPI, pinned in versions.env).

Legacy era only: mcp 1.x cannot speak 2026-07-28 (no server/discover, no
per-request _meta envelope). It is still what most deployed Python MCP clients
run, so the legacy path must keep working for it.

Usage: python mcp1_client.py URL

ClientSession over streamable_http_client: POST initialize (offers 2025-11-25),
reads Mcp-Session-Id, notifications/initialized, then tools/list,
tools/call echo {"text":"hello"}, tools/call test_simple_text, resources/list,
prompts/list, and DELETE of the session on close. Exit 0 on success, 1 on the
first failure (clear message), 2 on usage / environment errors.
"""

from __future__ import annotations

import sys
import time
from typing import Any

TIMEOUT_S = 30.0


class CheckFailed(Exception):
    pass


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_flatten(e))
        return out
    return [exc]


def describe(exc: BaseException) -> str:
    parts = []
    for e in _flatten(exc):
        if isinstance(e, CheckFailed):
            parts.append(str(e))
            continue
        msg = f"{type(e).__name__}: {e}"
        code = getattr(getattr(e, "error", None), "code", None)
        if code is not None:
            msg += f" (JSON-RPC code {code})"
        parts.append(msg)
    return "; ".join(parts)


def text_of(result: Any) -> list[str]:
    return [c.text for c in (result.content or []) if getattr(c, "type", None) == "text"]


class MemoryTokens:
    """TokenStorage kept in memory for one run."""

    def __init__(self) -> None:
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):  # noqa: ANN201
        return self.tokens

    async def set_tokens(self, tokens) -> None:  # noqa: ANN001
        self.tokens = tokens

    async def get_client_info(self):  # noqa: ANN201
        return self.client_info

    async def set_client_info(self, client_info) -> None:  # noqa: ANN001
        self.client_info = client_info


def http_client_for(url: str):  # noqa: ANN201
    """None, or (MCP_E2E_OAUTH_* set) an HTTP client that authenticates with the SDK's
    ClientCredentialsOAuthProvider (401 -> Protected Resource Metadata -> issuer -> token)."""
    import os

    client_id = os.environ.get("MCP_E2E_OAUTH_CLIENT_ID")
    if not client_id:
        return None
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
    from mcp.shared._httpx_utils import create_mcp_http_client

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokens(),
        client_id=client_id,
        client_secret=os.environ.get("MCP_E2E_OAUTH_CLIENT_SECRET", ""),
        scopes=os.environ.get("MCP_E2E_OAUTH_SCOPE") or None,
        issuer=os.environ.get("MCP_E2E_OAUTH_ISSUER"),
    )
    return create_mcp_http_client(auth=provider)


async def main_async(url: str, label: str) -> int:
    from datetime import timedelta

    import anyio
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    current = "connect"
    t0 = time.monotonic()

    def ok(name: str) -> None:
        nonlocal t0
        print(f"  ok   {label} {name} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
        t0 = time.monotonic()

    try:
        with anyio.fail_after(TIMEOUT_S * 6):
            async with streamable_http_client(url, http_client=http_client_for(url)) as (
                read,
                write,
                get_session_id,
            ):
                async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=TIMEOUT_S)) as session:
                    init = await session.initialize()
                    sid = get_session_id()
                    ok(
                        f"initialize: protocol {init.protocolVersion}, {init.serverInfo.name} "
                        f"{init.serverInfo.version}, Mcp-Session-Id={'set' if sid else 'none (stateless)'}"
                    )

                    current = "tools/list"
                    res = await session.list_tools()
                    names = [t.name for t in res.tools]
                    missing = [n for n in ("echo", "test_simple_text") if n not in names]
                    if missing:
                        raise CheckFailed(f"lacks {missing}; got {names}")
                    ok(f"tools/list: {names}")

                    current = "tools/call echo"
                    res = await session.call_tool("echo", {"text": "hello"})
                    if res.isError:
                        raise CheckFailed(f"isError=true: {text_of(res)}")
                    if not any("hello" in t for t in text_of(res)):
                        raise CheckFailed(f"no text content containing 'hello': {res.content!r}")
                    ok(f"tools/call echo: {text_of(res)}")

                    current = "tools/call test_simple_text"
                    res = await session.call_tool("test_simple_text", {})
                    if res.isError:
                        raise CheckFailed(f"isError=true: {text_of(res)}")
                    if not text_of(res):
                        raise CheckFailed(f"no text content: {res.content!r}")
                    ok(f"tools/call test_simple_text: {text_of(res)}")

                    current = "resources/list"
                    res = await session.list_resources()
                    ok(f"resources/list: {[str(r.uri) for r in res.resources]}")

                    current = "prompts/list"
                    res = await session.list_prompts()
                    ok(f"prompts/list: {[p.name for p in res.prompts]}")
                    current = "close"
        ok("close")
    except CheckFailed as e:
        print(f"  FAIL {label} {current}: {e}", flush=True)
        return 1
    except BaseException as e:  # noqa: BLE001 - report anything, incl. exception groups / timeouts
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"  FAIL {label} {current}: {describe(e)}", flush=True)
        return 1
    return 0


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(f"usage: {sys.argv[0]} URL", file=sys.stderr)
        return 2
    try:
        import importlib.metadata

        import anyio

        version = importlib.metadata.version("mcp")
    except Exception as e:  # noqa: BLE001
        print(f"  FAIL cannot import the mcp SDK ({e}); run e2e/clients/install.sh", flush=True)
        return 2
    if not version.startswith("1."):
        print(f"  FAIL this script needs mcp 1.x, found {version}", flush=True)
        return 2
    return anyio.run(main_async, sys.argv[1], f"py-mcp{version}/legacy")


if __name__ == "__main__":
    sys.exit(main())
