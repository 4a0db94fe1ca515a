#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30): `make fuzz` (FUZZ_SECONDS), and a
# short pass in `make test` (fuzz-smoke). Each target starts from its checked-in seeds
# (node/fuzz/seeds/<target>) plus what earlier runs found (node/fuzz/corpus/<target>, ignored
# by git); http_conn also gets a dictionary of HTTP tokens. A crash fails the run and leaves
# the input in node/fuzz/artifacts/<target>/ (replay: cargo +nightly fuzz run <target> FILE).
#
#   node/fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs: the nightly toolchain (installed with rustup when missing) and cargo-fuzz, built once
# into ~/.cache/mcpcluster/cargo-fuzz-<version>.
set -euo pipefail
seconds="${1:-30}"
shift || true
here="$(cd "$(dirname "$0")" && pwd)"
version=0.13.2
all=(http_conn peer_frames peer_wire custody_wire config mcp_post_body jsonrpc_envelope small_parsers upstream_sse repeat_body)
[[ $# -gt 0 ]] && targets=("$@") || targets=("${all[@]}")

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; installing it (rustup toolchain install nightly --profile minimal)"
  if ! rustup toolchain install nightly --profile minimal; then
    echo "fuzz: ERROR: cargo-fuzz needs the nightly toolchain (-Zsanitizer); install it with" >&2
    echo "      rustup toolchain install nightly --profile minimal" >&2
    exit 1
  fi
fi
root="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/cargo-fuzz-$version"
if [[ ! -x "$root/bin/cargo-fuzz" ]]; then
  echo "fuzz: installing cargo-fuzz $version into $root"
  cargo install cargo-fuzz --version "$version" --locked --root "$root"
fi
export PATH="$root/bin:$PATH"
cd "$here/.."
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  dict=()
  [[ -f "fuzz/dict/$t.dict" ]] && dict=("-dict=fuzz/dict/$t.dict")
  seeds=()
  [[ -d "fuzz/seeds/$t" ]] && seeds=("fuzz/seeds/$t")
  echo "== fuzz $t for ${seconds}s"
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}"; then
    failed+=("$t")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in node/fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
