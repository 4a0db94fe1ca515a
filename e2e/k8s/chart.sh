#!/usr/bin/env bash
# The chart and manifests/ against the real API server of the local control plane
# (cluster.sh up first). kwok fakes the kubelet, so the operator pods become Running without a
# container running: what is tested is what the API server decides (schemas, CRD structural
# schema and CEL, RBAC, Pod Security admission, scheduling, Deployment rollout), not the
# operator's behaviour.
#
#   1. kubectl apply --dry-run=server -f manifests/   (namespace created for real first)
#   2. kubectl apply -f manifests/; the operator Deployment rolls out (2/2), its NetworkPolicy
#      exists; delete it all
#   3. helm install (default values + the sample McpCluster) --wait; RBAC of the operator's
#      ServiceAccount checked with `kubectl auth can-i` (allowed and refused verbs); uninstall
#   4. helm install with operator.watchNamespace: permissions only in that namespace
#   5. with --operator BINARY: helm install, then that mcp-operator runs on this host
#      authenticated as the chart's ServiceAccount (a TokenRequest token), so it has exactly the
#      chart's RBAC; an McpCluster must become Available with no "forbidden" in its log, and its
#      NetworkPolicy must admit the chart's operator pods (namespace and labels) to the admin
#      port (kwok enforces no NetworkPolicy: the API objects are what is checked)
#
# Usage: e2e/k8s/chart.sh [--operator PATH]   (a timing per step; exit 1 on the first failure)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OPERATOR=""
case "${1:-}" in
    "") ;;
    --operator) OPERATOR="${2:?--operator needs the path of mcp-operator}" ;;
    *) sed -n '20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 64 ;;
esac
[[ -z "$OPERATOR" || -x "$OPERATOR" ]] || { echo "chart.sh: ERROR: $OPERATOR is not executable" >&2; exit 1; }
BIN="$("$HERE/install.sh" --print-bin-dir)"
HELM="$BIN/helm"
T0=$SECONDS

