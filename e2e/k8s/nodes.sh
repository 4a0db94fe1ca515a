#!/usr/bin/env bash
# The e2e's stand-in for the kubelet: kwok reports pods Running without running anything, so
# for every Running pod of an McpCluster this loop runs a real `mcp-node` on its own loopback
# address (127.0.0.<10+ordinal>) with the pod's config from the ConfigMap, the pod's
# certificates from the cluster's TLS Secret and the admin token's digest from the Secret
# NAME-admin-token (the one key a pod mounts), the keys of the Secrets upstream headers name
# (the pod's `upstream-secrets` volume, under --secrets-dir), and keeps the operator's --node-admin-override
# map (`POD HOST:PORT` lines) up to date. The nodes form a real cluster (QUIC, mutual TLS with
# the operator's generated CA): what DNS and the pod IP give a pod (seeds from the headless
# Service, the advertised address) is replaced by flags: the peer port on the node's own
# address, and demo-0's as the seed. A pod that goes away
# (scale-down, rollout) has its node stopped; a pod recreated under the same name (new uid)
# gets a fresh node with the current config.
#
# Usage: nodes.sh NAMESPACE CLUSTER NODE_BINARY WORKDIR   (runs until killed; stops its nodes)
set -euo pipefail

NS="$1" CLUSTER="$2" NODE_BIN="$3" WORK="$4"
MAP="$WORK/admin-map"
mkdir -p "$WORK/nodes"
: >"$MAP"

log() { echo "nodes.sh: $*" >&2; }

stop_node() { # stop_node PIDFILE
    local pid; pid="$(cat "$1" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    rm -f "$1"
}

stop_all() {
    local f
    for f in "$WORK"/nodes/*.pid; do [[ -e "$f" ]] && stop_node "$f"; done
    exit 0
}
trap stop_all TERM INT EXIT

port_of() { # port_of KEY CONFIG_FILE -> the port of `KEY: host:port` (at any indentation)
    sed -n "s/^ *$1: *['\"]\{0,1\}[^'\"]*:\([0-9][0-9]*\)['\"]\{0,1\} *\$/\1/p" "$2" | head -1
}

# The pods' mounted Secret, as files (the operator generates it once; read it once).
tls_files() {
    local k
    [[ -s "$WORK/tls/tls.key" ]] && return 0
    mkdir -p "$WORK/tls"
    for k in ca.crt tls.crt tls.key; do
        kubectl -n "$NS" get secret "$CLUSTER-tls" --request-timeout=5s \
            -o jsonpath="{.data.${k//./\\.}}" 2>/dev/null | base64 -d >"$WORK/tls/$k" || return 1
        [[ -s "$WORK/tls/$k" ]] || return 1
    done
}

# The admin token's digest, as a pod mounts it (key token.sha256 of NAME-admin-token).
admin_digest() {
    [[ -s "$WORK/admin/token.sha256" ]] && return 0
    mkdir -p "$WORK/admin"
    kubectl -n "$NS" get secret "$CLUSTER-admin-token" --request-timeout=5s \
        -o jsonpath='{.data.token\.sha256}' 2>/dev/null | base64 -d >"$WORK/admin/token.sha256" || return 1
    [[ -s "$WORK/admin/token.sha256" ]]
}

# The keys of the Secrets upstream headers name, as the pod's projected volume
# `upstream-secrets` holds them (<secretsDir>/<name>/<key>), read again for each node started.
upstream_secrets() {
    local vol secret key
    rm -rf "$WORK/secrets.new" && mkdir -p "$WORK/secrets.new"
    vol="$(kubectl -n "$NS" get statefulset "$CLUSTER" --request-timeout=5s \
        -o jsonpath='{range .spec.template.spec.volumes[?(@.name=="upstream-secrets")].projected.sources[*].secret}{.name}{" "}{range .items[*]}{.key}{" "}{end}{"\n"}{end}' 2>/dev/null)" || return 1
    while read -r secret keys; do
        [[ -z "$secret" ]] && continue
        mkdir -p "$WORK/secrets.new/$secret"
        for key in $keys; do
            kubectl -n "$NS" get secret "$secret" --request-timeout=5s \
                -o jsonpath="{.data.${key//./\\.}}" 2>/dev/null | base64 -d >"$WORK/secrets.new/$secret/$key" || return 1
        done
    done <<<"$vol"
    rm -rf "$WORK/secrets" && mv "$WORK/secrets.new" "$WORK/secrets"
}

while true; do
    # name uid phase, for the cluster's pods
    pods="$(kubectl -n "$NS" get pods -l "app.kubernetes.io/instance=$CLUSTER" --request-timeout=5s \
        -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}' 2>/dev/null || true)"
    wanted=" "
    while read -r name uid phase deleting; do
        [[ -z "$name" || "$phase" != Running || -n "$deleting" ]] && continue
        wanted+="$name.$uid "
        pidfile="$WORK/nodes/$name.$uid.pid"
        if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
        ordinal="${name##*-}"
        ip="127.0.0.$((10 + ordinal))"
        cfg="$WORK/nodes/$name.$uid.yaml"
        kubectl -n "$NS" get configmap "$CLUSTER-config" --request-timeout=5s \
            -o jsonpath='{.data.config\.yaml}' >"$cfg" 2>/dev/null || continue
        tls_files || continue
        admin_digest || continue
        upstream_secrets || continue
        mcp_port="$(port_of listen "$cfg")" admin_port="$(port_of adminListen "$cfg")"
        peer_port="$(port_of peerListen "$cfg")"
        MCP_NODE_NAME="$name" "$NODE_BIN" --config "$cfg" --listen "$ip:${mcp_port:-8080}" \
            --admin-listen "$ip:${admin_port:-9090}" --allowed-hosts '*' --log-level warn \
            --admin-token-sha256-file "$WORK/admin/token.sha256" --secrets-dir "$WORK/secrets" \
            --peer-listen "$ip:${peer_port:-7946}" --seeds "127.0.0.10:${peer_port:-7946}" --seed-dns "" \
            --cluster-ca-file "$WORK/tls/ca.crt" --cluster-cert-file "$WORK/tls/tls.crt" \
            --cluster-key-file "$WORK/tls/tls.key" \
            >"$WORK/nodes/$name.$uid.log" 2>&1 &
        echo $! >"$pidfile"
        log "pod $name ($uid) Running: mcp-node pid $! on $ip:${mcp_port:-8080} (admin ${admin_port:-9090}, peer ${peer_port:-7946})"
    done <<<"$pods"
    # Nodes whose pod is gone.
    for f in "$WORK"/nodes/*.pid; do
        [[ -e "$f" ]] || continue
        key="$(basename "$f" .pid)"
        if [[ "$wanted" != *" $key "* ]]; then
            log "pod ${key%%.*} gone: stopping its node"
            stop_node "$f"
        fi
    done
    # The operator's map: the live node of each pod.
    tmp="$MAP.tmp"
    : >"$tmp"
    for f in "$WORK"/nodes/*.pid; do
        [[ -e "$f" ]] || continue
        key="$(basename "$f" .pid)" name="${key%%.*}"
        cfg="$WORK/nodes/$key.yaml"
        echo "$name 127.0.0.$((10 + ${name##*-})):$(port_of adminListen "$cfg")" >>"$tmp"
    done
    mv "$tmp" "$MAP"
    sleep 1
done
