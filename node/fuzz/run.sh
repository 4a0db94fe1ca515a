#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30). Installs cargo-fuzz once into
# ~/.cache/mcpcluster/cargo-fuzz-<version>; needs the nightly toolchain (rustup).
set -euo pipefail
seconds="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
version=0.13.2
root="${XDG_CACHE_HOME:-$HOME/.cache}/mcpcluster/cargo-fuzz-$version"
if [[ ! -x "$root/bin/cargo-fuzz" ]]; then
  echo "installing cargo-fuzz $version into $root"
  cargo install cargo-fuzz --version "$version" --locked --root "$root"
fi
export PATH="$root/bin:$PATH"
cd "$here/.."
targets=(jsonrpc_envelope mcp_post_body small_parsers)
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10
done
echo "fuzz: ${#targets[@]} passed, 0 failed"
