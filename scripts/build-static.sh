#!/usr/bin/env bash
# Builds static smss, smctl and smss-session and copies them to target/static/ (the directory
# the initramfs, the container image and the bench take them from). Prints that directory on
# its last line.
#
# Against musl by default (x86_64-unknown-linux-musl, added with rustup when missing): musl's
# start-up does no CPU-feature probing, where static glibc runs dozens of `cpuid`
# instructions, each a trap to the hypervisor in a VM (about a fifth of a millisecond per
# start on this machine), and the binary is a third smaller. When the musl target cannot be
# had, static glibc (x86_64-unknown-linux-gnu) is used instead; SMSS_LIBC=gnu asks for it.
#
# crt-static only applies to --target builds (a plain `cargo build` keeps the host's dynamic
# binaries and build scripts), so it is set here and never in .cargo/config.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

libc=${SMSS_LIBC:-musl}
if [ "$libc" = musl ] && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  echo "build-static: adding the rust target x86_64-unknown-linux-musl" >&2
  if ! timeout 300 rustup target add x86_64-unknown-linux-musl >&2; then
    echo "build-static: warning: no musl target; building against static glibc" >&2
    libc=gnu
  fi
fi
target=x86_64-unknown-linux-$libc

# Non-PIE by default, like catatonit and tini-static: a static-pie binary relocates itself at
# every start (thousands of RELATIVE relocations, copy-on-write pages of PID 1). Stack, heap and
# mmap stay randomised; SMSS_PIE=1 keeps a position-independent (fully ASLR'd) binary.
reloc="-C relocation-model=static"
[ "${SMSS_PIE:-0}" = 1 ] && reloc=""
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static $reloc" \
  cargo build --release --target "$target" -p smss -p smss-session "$@" >&2

built="$root/target/$target/release"
out="$root/target/static"
mkdir -p "$out"
for b in smss smctl smss-session; do
  [ -x "$built/$b" ] || { echo "build-static: $built/$b was not built" >&2; exit 1; }
  # A dynamic binary would fail as /init with a confusing ENOENT from the kernel: refuse it here.
  if file -b "$built/$b" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "build-static: $built/$b is dynamically linked" >&2; exit 1
  fi
  # Replace, never write into, a binary that may be running (a test's smss).
  cp "$built/$b" "$out/.$b.new"
  mv -f "$out/.$b.new" "$out/$b"
done
echo "$libc" > "$out/LIBC"
echo "$out"
