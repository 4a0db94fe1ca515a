#!/usr/bin/env bash
# An McpCluster with client authentication on, end to end on the local control plane
# (make e2e-k8s-auth): Keycloak (e2e/auth/keycloak.sh) as the authorization server, the
# operator rendering spec.auth into the nodes' config, real mcp-node processes for the kwok
# pods (nodes.sh), and clients with tokens:
#
#   1. the ConfigMap carries the auth section; the nodes answer 401 pointing at their metadata
#   2. the SDK clients (e2e/clients, client_credentials through their SDKs' providers) discover
#      the metadata, get tokens and call tools on demo-0, both eras
#   3. a session opened on demo-0 is served through demo-1 (forwarded: the principal travels,
#      the token does not) for its principal, and refused (404) for another; the owner counts it
#
# Usage: e2e/k8s/auth.sh   (exit 1 on the first failure). Starts the control plane when it is
# not up (and stops it again then). Take flock /work/locks/k8s.lock when others share it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CARGO="${CARGO:-cargo}"
NS="mcp-auth-e2e-$$"
WORK="$(mktemp -d /tmp/mcp-k8s-auth.XXXXXX)"
T0=$SECONDS
PIDS=()
CREATED_CLUSTER=0

log() { echo "auth.sh: [$((SECONDS - T0))s] $*" >&2; }
fail() {
    log "FAIL: $*"
    for f in "$WORK"/operator.log "$WORK"/nodes.log; do [[ -f "$f" ]] && { log "--- tail of $f"; tail -n 30 "$f" >&2; }; done
    exit 1
}
kc() { kubectl --request-timeout=20s -n "$NS" "$@"; }
jp() { kc get "$1" -o "jsonpath=$2" 2>/dev/null || true; }
wait_for() {
    local limit="$1" what="$2" deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for: $what"
        sleep 1
    done
    log "ok: $what"
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$ROOT/e2e/auth/keycloak.sh" stop "$WORK/keycloak" || true
    kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    ((CREATED_CLUSTER)) && "$HERE/cluster.sh" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "building mcp-operator, mcp-node (debug)"
(cd "$ROOT" && nice "$CARGO" build -q -p mcp-operator -p mcp-node) || fail "cargo build"
BIN="$ROOT/target/debug"
if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then
    CREATED_CLUSTER=1
    "$HERE/cluster.sh" up >/dev/null || fail "cluster.sh up"
fi
eval "$("$HERE/cluster.sh" env)"
kubectl create namespace "$NS" >/dev/null
kubectl apply --server-side -f "$ROOT/crds/generated/mcpclusters.mcpcluster.dev.yaml" >/dev/null
kubectl wait --for=condition=Established crd/mcpclusters.mcpcluster.dev --timeout=60s >/dev/null

# demo-0's node listens on 127.0.0.10:8080 (nodes.sh): the URL the clients use, so the
# canonical URI the tokens are issued for.
RESOURCE="http://127.0.0.10:8080/mcp"
KC_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KC="http://127.0.0.1:$KC_PORT"
"$ROOT/e2e/auth/keycloak.sh" start "$WORK/keycloak" "$KC_PORT" "$RESOURCE" "$ROOT/e2e/auth/realm-mcp.json" \
    || fail "Keycloak did not start"
log "ok: Keycloak on $KC"

"$HERE/nodes.sh" "$NS" demo "$BIN/mcp-node" "$WORK" 2>"$WORK/nodes.log" &
PIDS+=($!)
POD_NAME=operator POD_NAMESPACE="$NS" RUST_LOG=info "$BIN/mcp-operator" --listen 127.0.0.1:0 \
    --watch-namespace "$NS" --no-leader-election --node-admin-override "$WORK/admin-map" \
    >"$WORK/operator.log" 2>&1 &
PIDS+=($!)

kc apply -f - >/dev/null <<YAML
apiVersion: mcpcluster.dev/v1alpha1
kind: McpCluster
metadata: {name: demo}
spec:
  replicas: 2
  replicationFactor: 2
  node:
    packs: [echo, conformance]
  auth:
    enabled: true
    issuer: $KC/realms/mcp
    resource: $RESOURCE
    requiredScopes: [mcp:tools]
    scopes:
      tools: {test_image_content: [mcp:admin]}
YAML
rendered() { jp configmap/demo-config '{.data.config\.yaml}' | grep -q "issuer: $KC/realms/mcp"; }
wait_for 60 "spec.auth rendered into the ConfigMap" rendered
admin_of() { sed -n "s/^$1 //p" "$WORK/admin-map"; }
# /cluster takes the admin token the operator keeps in demo-admin-token.
admin_token() { jp secret/demo-admin-token '{.data.token}' | base64 -d; }
alive() { # alive POD N: the pod's node sees N alive members
    [[ -n "$(admin_of "$1")" ]] && [[ "$(curl -s -H "Authorization: Bearer $(admin_token)" \
        "http://$(admin_of "$1")/cluster" | python3 -c 'import json,sys
print(sum(m["state"] == "alive" for m in json.load(sys.stdin)["members"]))' 2>/dev/null)" == "$2" ]]
}
wait_for 120 "both nodes up and in one cluster" alive demo-0 2
wait_for 30 "demo-1 sees both" alive demo-1 2
available() { [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="Available")].status}')" == True ]]; }
wait_for 90 "Available=True" available
MCP1="http://127.0.0.11:8080/mcp"

H=(-H 'accept: application/json, text/event-stream' -H 'content-type: application/json')
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}'
hdrs="$(curl -s -D - -o /dev/null "${H[@]}" "$RESOURCE" -d "$INIT" | tr -d '\r')"
[[ "$hdrs" == "HTTP/1.1 401"* && "$hdrs" == *'resource_metadata="http://127.0.0.10:8080/.well-known/oauth-protected-resource/mcp"'* ]] ||
    fail "no token: expected 401 with resource_metadata, got: $hdrs"
prm="$(curl -sf http://127.0.0.10:8080/.well-known/oauth-protected-resource/mcp)" || fail "no metadata document"
[[ "$prm" == *"\"authorization_servers\":[\"$KC/realms/mcp\"]"* ]] || fail "metadata: $prm"
log "ok: 401 + metadata naming the issuer"

MCP_E2E_OAUTH_CLIENT_ID=mcp-client MCP_E2E_OAUTH_CLIENT_SECRET=mcp-client-secret \
MCP_E2E_OAUTH_ISSUER="$KC/realms/mcp" "$ROOT/e2e/clients/run.sh" "$RESOURCE" >"$WORK/clients.out" 2>&1 ||
    { cat "$WORK/clients.out" >&2; fail "SDK clients with OAuth"; }
log "ok: SDK clients with tokens: $(tail -1 "$WORK/clients.out")"

token() { # token CLIENT SECRET
    curl -sf -d grant_type=client_credentials -d "client_id=$1" -d "client_secret=$2" \
        "$KC/realms/mcp/protocol/openid-connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
A="$(token mcp-client mcp-client-secret)" B="$(token mcp-client-2 mcp-client-2-secret)"
SID="$(curl -s -D - -o /dev/null "${H[@]}" -H "authorization: Bearer $A" "$RESOURCE" -d "$INIT" | tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')"
[[ -n "$SID" ]] || fail "initialize with a token on demo-0 gave no session"
CALL='{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"through-demo-1"}}}'
code_body() { curl -s -w '\n%{http_code}' "${H[@]}" -H "mcp-session-id: $SID" -H "authorization: Bearer $1" "$MCP1" -d "$CALL"; }
out="$(code_body "$A")"
[[ "${out##*$'\n'}" == 200 && "$out" == *through-demo-1* ]] || fail "the session's principal through demo-1: $out"
log "ok: the session opened on demo-0 answers its principal through demo-1 (forwarded)"
out="$(code_body "$B")"
[[ "${out##*$'\n'}" == 404 ]] || fail "another principal through demo-1: expected 404, got $out"
mism="$(curl -s "http://$(admin_of demo-0)/metrics" | sed -n 's/^mcp_auth_requests_total{outcome="session_principal_mismatch"} //p')"
[[ "${mism%.*}" -ge 1 ]] || fail "demo-0 (the owner) did not count the mismatch: ${mism:-none}"
log "ok: another principal's token on the session: 404 via demo-1, counted by the owner ($mism)"
out="$(curl -s -w '\n%{http_code}' "${H[@]}" -H "mcp-session-id: $SID" "$MCP1" -d "$CALL")"
[[ "${out##*$'\n'}" == 401 ]] || fail "no token through demo-1: expected 401, got $out"
log "PASS in $((SECONDS - T0))s"
