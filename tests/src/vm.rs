//! Tier 4/5 harness: static builds, podman images and QEMU boots driven over the serial console.
