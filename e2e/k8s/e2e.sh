#!/usr/bin/env bash
# End-to-end test of mcp-operator against a real control plane (cluster.sh: kube-apiserver,
# etcd, controller manager, scheduler; kwok fakes the kubelet). The operator runs here as a
# local process, with the permissions of the Helm chart's ServiceAccount (a token for it), and
# reaches real `mcp-node` processes that nodes.sh runs for the kwok pods on 127.0.0.x.
#
#   1. the chart installs the CRD and the operator's RBAC (operator.replicas=0); the operator
#      starts, wins the Lease; a second replica stays standby
#   2. the sample McpCluster: every child exists with a controller owner reference, pods
#      Running, Available=True for the current generation; its NetworkPolicy has the right
#      selectors (MCP open, peer and gossip ports from its pods, admin port from the operator's pods and the
#      configured scrapers) and follows spec.networkPolicy (kwok does not enforce policies: what
#      is checked is what the API server stores)
#   3. a spec change rolls the pods (new config hash) and the conditions follow the generation
#   4. `kubectl scale mcpcluster` goes through the scale subresource to the StatefulSet
#   5. every crds/examples/invalid/*.yaml is refused with its `# expect:` message; a spec only
#      the operator can refuse gets Degraded=InvalidSpec and a Warning event, and no children
#   6. the nodes' admin API needs the operator's token (Secret NAME-admin-token; the pods mount
#      only its digest): none → 401, a wrong one → 403, counted; the operator's own calls work
#      autoscaling on real load (mcp-load) scales up, the real nodes form one gossip cluster;
#      a node still holding clients delays the scale-down (drain); calling the scale-down off
#      cancels its drain; once its clients leave, the StatefulSet shrinks
#   6b. an upstream MCP server (another mcp-node) in spec.node.upstreams with a header from a
#      Secret: InvalidSpec while the Secret is missing, then mounted (not in the ConfigMap);
#      status.upstreams and UpstreamsReady follow the upstream killed and started again, with
#      Warning/Normal events
#   7. /metrics; SIGTERM to the leader releases the Lease and the standby takes over; deleting
#      the McpCluster garbage-collects every child
#
# Usage: e2e/k8s/e2e.sh   (exit 1 on the first failure, with the operator's log tail)
# Environment: MCPCLUSTER_E2E_CLUSTER (cluster.sh's), E2E_KEEP=1 keeps the namespace and the
# cluster for inspection, CARGO (default cargo).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CARGO="${CARGO:-cargo}"
NS="mcp-e2e-$$"
WORK="$(mktemp -d /tmp/mcp-operator-e2e.XXXXXX)"
T0=$SECONDS
PIDS=()
CREATED_CLUSTER=0

log() { echo "e2e.sh: [$((SECONDS - T0))s] $*" >&2; }
fail() {
    log "FAIL: $*"
    for f in "$WORK"/operator.log; do [[ -f "$f" ]] && { log "--- tail of $f"; tail -n 40 "$f" >&2; }; done
    exit 1
}
kc() { kubectl --request-timeout=20s -n "$NS" "$@"; }
jp() { kc get "$1" -o "jsonpath=$2" 2>/dev/null || true; } # jp OBJECT JSONPATH
# wait_for SECONDS WHAT COMMAND... : polls COMMAND every second
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
    # Each background job leads its own group where it was started with setsid (mcp-load
    # forks shard processes); the others are plain children.
    for pid in "${PIDS[@]}"; do kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ "${E2E_KEEP:-0}" == 1 ]]; then
        log "kept namespace $NS and $WORK (E2E_KEEP=1)"
        return
    fi
    if [[ -n "${HELM:-}" ]]; then "$HELM" uninstall -n "$NS" op-e2e --wait --timeout 60s >/dev/null 2>&1 || true; fi
    kubectl delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
    ((CREATED_CLUSTER)) && "$HERE/cluster.sh" down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- 0. build and cluster -----------------------------------------------------------------
