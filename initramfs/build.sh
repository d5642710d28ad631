#!/usr/bin/env bash
# Builds the demo machine: a gzip'd newc initramfs whose /init is the static smss, and a small ext4
# disk for /var. Idempotent: everything is rebuilt from scratch under $OUT on every run.
#
# Outputs (default OUT=target/initramfs):
#   initramfs.cpio.gz   the initramfs
#   disk.img            256 MiB ext4 (label smssvar) holding /var/lib/smss/pending-renames
#   build.env           KERNEL=, KVER=, INITRD=, DISK= for run-qemu.sh and the tests
#
# Environment knobs:
#   KERNEL=PATH        kernel image (default: Debian's kernel unpacked into target/kernel by
#                      scripts/fetch-kernel.sh; modules from the same tree, else /lib/modules)
#   MODDIR=DIR         that kernel's modules directory (with modules.dep)
#   CONFIG=PATH        config embedded as /etc/smss/smss.toml (default: initramfs/smss.toml)
#   SMSS_BIN_DIR=DIR   take smss, smctl, smss-session from DIR instead of running build-static.sh
#   MODULES="a b"      extra kernel modules to include (the configs' boot-drivers and kmode lists
#                      and their volumes' file systems are always included, with their
#                      modules.dep dependencies and modules.softdep pre: modules)
#   COLDPLUG_MODULES="a b"  disk drivers coldplug may need (default: virtio, virtio-scsi + sd_mod,
#                      NVMe, AHCI, usb-storage/uas and the USB host controllers); "" for none
#   INIT=PATH          debugging only: make /init this file instead of smss (plumbing checks)
#   OUT=DIR            output directory
#
# Image layout (why): the kernel execs /init, a symlink to /sbin/smss. smss finds smss-session
# next to its own executable (/proc/self/exe resolves the symlink to /sbin/smss), so
# smss-session lives in /sbin too; /usr/bin/smss-session and /usr/bin/smctl are symlinks for PATH
# users. busybox provides the shell, getty and tools; e2fsck (dynamic, with its libraries) is the
# BootExecute "autochk".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$root/target/initramfs}
CONFIG=${CONFIG:-$here/smss.toml}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "initramfs/build.sh: $*" >&2; exit 1; }

# --- kernel -------------------------------------------------------------------------------------
if [ -z "${KERNEL:-}" ]; then
  KERNEL=$("$root/scripts/fetch-kernel.sh") || die "no kernel: run scripts/install-deps.sh demo, or set KERNEL="
fi
[ -r "$KERNEL" ] || die "kernel $KERNEL is not readable"
KVER=${KVER:-$(basename "$KERNEL" | sed -n 's/^vmlinuz-//p')}
if [ -z "$KVER" ]; then
  KVER=$(file -b "$KERNEL" | sed -n 's/.*version \([^ ]*\).*/\1/p')
fi
if [ -z "${MODDIR:-}" ]; then
  # A kernel unpacked into a tree (target/kernel/boot/vmlinuz-*) has its modules beside it.
  MODDIR=$(cd "$(dirname "$KERNEL")/.." && pwd)/lib/modules/$KVER
  [ -d "$MODDIR" ] || MODDIR=/lib/modules/$KVER
fi
[ -f "$MODDIR/modules.dep" ] || die "no $MODDIR/modules.dep for kernel $KVER (set MODDIR=)"

# --- binaries -----------------------------------------------------------------------------------
if [ -z "${SMSS_BIN_DIR:-}" ]; then
  SMSS_BIN_DIR=$("$root/scripts/build-static.sh" | tail -n1)
fi
for b in smss smctl smss-session; do
  [ -x "$SMSS_BIN_DIR/$b" ] || die "$SMSS_BIN_DIR/$b missing (run scripts/build-static.sh)"
done
file -L "$BUSYBOX" | grep -q 'statically linked' || die "$BUSYBOX is not static (apt-get install busybox-static)"

# --- staging tree -------------------------------------------------------------------------------
stage=$OUT/root
rm -rf "$stage" "$OUT/disk-root"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/libexec/smss,etc/smss,lib,proc,sys,dev,run,tmp,var,root,mnt}
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"

install -m 0755 "$SMSS_BIN_DIR/smss" "$stage/sbin/smss"
install -m 0755 "$SMSS_BIN_DIR/smss-session" "$stage/sbin/smss-session"
install -m 0755 "$SMSS_BIN_DIR/smctl" "$stage/sbin/smctl"
ln -s ../../sbin/smss-session "$stage/usr/bin/smss-session"
ln -s ../../sbin/smctl "$stage/usr/bin/smctl"
if [ -n "${INIT:-}" ]; then
  echo "initramfs/build.sh: WARNING: /init is $INIT, not smss (plumbing check only)" >&2
  install -m 0755 "$INIT" "$stage/init"
