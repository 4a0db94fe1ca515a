#!/usr/bin/env bash
# A real Kubernetes control plane for the e2e tests, with no container engine: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok's controller, all built
# from Go modules by install.sh and run as plain processes by `kwokctl --runtime binary`.
# kwok fakes the nodes: Pods are scheduled, bound and reported Running by the kwok controller,
# but no container runs. Everything else (API server, RBAC, admission, CRDs with CEL,
# controllers for Deployments/StatefulSets/PDBs, the scheduler) is the real thing.
#
# Usage: cluster.sh up      create the cluster (or keep a healthy one), wait until it serves
#        cluster.sh down    delete it; no process of it is left running
#        cluster.sh env     print `export KUBECONFIG=...` (eval "$(e2e/k8s/cluster.sh env)")
#        cluster.sh status  exit 0 and print a summary when it is up and healthy, 1 otherwise
#        cluster.sh smoke   a Deployment and a StatefulSet must reach Running (prints timings)
#
# Environment (all optional):
#   MCPCLUSTER_E2E_CLUSTER  cluster name                      (default mcpcluster-e2e)
#   MCPCLUSTER_E2E_DIR      state: kwok workdir + kubeconfig  (default ~/.cache/mcpcluster/e2e)
#   MCPCLUSTER_E2E_NODES    kwok fake nodes                   (default 1)
#   MCPCLUSTER_E2E_TIMEOUT  seconds `up` waits for readiness  (default 300)
#
# The kubeconfig is $MCPCLUSTER_E2E_DIR/<cluster>.kubeconfig (only this cluster's context);
# ~/.kube/config is never touched.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="${MCPCLUSTER_E2E_CLUSTER:-mcpcluster-e2e}"
STATE="${MCPCLUSTER_E2E_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/e2e}"
NODES="${MCPCLUSTER_E2E_NODES:-1}"
TIMEOUT="${MCPCLUSTER_E2E_TIMEOUT:-300}"
export KWOK_WORKDIR="$STATE/kwok"
CLUSTER_DIR="$KWOK_WORKDIR/clusters/$NAME"
KCFG="$STATE/$NAME.kubeconfig"

