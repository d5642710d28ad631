//! The NETLINK_KOBJECT_UEVENT socket: the kernel's device announcements (what udev and mdev
//! listen to). Kernel messages only (sender port 0), group 1.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recvfrom, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};

use crate::devices::uevent::MAX_UEVENT;
use crate::devices::wait::UeventSource;

/// A bound, non-blocking uevent socket.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    pub fn open() -> io::Result<UeventSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // A burst (a USB hub with many disks, a SCSI scan) must not overflow the queue while
        // PID 1 loads a driver; RcvBufForce needs CAP_NET_ADMIN, which PID 1 has.
        if setsockopt(&fd, sockopt::RcvBufForce, &(1 << 20)).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &(1 << 20));
        }
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1))?;
        Ok(UeventSocket { fd })
    }

    /// One pending message, without waiting: Ok(None) when there is none. Messages not from
    /// the kernel are dropped.
    pub fn try_recv(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; MAX_UEVENT];
        loop {
            match recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok((n, Some(from))) if from.pid() == 0 => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for UeventSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl UeventSource for UeventSocket {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if let Some(m) = self.try_recv()? {
            return Ok(Some(m));
        }
        let ms = timeout.as_millis().saturating_add(1).min(i32::MAX as u128) as u32;
        let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Ok(0) => Ok(None),
            Ok(_) => self.try_recv(),
            Err(nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Run `work` in a forked helper process and return its pid at once: work that may block (a
/// driver's init function runs inside finit_module) must not stall PID 1's loop. The helper
/// has a normal signal mask, runs `work` and `_exit`s with its result; the reaper collects it
/// as any stranger.
pub fn run_in_helper(work: impl FnOnce() -> i32) -> io::Result<i32> {
    // SAFETY: smss is single-threaded, so the child is a consistent copy; it runs only `work`
    // and then _exit, never returning into the caller's stack frames.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid);
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let code = work();
    // SAFETY: _exit ends the helper without running the parent's atexit handlers or
    // destructors of state it shares with PID 1 by copy.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}