else
  ln -s sbin/smss "$stage/init"
fi

# busybox and its applets (init/linuxrc left out: /init is smss and nothing else may pose as init)
install -m 0755 "$BUSYBOX" "$stage/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
  case "$applet" in sbin/init|linuxrc|bin/busybox) continue ;; esac
  [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ] && continue
  mkdir -p "$stage/$(dirname "$applet")"
  ln -s /bin/busybox "$stage/$applet"
done

# e2fsck as the BootExecute checker (Windows: autochk). Dynamic, so its libraries come along.
if [ -x /sbin/e2fsck ]; then
  install -m 0755 /sbin/e2fsck "$stage/sbin/e2fsck"
  ln -sf e2fsck "$stage/sbin/fsck.ext4"
  ldd /sbin/e2fsck | grep -o '/[^ ]*' | while read -r lib; do
    real=$(readlink -f "$lib")
    mkdir -p "$stage/$(dirname "$lib")" "$stage/$(dirname "$real")"
    [ -e "$stage/$real" ] || install -m 0755 "$real" "$stage/$real"
    [ "$lib" = "$real" ] || [ -e "$stage/$lib" ] || ln -s "$real" "$stage/$lib"
  done
fi

# configuration, demo programs, the probe
install -m 0644 "$CONFIG" "$stage/etc/smss/smss.toml"
for extra in "$here"/configs/*.toml; do
  [ -e "$extra" ] && install -m 0644 "$extra" "$stage/etc/smss/$(basename "$extra")"
done
install -m 0755 "$here/probe.sh" "$stage/usr/libexec/smss/probe"
ln -s ../libexec/smss/probe "$stage/usr/bin/probe"
for prog in "$here"/libexec/*; do
  install -m 0755 "$prog" "$stage/usr/libexec/smss/$(basename "$prog")"
done
cp -a "$here/etc/." "$stage/etc/"
ln -s /proc/self/mounts "$stage/etc/mtab"   # e2fsck and mount(8) look here

# --- kernel modules -----------------------------------------------------------------------------
# What smss may load: the configs' [boot-drivers] modules and [subsystems] kmode (a missing one is
# an error), the file systems of their [[volumes]], MODULES, and the drivers coldplug may need for
# a disk (COLDPLUG_MODULES, skipped when the kernel lacks them), each with what modules.dep says
# it needs and its modules.softdep "pre:" modules (ext4 -> crypto-crc32c). modules.dep and
# modules.alias are trimmed to the included modules so smss sees consistent files.
COLDPLUG_MODULES=${COLDPLUG_MODULES-virtio_pci virtio_blk virtio_scsi sd_mod nvme ahci usb_storage uas xhci_pci ehci_pci uhci_hcd ohci_pci}
read -r wanted fstypes < <(python3 - "$CONFIG" "$here"/configs/*.toml <<'PY'
import sys, tomllib
names, fs = [], []
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        continue
    names += cfg.get("boot-drivers", {}).get("modules", [])
    names += cfg.get("subsystems", {}).get("kmode", [])
    fs += [v.get("fstype", "") for v in cfg.get("volumes", []) if v.get("fstype")]
print(",".join(dict.fromkeys(names)) or "-", ",".join(dict.fromkeys(fs)) or "-")
PY
)
[ "$wanted" = - ] && wanted=""
[ "$fstypes" = - ] && fstypes=""
wanted="${wanted//,/ } ${MODULES:-}"
optional="${fstypes//,/ } $COLDPLUG_MODULES"
norm() { basename "$1" | sed -E 's/\.ko(\.(xz|zst|gz))?$//; s/-/_/g'; }
declare -A paths=()
# add NAME REQUIRED: the module (by name, else by exact alias such as fs-ext4 or crypto-crc32c)
# with its dependencies and soft pre-dependencies.
add() {
  local name=$1 required=$2 n line p pre a
  n=$(echo "$name" | tr - _)
  line=$(awk -F: -v n="$n" '{ b=$1; sub(/.*\//, "", b); sub(/\.ko(\.(xz|zst|gz))?$/, "", b);
           gsub(/-/, "_", b); if (b == n) { print; exit } }' "$MODDIR/modules.dep")
  if [ -z "$line" ]; then
    if grep -Eq "/${n//_/[-_]}\.ko" "$MODDIR/modules.builtin"; then return 0; fi
    for a in $(awk -v a="$name" '$1 == "alias" && $2 == a { print $3 }' "$MODDIR/modules.alias"); do
      add "$a" 0
    done
    [ -n "$a" ] && return 0
    [ "$required" = 1 ] && die "module $name not found in $MODDIR/modules.dep"
    echo "initramfs/build.sh: note: no module $name in $KVER, not included" >&2
    return 0
  fi
  [ -n "${paths[${line%%:*}]:-}" ] && return 0
  for p in ${line%%:*} ${line#*:}; do
    paths[$p]=1
    [ -f "$MODDIR/modules.softdep" ] || continue
    for pre in $(awk -v m="$(norm "$p")" '$1 == "softdep" { x=$2; gsub(/-/, "_", x); if (x != m) next;
                   on=0; for (i = 3; i <= NF; i++) { if ($i == "pre:") on=1; else if ($i == "post:") on=0;
                   else if (on) print $i } }' "$MODDIR/modules.softdep"); do
      add "$pre" 0
    done
  done
}
for name in $wanted; do add "$name" 1; done
for name in $optional; do add "$name" 0; done
mdst=$stage/lib/modules/$KVER
mkdir -p "$mdst"
: > "$mdst/modules.dep"
for p in "${!paths[@]}"; do
  mkdir -p "$mdst/$(dirname "$p")"
  install -m 0644 "$MODDIR/$p" "$mdst/$p"
  grep -F "$p:" "$MODDIR/modules.dep" | awk -F: -v p="$p" '$1 == p' >> "$mdst/modules.dep"
done
sort -o "$mdst/modules.dep" "$mdst/modules.dep"
for f in modules.builtin modules.softdep modules.order; do
  [ -f "$MODDIR/$f" ] && cp "$MODDIR/$f" "$mdst/$f"
done
# aliases of the included modules only: what coldplug matches devices against (and what lets
# busybox modprobe answer the kernel's request_module)
included=" $(for p in "${!paths[@]}"; do norm "$p"; done | tr '\n' ' ') "
awk -v inc="$included" '$1 == "alias" { m=$3; gsub(/-/, "_", m); if (index(inc, " " m " ")) print }' \
  "$MODDIR/modules.alias" > "$mdst/modules.alias"

# --- cpio ---------------------------------------------------------------------------------------
# Device nodes without root: a second newc archive written by hand (the kernel unpacks
# concatenated archives). /dev/console must exist before /init runs or PID 1 starts without
# stdin/stdout/stderr ("Warning: unable to open an initial console").
newc_entry() { # name mode rdevmajor rdevminor ino
  local name=$1 mode=$2 maj=$3 min=$4 ino=$5 namesize pad
  namesize=$(( ${#name} + 1 ))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$ino" "$mode" 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0
  printf '%s\0' "$name"
  pad=$(( (4 - (110 + namesize) % 4) % 4 ))
  [ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}
mkdir -p "$OUT"
{
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' |
     cpio -o -H newc -R 0:0 --reproducible --quiet)
  newc_entry dev/console $((8#020600)) 5 1 900001
  newc_entry dev/null $((8#020666)) 1 3 900002
  newc_entry dev/ttyS0 $((8#020620)) 4 64 900003
  newc_entry TRAILER!!! 0 0 0 0
} | gzip -9n > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"

# --- /var disk ----------------------------------------------------------------------------------
# The queue holds SRC\0DST\0 pairs (interface.md section 3): a plain rename, a replace ("!"), a
# delete (empty DST) and one that must NOT happen (DST exists, no "!"). The probe checks all four.
droot=$OUT/disk-root
demo=$droot/lib/smss/demo
mkdir -p "$demo" "$droot/tmp"
chmod 1777 "$droot/tmp"
echo renamed > "$demo/renamed.new"
echo new > "$demo/replacement"
echo old > "$demo/replaced"
echo obsolete > "$demo/obsolete"
echo original > "$demo/keep"
echo intruder > "$demo/keep.new"
printf '%s\0' \
  /var/lib/smss/demo/renamed.new /var/lib/smss/demo/renamed \
  /var/lib/smss/demo/replacement '!/var/lib/smss/demo/replaced' \
  /var/lib/smss/demo/obsolete '' \
  /var/lib/smss/demo/keep.new /var/lib/smss/demo/keep \
  > "$droot/lib/smss/pending-renames"
rm -f "$OUT/disk.img"
mkfs.ext4 -q -F -L smssvar -E root_owner=0:0 -d "$droot" "$OUT/disk.img" "${DISK_SIZE:-256M}" \
  || die "mkfs.ext4 failed"

cat > "$OUT/build.env" <<EOF
KERNEL=$KERNEL
KVER=$KVER
INITRD=$OUT/initramfs.cpio.gz
DISK=$OUT/disk.img
EOF
echo "initramfs/build.sh: $OUT/initramfs.cpio.gz ($(du -h "$OUT/initramfs.cpio.gz" | cut -f1)," \
  "kernel $KVER, modules: $(echo "$included" | xargs))" >&2
