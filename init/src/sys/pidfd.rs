//! pidfd_open(2): a descriptor that becomes readable when a process exits, for processes that
//! are not our children (a terminating session's orphans). nix 0.29 has no wrapper.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Open a pidfd for `pid` (Linux 5.3+). ESRCH: the process is gone (or already reaped).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (0) and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns (O_CLOEXEC is
    // implied for pidfds).
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_for_self_and_fails_for_nobody() {
        assert!(pidfd_open(std::process::id() as i32).is_ok());
        assert!(pidfd_open(i32::MAX).is_err());
    }
}
