#!/usr/bin/env bash
# Builds static smss, smctl and smss-session into target/x86_64-unknown-linux-gnu/release/.
#
# crt-static only applies to --target builds (a plain `cargo build` keeps the host's dynamic
# binaries and build scripts), so it is set here and never in .cargo/config.
# Prints the directory holding the three binaries on its last line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=x86_64-unknown-linux-gnu
cd "$root"

# Non-PIE by default, like catatonit and tini-static: a static-pie binary relocates itself at
# every start (thousands of RELATIVE relocations, copy-on-write pages of PID 1). Stack, heap and
# mmap stay randomised; SMSS_PIE=1 keeps a position-independent (fully ASLR'd) binary.
reloc="-C relocation-model=static"
[ "${SMSS_PIE:-0}" = 1 ] && reloc=""
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static $reloc" \
  cargo build --release --target "$target" -p smss -p smss-session "$@" >&2

out="$root/target/$target/release"
for b in smss smctl smss-session; do
  [ -x "$out/$b" ] || { echo "build-static: $out/$b was not built" >&2; exit 1; }
  # A dynamic binary would fail as /init with a confusing ENOENT from the kernel: refuse it here.
  if file -b "$out/$b" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "build-static: $out/$b is dynamically linked" >&2; exit 1
  fi
done
echo "$out"
