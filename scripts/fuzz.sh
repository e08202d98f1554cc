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
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  # Without nightly, cargo-fuzz still works with RUSTC_BOOTSTRAP on a stable toolchain.
  toolchain=
  export RUSTC_BOOTSTRAP=1
fi
for target in $(cargo $toolchain fuzz list); do
  echo "== fuzz $target for ${secs}s"
  cargo $toolchain fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done
