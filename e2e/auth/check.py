"""Raw-HTTP checks of a node with auth on against a real Keycloak (run by e2e/auth/run.sh).

Usage: python3 check.py --node URL --admin URL --keycloak URL

Tokens come from Keycloak (client_credentials). Each check prints PASS/FAIL <name>; exit 1 if
any failed. The checks, each against what MCP's authorization spec and RFC 6750 say:
  metadata        RFC 9728 document at the path-suffixed and the root well-known URL
  no-token        401, WWW-Authenticate: Bearer with resource_metadata and scope, no error
  valid           a session with a token, tools/call answered
  expired         a token past exp (+ the node's 1 s skew): 401 invalid_token "expired"
  wrong-audience  a token for another resource (Keycloak audience mapper): 401 "audience"
  wrong-issuer    the same realm reached as localhost (iss differs, same key): 401 "not issued"
  unknown-key     a token of another realm (keys the issuer does not publish): 401
  alg-none        the valid token's claims with alg none: 401 "algorithm"
  missing-scope   a tool mapped to mcp:admin: 403 insufficient_scope naming both scopes;
                  with a token that asked for mcp:admin: answered
  hijack          another principal's token with the session id: 404, counted in metrics
  modern          2026-07-28 requests: 401 without a token, answered with one
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

FAILED = 0
PASSED = 0


def result(name: str, ok: bool, detail: str = "") -> None:
    global FAILED, PASSED
    if ok:
        PASSED += 1
        print(f"PASS {name}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {name}: {detail}", flush=True)


def http(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers.items()), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read().decode()


def token(keycloak: str, realm: str, client: str, secret: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": client, "client_secret": secret}
    if scope:
        form["scope"] = scope
    status, _, body = http(
        "POST",
        f"{keycloak}/realms/{realm}/protocol/openid-connect/token",
        {"content-type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode(form).encode(),
    )
    if status != 200:
        raise RuntimeError(f"token for {client}@{realm}: HTTP {status} {body}")
    return json.loads(body)["access_token"]


def claims(tok: str) -> dict:
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "e2e-auth", "version": "1"}}}).encode()
BASE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def post(node: str, tok: str | None, body: bytes, extra: dict[str, str] | None = None):
    h = dict(BASE)
    if tok:
        h["authorization"] = f"Bearer {tok}"
    h.update(extra or {})
    return http("POST", node, h, body)


def call(name: str, args: dict, rid: int = 2) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": name, "arguments": args}}).encode()


def challenge(headers: dict) -> str:
    return next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")


def metric(admin: str, outcome: str) -> float:
    _, _, text = http("GET", f"{admin}/metrics")
    for line in text.splitlines():
        if line.startswith("mcp_auth_requests_total{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def expect_401(name: str, node: str, tok: str, says: str) -> None:
    status, headers, body = post(node, tok, INIT)
    c = challenge(headers)
    result(name, status == 401 and 'error="invalid_token"' in c and says in c
           and "resource_metadata=" in c, f"HTTP {status}, WWW-Authenticate: {c!r}, body {body[:200]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--keycloak", required=True)
    a = ap.parse_args()
    node, kc = a.node, a.keycloak
    issuer = f"{kc}/realms/mcp"
    origin = node.split("/mcp")[0]

    status, _, body = http("GET", f"{origin}/.well-known/oauth-protected-resource/mcp")
    doc = json.loads(body) if status == 200 else {}
    status_root, _, body_root = http("GET", f"{origin}/.well-known/oauth-protected-resource")
    result("metadata", status == 200 and doc.get("resource") == node
           and doc.get("authorization_servers") == [issuer] and status_root == 200
           and json.loads(body_root) == doc, f"HTTP {status}/{status_root}: {body}")

    status, headers, _ = post(node, None, INIT)
    c = challenge(headers)
    result("no-token", status == 401 and c.startswith("Bearer ") and "error=" not in c
           and f'resource_metadata="{origin}/.well-known/oauth-protected-resource/mcp"' in c
           and 'scope="mcp:tools"' in c, f"HTTP {status}, WWW-Authenticate: {c!r}")

    alice = token(kc, "mcp", "mcp-client", "mcp-client-secret")
    status, headers, body = post(node, alice, INIT)
    session = next((v for k, v in headers.items() if k.lower() == "mcp-session-id"), "")
    s2, _, b2 = post(node, alice, call("echo", {"text": "hi"}), {"mcp-session-id": session})
    result("valid", status == 200 and bool(session) and s2 == 200 and "hi" in b2,
           f"initialize HTTP {status} {body[:200]}; call HTTP {s2} {b2[:200]}")

    short = token(kc, "mcp", "mcp-short", "mcp-short-secret")
    wait = claims(short)["exp"] + 1 + 1.5 - time.time()
    if wait > 0:
        time.sleep(wait)
    expect_401("expired", node, short, "expired")

    expect_401("wrong-audience", node, token(kc, "mcp", "other-server-client", "other-secret"), "audience")

    via_localhost = token(kc.replace("127.0.0.1", "localhost"), "mcp", "mcp-client", "mcp-client-secret")
    ok_setup = claims(via_localhost)["iss"] != issuer
    if not ok_setup:
        result("wrong-issuer", False, f"Keycloak gave iss {claims(via_localhost)['iss']} via localhost")
    else:
        expect_401("wrong-issuer", node, via_localhost, "not issued by")

    expect_401("unknown-key", node, token(kc, "rogue", "mcp-client", "mcp-client-secret"),
               "key the issuer does not publish")

    head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    none_token = head + "." + alice.split(".")[1] + "."
    expect_401("alg-none", node, none_token, "algorithm")

    status, headers, body = post(node, alice, call("test_image_content", {}, 3), {"mcp-session-id": session})
    c = challenge(headers)
    admin = token(kc, "mcp", "mcp-client", "mcp-client-secret", scope="mcp:admin")
    s2, _, b2 = post(node, admin, call("test_image_content", {}, 4), {"mcp-session-id": session})
    result("missing-scope", status == 403 and 'error="insufficient_scope"' in c
           and 'scope="mcp:tools mcp:admin"' in c and "resource_metadata=" in c and s2 == 200,
           f"HTTP {status}, WWW-Authenticate: {c!r}; with mcp:admin HTTP {s2} {b2[:200]}")

    before = metric(a.admin, "session_principal_mismatch")
    other = token(kc, "mcp", "mcp-client-2", "mcp-client-2-secret")
    status, _, body = post(node, other, call("echo", {"text": "stolen"}, 5), {"mcp-session-id": session})
    after = metric(a.admin, "session_principal_mismatch")
    s2, _, b2 = post(node, alice, call("echo", {"text": "mine"}, 6), {"mcp-session-id": session})
    result("hijack", status == 404 and after == before + 1 and s2 == 200 and claims(other)["sub"] != claims(alice)["sub"],
           f"HTTP {status} {body[:200]}; mismatches {before} -> {after}; owner's call HTTP {s2}")

    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    modern = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "echo", "arguments": {"text": "m"}, "_meta": meta}}).encode()
    mh = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"}
    s1, _, _ = post(node, None, modern, mh)
    s2, _, b2 = post(node, alice, modern, mh)
    result("modern", s1 == 401 and s2 == 200 and '"m"' in b2, f"without token HTTP {s1}; with HTTP {s2} {b2[:200]}")

    print(f"{PASSED} passed, {FAILED} failed", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
