#!/usr/bin/env bash
# Start one benchmark peer MCP server in the foreground (exec: the PID of this
# script becomes the server's PID), serving the `echo` tool at
# http://127.0.0.1:PORT/mcp. Builds/installs it first if needed.
#
# Usage: bench/peers/run.sh rmcp|ts|py PORT
#
# Env: CARGO_TARGET_DIR (default <repo>/target/peers) for the rmcp build.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

usage() { echo "usage: $0 rmcp|ts|py PORT" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
name="$1" port="$2"
[[ "$port" =~ ^[0-9]+$ ]] || usage

case "$name" in
    rmcp)
        target="${CARGO_TARGET_DIR:-$ROOT/target/peers}"
        # cargo is a no-op (well under a second) when up to date. Run from the repo
        # root so rust-toolchain.toml picks the same toolchain as the main build.
        cd "$ROOT"
        cargo build --release --quiet --manifest-path "$HERE/rmcp-echo/Cargo.toml" \
            --target-dir "$target" >&2
        echo "run.sh: exec $target/release/rmcp-echo $port (pid $$)" >&2
        exec "$target/release/rmcp-echo" "$port"
        ;;
    ts)
        dir="$("$HERE/ts-echo/install.sh")"
        echo "run.sh: exec node $dir/server.js $port (pid $$)" >&2
        exec node "$dir/server.js" "$port"
        ;;
    py)
        dir="$("$HERE/py-echo/install.sh")"
        echo "run.sh: exec $dir/bin/python $HERE/py-echo/server.py $port (pid $$)" >&2
        exec "$dir/bin/python" "$HERE/py-echo/server.py" "$port"
        ;;
    *) usage ;;
esac