log() { echo "chart.sh: [$((SECONDS - T0))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ -x "$HELM" ]] || die "no helm at $HELM (make k8s-tools)"
"$HERE/cluster.sh" status >/dev/null || die "the local control plane is not up (make k8s-up)"
eval "$("$HERE/cluster.sh" env)"
kc() { kubectl --request-timeout=30s "$@"; }
helm() { "$HELM" "$@"; }

MANIFEST_NS=mcpcluster-system
HELM_NS=mcpcluster-helm
WATCH_NS=team-a
DEMO_NS=chart-e2e-demo
OP_PID=""
OP_DIR="$(mktemp -d)"
cleanup() {
    [[ -n "$OP_PID" ]] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
    kc delete namespace "$DEMO_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    helm uninstall -n "$HELM_NS" chart-e2e-op --wait --timeout 60s >/dev/null 2>&1 || true
    helm uninstall -n "$HELM_NS" chart-e2e --wait --timeout 60s >/dev/null 2>&1 || true
    helm uninstall -n "$HELM_NS" chart-e2e-ns --wait --timeout 60s >/dev/null 2>&1 || true
    kc delete -f "$ROOT/manifests/20-operator.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kc delete namespace "$MANIFEST_NS" "$HELM_NS" "$WATCH_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kc delete crd mcpclusters.mcpcluster.dev --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap 'cleanup; rm -rf "$OP_DIR"' EXIT
cleanup
for ns in "$MANIFEST_NS" "$HELM_NS" "$WATCH_NS" "$DEMO_NS"; do # an earlier run's namespaces must be gone
    kc wait --for=delete "namespace/$ns" --timeout=120s >/dev/null 2>&1 || true
done
kc wait --for=delete crd/mcpclusters.mcpcluster.dev --timeout=120s >/dev/null 2>&1 || true

# --- 1. server-side dry run of the plain manifests.
kc apply -f "$ROOT/manifests/00-namespace.yaml" >/dev/null
kc apply --dry-run=server -f "$ROOT/manifests/" >&2 || die "kubectl apply --dry-run=server -f manifests/ refused"
log "kubectl apply --dry-run=server -f manifests/: accepted"

# --- 2. the manifests for real.
kc apply -f "$ROOT/manifests/" >/dev/null || die "kubectl apply -f manifests/ failed"
kc wait --for=condition=Established crd/mcpclusters.mcpcluster.dev --timeout=60s >/dev/null ||
    die "CRD not Established"
kc -n "$MANIFEST_NS" rollout status deployment/mcpcluster-operator --timeout=180s >&2 ||
    die "operator Deployment from manifests/ did not roll out"
kc apply --dry-run=server -n "$MANIFEST_NS" -f "$ROOT/crds/examples/mcpcluster-sample.yaml" >&2 ||
    die "the sample McpCluster is refused by the CRD"
kc -n "$MANIFEST_NS" get networkpolicy mcpcluster-operator -o jsonpath='{.spec.podSelector.matchLabels}' |
    grep -q '"app.kubernetes.io/component":"operator"' || die "manifests/: no NetworkPolicy over the operator pods"
log "kubectl apply -f manifests/: CRD Established, operator 2/2 Running (kwok), sample McpCluster accepted, NetworkPolicy over the operator pods"
kc delete -f "$ROOT/manifests/" --wait=true --timeout=120s >/dev/null || die "kubectl delete -f manifests/ failed"
log "kubectl delete -f manifests/: done"

# can SA VERB RESOURCE [NS] -> yes|no
can() {
    local sa="$1" verb="$2" res="$3" ns="${4:-}"
    local where=(--all-namespaces)
    [[ -n "$ns" ]] && where=(--namespace "$ns")
    kc auth can-i --as="system:serviceaccount:$HELM_NS:$sa" "$verb" "$res" "${where[@]}" 2>/dev/null || true
}
expect() { # expect yes|no SA VERB RESOURCE [NS]
    local want="$1"; shift
    local got; got="$(can "$@")"
    [[ "$got" == "$want" ]] || die "RBAC: can-i $* = '$got', expected $want"
}

# --- 3. helm install, default values plus the sample cluster.
kc create namespace "$HELM_NS" >/dev/null
kc label namespace "$HELM_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
helm install chart-e2e "$ROOT/helm/mcpcluster" -n "$HELM_NS" --set sampleCluster.enabled=true \
    --wait --timeout 180s >&2 || die "helm install failed"
kc -n "$HELM_NS" get deployment chart-e2e-mcpcluster-operator >&2
kc -n "$HELM_NS" get pods -o wide >&2
kc -n "$HELM_NS" get mcpclusters demo >/dev/null || die "the sample McpCluster is missing"
SA=chart-e2e-mcpcluster-operator
expect yes "$SA" watch mcpclusters.mcpcluster.dev
expect yes "$SA" patch mcpclusters.mcpcluster.dev/scale
expect yes "$SA" update mcpclusters.mcpcluster.dev/status
expect no "$SA" create mcpclusters.mcpcluster.dev
expect no "$SA" delete mcpclusters.mcpcluster.dev
expect yes "$SA" create statefulsets.apps
expect yes "$SA" delete secrets
expect yes "$SA" create poddisruptionbudgets.policy
expect yes "$SA" create networkpolicies.networking.k8s.io
expect yes "$SA" delete networkpolicies.networking.k8s.io
expect yes "$SA" list pods
expect no "$SA" delete pods
expect no "$SA" create pods
expect yes "$SA" create events.events.k8s.io
expect no "$SA" list nodes
expect no "$SA" create deployments.apps
expect yes "$SA" create leases.coordination.k8s.io "$HELM_NS"
expect no "$SA" create leases.coordination.k8s.io default
log "helm install: operator rolled out, sample McpCluster created, RBAC as specified (18 can-i checks)"
helm uninstall chart-e2e -n "$HELM_NS" --wait --timeout 120s >/dev/null || die "helm uninstall failed"
log "helm uninstall: done"

# --- 4. a namespaced install: no cluster-wide permission.
kc create namespace "$WATCH_NS" >/dev/null
helm install chart-e2e-ns "$ROOT/helm/mcpcluster" -n "$HELM_NS" --set "operator.watchNamespace=$WATCH_NS" \
    --set operator.replicas=1 --skip-crds --wait --timeout 180s >/dev/null || die "helm install (watchNamespace) failed"
SA=chart-e2e-ns-mcpcluster-operator
expect yes "$SA" watch mcpclusters.mcpcluster.dev "$WATCH_NS"
expect yes "$SA" create statefulsets.apps "$WATCH_NS"
expect no "$SA" watch mcpclusters.mcpcluster.dev default
expect no "$SA" watch mcpclusters.mcpcluster.dev
expect no "$SA" create statefulsets.apps default
log "helm install (watchNamespace=$WATCH_NS): permissions in $WATCH_NS only (5 can-i checks)"
helm uninstall chart-e2e-ns -n "$HELM_NS" --wait --timeout 120s >/dev/null || die "helm uninstall failed"

# --- 5. the real operator with exactly the chart's permissions.
if [[ -n "$OPERATOR" ]]; then
    helm install chart-e2e-op "$ROOT/helm/mcpcluster" -n "$HELM_NS" --set operator.replicas=1 \
        --wait --timeout 180s >/dev/null || die "helm install (operator run) failed"
    SA=chart-e2e-op-mcpcluster-operator
    token="$(kc -n "$HELM_NS" create token "$SA" --duration 1h)" || die "kubectl create token $SA failed"
    server="$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
    ca="$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
    ca_data="$(kc config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    [[ -n "$ca_data" ]] || ca_data="$(base64 -w0 <"$ca")"
    cat >"$OP_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca_data"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: e2e, user: operator}}]
