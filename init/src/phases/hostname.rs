//! The machine's name (Windows' ComputerName): taken from /etc/hostname when the kernel has
//! none, so a login prompt reads `NAME login:` instead of the kernel's `(none) login:`.

use std::io::Read;
use std::path::Path;

use crate::sys;

/// The name of a machine without /etc/hostname (what systemd and Debian fall back to).
pub const DEFAULT_HOSTNAME: &str = "localhost";
/// Where the name comes from (hostname(5)).
pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// HOST_NAME_MAX: sethostname(2) refuses longer names.
const HOST_NAME_MAX: usize = 64;

/// What [`choose`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// The kernel already has a name (its `hostname=` argument, or an initramfs set one).
    Keep,
    /// Set this name; the `&str` says where it came from, for the log.
    Set(String, &'static str),
}

/// Decide the name from the current one and the bytes of /etc/hostname (None: no such file).
/// The file's first line that is neither empty nor a `#` comment is the name (hostname(5));
/// one that sethostname(2) would refuse, or that is not a plain name (spaces, control bytes,
/// more than 64 bytes), is ignored for the default.
pub fn choose(current: &str, file: Option<&[u8]>) -> Choice {
    if !current.is_empty() && current != "(none)" {
        return Choice::Keep;
    }
    let from_file = file.and_then(|b| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
    });
    match from_file {
        Some(n) if n.len() <= HOST_NAME_MAX && n.bytes().all(|b| b.is_ascii_graphic()) => {
            Choice::Set(n, HOSTNAME_FILE)
        }
        _ => Choice::Set(DEFAULT_HOSTNAME.to_string(), "the default"),
    }
}

/// Give the machine its name (system mode, after the early mounts). Failures are logged.
pub fn run() {
    let current = sys::hostname().unwrap_or_default();
    // The first 4 KiB are plenty for a 64-byte name and its comments; never more in PID 1.
    let file = std::fs::File::open(Path::new(HOSTNAME_FILE))
        .ok()
        .and_then(|f| {
            let mut b = Vec::new();
            f.take(4096).read_to_end(&mut b).ok().map(|_| b)
        });
    match choose(&current, file.as_deref()) {
        Choice::Keep => log::info!("hostname {current}"),
        Choice::Set(name, source) => match sys::set_hostname(&name) {
            Ok(()) => log::info!("hostname {name} (from {source})"),
            Err(e) => log::warn!("failed to set the hostname to {name}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: &str, from: &'static str) -> Choice {
        Choice::Set(n.to_string(), from)
    }

    #[test]
    fn the_kernels_none_is_replaced_from_etc_hostname_or_the_default() {
        assert_eq!(
            choose("(none)", Some(b"demo\n")),
            set("demo", HOSTNAME_FILE)
        );
        assert_eq!(
            choose("", Some(b"# comment\n\n  box-1.example  \n")),
            set("box-1.example", HOSTNAME_FILE)
        );
        assert_eq!(choose("(none)", None), set("localhost", "the default"));
        for bad in [
            &b""[..],
            b"\n# only a comment\n",
            b"two words\n",
            b"a\x01b\n",
        ] {
            assert_eq!(choose("(none)", Some(bad)), set("localhost", "the default"));
        }
        let long = "x".repeat(65);
        assert_eq!(
            choose("(none)", Some(long.as_bytes())),
            set("localhost", "the default")
        );
        assert_eq!(
            choose("(none)", Some("x".repeat(64).as_bytes())),
            set(&"x".repeat(64), HOSTNAME_FILE)
        );
    }

    #[test]
    fn a_name_the_kernel_already_has_is_kept() {
        assert_eq!(choose("fromkernel", Some(b"other\n")), Choice::Keep);
    }
}
