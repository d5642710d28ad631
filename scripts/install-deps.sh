#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine (run as root).
# Idempotent: packages already present are skipped, so a warm machine pays nothing.
set -euo pipefail

pkgs=(qemu-system-x86 linux-image-amd64 busybox-static cpio e2fsprogs util-linux podman runc
      tini dumb-init catatonit python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A real, independent varlink client for the control-socket tests.
python3 -c 'import varlink' 2>/dev/null || python3 -m pip install -q varlink
