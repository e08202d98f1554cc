#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while (default 60 s each); scripts/test.sh runs
# it briefly after the tests, longer runs are by hand (e.g. scripts/fuzz.sh 3600).
# Usage: scripts/fuzz.sh [SECONDS]
# Environment: FUZZ_TARGET_DIR overrides the build directory (default fuzz/target);
# FUZZ_STABLE=1 uses the stable toolchain even when nightly is installed.
# Exits non-zero when a target finds a crash, a panic, a leak or a timeout (libFuzzer's
# exit status); the reproducer is left in fuzz/artifacts/<target>/ and named in the output.
# Uses nightly when installed (sanitizers); else the stable toolchain without sanitizers.
# Installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
toolchain=+nightly
sanitizer=()
if [ -n "${FUZZ_STABLE:-}" ] || ! rustup run nightly rustc --version >/dev/null 2>&1; then
  # Without nightly, cargo-fuzz still works on a stable toolchain with RUSTC_BOOTSTRAP,
  # but stable ships no sanitizer runtimes: fuzz with coverage only (the code under test
  # has no unsafe code; panics, hangs and out-of-bounds reads are still caught).
  toolchain=
  sanitizer=(-s none)
  export RUSTC_BOOTSTRAP=1
fi
target_dir=()
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$FUZZ_TARGET_DIR")
fi
# One build for every target (they share their dependencies), timed apart from the runs.
t0=$(date +%s)
echo "== cargo fuzz build (${toolchain:-stable${sanitizer:+, no sanitizer}})"
cargo $toolchain fuzz build "${sanitizer[@]}" --release "${target_dir[@]}"
echo "== fuzz build took $(( $(date +%s) - t0 ))s"
mkdir -p fuzz/artifacts
for target in $(cargo $toolchain fuzz list); do
  echo "== fuzz $target for ${secs}s"
  log="fuzz/artifacts/$target.log"
  # -timeout: one input running this long is a hang (a failure), not a slow machine's
  # hiccup; the targets decode at most a few MB per input.
  if ! cargo $toolchain fuzz run "${sanitizer[@]}" --release "${target_dir[@]}" "$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "== fuzz $target FAILED: the reproducer is in fuzz/artifacts/$target/ (full log: $log)"
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs)' "$log" | tr '\n' ' '
  echo
done
echo "== fuzz: every target ran ${secs}s without a failure ($(( $(date +%s) - t0 ))s in all)"
