#!/usr/bin/env bash
# Keycloak for the auth e2e tests: installed once from Maven Central, one throw-away instance
# per run.
#
#   keycloak.sh install              download org.keycloak:keycloak-quarkus-dist (mvn), unzip and
#                                    build it (in-memory H2, local caches) into
#                                    ~/.cache/mcpcluster/keycloak-<version>/; a no-op when cached
#   keycloak.sh start DIR PORT RESOURCE [REALM.json...]
#                                    a fresh instance on 127.0.0.1:PORT whose home is DIR (bin and
#                                    conf copied, lib/themes/providers linked), realms imported
#                                    with @RESOURCE@ replaced; waits until the realms answer;
#                                    the java pid goes to DIR/pid, the log to DIR/keycloak.log
#   keycloak.sh stop DIR             stops that instance (SIGTERM, then SIGKILL after 15 s)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/keycloak-$KEYCLOAK_VERSION"

log() { echo "keycloak.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install() {
    [[ -f "$CACHE/.ok" ]] && return 0
    command -v java >/dev/null || die "java not found (Keycloak $KEYCLOAK_VERSION needs a JDK 17 or 21)"
    command -v mvn >/dev/null || die "mvn not found (Keycloak comes from Maven Central)"
    mkdir -p "$(dirname "$CACHE")"
    exec 9>"$CACHE.lock"
    flock 9
    [[ -f "$CACHE/.ok" ]] && return 0
    local tmp
    tmp="$(mktemp -d)"
    log "downloading org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip from Maven Central"
    mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
        -DoutputDirectory="$tmp" >&2
    rm -rf "$CACHE"
    if command -v unzip >/dev/null; then
        (cd "$tmp" && unzip -q "keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip")
    else
        (cd "$tmp" && python3 -m zipfile -e "keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" .)
        chmod +x "$tmp/keycloak-$KEYCLOAK_VERSION"/bin/*.sh
    fi
    mv "$tmp/keycloak-$KEYCLOAK_VERSION" "$CACHE"
    rm -rf "$tmp"
    log "building (Quarkus augmentation, about a minute)"
    "$CACHE/bin/kc.sh" build --db=dev-mem >"$CACHE/build.log" 2>&1 \
        || { cat "$CACHE/build.log" >&2; die "kc.sh build failed"; }
    touch "$CACHE/.ok"
}

start() {
    local dir="$1" port="$2" resource="$3"
    shift 3
    install
    rm -rf "$dir"
    mkdir -p "$dir/data/import"
    cp -r "$CACHE/bin" "$CACHE/conf" "$dir/"
    for d in lib providers themes; do ln -s "$CACHE/$d" "$dir/$d"; done
    local realms=()
    for realm in "$@"; do
        sed "s|@RESOURCE@|$resource|g" "$realm" >"$dir/data/import/$(basename "$realm")"
        realms+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["realm"])' "$realm")")
    done
    KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        setsid "$dir/bin/kc.sh" start --optimized --http-enabled=true --http-host=127.0.0.1 \
        --http-port="$port" --hostname-strict=false --cache=local --import-realm --log-level=warn \
        >"$dir/keycloak.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    local deadline=$((SECONDS + 240))
    for realm in "${realms[@]}"; do
        until curl -sf -o /dev/null "http://127.0.0.1:$port/realms/$realm/.well-known/openid-configuration"; do
            if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
                tail -30 "$dir/keycloak.log" >&2
                die "Keycloak exited during start"
            fi
            ((SECONDS < deadline)) || { tail -30 "$dir/keycloak.log" >&2; stop "$dir"; die "Keycloak not ready in 240 s"; }
            sleep 0.5
        done
    done
}

stop() {
    local dir="$1" pid
    [[ -f "$dir/pid" ]] || return 0
    pid="$(cat "$dir/pid")"
    # kc.sh execs java in its own session (setsid): end that process group.
    kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
        sleep 0.5
    done
    kill -9 -- -"$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

case "${1:-}" in
    install) install ;;
    start) shift; [[ $# -ge 3 ]] || die "usage: $0 start DIR PORT RESOURCE [REALM.json...]"; start "$@" ;;
    stop) shift; [[ $# -eq 1 ]] || die "usage: $0 stop DIR"; stop "$1" ;;
    *) die "usage: $0 install | start DIR PORT RESOURCE [REALM.json...] | stop DIR" ;;
esac
