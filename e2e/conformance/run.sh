#!/usr/bin/env bash
# Run the official MCP conformance suite's *server* scenarios against an
# already-running MCP server.
#
#   e2e/conformance/run.sh URL [--line 0.1|0.2] [extra args for `conformance server`]
#
#   URL        e.g. http://127.0.0.1:8080/mcp  (use localhost/127.0.0.1/[::1]:
#              the dns-rebinding-protection scenario fails on any other host)
#   --line 0.1 (default) @modelcontextprotocol/conformance 0.1.16: every active
#              server scenario for protocol 2025-11-25 (30 scenarios; the 2
#              pending ones, json-schema-2020-12 and server-sse-polling, are
#              not run). No expected-failures baseline.
#   --line 0.2 @modelcontextprotocol/conformance 0.2.0-alpha.12 with
#              `--requirements 2026-07-28`: the frozen 2026-07-28 (stateless)
#              requirement set, 37 scored server scenarios, plus 13 that run
#              but are never scored (tasks extension + 3 pending).
#   extra args are appended verbatim, e.g. `--scenario tools-list` or
#   `--verbose`. On the 0.2 line, --scenario/--suite/--spec-version cannot be
#   combined with --requirements, so in that case the script switches to
#   `--spec-version 2026-07-28` (stateless wire) instead.
#
# Environment:
#   CONFORMANCE_OUTPUT_DIR  where per-scenario checks.json files and suite.log
#                           go (default: a fresh mktemp dir, path is printed)
#   CONFORMANCE_TIMEOUT     wall-clock limit for the whole run in seconds
#                           (default 900; 0.1.16 has no per-scenario timeout)
#
# Exit status: the suite's own (0 = every scored check passed, 1 = at least
# one FAILURE check in a scored scenario; WARNINGs never fail), 124 if the
# run hit CONFORMANCE_TIMEOUT, 2 on usage errors.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
case "$1" in -h | --help) usage ;; esac
url="$1"
shift
[[ "$url" =~ ^https?:// ]] || { echo "run.sh: URL must start with http:// or https:// (got '$url')" >&2; exit 2; }

line="0.1"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --line) [[ $# -ge 2 ]] || usage; line="$2"; shift 2 ;;
    --line=*) line="${1#--line=}"; shift ;;
    *) extra+=("$1"); shift ;;
  esac
done

eval "$("$here/install.sh")"
export PATH="$MCPCLUSTER_NODE22_BIN_DIR:$PATH"

has_extra() { # has_extra --flag...: true if any extra arg is (or starts with) one of them
  local a f
  for a in ${extra[@]+"${extra[@]}"}; do
    for f in "$@"; do [[ "$a" == "$f" || "$a" == "$f="* ]] && return 0; done
  done
  return 1
}

case "$line" in
  0.1)
    suite_js="$MCPCLUSTER_CONFORMANCE_01"
    version="$MCPCLUSTER_CONFORMANCE_01_VERSION"
    select=(--suite active --spec-version 2025-11-25)
    ;;
  0.2)
    suite_js="$MCPCLUSTER_CONFORMANCE_02"
    version="$MCPCLUSTER_CONFORMANCE_02_VERSION"
    if has_extra --scenario --suite --spec-version; then
      if has_extra --spec-version; then select=(); else select=(--spec-version 2026-07-28); fi
    else
      select=(--requirements 2026-07-28)
    fi
    ;;
  *) echo "run.sh: --line must be 0.1 or 0.2 (got '$line')" >&2; exit 2 ;;
esac

out="${CONFORMANCE_OUTPUT_DIR:-}"
if [[ -z "$out" ]]; then
  out="$(mktemp -d "${TMPDIR:-/tmp}/mcpcluster-conformance-$line.XXXXXX")"
fi
mkdir -p "$out"
log="$out/suite.log"

cmd=(node "$suite_js" server --url "$url" "${select[@]+"${select[@]}"}" -o "$out" ${extra[@]+"${extra[@]}"})
echo "== conformance $version (line $line) against $url" >&2
echo "== node $(node --version): ${cmd[*]}" >&2

set +e
timeout --kill-after=10 "${CONFORMANCE_TIMEOUT:-900}" "${cmd[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# Compact digest of every non-passing check, read from the per-scenario
# checks.json files (the 0.1 suite prints no per-check detail in suite mode).
req_yaml="$(dirname "$(dirname "$suite_js")")/requirements/2026-07-28.yaml"
node - "$out" "$req_yaml" "$line" <<'EOF' || true
const fs = require('fs'), path = require('path');
const [out, reqYaml, line] = process.argv.slice(2);
const notScored = new Set();
if (line === '0.2' && fs.existsSync(reqYaml)) {
  const m = fs.readFileSync(reqYaml, 'utf8').split(/^not_scored:/m)[1] || '';
  for (const x of m.matchAll(/scenario:\s*(\S+)/g)) notScored.add(x[1]);
}
// Scenario list and counts come from the suite's own SUMMARY block (a
// scenario that crashed has no checks.json); details from checks.json.
const files = new Map();
for (const d of fs.readdirSync(out).sort()) {
  const f = path.join(out, d, 'checks.json');
  if (!fs.existsSync(f)) continue;
  try { files.set(d.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, ''), JSON.parse(fs.readFileSync(f, 'utf8'))); } catch {}
}
const rows = [];
const logText = fs.existsSync(path.join(out, 'suite.log')) ? fs.readFileSync(path.join(out, 'suite.log'), 'utf8') : '';
const summary = logText.split('=== SUMMARY ===')[1] || '';
for (const m of summary.matchAll(/^[\u2713\u2717] (\S+): (\d+) passed, (\d+) failed$/gmu)) {
  const checks = files.get(m[1]);
  rows.push({ scenario: m[1], checks: checks || [], pass: +m[2], fail: +m[3],
              warn: checks ? checks.filter((c) => c.status === 'WARNING').length : 0, noFile: !checks });
}
if (rows.length === 0) { // single --scenario runs print no SUMMARY block
  for (const [scenario, checks] of files) {
    const count = (st) => checks.filter((c) => c.status === st).length;
    rows.push({ scenario, checks, pass: count('SUCCESS'), fail: count('FAILURE'), warn: count('WARNING') });
  }
}
const clip = (s) => { s = String(s ?? '').replace(/\s+/g, ' '); return s.length > 400 ? s.slice(0, 400) + '...' : s; };
console.log('\n== mcpcluster conformance digest (line ' + line + ')');
let scoredFail = 0;
for (const r of rows) {
  const ns = notScored.has(r.scenario);
  if (r.fail && !ns) scoredFail++;
  const mark = r.fail ? (ns ? '~' : 'FAIL') : 'ok';
  console.log(`${mark.padEnd(4)} ${r.scenario}: ${r.pass} passed, ${r.fail} failed, ${r.warn} warnings${ns ? ' (not scored)' : ''}${r.noFile ? ' (scenario crashed, see suite.log)' : ''}`);
  for (const c of r.checks) {
    if (c.status !== 'FAILURE' && c.status !== 'WARNING') continue;
    console.log(`       ${c.status === 'FAILURE' ? 'x' : '!'} [${c.id}] ${clip(c.errorMessage || c.description)}`);
  }
}
console.log(`== ${rows.length} scenarios, ${scoredFail} scored scenario(s) failing; details: ${out}`);
EOF

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  echo "run.sh: conformance run timed out after ${CONFORMANCE_TIMEOUT:-900}s" >&2
fi
echo "== exit status $rc (log: $log)" >&2
exit "$rc"
