//! Waiting for a notify subsystem's READY=1.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use smss::os::notify::{self, NotifySocket};
use smss::os::procs;

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("failed to create a readiness socket: {0}")]
    Socket(std::io::Error),
    #[error("not ready after {} ms", .0.as_millis())]
    NotReady(Duration),
    #[error("exited before it was ready")]
    Exited,
    #[error("failed to poll the readiness socket: {0}")]
    Poll(nix::errno::Errno),
}

/// The socket for the session's notify subsystems.
pub fn bind() -> Result<NotifySocket, ReadinessError> {
    NotifySocket::bind().map_err(ReadinessError::Socket)
}

/// Wait for READY=1 from `pid` (or a child of it, or one naming it as MAINPID), its exit,
/// or the timeout. A pidfd tells us about the exit without polling.
pub fn wait_ready(pid: i32, n: &NotifySocket, timeout: Duration) -> Result<(), ReadinessError> {
    let pidfd: Option<OwnedFd> = smss::sys::fd::pidfd_open(pid).ok();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadinessError::NotReady(timeout));
        }
        let mut fds = vec![PollFd::new(n.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ReadinessError::Poll(e)),
        }
        let exited = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        // The socket is abstract, so anyone may write to it: the one trust rule of
        // os::notify::from_service decides. A flood of datagrams cannot hold us past the
        // deadline.
        while let Some(msg) = n.recv() {
            if notify::from_service(&msg, pid, procs::parent_of) && msg.ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if exited {
            return Err(ReadinessError::Exited);
        }
    }
}
