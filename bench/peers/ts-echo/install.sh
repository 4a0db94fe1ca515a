#!/usr/bin/env bash
# Install the ts-echo peer's node_modules (npm ci from package-lock.json) into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/peer-ts-echo-<lockhash>/
# and (re)copies server.js next to them, so `node $DIR/server.js PORT` resolves
# the pinned packages. Idempotent: a second run only compares server.js.
# Prints the install directory on stdout.
# Needs node >= 20 + npm; npm registry access on the first run only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SDK_VERSION=1.32.2
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
HASH="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-12)"
DIR="$CACHE_ROOT/peer-ts-echo-$HASH"

log() { echo "ts-echo/install.sh: $*" >&2; }

if [[ ! -f "$DIR/.ok" ]]; then
    command -v node >/dev/null || { log "ERROR: node not found"; exit 1; }
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if (( major < 20 )); then log "ERROR: node >= 20 required (have $(node --version))"; exit 1; fi
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.peer-ts-echo.lock"
    flock 9
    if [[ ! -f "$DIR/.ok" ]]; then
        log "installing @modelcontextprotocol/sdk@$SDK_VERSION into $DIR"
        rm -rf "$DIR"
        mkdir -p "$DIR"
        cp "$HERE/package.json" "$HERE/package-lock.json" "$DIR/"
        (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
        got="$(node -p 'require(process.argv[1]).version' "$DIR/node_modules/@modelcontextprotocol/sdk/package.json")"
        if [[ "$got" != "$SDK_VERSION" ]]; then log "ERROR: installed sdk $got, expected $SDK_VERSION"; exit 1; fi
        touch "$DIR/.ok"
    fi
fi
# ESM resolves bare imports relative to the script's real path, so the script
# must live next to node_modules. Copy atomically (concurrent runs are safe).
if ! cmp -s "$HERE/server.js" "$DIR/server.js"; then
    tmp="$(mktemp "$DIR/.server.js.XXXXXX")"
    cp "$HERE/server.js" "$tmp"
    mv -f "$tmp" "$DIR/server.js"
fi
echo "$DIR"
