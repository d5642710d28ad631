//! ObjectDirectories and ProtectionMode: the umask smss and its children run with, and the
//! directories made before anything else.
//!
//! ProtectionMode bit 0 set (the default, 1) is Windows' strict descriptor: world may read and
//! execute. Linux: umask 022, directories 0755. Bit 0 clear (0) is the *liberal* descriptor
//! (world may also write): umask 000, directories 0777 — everything smss and its children
//! create becomes world-writable, so use it only on single-user appliances. A directory that
//! exists already keeps its mode (Windows opens an existing object directory as it is).

use std::path::PathBuf;

use super::PhaseError;
use crate::sys::Sys;

/// (umask, directory mode) for a ProtectionMode value.
pub fn modes(protection_mode: u32) -> (u32, u32) {
    if protection_mode & 1 == 1 {
        (0o022, 0o755)
    } else {
        (0o000, 0o777)
    }
}

/// Set the umask for `protection_mode`, then create each directory (with parents). Failures
/// are returned for logging; none is fatal (SmpConfigureObjectDirectories only logs).
pub fn run(sys: &dyn Sys, dirs: &[PathBuf], protection_mode: u32) -> Vec<PhaseError> {
    let (umask, mode) = modes(protection_mode);
    sys.set_umask(umask);
    let mut errors = Vec::new();
    for d in dirs {
        if let Err(source) = sys.create_dir_all(d, mode) {
            let e = PhaseError::CreateDir {
                path: d.clone(),
                source,
            };
            log::warn!("{e}");
            errors.push(e);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn strict_mode() {
        let s = FakeSys::new();
        let dirs = [PathBuf::from("/run/smss/objects"), PathBuf::from("/run/x")];
        assert!(run(&s, &dirs, 1).is_empty());
        assert_eq!(
            s.calls(),
            [
                "umask 022",
                "mkdir /run/smss/objects 755",
                "mkdir /run/x 755"
            ]
        );
    }

    #[test]
    fn liberal_mode_and_failures_continue() {
        let s = FakeSys::new();
        s.fail("mkdir", "/ro/a", libc::EROFS);
        let dirs = [PathBuf::from("/ro/a"), PathBuf::from("/run/b")];
        let errs = run(&s, &dirs, 0);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "failed to create directory /ro/a: Read-only file system (os error 30)"
        );
        assert_eq!(
            s.calls(),
            ["umask 000", "mkdir /ro/a 777", "mkdir /run/b 777"]
        );
    }

    #[test]
    fn only_bit_zero_counts() {
        assert_eq!(modes(3), (0o022, 0o755));
        assert_eq!(modes(2), (0, 0o777));
    }
}
