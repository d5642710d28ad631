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

/// The first 4 KiB of `path` (plenty for a 64-byte name and its comments; never more in
/// PID 1), None when it cannot be read. Opened non-blocking and only when it is a regular
/// file: a FIFO at /etc/hostname must not hold the boot in open(2) (as a FIFO config did).
fn read_name_file(path: &Path) -> Option<Vec<u8>> {
    let f = match sys::open_regular_file(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("{}: {e}; not read", path.display());
            return None;
        }
    };
    let mut b = Vec::new();
    f.take(4096).read_to_end(&mut b).ok().map(|_| b)
}

/// Give the machine its name (system mode, after the early mounts). Failures are logged.
pub fn run() {
    let current = sys::hostname().unwrap_or_default();
    let file = read_name_file(Path::new(HOSTNAME_FILE));
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

    #[test]
    fn a_fifo_in_place_of_the_file_is_not_waited_on() {
        let dir = std::env::temp_dir().join(format!("smss-hostname-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("hostname");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_name_file(&p));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        if got.is_err() {
            // Unblock the reader before failing (open for writing releases its open).
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(got, Ok(None), "the read waited on a FIFO");
        std::fs::write(dir.join("plain"), "demo\n").unwrap();
        assert_eq!(
            read_name_file(&dir.join("plain")).as_deref(),
            Some(&b"demo\n"[..])
        );
        assert_eq!(read_name_file(&dir.join("none")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

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
