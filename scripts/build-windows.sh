#!/usr/bin/env bash
# Builds sqlite-replicate.exe for x86_64-pc-windows-gnu (release) and its MSI with
# Debian's wixl (packaging/windows/sqlite-replicate.wxs).
#
#   scripts/build-windows.sh [OUT_DIR]      (default: target/windows-dist)
#
# Needs: rustup target x86_64-pc-windows-gnu, gcc-mingw-w64-x86-64 (linker, windmc,
# windres for the Event Log message table), wixl (scripts/windows/setup.sh installs them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/target/windows-dist}"
export CARGO_INCREMENTAL=0
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}"
for tool in x86_64-w64-mingw32-gcc x86_64-w64-mingw32-windmc x86_64-w64-mingw32-windres wixl; do
  command -v "$tool" >/dev/null || { echo "build-windows: $tool is missing (run scripts/windows/setup.sh)" >&2; exit 2; }
done
cd "$root"
cargo build --release --target x86_64-pc-windows-gnu -p sqlite-replicate
exe="${CARGO_TARGET_DIR:-$root/target}/x86_64-pc-windows-gnu/release/sqlite-replicate.exe"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
mkdir -p "$out"
cp "$exe" "$out/sqlite-replicate.exe"
cp packaging/windows/sqlite-replicate.yml packaging/windows/sqlite-replicate.wxs "$out/"
# wixl takes File sources relative to the current directory.
(cd "$out" && wixl -a x64 -D Version="$version" -o sqlite-replicate.msi sqlite-replicate.wxs)
echo "built $out/sqlite-replicate.exe and $out/sqlite-replicate.msi"
