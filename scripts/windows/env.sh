# shellcheck shell=bash
# Sourced by the Windows-suite scripts (setup.sh, test.sh, run-under-wine.sh): the Wine
# prefix the suite runs in, and how cargo builds and runs the x86_64-pc-windows-gnu target.
# Nothing here is committed cargo configuration, so Linux builds never see it.
#
# The prefix is per checkout (under the target directory) unless
# $SQLITE_REPLICATE_WINEPREFIX names one: its registry holds the services the tests install,
# and one wineserver serves one prefix, so two checkouts testing at once must not share it.
SR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SR_TARGET_DIR="${CARGO_TARGET_DIR:-$SR_ROOT/target}"
export WINEPREFIX="${SQLITE_REPLICATE_WINEPREFIX:-$SR_TARGET_DIR/wine}"
export WINEARCH=win64
# Wine's own fixme/err chatter would drown the test output; WINEDEBUG=... overrides.
export WINEDEBUG="${WINEDEBUG:--all}"
# No Mono or Gecko install prompts (no .NET or HTML in this suite).
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$SR_ROOT/scripts/windows/run-under-wine.sh"
# Where `cargo build --target x86_64-pc-windows-gnu` puts the exes the end-to-end tests run.
export SQLITE_REPLICATE_WINDOWS_BIN="$SR_TARGET_DIR/x86_64-pc-windows-gnu/debug"
