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
                .map(|b| b[..len].to_vec())
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
