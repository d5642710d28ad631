#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine, without touching the
# host beyond the packages named here (no kernel is installed into /boot, nothing unrelated is
# upgraded).
#
#   scripts/install-deps.sh demo   QEMU, busybox, the kernel (extracted into target/kernel)
#   scripts/install-deps.sh test   the above, plus podman, runc, the peers the bench compares
#                                  with, chromium (renders the boot plot in the QEMU tier), and
#                                  a virtualenv with the python varlink client (target/venv),
#                                  used by the control-socket tests
#
# Idempotent: packages already present are skipped, so a warm machine pays nothing. Installing
# needs root; the kernel extraction and the virtualenv do not.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-test}
case "$what" in demo|test) ;; *) echo "usage: install-deps.sh [demo|test]" >&2; exit 2 ;; esac

"$root/scripts/check-rust.sh"

pkgs=(qemu-system-x86 busybox-static cpio e2fsprogs util-linux kmod)
# chromium: the QEMU tier renders `smctl analyze plot`'s SVG to PNG with it (headless).
[ "$what" = test ] && pkgs+=(podman runc tini dumb-init catatonit python3-venv chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # --no-upgrade: a package already on the host stays at its version.
  apt-get install -y -q --no-install-recommends --no-upgrade "${missing[@]}"
fi

# The kernel and its modules for the QEMU guest, from Debian's package, unpacked (not installed).
"$root/scripts/fetch-kernel.sh" > /dev/null

[ "$what" = test ] || exit 0
# A real, independent varlink client for the control-socket tests, in a project virtualenv
# (Debian's python3 refuses `pip install` outside one: PEP 668). Made with Debian's own
# python3 when it is there, so the tests run against what a user's machine has.
venv=$root/target/venv
if ! "$venv/bin/python3" -c 'import varlink' 2>/dev/null; then
  py=/usr/bin/python3
  [ -x "$py" ] || py=$(command -v python3)
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check varlink
fi