log "building mcp-operator, mcp-node, mcp-load (debug)"
(cd "$ROOT" && nice "$CARGO" build -q -p mcp-operator -p mcp-node -p mcp-load) || fail "cargo build"
BIN="$ROOT/target/debug"
if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then
    CREATED_CLUSTER=1
    "$HERE/cluster.sh" up >/dev/null || fail "cluster.sh up"
fi
eval "$("$HERE/cluster.sh" env)"
ADMIN_KUBECONFIG="$KUBECONFIG"
kubectl create namespace "$NS" >/dev/null

# --- 1. CRD + RBAC from the chart, operator as the chart's ServiceAccount -------------------
HELM="$("$HERE/install.sh" --print-bin-dir)/helm"
if [[ -x "$HELM" && -d "$ROOT/helm/mcpcluster" ]]; then
    "$HELM" install op-e2e "$ROOT/helm/mcpcluster" -n "$NS" --wait --timeout 120s \
        --set operator.replicas=0 --set operator.watchNamespace="$NS" \
        --set operator.leaderElection.leaseName=mcp-operator >"$WORK/helm.log" 2>&1 ||
        fail "helm install (log: $(cat "$WORK/helm.log"))"
    SA="$(kc get serviceaccount -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}')"
    [[ -n "$SA" ]] || fail "the chart created no operator ServiceAccount"
    TOKEN="$(kc create token "$SA" --duration=1h)"
    cp "$ADMIN_KUBECONFIG" "$WORK/operator.kubeconfig"
    KUBECONFIG="$WORK/operator.kubeconfig" kubectl config set-credentials op-e2e --token="$TOKEN" >/dev/null
    KUBECONFIG="$WORK/operator.kubeconfig" kubectl config set-context --current --user=op-e2e >/dev/null
    log "CRD and RBAC from the chart; the operator runs as ServiceAccount $NS/$SA"
else
    HELM=""
    kubectl apply --server-side -f "$ROOT/crds/generated/mcpclusters.mcpcluster.dev.yaml" >/dev/null
    cp "$ADMIN_KUBECONFIG" "$WORK/operator.kubeconfig"
    log "no helm chart/binary: CRD from crds/generated, the operator runs as admin"
fi
kubectl wait --for=condition=Established crd/mcpclusters.mcpcluster.dev --timeout=60s >/dev/null

"$HERE/nodes.sh" "$NS" demo "$BIN/mcp-node" "$WORK" 2>"$WORK/nodes.log" &
PIDS+=($!)
# The operator pods' labels as the chart's Deployment passes them (its NetworkPolicies name them).
OP_SELECTOR=""
[[ -n "$HELM" ]] && OP_SELECTOR="$(kc get deployment -l app.kubernetes.io/component=operator \
    -o jsonpath='{.items[0].spec.template.spec.containers[0].env[?(@.name=="MCP_OPERATOR_POD_SELECTOR")].value}')"
start_operator() { # start_operator NAME PORT
    KUBECONFIG="$WORK/operator.kubeconfig" POD_NAME="$1" POD_NAMESPACE="$NS" RUST_LOG=info,mcp_operator=debug \
        MCP_OPERATOR_POD_SELECTOR="${OP_SELECTOR:-app.kubernetes.io/part-of=mcpcluster,app.kubernetes.io/component=operator}" \
        "$BIN/mcp-operator" --listen "127.0.0.1:$2" --watch-namespace "$NS" \
        --leader-election-lease mcp-operator --poll-interval 2 --drain-timeout 90 \
        --node-admin-override "$WORK/admin-map" >"$WORK/$1.log" 2>&1 &
    LAST_PID=$!
    PIDS+=($LAST_PID)
}
start_operator operator 18181
LEADER_PID=$LAST_PID
ln -sf "$WORK/operator.log" "$WORK/operator-a.log"
ready() { [[ "$(curl -s http://127.0.0.1:18181/readyz)" == ready ]]; }
wait_for 60 "operator /readyz" ready
leader() { [[ "$(jp lease/mcp-operator '{.spec.holderIdentity}')" == operator ]]; }
wait_for 30 "operator holds Lease mcp-operator" leader
start_operator standby 18182
sleep 4
grep -q "waiting for leadership" "$WORK/standby.log" || fail "standby did not wait for the Lease"
grep -q "leading: reconciling" "$WORK/standby.log" && fail "standby reconciles while the leader holds the Lease"
log "ok: a second replica stands by"

