//! Renames and deletes that do not follow another user's symlink (the rename queue).
//!
//! The queued paths are walked one component at a time from `/`, each opened `O_PATH` relative
//! to the directory before it with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (or
//! `openat(O_NOFOLLOW)` where openat2 is missing: kernels before 5.6, seccomp filters). A
//! symlink met on the way is followed only when root owns it and the directory holding it,
//! the idea of systemd's CHASE_SAFE (no transition from another user's file to root's) reduced
//! to symlinks: an ordinary user can then never redirect root into a directory of their
//! choosing, neither with a link of their own nor by renaming one of root's links into place
//! in a directory they own, while root's own links (`/var -> /data/var`) still work. The
//! last component is never followed (rename and unlink act on a link itself), and the
//! operation runs relative to the opened parent directories (`renameat2`, `unlinkat`), so
//! nothing can be swapped between the walk and the change.
//!
//! `..` goes back to the directory this walk opened before (never above `/`), not to whatever
//! is the parent by then.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Symlinks followed in one walk at most (the kernel allows 40).
const MAX_FOLLOWS: usize = 32;
/// Directories deep at most (each holds an fd during the walk).
const MAX_DEPTH: usize = 256;
/// The longest symlink target read (PATH_MAX).
const MAX_TARGET: usize = 4096;

/// Cleared the first time openat2 is unavailable; the fallback is used from then on.
static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open one component (`name` has no `/`) below `dir` as O_PATH, never following a symlink:
/// a symlink is returned as itself.
fn open_component(dir: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    if HAVE_OPENAT2.load(Ordering::Relaxed) {
        // SAFETY: open_how is plain data; all-zero is its documented initial value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = flags;
        how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: name is NUL-terminated, how is a valid open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match check(r) {
            Ok(fd) => return owned(fd),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL)
                ) =>
            {
                HAVE_OPENAT2.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    // SAFETY: name is NUL-terminated; the flags make no file.
    let r = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags as libc::c_int) };
    owned(check(libc::c_long::from(r))?)
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open, st is a valid out-pointer.
    check(libc::c_long::from(unsafe {
        libc::fstat(fd.as_raw_fd(), &mut st)
    }))?;
    Ok(st)
}

/// The target of the symlink opened (O_PATH|O_NOFOLLOW) as `link`: read from the fd, so a
/// link swapped after it was opened is not the one read.
fn read_link(link: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; MAX_TARGET + 1];
    // SAFETY: an empty path reads the link the fd refers to; buf is writable for its length.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(check(n as libc::c_long)?).unwrap_or(0);
    if n > MAX_TARGET {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// Components of `bytes`, without empty ones and `.`.
fn components(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Open the directory holding `path`'s last component (see the module docs) and return it
/// with that component's name. `path` must be absolute and end in a name (not `/`, `.`, `..`).
pub fn open_parent(path: &Path) -> io::Result<(OwnedFd, CString)> {
    let bytes = path.as_os_str().as_bytes();
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {why}", path.display()),
        )
    };
    if bytes.first() != Some(&b'/') {
        return Err(invalid("not an absolute path"));
    }
    let mut todo: std::collections::VecDeque<Vec<u8>> =
        components(bytes).map(<[u8]>::to_vec).collect();
    let last = match todo.pop_back() {
        Some(l) if l != b".." => cstr(&l)?,
        _ => return Err(invalid("does not end in a file name")),
    };
    // SAFETY: a constant NUL-terminated path.
    let root = unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let mut stack = vec![owned(check(libc::c_long::from(root))?)?];
    let mut follows = 0;
    while let Some(c) = todo.pop_front() {
        if c == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let top = stack
            .last()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let name = cstr(&c)?;
        let fd = open_component(top, &name)?;
        let st = fstat(&fd)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if stack.len() >= MAX_DEPTH {
                    return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                }
                stack.push(fd);
            }
            libc::S_IFLNK => {
                if st.st_uid != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "refused to follow symlink {:?} owned by uid {} (only root's symlinks are followed)",
                            String::from_utf8_lossy(&c),
                            st.st_uid
                        ),
                    ));
                }
                // Root's link in another user's directory: that user may have renamed it
                // into place (CHASE_SAFE's unsafe transition), so it is not followed either.
                let dir_uid = fstat(top)?.st_uid;
                if dir_uid != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "refused to follow symlink {:?} in a directory owned by uid {dir_uid} (only root's symlinks in root's directories are followed)",
                            String::from_utf8_lossy(&c),
                        ),
                    ));
                }
                follows += 1;
                if follows > MAX_FOLLOWS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = read_link(&fd)?;
                if target.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                for t in components(&target).rev() {
                    todo.push_front(t.to_vec());
                }
            }
            _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
    }
    let parent = stack
        .pop()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
    Ok((parent, last))
}

/// Rename `from` to `to` after walking both parents safely; `noreplace` = RENAME_NOREPLACE.
pub fn rename(from: &Path, to: &Path, noreplace: bool) -> io::Result<()> {
    let (src_dir, src) = open_parent(from)?;
    let (dst_dir, dst) = open_parent(to)?;
    let flags: libc::c_uint = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
    // The raw system call: the static binaries may be built against musl.
    // SAFETY: both names are NUL-terminated and both fds are open directories.
    check(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            src_dir.as_raw_fd(),
            src.as_ptr(),
            dst_dir.as_raw_fd(),
            dst.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// Delete `path` (the entry itself, never a symlink's target) after walking its parent
/// safely: unlink, or rmdir when it is a directory (which must then be empty).
pub fn remove(path: &Path) -> io::Result<()> {
    let (dir, name) = open_parent(path)?;
    // SAFETY: name is NUL-terminated and dir is an open directory.
    let r = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    match check(libc::c_long::from(r)) {
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            // SAFETY: as above.
            let r = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
            check(libc::c_long::from(r)).map(drop)
        }
        r => r.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_skip_empty_and_dot() {
        let c: Vec<&[u8]> = components(b"//a/./b//../c/").collect();
        assert_eq!(c, [&b"a"[..], b"b", b"..", b"c"]);
    }

    #[test]
    fn refuses_what_does_not_end_in_a_name() {
        for p in ["/", "relative/x", "/a/..", "/.", ""] {
            let e = open_parent(Path::new(p)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{p}");
        }
    }

    #[test]
    fn walks_real_directories_and_dotdot_stays_below_root() {
        let (_, name) = open_parent(Path::new("/proc/self/../../../../etc/hostname")).unwrap();
        assert_eq!(name.as_bytes(), b"hostname");
        // /proc/self is a symlink owned by root: followed.
        let (_, name) = open_parent(Path::new("/proc/self/status")).unwrap();
        assert_eq!(name.as_bytes(), b"status");
        // A file in the middle of a path.
        let e = open_parent(Path::new("/proc/self/status/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
    }

    /// The refusal holds with openat2 and with the O_NOFOLLOW fallback alike.
    #[test]
    fn users_symlink_refused_with_and_without_openat2() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP users_symlink_refused_with_and_without_openat2: needs root (lchown)");
            return;
        }
        let d = std::env::temp_dir().join(format!("smss-chase-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("users")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("roots")).unwrap();
        nix::unistd::fchownat(
            None,
            &d.join("users"),
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        for openat2 in [true, false] {
            HAVE_OPENAT2.store(openat2, Ordering::Relaxed);
            let e = open_parent(&d.join("users/f")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{openat2}: {e}");
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            let (_, name) = open_parent(&d.join("roots/f")).unwrap();
            assert_eq!(name.as_bytes(), b"f");
        }
        HAVE_OPENAT2.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&d);
    }
}
