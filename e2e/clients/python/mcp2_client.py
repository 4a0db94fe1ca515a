"""Interop check with the REAL Python MCP SDK 2.x client (`mcp` on PyPI, pinned in versions.env).

Usage: python mcp2_client.py URL --era legacy|modern

  --era legacy   Client(url, mode="legacy"): initialize handshake (offers the
                 SDK's latest handshake version, 2025-11-25), Mcp-Session-Id session.
  --era modern   Client(url, mode="auto"): sends `server/discover` first and must
                 land on 2026-07-28 (stateless; every request carries its own
                 `_meta` envelope + MCP-Protocol-Version/Mcp-Method headers).
                 If the probe fails the SDK silently falls back to initialize;
                 we detect that and FAIL.

With MCP_E2E_OAUTH_CLIENT_ID / _CLIENT_SECRET / _ISSUER (and optionally _SCOPE) set, the
transport's HTTP client authenticates with the SDK's ClientCredentialsOAuthProvider (a 401
leads it to the Protected Resource Metadata, the issuer's metadata and a token).

Checks: connect, tools/list (has echo + test_simple_text), tools/call echo
{"text":"hello"} (text contains "hello"), tools/call test_simple_text (has text),
resources/list, prompts/list. Exit 0 if all pass, 1 on the first failure
(with a clear message), 2 on usage / environment errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

STEP_TIMEOUT_S = 30.0
MODERN_VERSION = "2026-07-28"


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


def server_of(url: str) -> Any:
    """The URL itself, or (MCP_E2E_OAUTH_* set) a transport whose HTTP client authenticates."""
    import os

    client_id = os.environ.get("MCP_E2E_OAUTH_CLIENT_ID")
    if not client_id:
        return url
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokens(),
        client_id=client_id,
        client_secret=os.environ.get("MCP_E2E_OAUTH_CLIENT_SECRET", ""),
        scope=os.environ.get("MCP_E2E_OAUTH_SCOPE") or None,
        issuer=os.environ.get("MCP_E2E_OAUTH_ISSUER"),
    )
    return streamable_http_client(url, http_client=create_mcp_http_client(auth=provider))


async def main_async(url: str, era: str, label: str) -> int:
    import anyio
    from mcp import Client

    current = "connect"
    t0 = time.monotonic()

    def ok(name: str) -> None:
        nonlocal t0
        print(f"  ok   {label} {name} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
        t0 = time.monotonic()

    mode = "legacy" if era == "legacy" else "auto"
    try:
        # One overall deadline; the SDK's own read timeout bounds each request.
        # (No per-step cancel scopes around __aenter__: anyio forbids exiting a
        # cancel scope while the transport's task group it opened lives on.)
        with anyio.fail_after(STEP_TIMEOUT_S * 6):
            async with Client(server_of(url), mode=mode, read_timeout_seconds=STEP_TIMEOUT_S) as client:
                pv = client.protocol_version
                info = client.server_info
                who = f"{info.name} {info.version}" if info else "anonymous server"
                if era == "modern" and pv != MODERN_VERSION:
                    raise CheckFailed(
                        f"expected protocol {MODERN_VERSION} via server/discover, but the SDK fell back "
                        f"to the initialize handshake and negotiated {pv!r} (server/discover was rejected, "
                        "or its supportedVersions did not include 2026-07-28)"
                    )
                if era == "legacy" and pv == MODERN_VERSION:
                    raise CheckFailed(f"legacy mode negotiated {pv!r}?!")
                ok(f"connect mode={mode}: protocol {pv}, {who}")

                current = "tools/list"
                res = await client.list_tools(cache_mode="bypass")
                names = [t.name for t in res.tools]
                missing = [n for n in ("echo", "test_simple_text") if n not in names]
                if missing:
                    raise CheckFailed(f"lacks {missing}; got {names}")
                ok(f"tools/list: {names}")

                current = "tools/call echo"
                res = await client.call_tool("echo", {"text": "hello"})
                if res.is_error:
                    raise CheckFailed(f"isError=true: {text_of(res)}")
                if not any("hello" in t for t in text_of(res)):
                    raise CheckFailed(f"no text content containing 'hello': {res.content!r}")
                ok(f"tools/call echo: {text_of(res)}")

                current = "tools/call test_simple_text"
                res = await client.call_tool("test_simple_text", {})
                if res.is_error:
                    raise CheckFailed(f"isError=true: {text_of(res)}")
                if not text_of(res):
                    raise CheckFailed(f"no text content: {res.content!r}")
                ok(f"tools/call test_simple_text: {text_of(res)}")

                current = "resources/list"
                res = await client.list_resources(cache_mode="bypass")
                ok(f"resources/list: {[str(r.uri) for r in res.resources]}")

                current = "prompts/list"
                res = await client.list_prompts(cache_mode="bypass")
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--era", choices=["legacy", "modern"], required=True)
    args = ap.parse_args()
    try:
        import importlib.metadata

        import anyio

        version = importlib.metadata.version("mcp")
    except Exception as e:  # noqa: BLE001
        print(f"  FAIL cannot import the mcp SDK ({e}); run e2e/clients/install.sh", flush=True)
        return 2
    if not version.startswith("2."):
        print(f"  FAIL this script needs mcp 2.x, found {version}", flush=True)
        return 2
    label = f"py-mcp{version}/{args.era}"
    return anyio.run(main_async, args.url, args.era, label)


if __name__ == "__main__":
    sys.exit(main())
