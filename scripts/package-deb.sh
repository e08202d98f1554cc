#!/usr/bin/env bash
# Builds the Debian package of sqlite-replicate with dpkg-deb (Debian's own tool; no
# cargo-deb to install): the binary, the hardened systemd unit, /etc/sqlite-replicate.yml
# as a conffile, the man pages and the bash/zsh/fish completions (generated from the clap
# definition into deploy/, kept in sync by a test).
#
# Usage: scripts/package-deb.sh [BINARY [OUT_DIR]]
#   BINARY   default target/release/sqlite-replicate (build it first:
#            cargo build --release --bin sqlite-replicate)
#   OUT_DIR  default target/debian
# Prints the path of the .deb it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-target/release/sqlite-replicate}"
out="${2:-target/debian}"
name=sqlite-replicate
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
[ -x "$bin" ] || { echo "no executable at $bin: build it first" >&2; exit 1; }

mkdir -p "$out"
stage="$(mktemp -d "$out/stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/${name}_${version}_${arch}"

install -D -m 0755 "$bin" "$root/usr/bin/$name"
strip --strip-unneeded "$root/usr/bin/$name"
install -D -m 0644 deploy/debian/$name.service "$root/lib/systemd/system/$name.service"
install -D -m 0644 deploy/debian/$name.yml "$root/etc/$name.yml"
for page in deploy/man/*.1; do
  install -D -m 0644 "$page" "$root/usr/share/man/man1/$(basename "$page")"
  gzip -9n "$root/usr/share/man/man1/$(basename "$page")"
done
install -D -m 0644 deploy/completions/$name.bash "$root/usr/share/bash-completion/completions/$name"
install -D -m 0644 deploy/completions/_$name "$root/usr/share/zsh/vendor-completions/_$name"
install -D -m 0644 deploy/completions/$name.fish "$root/usr/share/fish/vendor_completions.d/$name.fish"
install -d -m 0755 "$root/usr/share/doc/$name"
license="$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -1)"
printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\n\nFiles: *\nLicense: %s\n' \
  "$name" "${license:-unknown}" > "$root/usr/share/doc/$name/copyright"

install -d -m 0755 "$root/DEBIAN"
size_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: sqlite-replicate developers <sqlite-replicate@localhost>
Installed-Size: $size_kb
Depends: libc6 (>= 2.34), adduser
Section: database
Priority: optional
Description: continuous replication and verified restore for SQLite
 Streams SQLite databases to S3-compatible stores, Azure Blob Storage, Google
 Cloud Storage, SFTP or a directory, in Litestream's replica layout, and restores
 them. Ships a hardened systemd unit (sqlite-replicate.service) that runs
 "replicate" with /etc/sqlite-replicate.yml as its own user.
CONTROL
echo "/etc/$name.yml" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd sqlite-replicate >/dev/null; then
    adduser --system --group --home /var/lib/sqlite-replicate --no-create-home \
      --quiet sqlite-replicate
  fi
  # The config may hold credentials: readable by root and the service only.
  chown root:sqlite-replicate /etc/sqlite-replicate.yml
  chmod 0640 /etc/sqlite-replicate.yml
  # Not started here: the service needs a config that names databases, and write access
  # to them (see the unit). Reload units where systemd runs.
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
  fi
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  # A stop makes `replicate` sync a last time.
  systemctl stop sqlite-replicate.service >/dev/null 2>&1 || true
  systemctl disable sqlite-replicate.service >/dev/null 2>&1 || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
# The user stays on purge: files it owned (replication state) may outlive the package.
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
