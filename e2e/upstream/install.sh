#!/usr/bin/env bash
# Install (and cache) the upstream MCP servers the gateway tests put behind a node.
#
#   e2e/upstream/install.sh            # install if missing, print paths
#   eval "$(e2e/upstream/install.sh)"  # ...and import them as shell variables
#
# Under ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/, one directory per pinned version:
#
#   server-everything-<VERSION>/   @modelcontextprotocol/server-everything (TypeScript SDK v1:
#                                  Streamable HTTP, 2025-11-25 sessions)
#   fastmcp-<VERSION>-<HASH>/      a Python venv with FastMCP (PyPI `fastmcp`, every package
#                                  pinned in requirements-fastmcp.txt, HASH its hash), which
#                                  runs e2e/upstream/fastmcp_server.py
#
# Node 22 comes from e2e/conformance/install.sh (same cache). The directory is built in a
# temporary sibling and renamed into place after `npm install` succeeded, under flock, so an
# interrupted or concurrent install never leaves a half-populated cache; a cached run never
# touches the network.
#
# stdout: KEY=VALUE lines only (shell-quoted, safe to eval). Progress -> stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EVERYTHING_VERSION="2026.8.31"
# The package depends on @modelcontextprotocol/sdk with a caret range and ships no lockfile:
# pin the SDK so the upstream's behaviour does not drift when a new SDK ships.
MCP_SDK_VERSION="1.32.2"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
PREFIX="$CACHE_ROOT/server-everything-$EVERYTHING_VERSION"
ENTRY="node_modules/@modelcontextprotocol/server-everything/dist/index.js"
STAMP=".mcpcluster-installed"
SPEC="@modelcontextprotocol/server-everything@$EVERYTHING_VERSION sdk=$MCP_SDK_VERSION"

log() { printf 'upstream-install: %s\n' "$*" >&2; }

eval "$("$HERE/../conformance/install.sh")"
export PATH="$MCPCLUSTER_NODE22_BIN_DIR:$PATH"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.install-upstream.lock"
flock 9

if ! [[ -f "$PREFIX/$STAMP" && "$(cat "$PREFIX/$STAMP")" == "$SPEC" && -e "$PREFIX/$ENTRY" ]]; then
  tmp="$(mktemp -d "$PREFIX.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  printf '{"name":"mcpcluster-upstream-cache","private":true,"overrides":{"@modelcontextprotocol/sdk":"%s"}}\n' \
    "$MCP_SDK_VERSION" >"$tmp/package.json"
  log "installing $SPEC into $PREFIX"
  npm install --prefix "$tmp" --no-audit --no-fund --save-exact --loglevel=error \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >&2
  [[ -e "$tmp/$ENTRY" ]] || { log "ERROR: installed but $ENTRY is missing"; exit 1; }
  printf '%s' "$SPEC" >"$tmp/$STAMP"
  rm -rf "$PREFIX"
  mv -T "$tmp" "$PREFIX"
  trap - EXIT
fi

# The FastMCP venv: built in place (a venv embeds its absolute path); `.ok` is written only
# after the install and an import succeeded, so an interrupted one is redone.
FASTMCP_VERSION="4.1.6"
FASTMCP_REQ="$HERE/requirements-fastmcp.txt"
FASTMCP_DIR="$CACHE_ROOT/fastmcp-$FASTMCP_VERSION-$(sha256sum "$FASTMCP_REQ" | cut -c1-12)"
if [[ ! -f "$FASTMCP_DIR/.ok" ]]; then
  log "installing fastmcp==$FASTMCP_VERSION into $FASTMCP_DIR"
  rm -rf "$FASTMCP_DIR"
  "${PYTHON:-python3}" -m venv "$FASTMCP_DIR"
  "$FASTMCP_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$FASTMCP_REQ" >&2
  got="$("$FASTMCP_DIR/bin/python" -c 'import fastmcp; print(fastmcp.__version__)')"
  [[ "$got" == "$FASTMCP_VERSION" ]] || { log "ERROR: installed fastmcp $got, expected $FASTMCP_VERSION"; exit 1; }
  touch "$FASTMCP_DIR/.ok"
fi

printf '%s=%q\n' \
  MCPCLUSTER_FASTMCP_PYTHON "$FASTMCP_DIR/bin/python" \
  MCPCLUSTER_FASTMCP_SERVER "$HERE/fastmcp_server.py" \
  MCPCLUSTER_FASTMCP_VERSION "$FASTMCP_VERSION" \
  MCPCLUSTER_NODE22 "$MCPCLUSTER_NODE22" \
  MCPCLUSTER_SERVER_EVERYTHING "$PREFIX/$ENTRY" \
  MCPCLUSTER_SERVER_EVERYTHING_VERSION "$EVERYTHING_VERSION"