# --- 2. the sample ------------------------------------------------------------------------
kc apply -f "$ROOT/crds/examples/mcpcluster-sample.yaml" >/dev/null
UID_="$(jp mcpcluster/demo '{.metadata.uid}')"
owned() { # owned KIND/NAME: exists with a controller reference to the McpCluster
    [[ "$(jp "$1" '{.metadata.ownerReferences[?(@.controller==true)].uid}')" == "$UID_" ]]
}
for obj in statefulset/demo service/demo service/demo-peers configmap/demo-config \
    poddisruptionbudget/demo networkpolicy/demo secret/demo-tls secret/demo-admin-token serviceaccount/demo-node; do
    wait_for 60 "$obj owned by mcpcluster/demo" owned "$obj"
done
[[ "$(jp service/demo-peers '{.spec.clusterIP}')" == None ]] || fail "demo-peers is not headless"
[[ "$(jp secret/demo-tls '{.data.ca\.crt}')" != "" ]] || fail "demo-tls has no ca.crt"
# The admin token: the operator reads `token`; the pods mount `token.sha256` and nothing else.
ADMIN_TOKEN="$(jp secret/demo-admin-token '{.data.token}' | base64 -d)"
[[ ${#ADMIN_TOKEN} -eq 64 ]] || fail "demo-admin-token holds no 64-character token"
[[ "$(jp secret/demo-admin-token '{.data.token\.sha256}' | base64 -d)" == "$(printf %s "$ADMIN_TOKEN" | sha256sum | cut -d' ' -f1)" ]] ||
    fail "demo-admin-token's token.sha256 is not the token's SHA-256"
mounted="$(jp statefulset/demo '{.spec.template.spec.volumes[?(@.name=="admin-token")].secret.items[*].key}')"
[[ "$mounted" == token.sha256 ]] || fail "the pods mount '$mounted' of demo-admin-token, expected token.sha256 only"
grep -q 'tokenSha256File: /etc/mcp-node/admin/token.sha256' <(jp configmap/demo-config '{.data.config\.yaml}') ||
    fail "the node config does not point at the mounted digest"
AUTH=(-H "Authorization: Bearer $ADMIN_TOKEN")
log "ok: admin token in secret/demo-admin-token; pods mount only its digest"
# The NetworkPolicy: checked as stored by the API server (kwok enforces no policy).
policy_is() { # policy_is EXPECTED_ADMIN_PEERS: the rules, and how many peers may reach the admin port
    kc get networkpolicy demo -o json | OP_SELECTOR="$OP_SELECTOR" NS="$NS" python3 -c '
import json, os, sys
p = json.load(sys.stdin)["spec"]
want = int(sys.argv[1])
sel = {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "mcp-node"}
assert p["podSelector"]["matchLabels"] == sel, p["podSelector"]
assert p["policyTypes"] == ["Ingress"] and "egress" not in p, p
rules = {(q["protocol"], q["port"]): r.get("from") for r in p["ingress"] for q in r["ports"]}
assert set(rules) == {("TCP", 8080), ("UDP", 7946), ("UDP", 7947), ("TCP", 9090)}, rules
assert rules[("TCP", 8080)] is None, "MCP must be open"
assert rules[("UDP", 7946)] == [{"podSelector": {"matchLabels": sel}}], rules[("UDP", 7946)]
assert rules[("UDP", 7947)] == rules[("UDP", 7946)], ("gossip", rules[("UDP", 7947)])
admin = rules[("TCP", 9090)]
op = dict(kv.split("=", 1) for kv in os.environ["OP_SELECTOR"].split(",")) if os.environ["OP_SELECTOR"] else \
    {"app.kubernetes.io/part-of": "mcpcluster", "app.kubernetes.io/component": "operator"}
assert admin[0] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": os.environ["NS"]}},
                    "podSelector": {"matchLabels": op}}, admin[0]
assert len(admin) == want, admin
' "$1" 2>"$WORK/policy.err"
}
policy_is 1 || fail "networkpolicy/demo: $(cat "$WORK/policy.err")"
kc patch mcpcluster demo --type merge -p '{"spec":{"networkPolicy":{"metricsScrapers":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}},"podSelector":{"matchLabels":{"app":"prometheus"}}}]}}}' >/dev/null
wait_for 30 "spec.networkPolicy.metricsScrapers joins the operator on the admin port" policy_is 2
kc patch mcpcluster demo --type merge -p '{"spec":{"networkPolicy":{"enabled":false}}}' >/dev/null
no_policy() { ! kc get networkpolicy demo >/dev/null 2>&1; }
wait_for 30 "spec.networkPolicy.enabled=false deletes the NetworkPolicy" no_policy
kc patch mcpcluster demo --type json -p '[{"op":"remove","path":"/spec/networkPolicy"}]' >/dev/null
wait_for 30 "back on by default: NetworkPolicy with the operator alone on the admin port" policy_is 1
running() { # running N: exactly N pods of demo Running
    [[ "$(kc get pods -l app.kubernetes.io/instance=demo --field-selector=status.phase=Running -o name | wc -l)" -eq "$1" ]]
}
wait_for 90 "2 pods Running" running 2
cond() { # cond TYPE STATUS: the condition has STATUS for the current generation
    local gen; gen="$(jp mcpcluster/demo '{.metadata.generation}')"
    [[ "$(jp mcpcluster/demo "{.status.conditions[?(@.type==\"$1\")].status}")" == "$2" &&
        "$(jp mcpcluster/demo "{.status.conditions[?(@.type==\"$1\")].observedGeneration}")" == "$gen" &&
        "$(jp mcpcluster/demo '{.status.observedGeneration}')" == "$gen" ]]
}
wait_for 90 "Available=True for the current generation" cond Available True
SECRET_RV="$(jp secret/demo-tls '{.metadata.resourceVersion}')"

# --- 3. a spec change rolls the pods ------------------------------------------------------
HASH="$(jp statefulset/demo '{.spec.template.metadata.annotations.mcpcluster\.dev/config-hash}')"
POD0="$(jp pod/demo-0 '{.metadata.uid}')"
# Every status write of the rollout, as the API server sends them to a watcher.
kc get mcpcluster demo --watch -o jsonpath='{.metadata.generation} {.status.conditions[?(@.type=="Progressing")].reason}{"\n"}' \
    >"$WORK/progressing.log" 2>/dev/null &
WATCH=$!
PIDS+=($WATCH)
# (The conformance pack added here gives the drain test below a tool that waits on the client.)
kc patch mcpcluster demo --type merge -p '{"spec":{"node":{"packs":["echo","conformance"],"limits":{"maxSessions":50000}}}}' >/dev/null
new_hash() { [[ "$(jp statefulset/demo '{.spec.template.metadata.annotations.mcpcluster\.dev/config-hash}')" != "$HASH" ]]; }
wait_for 30 "config change reaches the pod template" new_hash
grep -q 'maxSessions: 50000' <(jp configmap/demo-config '{.data.config\.yaml}') || fail "ConfigMap not updated"
rolled() { [[ "$(jp pod/demo-0 '{.metadata.uid}')" != "$POD0" ]] && running 2; }
wait_for 120 "pods replaced by the rollout" rolled
wait_for 120 "Progressing=False (RolloutComplete) for the new generation" cond Progressing False
wait_for 60 "Available=True for the new generation" cond Available True
kill "$WATCH" 2>/dev/null || true
GEN="$(jp mcpcluster/demo '{.metadata.generation}')"
grep -q "^$GEN RolloutInProgress" "$WORK/progressing.log" ||
    fail "no Progressing=RolloutInProgress seen for generation $GEN: $(tr '\n' '|' <"$WORK/progressing.log")"
log "ok: conditions went $(grep "^$GEN " "$WORK/progressing.log" | cut -d' ' -f2 | uniq | tr '\n' ' ')for generation $GEN"
[[ "$(jp secret/demo-tls '{.metadata.resourceVersion}')" == "$SECRET_RV" ]] || fail "the TLS Secret was rewritten"

# --- 4. kubectl scale ---------------------------------------------------------------------
kc scale mcpcluster demo --replicas=3 >/dev/null || fail "kubectl scale mcpcluster"
[[ "$(kc get mcpcluster demo --subresource=scale -o jsonpath='{.spec.replicas}')" == 3 ]] || fail "scale subresource does not read 3"
sts3() { [[ "$(jp statefulset/demo '{.spec.replicas}')" == 3 ]] && running 3; }
wait_for 90 "kubectl scale → StatefulSet 3, 3 pods Running" sts3
status3() { [[ "$(jp mcpcluster/demo '{.status.replicas}')" == 3 && "$(jp mcpcluster/demo '{.status.selector}')" == *instance=demo* ]]; }
wait_for 60 "status.replicas=3 and status.selector set" status3

# --- 5. invalid specs ---------------------------------------------------------------------
for f in "$ROOT"/crds/examples/invalid/*.yaml; do
    expect="$(sed -n 's/^# expect: //p' "$f")"
    if out="$(kc apply -f "$f" 2>&1)"; then fail "$(basename "$f") was accepted"; fi
    [[ "$out" == *"$expect"* ]] || fail "$(basename "$f"): refusal does not say '$expect': $out"
    log "ok: $(basename "$f") refused ($expect)"
done
kc apply -f - >/dev/null <<'EOF'
apiVersion: mcpcluster.dev/v1alpha1
kind: McpCluster
metadata: {name: bad}
spec: {node: {packs: [echo, nope]}}
EOF
bad() {
    [[ "$(jp mcpcluster/bad '{.status.conditions[?(@.type=="Degraded")].reason}')" == InvalidSpec ]] &&
        kc get events --field-selector reason=InvalidSpec -o name | grep -q .
}
wait_for 60 "operator-refused spec: Degraded=InvalidSpec and a Warning event" bad
kc get statefulset bad >/dev/null 2>&1 && fail "an invalid McpCluster got a StatefulSet"
kc delete mcpcluster bad >/dev/null

# --- 6. autoscaling on real load, drained scale-down ----------------------------------------
kc patch mcpcluster demo --type merge -p '{"spec":{"autoscaling":{"targetConnectionsPerNode":200,
  "scaleUpStabilizationSeconds":0,"scaleDownStabilizationSeconds":10,"maxStepReplicas":2}}}' >/dev/null
sts_is() { [[ "$(jp statefulset/demo '{.spec.replicas}')" == "$1" ]] && running "$1"; }
wait_for 90 "idle cluster scaled down to minReplicas (2)" sts_is 2
admin_of() { sed -n "s/^$1 //p" "$WORK/admin-map"; }
nodes_up() { [[ -n "$(admin_of demo-0)" ]] && curl -sf "${AUTH[@]}" "http://$(admin_of demo-0)/cluster" >/dev/null; }
wait_for 60 "real node for demo-0 answers /cluster (with the admin token)" nodes_up
# Without the token, or with another, a node refuses: 401 / 403, nothing drained, counted.
ADM0="$(admin_of demo-0)"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[[ "$(code -X POST "http://$ADM0/drain")" == 401 ]] || fail "POST /drain without a token was not 401"
[[ "$(code -X POST -H "Authorization: Bearer ${ADMIN_TOKEN%?}x" "http://$ADM0/drain")" == 403 ]] ||
    fail "POST /drain with a wrong token was not 403"
[[ "$(code "http://$ADM0/cluster")" == 401 ]] || fail "GET /cluster without a token was not 401"
[[ "$(code "http://$ADM0/readyz")" == 200 ]] || fail "demo-0 not ready after refused drains"
refusals="$(curl -s "http://$ADM0/metrics" | grep '^mcp_admin_refused_total' | tr '\n' ' ')"
[[ "$refusals" == *'reason="missing"} 2'* && "$refusals" == *'reason="wrong"} 1'* ]] ||
    fail "refusals not counted as expected: $refusals"
log "ok: demo-0 refuses the admin API without the token (401) and with a wrong one (403): $refusals"
MCP0="$(admin_of demo-0)"
MCP0="http://${MCP0%:*}:8080/mcp"
log "load: 700 held sessions against $MCP0"
setsid "$BIN/mcp-load" --url "$MCP0" --sessions 700 --ramp-rate 0 --rate 2 --workers 1 --duration 60 \
    --quiet >"$WORK/load.log" 2>&1 &
LOAD=$!
PIDS+=($LOAD)
conns() { local c; c="$(jp mcpcluster/demo '{.status.connections}')"; ((${c:-0} >= 600)); }
wait_for 90 "status.connections >= 600" conns
wait_for 90 "autoscaled up to 4 (ceil(700/200), step 2)" sts_is 4
alive_seen_by() { # alive_seen_by POD: members demo-0's /cluster lists as alive
    curl -s "${AUTH[@]}" "http://$(admin_of "$1")/cluster" | python3 -c 'import json,sys
print(sum(m["state"] == "alive" for m in json.load(sys.stdin)["members"]))' 2>/dev/null || echo 0
}
members4() { [[ "$(jp mcpcluster/demo '{.status.members}')" == 4 && "$(alive_seen_by demo-0)" == 4 ]]; }
wait_for 60 "status.members=4 and demo-0 sees 4 alive members: one cluster (QUIC, mTLS with the operator's CA)" members4
not_degraded() { [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="Degraded")].reason}')" == AsExpected ]]; }
wait_for 30 "Degraded=False (AsExpected): the nodes' views agree" not_degraded
# The ramp may be read half-way (2 → 3 → 4); repeated events of one reason fold into a series.
scaled_up="$(kc get events --field-selector reason=ScaledUp -o jsonpath='{.items[*].message}')"
[[ "$scaled_up" == *"autoscaled from 2 to "* ]] || fail "no ScaledUp event from 2 replicas: '$scaled_up'"
log "ok: ScaledUp event: $scaled_up"
# Hold sessions on the highest ordinal. Its drain hands them to the other nodes (replicas),
# and cannot finish while a request is in flight there: one session waits in a sampling call
# (a server→client request the test never answers) until the test cancels it.
node3() { [[ -n "$(admin_of demo-3)" ]] && curl -sf "${AUTH[@]}" "http://$(admin_of demo-3)/cluster" >/dev/null; }
wait_for 60 "real node for demo-3" node3
ADM3="$(admin_of demo-3)"
MCP3="http://${ADM3%:*}:8080/mcp"
setsid "$BIN/mcp-load" --url "$MCP3" --sessions 20 --ramp-rate 0 --rate 1 --workers 1 \
    --duration 40 --quiet >"$WORK/load-3.log" 2>&1 &
PIDS+=($!)
json() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1" 2>/dev/null || echo 0; }
own() { # own FIELD: demo-3's own row of its /cluster
    curl -s "${AUTH[@]}" "http://$ADM3/cluster" | python3 -c 'import json,sys; v=json.load(sys.stdin)
print(next((m[sys.argv[1]] for m in v["members"] if m["name"] == v["self"]), 0))' "$1" 2>/dev/null || echo 0
}
few() { (($(own connections) >= 20)); }
wait_for 30 "20 clients held on demo-3" few
H=(-H 'accept: application/json, text/event-stream' -H 'content-type: application/json')
HELD_SID="$(curl -s -D - -o /dev/null "${H[@]}" "$MCP3" -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"e2e","version":"1"}}}' |
    tr -d '\r' | sed -n 's/^mcp-session-id: //Ip')"
[[ -n "$HELD_SID" ]] || fail "initialize on demo-3 gave no session id"
setsid curl -sN "${H[@]}" -H "mcp-session-id: $HELD_SID" "$MCP3" \
    -d '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"hold"}}}' \
    >"$WORK/held-call.log" 2>&1 &
PIDS+=($!)
held() { grep -q 'sampling/createMessage' "$WORK/held-call.log"; }
wait_for 30 "a sampling call held in flight on demo-3" held
kill -- -"$LOAD" 2>/dev/null || true
draining() {
    [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="Scaling")].message}')" == *"draining demo-3"* &&
        "$(jp statefulset/demo '{.spec.replicas}')" == 4 ]]
}
wait_for 90 "scale-down waits: Scaling=True 'draining demo-3', StatefulSet still 4" draining
handed() { # every session but the one with the held call went to the other nodes
    local p; p="$(curl -sf "${AUTH[@]}" "http://$ADM3/drain")" || return 1
    [[ "$(json draining <<<"$p")" == True && "$(json sessions <<<"$p")" == 1 && "$(json done <<<"$p")" == False ]]
}
wait_for 30 "demo-3 handed its other sessions off; the held one keeps its drain open" handed
if progress="$(curl -sf "${AUTH[@]}" "http://$ADM3/drain")"; then
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADM3/readyz")" == 503 ]] || fail "draining demo-3 still ready"
    log "ok: demo-3 reports $progress, /readyz 503"
fi
handoffs="$(curl -s "http://$ADM3/metrics" | sed -n 's/^mcp_cluster_handoffs_sent_total //p')"
((${handoffs%.*} >= 20)) || fail "demo-3 handed off ${handoffs:-0} sessions, expected >= 20"
log "ok: demo-3 handed off $handoffs sessions"
# Calling the scale-down off (autoscaling off, replicas 4) cancels demo-3's drain.
kc patch mcpcluster demo --type merge -p '{"spec":{"autoscaling":{"enabled":false},"replicas":4}}' >/dev/null
undrained() {
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADM3/readyz")" == 200 &&
        "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="Scaling")].status}')" == False ]]
}
wait_for 30 "scale-down called off: demo-3's drain cancelled (DELETE /drain), ready again" undrained
kc patch mcpcluster demo --type merge -p '{"spec":{"autoscaling":{"enabled":true}}}' >/dev/null
wait_for 60 "autoscaling back on: draining demo-3 again" draining
# The client cancels its call through another node (demo-3 accepts no new connection while it
# drains; demo-0 forwards to it): nothing is in flight, the drain is done.
T_CANCEL=$SECONDS
curl -s -o /dev/null "${H[@]}" -H "mcp-session-id: $HELD_SID" "$MCP0" \
    -d '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}'
wait_for 90 "held call cancelled: drained scale-down to 2" sts_is 2
# Well before the call's own timeout (60 s): the cancel ended it, not the timeout.
(( SECONDS - T_CANCEL < 30 )) || fail "the drain ended $((SECONDS - T_CANCEL))s after the cancel"
grep -q "departing nodes drained" "$WORK/operator.log" || fail "operator did not log the drain"

# --- 6b. upstreams: a header from a Secret, status per upstream, events ---------------------
# The upstream is one more real mcp-node (echo pack) on 127.0.0.9; the cluster's nodes call it.
UP_ADDR=127.0.0.9:18380
start_upstream() {
    setsid "$BIN/mcp-node" --listen "$UP_ADDR" --admin-listen 127.0.0.9:18381 --packs echo \
        --allowed-hosts '*' --log-level warn >>"$WORK/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=($UPSTREAM_PID)
}
start_upstream
kc patch mcpcluster demo --type merge -p '{"spec":{"node":{"upstreams":[{"name":"echo","url":"http://'"$UP_ADDR"'/mcp",
  "healthCheckMs":500,"breakerFailures":1,"breakerOpenMs":1000,"timeoutMs":2000,
  "headers":{"X-Plain":"p","Authorization":{"valueFrom":{"secretKeyRef":{"name":"up-creds","key":"token"}}}}}]}}}' >/dev/null
no_secret() {
    [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="Degraded")].message}')" == *'headers.Authorization.valueFrom.secretKeyRef: Secret `up-creds` does not exist'* ]]
}
wait_for 30 "a header naming a missing Secret: Degraded=InvalidSpec naming the header" no_secret
kc create secret generic up-creds --from-literal=token='Bearer e2e-upstream-secret' >/dev/null
upstream_ready() {
    [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="UpstreamsReady")].status}')" == True &&
        "$(jp mcpcluster/demo '{.status.upstreams[0].reachableNodes}')" == 2 ]]
}
wait_for 150 "Secret created (rechecked within 30 s): pods rolled with it mounted, UpstreamsReady=True, echo reached from 2 nodes" upstream_ready
[[ "$(jp statefulset/demo '{.spec.template.spec.volumes[?(@.name=="upstream-secrets")].projected.sources[0].secret.items[0].path}')" == up-creds/token ]] ||
    fail "the pods do not mount up-creds/token as upstream-secrets"
grep -q e2e-upstream-secret <(jp configmap/demo-config '{.data.config\.yaml}') && fail "the Secret's value is in the ConfigMap"
grep -q 'secretKeyRef' <(jp configmap/demo-config '{.data.config\.yaml}') || fail "the ConfigMap lost the header's reference"
[[ "$(jp mcpcluster/demo '{.status.upstreams[0].tools}')" == 1 && "$(jp mcpcluster/demo '{.status.upstreams[0].era}')" == legacy ]] ||
    fail "status.upstreams[0]: $(jp mcpcluster/demo '{.status.upstreams[0]}')"
log "ok: status.upstreams[0] = $(jp mcpcluster/demo '{.status.upstreams[0]}')"
kc get events --field-selector reason=UpstreamReachable -o name | grep -q . &&
    fail "an UpstreamReachable event before the upstream ever went away"
kill -9 "$UPSTREAM_PID" 2>/dev/null || true
unreachable() {
    [[ "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="UpstreamsReady")].reason}')" == UpstreamUnreachable &&
        "$(jp mcpcluster/demo '{.status.conditions[?(@.type=="UpstreamsReady")].message}')" == *'`echo` reachable from 0 of 2 nodes'* ]] &&
        [[ "$(kc get events --field-selector reason=UpstreamUnreachable -o jsonpath='{.items[*].message}')" == *'`echo` reachable from 0 of 2 nodes'* ]]
}
wait_for 60 "upstream killed: UpstreamsReady=False naming echo, a Warning event UpstreamUnreachable" unreachable
log "ok: $(jp mcpcluster/demo '{.status.conditions[?(@.type=="UpstreamsReady")].message}')"
start_upstream
back() { upstream_ready && kc get events --field-selector reason=UpstreamReachable -o name | grep -q .; }
wait_for 60 "upstream started again: UpstreamsReady=True, an event UpstreamReachable" back

# --- 7. metrics, failover to the standby, then deletion garbage-collects --------------------
metrics="$(curl -s http://127.0.0.1:18181/metrics)"
for m in 'mcp_operator_reconciles_total{outcome="success"}' 'mcp_operator_desired_replicas{namespace="'"$NS"'",name="demo"} 2' \
    mcp_operator_reconcile_duration_seconds_count 'mcp_operator_reconciles_total{outcome="invalid"}'; do
    [[ "$metrics" == *"$m"* ]] || fail "/metrics lacks $m"
done
log "ok: /metrics"
kill "$LEADER_PID"
standby_leads() {
    [[ "$(jp lease/mcp-operator '{.spec.holderIdentity}')" == standby ]] &&
        grep -q "leading: reconciling" "$WORK/standby.log" &&
        curl -s http://127.0.0.1:18182/metrics | grep -q 'mcp_operator_desired_replicas{namespace="'"$NS"'",name="demo"} 2'
}
wait_for 30 "leader stopped (Lease released): the standby takes over and reconciles demo" standby_leads
grep -q "released leadership" "$WORK/operator.log" || fail "the stopped leader did not release the Lease"
kc scale mcpcluster demo --replicas=3 >/dev/null
wait_for 60 "the new leader scales (kubectl scale → 3 pods)" sts_is 3
kc delete mcpcluster demo --wait=true --timeout=60s >/dev/null
gone() { [[ -z "$(kc get statefulset,service,configmap,secret,serviceaccount,poddisruptionbudget,networkpolicy -l app.kubernetes.io/instance=demo -o name 2>/dev/null)" ]]; }
wait_for 90 "children garbage-collected" gone
log "PASS in $((SECONDS - T0))s"
