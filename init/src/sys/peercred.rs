//! SO_PEERGROUPS (Linux 4.13): the supplementary groups of a unix socket's peer, captured when
//! it connected. Unlike /proc/PID/status it works for a peer in another PID namespace (whose
//! SO_PEERCRED pid reads as 0 here). libc and nix have no constant or wrapper for it.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `SO_PEERGROUPS` from asm-generic/socket.h (the same on every architecture).
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer's supplementary group ids.
pub fn peer_groups(sock: impl AsFd) -> io::Result<Vec<u32>> {
    let fd = sock.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of writable gid_t storage and the kernel writes at
        // most `len` bytes, reporting the size it used (or needs, with ERANGE) in `len`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() && count <= 65536 {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_a_socketpair_peer_are_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = peer_groups(&a).unwrap();
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        got.sort_unstable();
        ours.sort_unstable();
        assert_eq!(got, ours);
    }
}
