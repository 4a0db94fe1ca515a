#!/usr/bin/env bash
# make e2e-auth: a node with auth on, a real authorization server (Keycloak, from Maven
# Central, cached) and the real SDK clients.
#
# Usage: e2e/auth/run.sh path/to/mcp-node
#
#  1. Keycloak on 127.0.0.1 with realm `mcp` (clients whose tokens carry the node's canonical
#     URI as audience through Keycloak's audience mapper; scopes mcp:tools, mcp:admin) and realm
#     `rogue` (same client, other keys).
#  2. mcp-node with auth.issuer = the mcp realm (keys discovered from its metadata),
#     auth.resource = its own URL, requiredScopes [mcp:tools], test_image_content needing
#     mcp:admin, clockSkewSecs 1.
#  3. e2e/clients/run.sh with MCP_E2E_OAUTH_*: the Python (2.x, 1.x) and TypeScript (v2, v1)
#     SDK clients, each with its own client_credentials provider, in both eras: the first
#     request gets 401, the SDK follows resource_metadata to the Protected Resource Metadata,
#     then the issuer's metadata, gets a token and calls tools.
#  4. check.py: metadata, no token, expired, wrong audience, wrong issuer, unknown key,
#     alg none, missing scope, session hijack, 2026-07-28 per request.
# Prints PASS/FAIL lines and "N passed, N failed"; leaves nothing running.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
NODE_BIN="${1:?usage: $0 path/to/mcp-node}"
NODE_BIN="$(cd "$(dirname "$NODE_BIN")" && pwd)/$(basename "$NODE_BIN")"
WORK="$(mktemp -d /tmp/mcp-e2e-auth.XXXXXX)"
NODE_PID=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
    [[ -n "$NODE_PID" ]] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
    "$HERE/keycloak.sh" stop "$WORK/keycloak"
    rm -rf "$WORK"
}
trap cleanup EXIT

started=$SECONDS
"$HERE/keycloak.sh" install || { echo "FAIL install: keycloak.sh install"; exit 2; }
KC_PORT="$(free_port)"; NODE_PORT="$(free_port)"; ADMIN_PORT="$(free_port)"
KC="http://127.0.0.1:$KC_PORT"
URL="http://127.0.0.1:$NODE_PORT/mcp"
"$HERE/keycloak.sh" start "$WORK/keycloak" "$KC_PORT" "$URL" "$HERE/realm-mcp.json" "$HERE/realm-rogue.json" \
    || { echo "FAIL keycloak: did not start"; exit 2; }
echo "e2e-auth: Keycloak ready on $KC in $((SECONDS - started)) s" >&2

cat >"$WORK/node.yaml" <<YAML
listen: 127.0.0.1:$NODE_PORT
adminListen: 127.0.0.1:$ADMIN_PORT
log: { level: warn }
auth:
  enabled: true
  issuer: $KC/realms/mcp
  resource: $URL
  requiredScopes: [mcp:tools]
  scopes:
    tools: { test_image_content: [mcp:admin] }
  clockSkewSecs: 1
YAML
"$NODE_BIN" --config "$WORK/node.yaml" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" && break
    sleep 0.1
done

metric() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk -v o="outcome=\"$1\"" '$1 ~ /^mcp_auth_requests_total\{/ && index($1, o) { print $2 }'
}

fails=0
# The real SDK clients, each authenticating with its own client_credentials provider.
MCP_E2E_OAUTH_CLIENT_ID=mcp-client MCP_E2E_OAUTH_CLIENT_SECRET=mcp-client-secret \
MCP_E2E_OAUTH_ISSUER="$KC/realms/mcp" \
    "$ROOT/e2e/clients/run.sh" "$URL" | tee "$WORK/clients.out" | grep -v ' passed, '
grep -q ' 0 failed' "$WORK/clients.out" || fails=$((fails + 1))
sdk_checks="$(grep -c '^PASS\|^FAIL' "$WORK/clients.out")"
challenged="$(metric missing_token)"
ok="$(metric ok)"
# Every SDK client started without a token, was challenged, found the metadata and came back
# with a token the node accepted.
if [[ "${challenged%.*}" -ge "$sdk_checks" && "${ok%.*}" -ge "$sdk_checks" ]]; then
    echo "PASS sdk-discovery: $sdk_checks SDK checks, $challenged challenged (401), $ok requests with valid tokens" \
        | tee "$WORK/discovery.out"
else
    echo "FAIL sdk-discovery: $sdk_checks SDK checks, but ${challenged:-0} challenges and ${ok:-0} valid tokens" \
        | tee "$WORK/discovery.out"
    fails=$((fails + 1))
fi

python3 "$HERE/check.py" --node "$URL" --admin "http://127.0.0.1:$ADMIN_PORT" --keycloak "$KC" \
    | tee "$WORK/check.out" | grep -v ' passed, '
grep -q ' 0 failed' "$WORK/check.out" || fails=$((fails + 1))

passed="$(cat "$WORK"/{clients,discovery,check}.out | grep -c '^PASS')"
failed="$(cat "$WORK"/{clients,discovery,check}.out | grep -c '^FAIL')"
if ((fails > 0)); then
    echo "--- node log (last 30 lines)"; tail -30 "$WORK/node.log"
fi
echo "e2e-auth: $((SECONDS - started)) s" >&2
echo "$passed passed, $failed failed"
((fails == 0))
