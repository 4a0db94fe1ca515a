#!/usr/bin/env bash
# `make e2e-kind`: the e2e for users with a container engine. Builds the node and operator
# images from image/Containerfile, starts a kind cluster, loads the images, installs the chart
# and an McpCluster whose nodes run for real, and waits until it is Available.
# Not run in CI (the CI machine has no container engine: it uses cluster.sh, where pods are
# faked by kwok); it has not been run on the machine where it was written.
#
# Needs: docker (or podman: KIND_EXPERIMENTAL_PROVIDER=podman ENGINE=podman), kind, kubectl,
# helm >= 3.
# Environment: KIND_CLUSTER (default mcpcluster-e2e), ENGINE (default docker),
#              KEEP=1 keeps the cluster afterwards, TIMEOUT seconds per wait (default 300).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-mcpcluster-e2e}"
ENGINE="${ENGINE:-docker}"
TIMEOUT="${TIMEOUT:-300}"
NS=mcpcluster-system
TAG=e2e

log() { echo "kind.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for tool in "$ENGINE" kind kubectl helm; do
    command -v "$tool" >/dev/null || die "$tool not found (make e2e-kind needs $ENGINE, kind, kubectl, helm)"
done

cd "$ROOT"
log "building images mcp-node:$TAG and mcp-operator:$TAG"
IGNORE=()
[[ "$ENGINE" == podman ]] && IGNORE=(--ignorefile image/Containerfile.dockerignore)
"$ENGINE" build -f image/Containerfile "${IGNORE[@]}" --target node -t "mcp-node:$TAG" .
"$ENGINE" build -f image/Containerfile "${IGNORE[@]}" --target operator -t "mcp-operator:$TAG" .

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait "${TIMEOUT}s"
fi
if [[ "${KEEP:-0}" != 1 ]]; then trap 'kind delete cluster --name "$CLUSTER"' EXIT; fi
CTX="kind-$CLUSTER"
kind load docker-image --name "$CLUSTER" "mcp-node:$TAG" "mcp-operator:$TAG"

log "installing the chart"
helm upgrade --install mcpcluster helm/mcpcluster --kube-context "$CTX" \
    --namespace "$NS" --create-namespace \
    --set operator.image.repository=mcp-operator --set "operator.image.tag=$TAG" \
    --set operator.image.pullPolicy=Never \
    --wait --timeout "${TIMEOUT}s"

log "creating McpCluster demo (3 nodes of mcp-node:$TAG)"
kubectl --context "$CTX" create namespace demo --dry-run=client -o yaml | kubectl --context "$CTX" apply -f -
kubectl --context "$CTX" -n demo apply -f - <<EOF
apiVersion: mcpcluster.dev/v1alpha1
kind: McpCluster
metadata:
  name: demo
spec:
  replicas: 3
  image: mcp-node:$TAG
  imagePullPolicy: Never
EOF
kubectl --context "$CTX" -n demo wait mcpcluster/demo --for=condition=Available --timeout="${TIMEOUT}s" || {
    kubectl --context "$CTX" -n demo get mcpcluster,statefulset,pods -o wide || true
    kubectl --context "$CTX" -n "$NS" logs deployment/mcpcluster-operator --tail=100 || true
    die "McpCluster demo not Available within ${TIMEOUT}s"
}
kubectl --context "$CTX" -n demo get mcpclusters -o wide
log "ok"
