//! The readiness socket: sd_notify's protocol (`READY=1` datagrams on `$NOTIFY_SOCKET`), so
//! existing daemons need no change to tell smss they are up.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

/// One datagram: who sent it (from SCM_CREDENTIALS) and its `KEY=VALUE` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub sender: i32,
    pub sender_uid: u32,
    pub fields: Vec<(String, String)>,
}

impl Notification {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn ready(&self) -> bool {
        self.get("READY") == Some("1")
    }
}

/// The one readiness trust rule, for PID 1's subsystems and a session's alike: does `n` speak
/// for the service whose main process is `pid`?
///
/// - The kernel vouches for the sender's pid and uid (SCM_CREDENTIALS), so a datagram from
///   `pid` itself or from a child of it counts (`parent_of` reads /proc).
/// - A datagram from root counts unless it names another process as `MAINPID=`. Root could
///   signal or ptrace the service anyway, so refusing it protects nothing, while a root
///   helper that exits before we read its datagram (its pid then reads as 0, and /proc no
///   longer knows its parent: `sh -c '...; systemd-notify --ready; exec d'`) must still count.
///   A root datagram naming another `MAINPID` speaks for another service and is ignored.
/// - Anyone else is ignored (the socket is abstract: any process in the network namespace
///   can write to it).
pub fn from_service(n: &Notification, pid: i32, parent_of: impl Fn(i32) -> Option<i32>) -> bool {
    if n.sender == pid && pid > 0 {
        return true;
    }
    if n.sender_uid == 0 {
        return match n.get("MAINPID") {
            None => true,
            Some(main) => main.trim().parse::<i32>() == Ok(pid),
        };
    }
    n.sender > 0 && parent_of(n.sender) == Some(pid)
}

/// Parse the newline-separated `KEY=VALUE` body of a notification.
pub fn parse_fields(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A non-blocking datagram socket in the abstract namespace (works in an initramfs, a
/// container with a read-only /run, and a PID namespace alike).
pub struct NotifySocket {
    fd: OwnedFd,
    /// The value for `$NOTIFY_SOCKET` (`@` = abstract, as sd_notify understands it).
    pub address: String,
}

impl NotifySocket {
    pub fn bind() -> std::io::Result<NotifySocket> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::PassCred, &true)?;
        // Abstract names are shared by every PID namespace of a network namespace (every
        // smss there is pid 1): a name in use, by chance or by a squatter, means another try.
        let mut attempt = 0;
        loop {
            let name = format!("smss/notify/{}/{}-{attempt}", std::process::id(), nanos());
            let addr = UnixAddr::new_abstract(name.as_bytes())?;
            match bind(fd.as_raw_fd(), &addr) {
                Ok(()) => {
                    return Ok(NotifySocket {
                        fd,
                        address: format!("@{name}"),
                    })
                }
                Err(nix::errno::Errno::EADDRINUSE) if attempt < 16 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Read one pending datagram, `None` when there is none.
    pub fn recv(&self) -> Option<Notification> {
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!(libc::ucred);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        loop {
            let msg = match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            };
            let (mut sender, mut sender_uid) = (0, u32::MAX);
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmCredentials(cred) = c {
                        sender = cred.pid();
                        sender_uid = cred.uid();
                    }
                }
            }
            let len = msg.bytes;
            let body = msg
                .iovs()
                .next()
                .and_then(|b| b.get(..len))
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            return Some(Notification {
                sender,
                sender_uid,
                fields: parse_fields(&body),
            });
        }
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(sender: i32, uid: u32, body: &str) -> Notification {
        Notification {
            sender,
            sender_uid: uid,
            fields: parse_fields(body.as_bytes()),
        }
    }

    #[test]
    fn one_trust_rule() {
        let no_parent = |_| None;
        let child_of_10 = |p| (p == 11).then_some(10);
        // The service itself, any uid.
        assert!(from_service(&note(10, 1000, "READY=1"), 10, no_parent));
        // A child of it, any uid; not a stranger's child.
        assert!(from_service(&note(11, 1000, "READY=1"), 10, child_of_10));
        assert!(!from_service(&note(12, 1000, "READY=1"), 10, child_of_10));
        // Root: a helper already gone (pid 0), with or without MAINPID naming the service.
        assert!(from_service(&note(0, 0, "READY=1"), 10, no_parent));
        assert!(from_service(
            &note(0, 0, "READY=1\nMAINPID=10"),
            10,
            no_parent
        ));
        assert!(from_service(
            &note(99, 0, "MAINPID=10\nREADY=1"),
            10,
            no_parent
        ));
        // Root naming another service's main process speaks for that one.
        assert!(!from_service(
            &note(99, 0, "READY=1\nMAINPID=20"),
            10,
            no_parent
        ));
        assert!(!from_service(
            &note(0, 0, "MAINPID=20\nREADY=1"),
            10,
            no_parent
        ));
        // Not root: MAINPID proves nothing.
        assert!(!from_service(
            &note(99, 1000, "READY=1\nMAINPID=10"),
            10,
            no_parent
        ));
        assert!(!from_service(&note(0, 1000, "READY=1"), 10, |_| Some(10)));
    }

    #[test]
    fn fields() {
        let n = Notification {
            sender: 5,
            sender_uid: 0,
            fields: parse_fields(b"STATUS=up\nREADY=1\nMAINPID=77\njunk\n"),
        };
        assert!(n.ready());
        assert_eq!(n.get("MAINPID"), Some("77"));
        assert_eq!(n.get("STATUS"), Some("up"));
        assert_eq!(n.get("junk"), None);
    }

    #[test]
    fn receives_with_credentials() {
        let s = NotifySocket::bind().unwrap();
        let c = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        let addr = UnixAddr::new_abstract(&s.address.as_bytes()[1..]).unwrap();
        nix::sys::socket::sendto(c.as_raw_fd(), b"READY=1", &addr, MsgFlags::empty()).unwrap();
        let n = s.recv().unwrap();
        assert!(n.ready());
        assert_eq!(n.sender, std::process::id() as i32);
        assert!(s.recv().is_none());
    }
}
