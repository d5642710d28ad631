#!/usr/bin/env bash
# Says clearly when the Rust toolchain is missing or older than the workspace's rust-version.
# Debian's own rustc (1.63 in bookworm) is too old: install Rust with rustup (https://rustup.rs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)
if ! command -v cargo > /dev/null 2>&1 || ! command -v rustc > /dev/null 2>&1; then
  echo "smss needs Rust $need or newer (cargo and rustc); none found on PATH. Install it with rustup." >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "smss needs Rust $need or newer; found rustc $have ($(command -v rustc)). Debian's rustc is too old: install Rust with rustup." >&2
  exit 1
fi
