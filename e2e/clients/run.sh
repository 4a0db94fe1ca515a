#!/usr/bin/env bash
# Interop tests: real third-party MCP clients against a running MCP server.
#
# Usage: e2e/clients/run.sh [-v] [--only REGEX] URL     e.g. http://127.0.0.1:8080/mcp
#        e2e/clients/run.sh [-v] [--only REGEX] --self-test
#
#   URL          the server's Streamable HTTP endpoint (must serve BOTH the legacy
#                initialize/Mcp-Session-Id era and the 2026-07-28 stateless era)
#   --self-test  start the Python SDK's own dual-era MCPServer (selftest/server.py)
#                on a free loopback port and run every check against it; proves the
#                client scripts + installs work, independent of mcpcluster
#   --only REGEX run only checks whose name matches (e.g. --only modern, --only '^ts-')
#   -v           print every client's step lines, not only on failure
#
# Prints one line per check (PASS/FAIL <check>), the failing client's own step
# output under a FAIL, and a closing "N passed, N failed" line. Exits non-zero
# if any check failed. Installs the pinned clients first (cached; see install.sh).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERBOSE=0
ONLY=""
URL=""
SELFTEST=0
CHECK_TIMEOUT_S="${MCP_E2E_CHECK_TIMEOUT_S:-240}"

while (($#)); do
    case "$1" in
        -v|--verbose) VERBOSE=1 ;;
        --only) ONLY="${2:?--only needs a regex}"; shift ;;
        --self-test) SELFTEST=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) URL="$1" ;;
    esac
    shift
done
if [[ -z "$URL" && $SELFTEST -eq 0 ]] || [[ -n "$URL" && $SELFTEST -eq 1 ]]; then
    echo "usage: $0 [-v] [--only REGEX] URL | --self-test" >&2
    exit 2
fi

# Install (or just locate, when cached) the pinned clients.
if ! ENV_LINES="$("$HERE/install.sh" all)"; then
    echo "FAIL install: e2e/clients/install.sh failed (see above)"
    exit 2
fi
eval "$(grep '^MCP_E2E_' <<<"$ENV_LINES" | sed 's/^/export /')"

SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    [[ -n "${SERVER_LOG:-}" ]] && rm -f "$SERVER_LOG"
}
trap cleanup EXIT

if ((SELFTEST)); then
    PORT="$("$MCP_E2E_PY2" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    URL="http://127.0.0.1:$PORT/mcp"
    SERVER_LOG="$(mktemp)"
    "$MCP_E2E_PY2" "$HERE/selftest/server.py" "$PORT" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "FAIL self-test server did not start:"; sed 's/^/    /' "$SERVER_LOG"; exit 2
        fi
        sleep 0.1
    done
    echo "self-test: reference server (Python SDK MCPServer, NOT mcpcluster) at $URL"
fi

# name | command...   (names: <client>-<version>/<era>)
. "$HERE/versions.env"
CHECKS=(
    "py-mcp$MCP_PY2_VERSION/legacy|$MCP_E2E_PY2 $HERE/python/mcp2_client.py $URL --era legacy"
    "py-mcp$MCP_PY2_VERSION/modern-2026-07-28|$MCP_E2E_PY2 $HERE/python/mcp2_client.py $URL --era modern"
    "py-mcp$MCP_PY1_VERSION/legacy|$MCP_E2E_PY1 $HERE/python/mcp1_client.py $URL"
    "ts-client$MCP_TS_CLIENT_VERSION/legacy|node $HERE/node/ts_client.mjs $URL --sdk v2 --era legacy"
    "ts-client$MCP_TS_CLIENT_VERSION/modern-2026-07-28|node $HERE/node/ts_client.mjs $URL --sdk v2 --era modern"
    "ts-sdk$MCP_TS_SDK_V1_VERSION/legacy|node $HERE/node/ts_client.mjs $URL --sdk v1 --era legacy"
)

passed=0
failed=0
for entry in "${CHECKS[@]}"; do
    name="${entry%%|*}"
    cmd="${entry#*|}"
    if [[ -n "$ONLY" ]] && ! [[ "$name" =~ $ONLY ]]; then continue; fi
    start_ns=$(date +%s%N)
    # shellcheck disable=SC2086 # cmd is a word list built above (paths have no spaces)
    out="$(timeout -k 5 "$CHECK_TIMEOUT_S" $cmd 2>&1)"
    rc=$?
    ms=$((($(date +%s%N) - start_ns) / 1000000))
    secs="$((ms / 1000)).$(((ms % 1000) / 100))"
    if ((rc == 0)); then
        passed=$((passed + 1))
        echo "PASS $name (${secs}s)"
        ((VERBOSE)) && printf '%s\n' "$out"
    else
        failed=$((failed + 1))
        why="exit $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${CHECK_TIMEOUT_S}s"
        echo "FAIL $name ($why, ${secs}s)"
        printf '%s\n' "$out" | tail -n 40
    fi
done

if ((SELFTEST)) && ((failed)) && [[ -n "${SERVER_LOG:-}" ]]; then
    echo "--- self-test server log (tail) ---"; tail -n 30 "$SERVER_LOG"
fi
echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
