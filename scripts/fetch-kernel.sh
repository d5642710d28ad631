#!/usr/bin/env bash
# Puts Debian's current amd64 kernel and its modules under target/kernel/ without installing the
# package: `apt-get download` + `dpkg-deb -x`, then `depmod -b` for modules.dep and
# modules.alias. Nothing goes into /boot or /lib/modules. Prints the kernel image's path.
# KERNEL=PATH in the environment skips all of this (your own kernel).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/target/kernel
die() { echo "fetch-kernel: $*" >&2; exit 1; }

if [ -n "${KERNEL:-}" ]; then echo "$KERNEL"; exit 0; fi
existing=$(ls "$dest"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)
if [ -n "$existing" ]; then
  kver=${existing##*/vmlinuz-}
  if [ -f "$dest/lib/modules/$kver/modules.dep" ]; then echo "$existing"; exit 0; fi
fi

command -v apt-get > /dev/null || die "needs apt-get (Debian) or KERNEL=/path/to/vmlinuz"
command -v depmod > /dev/null || die "needs depmod (apt-get install kmod)"
# linux-image-amd64 is a metapackage; its dependency names the real image package.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -q >&2
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
fi
[ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 (run apt-get update as root)"

dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
# apt downloads as its own user where it can (else it warns and downloads as root).
if [ "$(id -u)" = 0 ] && id _apt > /dev/null 2>&1; then chown _apt "$dl"; fi
echo "fetch-kernel: downloading $pkg (not installing it)" >&2
(cd "$dl" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
dpkg-deb -x "$dl"/*.deb "$dest.tmp"
kernel=$(ls "$dest.tmp"/boot/vmlinuz-* | sort -V | tail -n1)
kver=${kernel##*/vmlinuz-}
# Debian's package ships /lib/modules/KVER (usrmerge may put it under usr/lib).
if [ ! -d "$dest.tmp/lib/modules/$kver" ] && [ -d "$dest.tmp/usr/lib/modules/$kver" ]; then
  mkdir -p "$dest.tmp/lib/modules"
  mv "$dest.tmp/usr/lib/modules/$kver" "$dest.tmp/lib/modules/"
fi
depmod -b "$dest.tmp" "$kver"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest/boot/vmlinuz-$kver"
