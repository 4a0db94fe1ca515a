#!/usr/bin/env bash
# Install the pinned third-party MCP clients used by e2e/clients/run.sh.
#
# Everything lands under ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/, one
# directory per pinned version + lockfile hash, so a bump never reuses a stale
# environment and a second run is a no-op (a few stat calls):
#
#   py-mcp-<ver>-<hash>/      Python venv with mcp==<ver> (all deps pinned)
#   node-mcp-<vers>-<hash>/   node_modules with the TypeScript SDKs (npm ci)
#
# Usage: install.sh [all|python|node]      (default: all)
#        install.sh --print-env            print the paths run.sh uses, install nothing
#
# Needs: python3 (>=3.10, with venv), node >= 20 + npm; registry access to
# PyPI / npm only on the first (uncached) run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
PYTHON="${PYTHON:-python3}"

short_hash() { cat "$@" | sha256sum | cut -c1-12; }

PY2_REQ="$HERE/python/requirements-mcp2.txt"
PY1_REQ="$HERE/python/requirements-mcp1.txt"
PY2_DIR="$CACHE_ROOT/py-mcp-$MCP_PY2_VERSION-$(short_hash "$PY2_REQ")"
PY1_DIR="$CACHE_ROOT/py-mcp-$MCP_PY1_VERSION-$(short_hash "$PY1_REQ")"
NODE_DIR="$CACHE_ROOT/node-mcp-ts$MCP_TS_CLIENT_VERSION-sdk$MCP_TS_SDK_V1_VERSION-$(short_hash "$HERE/node/package.json" "$HERE/node/package-lock.json")"

print_env() {
    echo "MCP_E2E_PY2=$PY2_DIR/bin/python"
    echo "MCP_E2E_PY1=$PY1_DIR/bin/python"
    echo "MCP_E2E_NODE_MODULES=$NODE_DIR/node_modules"
}

log() { echo "install.sh: $*" >&2; }

# install_venv DIR REQUIREMENTS EXPECTED_MCP_VERSION
install_venv() {
    local dir="$1" req="$2" want="$3"
    if [[ -f "$dir/.ok" ]]; then return 0; fi
    log "creating venv $dir (mcp==$want)"
    # Build in place (venvs embed their absolute path); the .ok marker is only
    # written on success, so an interrupted install is redone next time.
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$req"
    local got
    got="$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
    if [[ "$got" != "$want" ]]; then
        log "ERROR: installed mcp==$got, expected $want"; return 1
    fi
    "$dir/bin/python" -c 'import mcp' # smoke import
    touch "$dir/.ok"
}

install_node() {
    local dir="$NODE_DIR"
    if [[ -f "$dir/.ok" ]]; then return 0; fi
    command -v node >/dev/null || { log "ERROR: node not found"; return 1; }
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if (( major < 20 )); then log "ERROR: node >= 20 required (have $(node --version))"; return 1; fi
    log "installing TypeScript SDKs into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$HERE/node/package.json" "$HERE/node/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    node -e '
      const want = {"@modelcontextprotocol/client": process.argv[1], "@modelcontextprotocol/sdk": process.argv[2]};
      for (const [n, v] of Object.entries(want)) {
        const got = require(process.argv[3] + "/node_modules/" + n + "/package.json").version;
        if (got !== v) { console.error(`install.sh: ERROR ${n}@${got}, expected ${v}`); process.exit(1); }
      }' "$MCP_TS_CLIENT_VERSION" "$MCP_TS_SDK_V1_VERSION" "$dir"
    touch "$dir/.ok"
}

what="${1:-all}"
case "$what" in
    --print-env) print_env; exit 0 ;;
    all|python|node) ;;
    *) echo "usage: $0 [all|python|node|--print-env]" >&2; exit 2 ;;
esac

mkdir -p "$CACHE_ROOT"
# Serialize concurrent installs (parallel CI jobs, two shells).
exec 9>"$CACHE_ROOT/.install.lock"
flock 9

if [[ "$what" == all || "$what" == python ]]; then
    install_venv "$PY2_DIR" "$PY2_REQ" "$MCP_PY2_VERSION"
    install_venv "$PY1_DIR" "$PY1_REQ" "$MCP_PY1_VERSION"
fi
if [[ "$what" == all || "$what" == node ]]; then
    install_node
fi
print_env
