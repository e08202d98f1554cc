#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while (default 60 s each).
# Usage: scripts/fuzz.sh [SECONDS]
# Needs a nightly toolchain for cargo-fuzz's sanitizers; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
toolchain=+nightly
sanitizer=()
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  # Without nightly, cargo-fuzz still works on a stable toolchain with RUSTC_BOOTSTRAP,
  # but stable ships no sanitizer runtimes: fuzz with coverage only (the code under test
  # has no unsafe code; panics, hangs and out-of-bounds reads are still caught).
  toolchain=
  sanitizer=(-s none)
  export RUSTC_BOOTSTRAP=1
fi
for target in $(cargo $toolchain fuzz list); do
  echo "== fuzz $target for ${secs}s"
  cargo $toolchain fuzz run "${sanitizer[@]}" --release "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
