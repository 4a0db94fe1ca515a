#!/usr/bin/env bash
# Create the py-echo peer's venv (mcp==1.30.0, all deps pinned) at
#   ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/peer-py-echo-<hash>/
# where <hash> covers requirements.txt. Idempotent: a second run is a no-op.
# Prints the venv directory on stdout. Needs python3 >= 3.10 with venv;
# PyPI access on the first run only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MCP_VERSION=1.30.0
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
HASH="$(sha256sum < "$HERE/requirements.txt" | cut -c1-12)"
DIR="$CACHE_ROOT/peer-py-echo-$HASH"

log() { echo "py-echo/install.sh: $*" >&2; }

if [[ ! -f "$DIR/.ok" ]]; then
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.peer-py-echo.lock"
    flock 9
    if [[ ! -f "$DIR/.ok" ]]; then
        log "creating venv $DIR (mcp==$MCP_VERSION)"
        # Built in place (venvs embed their absolute path); .ok only on success.
        rm -rf "$DIR"
        "$PYTHON" -m venv "$DIR"
        "$DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input -r "$HERE/requirements.txt"
        got="$("$DIR/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
        if [[ "$got" != "$MCP_VERSION" ]]; then log "ERROR: installed mcp==$got, expected $MCP_VERSION"; exit 1; fi
        "$DIR/bin/python" -c 'import mcp.server.fastmcp, uvicorn'
        touch "$DIR/.ok"
    fi
fi
echo "$DIR"
