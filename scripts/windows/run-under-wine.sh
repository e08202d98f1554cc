#!/usr/bin/env bash
# cargo's runner for x86_64-pc-windows-gnu (scripts/windows/env.sh sets
# CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER to this file): runs a Windows exe under Wine
# in the suite's prefix, passing its arguments and exit status through.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  echo "run-under-wine: no prepared Wine prefix at $WINEPREFIX (Rust exes need its ProcessPrng shim); run scripts/windows/setup.sh first" >&2
  exit 2
fi
exec wine "$@"
