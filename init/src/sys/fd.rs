//! Descriptors the standard library cannot name: pidfds (pidfd_open(2), nix 0.29 has no
//! wrapper), descriptors inherited by number (`smss-session --fd N`) and files created
//! relative to a directory descriptor.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Open a pidfd for `pid` (Linux 5.3+): readable once the process has exited, for processes
/// that are not our children (a terminating session's orphans). ESRCH: already gone.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (0) and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns (pidfds are
    // close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// pidfd_send_signal(2): signal exactly the process `pidfd` refers to (never one that reused
/// its pid).
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a descriptor we own, a signal number, no siginfo (NULL), no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Take ownership of descriptor `fd`, inherited from our parent, and make it close-on-exec
/// so our own children do not inherit it. Refuses 0-2 and descriptors that are not open.
pub fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fds 0-2 are stdio",
        ));
    }
    // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was handed to this process to
    // own by its parent (the `--fd N` contract); nothing else in this process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Create `name` in the directory `dir` (O_EXCL, O_NOFOLLOW, close-on-exec) and return it
/// open for writing: for files written as root into a directory someone else owns, where a
/// path could be swapped for a link between check and use.
pub fn create_new_in(dir: &OwnedFd, name: &str, mode: u32) -> io::Result<std::fs::File> {
    use nix::fcntl::{openat, OFlag};
    use std::os::fd::AsRawFd;
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        Some(dir.as_raw_fd()),
        name,
        flags,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_for_self_and_fails_for_nobody() {
        assert!(pidfd_open(std::process::id() as i32).is_ok());
        assert!(pidfd_open(i32::MAX).is_err());
    }

    #[test]
    fn inherited_descriptors() {
        assert!(take_inherited(1).is_err());
        assert!(take_inherited(987_654).is_err());
    }
}