current-context: operator
EOF
    # The operator pods' labels exactly as the chart's Deployment passes them.
    selector="$(kc -n "$HELM_NS" get deployment chart-e2e-op-mcpcluster-operator \
        -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="MCP_OPERATOR_POD_SELECTOR")].value}')"
    [[ -n "$selector" ]] || die "the chart's Deployment passes no MCP_OPERATOR_POD_SELECTOR"
    KUBECONFIG="$OP_DIR/kubeconfig" POD_NAMESPACE="$HELM_NS" POD_NAME=chart-e2e-host \
        MCP_OPERATOR_POD_SELECTOR="$selector" \
        RUST_LOG=info,mcp_operator=debug "$OPERATOR" --listen 127.0.0.1:0 --log-format text \
        >"$OP_DIR/operator.log" 2>&1 &
    OP_PID=$!
    kc create namespace "$DEMO_NS" >/dev/null
    kc -n "$DEMO_NS" apply -f "$ROOT/crds/examples/mcpcluster-sample.yaml" >/dev/null
    if ! kc -n "$DEMO_NS" wait mcpcluster/demo --for=condition=Available --timeout=120s >/dev/null; then
        kc -n "$DEMO_NS" get mcpcluster,statefulset,pods >&2 || true
        tail -30 "$OP_DIR/operator.log" >&2
        die "McpCluster demo not Available within 120s under the chart's RBAC"
    fi
    if grep -qi forbidden "$OP_DIR/operator.log"; then
        grep -i forbidden "$OP_DIR/operator.log" | head -5 >&2
        die "the operator was refused something under the chart's RBAC (above)"
    fi
    kill -0 "$OP_PID" 2>/dev/null || { tail -30 "$OP_DIR/operator.log" >&2; die "the operator exited"; }
    # The cluster's NetworkPolicy lets exactly the chart's operator pods reach the admin port:
    # their namespace, and labels that select the Deployment's pods.
    kc -n "$DEMO_NS" get networkpolicy demo -o json | python3 -c '
import json, sys
ns, pod_labels = sys.argv[1], json.loads(sys.argv[2])
rules = json.load(sys.stdin)["spec"]["ingress"]
admin = next(r["from"] for r in rules if any(p["port"] == 9090 for p in r["ports"]))
op = admin[0]
assert op["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": ns}, op
sel = op["podSelector"]["matchLabels"]
assert sel and all(pod_labels.get(k) == v for k, v in sel.items()), (sel, pod_labels)
' "$HELM_NS" "$(kc -n "$HELM_NS" get deployment chart-e2e-op-mcpcluster-operator -o jsonpath='{.spec.template.metadata.labels}')" ||
        die "networkpolicy/demo does not admit the chart's operator pods to the admin port"
    kc -n "$DEMO_NS" get mcpcluster demo >&2
    log "operator as the chart's ServiceAccount: McpCluster Available, nothing forbidden, its NetworkPolicy admits the chart's operator pods"
fi
echo "chart.sh: ok in $((SECONDS - T0))s"
