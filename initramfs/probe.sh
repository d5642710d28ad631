#!/bin/sh
# The probe: asserts from inside a booted smss machine that the boot did what the demo config
# (initramfs/smss.toml) asks. busybox sh. Prints one "PROBE FAIL: <what>" line per failed check,
# then "PROBE OK" (exit 0) or "PROBE FAIL: N check(s) failed" (exit 1).
#
#   probe [--console] [CHECK...]
#     --console   write to /dev/console (when run by smss with no terminal of its own)
#     CHECK       run only these (default: all): env objdirs dosdev volume bootexec setupexec
#                 renames swap modules subsystem socket zombies
#   PROBE_SKIP="a b"  leave these checks out (tier 3/4 have no disk, swap or modules)

if [ "$1" = "--console" ]; then
  shift
  [ -w /dev/console ] && exec >/dev/console 2>&1
fi
checks=${*:-env objdirs dosdev volume bootexec setupexec renames swap modules subsystem socket zombies}
failed=0

fail() { echo "PROBE FAIL: $*"; failed=$((failed + 1)); }
expect_eq() { # what actual expected
  [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"
}
expect_link() { # link target
  if [ ! -L "$1" ]; then fail "symlink $1 missing"; return; fi
  expect_eq "symlink $1" "$(readlink "$1")" "$2"
}
content() { cat "$1" 2>/dev/null; }

check_env() {
  expect_eq "PATH" "$PATH" "/usr/sbin:/usr/bin:/sbin:/bin"
  expect_eq "TMP (%TEMP% expanded)" "$TMP" "/tmp"
  expect_eq "SMSS_DEMO (%SMSS_VAR% expanded)" "$SMSS_DEMO" "/var/lib/smss/demo"
  expect_eq "SMSS_UNDEFINED (unknown %VAR% literal)" "$SMSS_UNDEFINED" "%NOT_DEFINED%/stays"
}
check_objdirs() {
  for d in /run/smss/objects /run/smss/objects/BaseNamedObjects; do
    [ -d "$d" ] || fail "object directory $d missing"
  done
}
check_dosdev() {
  dd=/run/smss/dosdevices
  expect_link "$dd/C:" /
  expect_link "$dd/D:" /var
  expect_link "$dd/NUL" /dev/null
  expect_link "$dd/CON" /dev/console
  expect_link "$dd/COM1" /dev/ttyS0
  expect_link /dev/disk-var /dev/vda
}
check_volume() {
  line=$(awk '$2 == "/var" { print $3, $4 }' /proc/mounts | tail -n1)
  case "$line" in
    "ext4 rw"*) ;;
    "") fail "/var is not mounted" ;;
    *) fail "/var mounted as '$line', expected ext4 rw" ;;
  esac
}
check_bootexec() {
  expect_eq "boot-execute mark (with %SMSS_DEMO%)" "$(content /run/smss-demo/boot-execute)" "/var/lib/smss/demo"
}
check_setupexec() {
  expect_eq "setup-execute mark" "$(content /run/smss-demo/setup-execute)" "ran"
}
check_renames() {
  d=/var/lib/smss/demo
  expect_eq "renamed (plain rename)" "$(content $d/renamed)" "renamed"
  [ -e $d/renamed.new ] && fail "$d/renamed.new still exists after its rename"
  expect_eq "replaced (! = replace existing)" "$(content $d/replaced)" "new"
  [ -e $d/replacement ] && fail "$d/replacement still exists after replacing"
  [ -e $d/obsolete ] && fail "$d/obsolete not deleted (empty destination)"
  expect_eq "keep (no ! = never overwrite)" "$(content $d/keep)" "original"
  expect_eq "keep.new (rename refused)" "$(content $d/keep.new)" "intruder"
  [ -s /var/lib/smss/pending-renames ] && fail "queue /var/lib/smss/pending-renames not claimed"
}
check_swap() {
  if ! awk 'NR > 1 { print $1 }' /proc/swaps | grep -qx /var/swapfile; then
    fail "/var/swapfile not in /proc/swaps: $(tr '\n' ';' </proc/swaps)"
  fi
  mode=$(stat -c %a /var/swapfile 2>/dev/null)
  expect_eq "/var/swapfile mode" "$mode" "600"
}
check_modules() {
  for m in virtio_pci virtio_blk ext4 loop; do
    [ -d /sys/module/$m ] || fail "module $m not loaded"
  done
}
check_subsystem() {
  alive=0
  for pid in $(content /run/smss-demo/subsystem-demo.pids); do
    [ -d /proc/$pid ] && alive=1
  done
  [ $alive = 1 ] || fail "required subsystem demo not running"
  pid=$(content /run/smss-demo/wininit.pid)
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || fail "session-0 initial command (wininit) not running"
}
check_socket() {
  [ -S /run/smss/control ] || fail "control socket /run/smss/control missing"
}
zombies() {
  for st in /proc/[0-9]*/stat; do
    s=$(sed 's/.*) //' "$st" 2>/dev/null | cut -d' ' -f1)
    [ "$s" = Z ] && echo "${st#/proc/}" | cut -d/ -f1
  done
}
check_zombies() {
  # A child that exited a moment ago is a zombie until PID 1 wakes up: only persistent ones count.
  for _ in 1 2 3 4 5; do
    z=$(zombies | tr '\n' ' ')
    [ -z "$z" ] && return
    sleep 1
  done
  fail "zombies not reaped: $z"
}

for c in $checks; do
  case " ${PROBE_SKIP:-} " in *" $c "*) continue ;; esac
  type "check_$c" >/dev/null 2>&1 || { fail "unknown check $c"; continue; }
  "check_$c"
done
if [ $failed -eq 0 ]; then
  echo "PROBE OK"
else
  echo "PROBE FAIL: $failed check(s) failed"
  exit 1
fi