log() { echo "cluster.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '9,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 64; }

[[ "$NAME" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "MCPCLUSTER_E2E_CLUSTER '$NAME' is not a DNS label"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "MCPCLUSTER_E2E_NODES '$NODES' is not a positive integer"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "MCPCLUSTER_E2E_TIMEOUT '$TIMEOUT' is not a positive integer"

# The locally built binaries; `up` builds them when missing (install.sh, minutes when cold).
bin_dir() {
    local dir; dir="$("$HERE/install.sh" --print-bin-dir)"
    if [[ ! -x "$dir/kwokctl" || ! -x "$dir/kube-apiserver" ]]; then
        log "control-plane binaries missing, building them (e2e/k8s/install.sh)…"
        dir="$("$HERE/install.sh" | sed -n 's/^bin dir: //p')"
    fi
    [[ -x "$dir/kwokctl" ]] || die "install.sh did not produce $dir/kwokctl"
    echo "$dir"
}

kc() { kubectl --kubeconfig "$KCFG" --request-timeout=10s "$@"; }

# Runs "$@" without this shell's descriptors above 2. The components kwokctl starts outlive
# this script; one inheriting the descriptor of `flock /work/locks/k8s.lock make ...` would
# keep that lock held for as long as the control plane runs, and the next `flock` would wait
# until someone ran `cluster.sh down`.
without_inherited_fds() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec "$@"
    )
}

readyz() { [[ -f "$KCFG" ]] && [[ "$(kc get --raw /readyz 2>/dev/null)" == ok ]]; }

ready_nodes() { # count of Ready nodes
    kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
        2>/dev/null | grep -c '^True$' || true
}

healthy() { readyz && (($(ready_nodes) >= 1)); }

# Processes of this cluster, found by the workdir path on their command line (kwokctl puts
# every component's config, certs and data dir under it), so a stale cluster whose pid files
# are gone is still found. Only our own cluster's processes match.
cluster_pids() {
    local f
    for f in $(grep -lsF -- "$CLUSTER_DIR/" /proc/[0-9]*/cmdline); do
        f="${f#/proc/}"; f="${f%/cmdline}"
        # Skip this shell, and grep itself (its own command line matched; it has exited now).
        [[ "$f" == "$$" || "$f" == "$BASHPID" || ! -d "/proc/$f" ]] || echo "$f"
    done
}

stop_leftovers() {
    local pids i
    pids="$(cluster_pids)"
    [[ -z "$pids" ]] && return 0
    log "stopping leftover processes of $NAME: $(echo $pids)"
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for i in $(seq 1 50); do
        pids="$(cluster_pids)"; [[ -z "$pids" ]] && return 0; sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.5
    pids="$(cluster_pids)"
    [[ -z "$pids" ]] || die "processes of $NAME still running after SIGKILL: $pids"
}

down() {
    if [[ -d "$CLUSTER_DIR" ]]; then
        local dir; dir="$("$HERE/install.sh" --print-bin-dir)"
        if [[ -x "$dir/kwokctl" ]]; then
            timeout 120 "$dir/kwokctl" delete cluster --name "$NAME" --kubeconfig "$KCFG" >&2 ||
                log "kwokctl delete cluster failed (continuing with a manual cleanup)"
        fi
    fi
    stop_leftovers
    rm -rf "$CLUSTER_DIR" "$KCFG"
    log "cluster $NAME is down"
}

wait_until() { # wait_until DEADLINE WHAT COMMAND...
    local deadline="$1" what="$2"; shift 2
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
    log "$what after $((SECONDS - T0))s"
}

up() {
    if healthy; then
        log "cluster $NAME is already up"
        echo "export KUBECONFIG=$KCFG"
        return 0
    fi
    if [[ -d "$CLUSTER_DIR" || -n "$(cluster_pids)" ]]; then
        log "cleaning up a stale cluster $NAME (an earlier run did not finish)"
        down
    fi
    local bin; bin="$(bin_dir)"
    command -v kubectl >/dev/null || die "kubectl not found (kwokctl and this script use it)"
    mkdir -p "$STATE"
    rm -f "$KCFG"
    T0=$SECONDS
    local deadline=$((SECONDS + TIMEOUT)) create_log="$STATE/$NAME.create.log"
    log "creating cluster $NAME (binaries: $bin, kwok workdir: $KWOK_WORKDIR)"
    # Binary runtime: kwokctl runs each component as a process, from our binaries (it would
    # download release binaries for any it is not given, so all are given).
    if ! without_inherited_fds timeout "$TIMEOUT" "$bin/kwokctl" create cluster \
        --name "$NAME" \
        --runtime binary \
        --etcd-binary "$bin/etcd" \
        --kube-apiserver-binary "$bin/kube-apiserver" \
        --kube-controller-manager-binary "$bin/kube-controller-manager" \
        --kube-scheduler-binary "$bin/kube-scheduler" \
        --kwok-controller-binary "$bin/kwok" \
        --kubeconfig "$KCFG" \
        --disable-qps-limits \
        --quiet-pull \
        --timeout "${TIMEOUT}s" >"$create_log" 2>&1; then
        cat "$create_log" >&2
        log "logs of the components: $CLUSTER_DIR/logs/"
        die "kwokctl create cluster failed (log above; $create_log)"
    fi
    log "kwokctl create cluster returned after $((SECONDS - T0))s"
    wait_until "$deadline" "API server /readyz ok" readyz ||
        die "API server not ready within ${TIMEOUT}s (kubectl get --raw /readyz; logs: $CLUSTER_DIR/logs/)"
    "$bin/kwokctl" scale node --name "$NAME" --replicas "$NODES" >&2 ||
        die "kwokctl scale node --replicas $NODES failed"
    node_count_ok() { (($(ready_nodes) >= NODES)); }
    wait_until "$deadline" "$NODES kwok node(s) Ready" node_count_ok ||
        die "no $NODES Ready kwok node(s) within ${TIMEOUT}s (kwok controller log: $CLUSTER_DIR/logs/kwok-controller.log)"
    # Pods need the namespace's default ServiceAccount (created by the controller manager)
    # before the ServiceAccount admission plugin lets them in.
    default_sa() { kc -n default get serviceaccount default >/dev/null 2>&1; }
    wait_until "$deadline" "default ServiceAccount present" default_sa ||
        die "ServiceAccount default/default missing after ${TIMEOUT}s (controller manager log: $CLUSTER_DIR/logs/kube-controller-manager.log)"
    log "cluster $NAME is up in $((SECONDS - T0))s ($(kc version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v1[^"]*\)".*/\1/p' | tail -1))"
    echo "export KUBECONFIG=$KCFG"
}

status() {
    if ! healthy; then
        if [[ -d "$CLUSTER_DIR" ]]; then log "cluster $NAME exists but is not healthy"; else log "cluster $NAME is not up"; fi
        return 1
    fi
    echo "cluster:    $NAME"
    echo "kubeconfig: $KCFG"
    echo "server:     $(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
    echo "version:    $(kc get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
    echo "nodes:      $(ready_nodes) Ready"
    echo "processes:  $(cluster_pids | wc -l) ($KWOK_WORKDIR/clusters/$NAME)"
}

# A Deployment (2 replicas) and a StatefulSet (2 replicas) in a scratch namespace must have
# all their pods Running: scheduler, controllers and kwok's fake kubelet all work.
smoke() {
    healthy || die "cluster $NAME is not up (run: $0 up)"
    SMOKE_NS="smoke-$$"
    local ns="$SMOKE_NS" t0=$SECONDS
    kc create namespace "$ns" >/dev/null
    trap 'kc delete namespace "$SMOKE_NS" --wait=false >/dev/null 2>&1 || true' EXIT
    kc -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.invalid/web:1}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: registry.invalid/db:1}]
EOF
    kc -n "$ns" rollout status deployment/web --timeout=120s >&2 || die "deployment/web did not roll out"
    log "deployment/web: 2/2 Running after $((SECONDS - t0))s"
    kc -n "$ns" rollout status statefulset/db --timeout=120s >&2 || die "statefulset/db did not roll out"
    log "statefulset/db: 2/2 Running after $((SECONDS - t0))s"
    local phases; phases="$(kc -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.name}={.status.phase}{" "}{end}')"
    log "pods: $phases"
    [[ "$(grep -o '=Running' <<<"$phases" | wc -l)" -eq 4 ]] || die "expected 4 Running pods, got: $phases"
    echo "smoke: ok (4 pods Running in $((SECONDS - t0))s)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export KUBECONFIG=$KCFG" ;;
    status) status ;;
    smoke) smoke ;;
    *) usage ;;
esac
