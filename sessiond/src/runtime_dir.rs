//! The session's runtime directory (`/run/user/UID` or `/run/smss/session-ID`): created afresh,
//! the user's, written only through the descriptor it was created with.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use smss::os::users::User;
use smss_config::Environment;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("failed to create {}: {source}", dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// [`make`] with its error.
pub fn create(dir: &Path, user: Option<&User>) -> Result<OwnedFd, RuntimeDirError> {
    make(dir, user).map_err(|source| RuntimeDirError::Create {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Create the session's runtime directory afresh (mode 0700, the user's) and return it open:
/// every later write goes through this descriptor, so nothing the user renames or links in
/// the directory (theirs once chowned) can redirect a write made as root.
pub fn make(dir: &Path, user: Option<&User>) -> std::io::Result<OwnedFd> {
    // The common case first, in one call: the parent is there and the name is free. (Each
    // call here is on CreateSession's path.)
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => {
            if e.kind() == std::io::ErrorKind::NotFound {
                if let Some(parent) = dir.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(parent)?;
                }
            }
            // Left over from an earlier smss with the same /run: start clean.
            match fs::symlink_metadata(dir) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(dir)?,
                Ok(_) => fs::remove_file(dir)?,
                Err(_) => {}
            }
            fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
    }
    let fd: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?
        .into();
    nix::sys::stat::fchmod(
        fd.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )?;
    if let Some(u) = user {
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        )?;
    }
    Ok(fd)
}

/// Write `name` in the runtime directory `dirfd` as root without following anything the
/// user may have put there: the file is created anew, refusing a symlink (O_NOFOLLOW) or
/// anything already there (O_EXCL); whatever is at the name is then removed, and the
/// creation tried once more.
pub fn write_file(
    dirfd: &OwnedFd,
    dir: &Path,
    name: &str,
    text: &str,
) -> Result<(), RuntimeDirError> {
    let create = || smss::sys::fd::create_new_in(dirfd, name, 0o644);
    create()
        .or_else(|e| {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
            let _ = nix::unistd::unlinkat(
                Some(dirfd.as_raw_fd()),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            create()
        })
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| RuntimeDirError::Write {
            path: dir.join(name),
            source,
        })
}

/// The `environment` file: one `KEY=VALUE` a line.
pub fn env_file(env: &Environment) -> String {
    env.vars()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_files_never_follow_what_is_in_the_directory() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("smss-session-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let victim = base.join("victim");
        fs::write(&victim, "untouched").unwrap();
        // A runtime directory left over as a symlink is replaced, not followed.
        let dir = base.join("run");
        std::os::unix::fs::symlink(&base, &dir).unwrap();
        let fd = make(&dir, None).unwrap();
        assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A link planted where a file goes is removed, never written through.
        std::os::unix::fs::symlink(&victim, dir.join("environment")).unwrap();
        write_file(&fd, &dir, "environment", "A=1\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(
            fs::read_to_string(dir.join("environment")).unwrap(),
            "A=1\n"
        );
        assert!(fs::symlink_metadata(dir.join("environment"))
            .unwrap()
            .is_file());
        // The directory renamed away and a link put in its place: writes still land in the
        // directory we created.
        let moved = base.join("moved");
        fs::rename(&dir, &moved).unwrap();
        std::os::unix::fs::symlink(&base, &dir).unwrap();
        write_file(&fd, &dir, "pids", "7\n").unwrap();
        assert_eq!(fs::read_to_string(moved.join("pids")).unwrap(), "7\n");
        assert!(!base.join("pids").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_parent_is_made_and_a_file_already_there_is_replaced() {
        let base = std::env::temp_dir().join(format!("smss-session-parent-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("sessions").join("7");
        let fd = make(&dir, None).unwrap();
        assert!(dir.is_dir());
        fs::write(dir.join("tty"), "left over\n").unwrap();
        write_file(&fd, &dir, "tty", "/dev/pts/3\n").unwrap();
        assert_eq!(fs::read_to_string(dir.join("tty")).unwrap(), "/dev/pts/3\n");
        // A directory at the name is not removed: the write fails, and says where.
        fs::create_dir(dir.join("seat")).unwrap();
        let e = write_file(&fd, &dir, "seat", "seat0\n").unwrap_err();
        assert!(e.to_string().contains("/7/seat"), "{e}");
        // Made again over what is there: empty and new.
        let _fd = make(&dir, None).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }
}
