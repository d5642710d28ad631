#!/usr/bin/env bash
# Boots the image built by initramfs/build.sh in QEMU, serial console on this terminal.
# Used by scripts/demo and by the tier-5 tests (tests/tests/qemu.rs), so both boot the same way.
#
#   initramfs/run-qemu.sh [options] [-- extra qemu args]
#     -c PATH        config inside the guest: adds smss.config=PATH to the kernel command line
#     -a ARGS        extra kernel command line (e.g. "smss.log=debug")
#     -n             -no-reboot: a guest reboot (or bugcheck with action reboot) exits QEMU
#     -d DISK        disk image for /dev/vda (default: the one from build.env; it is modified:
#                    copy it first to keep a pristine one)
#     -s CHARDEV     where ttyS1 goes (QEMU -serial syntax, e.g. file:/tmp/ttyS1.log; default null)
#     -b BUS         the disk's bus: virtio (default, /dev/vda), scsi (virtio-scsi, /dev/sda),
#                    usb (usb-storage on xhci, /dev/sda), nvme (/dev/nvme0n1)
#   Environment: KERNEL, INITRD, DISK (default from target/initramfs/build.env), QEMU_MEM (512),
#   APPEND (replaces the base command line), QEMU (binary).
# QEMU: Ctrl-A X quits, Ctrl-A C toggles the monitor.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
env_file=${BUILD_ENV:-$root/target/initramfs/build.env}
if [ -f "$env_file" ]; then
  # shellcheck disable=SC1090
  saved_kernel=${KERNEL:-} saved_initrd=${INITRD:-} saved_disk=${DISK:-}
  . "$env_file"
  KERNEL=${saved_kernel:-$KERNEL} INITRD=${saved_initrd:-$INITRD} DISK=${saved_disk:-$DISK}
fi
: "${KERNEL:?no KERNEL (run initramfs/build.sh first)}" "${INITRD:?no INITRD (run initramfs/build.sh first)}"

config='' extra='' noreboot=() serial2=null bus=virtio
while getopts 'c:a:nd:s:b:' opt; do
  case $opt in
    c) config=$OPTARG ;;
    a) extra="$extra $OPTARG" ;;
    n) noreboot=(-no-reboot) ;;
    d) DISK=$OPTARG ;;
    s) serial2=$OPTARG ;;
    b) bus=$OPTARG ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift

# panic=-1: a kernel panic reboots at once, which -no-reboot turns into QEMU exiting.
# loglevel=4: kernel chatter off the console; smss's own lines still show.
append=${APPEND:-console=ttyS0 panic=-1 loglevel=4}
[ -n "$config" ] && append="$append smss.config=$config"
append="$append$extra"

drive=()
if [ -n "${DISK:-}" ]; then
  case $bus in
    virtio) drive=(-drive "file=$DISK,if=virtio,format=raw") ;;
    scsi) drive=(-device virtio-scsi-pci,id=scsi0 -drive "file=$DISK,if=none,id=d0,format=raw"
                 -device scsi-hd,drive=d0,bus=scsi0.0) ;;
    usb) drive=(-device qemu-xhci,id=xhci -drive "file=$DISK,if=none,id=d0,format=raw"
                -device usb-storage,drive=d0,bus=xhci.0) ;;
    nvme) drive=(-drive "file=$DISK,if=none,id=d0,format=raw" -device nvme,drive=d0,serial=smss0) ;;
    *) echo "run-qemu.sh: unknown bus $bus (virtio, scsi, usb, nvme)" >&2; exit 2 ;;
  esac
fi

exec "${QEMU:-qemu-system-x86_64}" -accel tcg -m "${QEMU_MEM:-512}" -smp 1 -nographic -nic none \
  -serial mon:stdio -serial "$serial2" \
  -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
  "${drive[@]}" "${noreboot[@]}" "$@"
