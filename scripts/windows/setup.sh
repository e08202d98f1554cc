#!/usr/bin/env bash
# Prepares this machine for the Windows suite (scripts/windows/test.sh), idempotently: on a
# fresh Debian 12 it installs mingw-w64, Wine and wixl, adds Rust's x86_64-pc-windows-gnu
# target, creates the suite's Wine prefix (scripts/windows/env.sh says where) and installs
# the ProcessPrng shim in it; a second run only checks. Ends by starting a Rust exe in the
# prefix, so a broken prefix fails here with a clear message, not in the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=env.sh
. ./env.sh

# --- Packages (Debian's): the cross C toolchain (Rust's windows-gnu linker; rusqlite's
# bundled SQLite), Wine (64-bit only: nothing here is 32-bit), wixl (the MSI).
missing=()
for p in gcc-mingw-w64-x86-64 wine64 wine wixl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
  echo "== rustup target add x86_64-pc-windows-gnu"
  rustup target add x86_64-pc-windows-gnu
fi

# --- The prefix: created once (about 10 s). wineboot leaves a wineserver running until
# the registry is written; wait for it so the checks below see a finished prefix.
if [ ! -f "$WINEPREFIX/system.reg" ] || [ ! -d "$WINEPREFIX/drive_c/windows/system32" ]; then
  echo "== creating the Wine prefix $WINEPREFIX (wineboot -i)"
  mkdir -p "$WINEPREFIX"
  # Without wine32, wineboot reports that syswow64's rundll32 cannot start: harmless
  # for a 64-bit-only prefix, so its output is kept out of the way unless it fails.
  if ! wineboot -i >"$SR_TARGET_DIR/wineboot.log" 2>&1; then
    cat "$SR_TARGET_DIR/wineboot.log" >&2
    echo "setup: wineboot -i failed for $WINEPREFIX" >&2
    exit 1
  fi
  wineserver -w
fi

# --- The ProcessPrng shim. Wine 8 has no bcryptprimitives.dll at all, and Rust's std
# (1.78+) imports ProcessPrng from it: without this DLL every Rust exe dies at load with
# c0000135 (STATUS_DLL_NOT_FOUND). Rebuilt when its source changes; installed in the
# prefix's system32, where every process in the prefix (services started by Wine's
# services.exe too) finds it, with a native-first override in the prefix's registry so a
# later Wine's builtin (Wine 9 ships one) never shadows it halfway through a run.
shim_dir="$SR_TARGET_DIR/wine-shim"
shim="$shim_dir/bcryptprimitives.dll"
mkdir -p "$shim_dir"
if [ ! -f "$shim" ] || [ bcryptprimitives.c -nt "$shim" ] || [ bcryptprimitives.def -nt "$shim" ]; then
  echo "== building the ProcessPrng shim (bcryptprimitives.dll)"
  x86_64-w64-mingw32-gcc -O2 -Wall -Wextra -Werror -shared -s \
    -o "$shim.tmp" bcryptprimitives.c bcryptprimitives.def -lbcrypt
  mv -f "$shim.tmp" "$shim"
fi
sys32="$WINEPREFIX/drive_c/windows/system32"
if ! cmp -s "$shim" "$sys32/bcryptprimitives.dll"; then
  echo "== installing the shim into $sys32"
  cp -f "$shim" "$sys32/bcryptprimitives.dll.tmp"
  mv -f "$sys32/bcryptprimitives.dll.tmp" "$sys32/bcryptprimitives.dll"
fi
if ! grep -q '^"bcryptprimitives"="native,builtin"' "$WINEPREFIX/user.reg" 2>/dev/null; then
  echo "== DLL override bcryptprimitives=native,builtin (prefix registry)"
  wine reg add 'HKCU\Software\Wine\DllOverrides' /v bcryptprimitives /d native,builtin /f >/dev/null
  # The registry reaches user.reg when the wineserver saves it.
  wineserver -w
fi

# --- Check: a Rust exe starts and std's RNG works.
check="$shim_dir/prng-check.exe"
if [ ! -f "$check" ] || [ prng-check.rs -nt "$check" ]; then
  rustc --edition 2021 -O --target x86_64-pc-windows-gnu -C linker=x86_64-w64-mingw32-gcc \
    -o "$check" prng-check.rs
fi
if ! out="$(wine "$check" 2>&1)" || [ "$(printf '%s' "$out" | tr -d '\r')" != "ProcessPrng ok" ]; then
  echo "setup: a Rust exe does not start in $WINEPREFIX (output: $out)" >&2
  echo "setup: is $sys32/bcryptprimitives.dll the shim? try WINEDEBUG=+loaddll wine $check" >&2
  exit 1
fi
echo "== Wine prefix ready: $WINEPREFIX ($(wine --version))"
