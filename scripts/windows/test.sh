#!/usr/bin/env bash
# The Windows suite, under Wine (called by scripts/test.sh after the Linux tests; runs on
# its own too): prepares the machine and the Wine prefix (setup.sh), cross-builds
# sqlite-replicate.exe, winwriter.exe and the VFS extension's sqlite_replicate_vfs.dll for
# x86_64-pc-windows-gnu, runs ltx's and the
# engine's tests built for Windows under Wine (cargo's runner: run-under-wine.sh), then the
# end-to-end tests (crates/cli/tests/it/windows.rs and winsvc.rs: the Linux test binary
# drives the Windows exes, the service and the MSI under Wine, and Garage on loopback). Prints its own run time.
# Debug builds throughout: the exes share their dependencies with the test builds, so the
# x86_64-pc-windows-gnu tree is compiled once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
started=$(date +%s)

scripts/windows/setup.sh
# shellcheck source=env.sh
. scripts/windows/env.sh

# One persistent wineserver for the whole run: Wine's service manager needs one that
# outlives its clients, and each exe then starts in about 0.1 s instead of 1.5 s. Stopped
# at the end, pass or fail (it serves only this checkout's prefix).
# setup.sh's own short-lived server (it lingers 3 s) is stopped first: `wineserver -p`
# refuses to start beside it. The server is detached from our stdout and stderr, or a pipe
# from this script (`| tee`) would stay open until it exits.
wineserver -k 2>/dev/null || true
wineserver -w
wineserver -p </dev/null >/dev/null 2>&1
trap 'wineserver -k 2>/dev/null || true' EXIT
# Wine's system processes (services.exe, plugplay.exe, rpcss.exe, ...) start with the first
# exe and live as long as the server, holding that exe's stdout and stderr: start them from
# one detached from ours too. The services they start (ours, in it::winsvc) inherit that
# environment and stderr: Wine 8 writes the Event Log only to its debug channels, so
# `eventlog` (each event's strings, its type as trace/warn/err) and `fixme+advapi`
# (RegisterEventSourceW's source, ReportEventW's type and event ID) go to a file the tests
# read ($SQLITE_REPLICATE_WINE_SERVICES_LOG), with the services' own stderr.
export SQLITE_REPLICATE_WINE_SERVICES_LOG="$SR_TARGET_DIR/wine-services.log"
WINEDEBUG=-all,+eventlog,fixme+advapi wine "$SR_TARGET_DIR/wine-shim/prng-check.exe" \
  </dev/null >/dev/null 2>"$SQLITE_REPLICATE_WINE_SERVICES_LOG"

echo "== windows: cargo build --target x86_64-pc-windows-gnu (sqlite-replicate.exe, winwriter.exe, sqlite_replicate_vfs.dll)"
# One command: built alone, the VFS (a library: its DLL, which winwriter loads in
# it::windows) would unify dependency features differently and compile the tree twice.
cargo build --target x86_64-pc-windows-gnu --quiet -p sqlite-replicate -p winwriter -p sqlite-replicate-vfs
echo "== windows: ltx and engine tests, built for Windows, under Wine"
cargo test --target x86_64-pc-windows-gnu --quiet -p ltx -p engine 2>&1 | tee "$SR_TARGET_DIR/windows-unit-output.txt"
echo "== windows: end-to-end tests under Wine (it windows:: winsvc:: -- --ignored)"
cargo test --quiet -p sqlite-replicate --test it -- --ignored windows:: winsvc:: 2>&1 | tee "$SR_TARGET_DIR/windows-e2e-output.txt"

echo "== Windows suite passed in $(( $(date +%s) - started ))s"
