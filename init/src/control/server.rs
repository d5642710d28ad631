//! The control socket's connections, served from PID 1's single epoll loop: non-blocking,
//! bounded input (one message of at most [`MAX_MESSAGE`] bytes buffered, [`MAX_UNPRIVILEGED_MESSAGE`]
//! for peers that may only read), back-pressure (nothing more is read or answered on a
//! connection while a reply waits to be written), bounded output (a client that does not
//! read its replies is dropped), a bounded number of connections: per uid, for peers that may
//! only read, and with slots only root may take (see [`admission`]), and deadlines: a message
//! must arrive whole, a reply be read, and an idle connection make a call, in time (see
//! [`Clock`]). What a call means is decided by the supervisor (`supervise::api`); this module
//! only moves bytes (and rate-limits the log lines about refused calls: [`LogLimiter`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    getsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::wire::{self, Framer, WireError, MAX_MESSAGE};
use crate::os::users::{self, Peer};

/// At most this many open connections; more are told `LimitReached` and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// Of which at most this many from peers that may only read (so a local user cannot take
/// every slot from root).
pub const MAX_UNPRIVILEGED_CONNECTIONS: usize = 64;
/// Of [`MAX_CONNECTIONS`], this many only root may take: `smctl poweroff` as root works
/// whatever the other uids hold.
pub const ROOT_RESERVE: usize = 16;
/// Connections one uid other than root may hold at once when it may act (an
/// `allowed-group` member).
pub const MAX_CONNECTIONS_PER_UID: usize = 32;
/// Connections one uid may hold at once when it may only read (so one local user cannot
/// take the readers' slots from the others).
pub const MAX_UNPRIVILEGED_PER_UID: usize = 8;
/// A message begun must be complete, and a reply be read, within this time.
pub const MESSAGE_DEADLINE: Duration = Duration::from_secs(10);
/// A connection that neither sends a call nor waits for a reply is closed after this long.
pub const IDLE_DEADLINE: Duration = Duration::from_secs(30);
/// Refused calls logged per [`DENIAL_LOG_INTERVAL`], from all connections together; the
/// rest are counted and the count is logged once the interval is over.
pub const DENIAL_LOG_BURST: u32 = 10;
pub const DENIAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// The longest call a peer that may only read can send: its methods take a few small
/// parameters, so 64 connections of them pin a few MiB at most, not 64 MiB.
pub const MAX_UNPRIVILEGED_MESSAGE: usize = 64 * 1024;
/// Privileged calls refused on one connection before it is closed (a peer that may only
/// read and keeps asking is a flood, not a client that misread its rights).
pub const MAX_DENIED_CALLS: u32 = 8;
/// Replies waiting for a client to read them; a client that lets more pile up is dropped.
pub const MAX_OUTPUT: usize = 2 * MAX_MESSAGE;
/// Input read per connection per wake-up, so one busy client cannot starve the others
/// (epoll is level-triggered: the rest is read on the next round).
const READ_BUDGET: usize = 256 * 1024;

/// How many connections are held, as [`admission`] sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    pub total: usize,
    /// By peers that may only read.
    pub unprivileged: usize,
    /// By the uid asking for one more.
    pub same_uid: usize,
}

/// May a peer (`uid`, `privileged`: may it act) open one more connection, given what is
/// held? `Err((limit, value))` names the limit it hit, for `LimitReached`.
pub fn admission(held: Held, uid: u32, privileged: bool) -> Result<(), (&'static str, usize)> {
    if held.total >= MAX_CONNECTIONS {
        return Err(("connections", MAX_CONNECTIONS));
    }
    if uid == 0 {
        return Ok(());
    }
    if held.total >= MAX_CONNECTIONS - ROOT_RESERVE {
        return Err(("connections", MAX_CONNECTIONS - ROOT_RESERVE));
    }
    let per_uid = if privileged {
        MAX_CONNECTIONS_PER_UID
    } else {
        MAX_UNPRIVILEGED_PER_UID
    };
    if held.same_uid >= per_uid {
        return Err(("connections-per-uid", per_uid));
    }
    if !privileged && held.unprivileged >= MAX_UNPRIVILEGED_CONNECTIONS {
        return Err(("connections", MAX_UNPRIVILEGED_CONNECTIONS));
    }
    Ok(())
}

/// A connection's deadlines: since when it has been idle, has held part of a message, or
/// has had a reply waiting to be read. The times are given, so the rules are tested without
/// a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    idle_since: Instant,
    partial_since: Option<Instant>,
    output_since: Option<Instant>,
}

impl Clock {
    pub fn new(now: Instant) -> Clock {
        Clock {
            idle_since: now,
            partial_since: None,
            output_since: None,
        }
    }

    /// Input was buffered: `pending` bytes of an incomplete message are held.
    pub fn input(&mut self, pending: usize, now: Instant) {
        if pending == 0 {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// A whole message was taken; `pending` bytes of the next one are left.
    pub fn message(&mut self, pending: usize, now: Instant) {
        self.idle_since = now;
        self.partial_since = (pending > 0).then_some(now);
    }

    /// A reply was queued (a deferred one may come long after its call): idle from now.
    pub fn replied(&mut self, now: Instant) {
        self.idle_since = now;
    }

    /// Output was written: `left` bytes still wait for the peer to read them.
    pub fn output(&mut self, left: usize, now: Instant) {
        if left == 0 {
            if self.output_since.take().is_some() {
                self.idle_since = now;
            }
        } else if self.output_since.is_none() {
            self.output_since = Some(now);
        }
    }

    /// When the connection is to be closed unless something happens; None while the peer
    /// waits for us (`busy`: a deferred reply, such as TerminateSession's, may take long).
    pub fn deadline(&self, busy: bool) -> Option<Instant> {
        if let Some(t) = self.output_since {
            return Some(t + MESSAGE_DEADLINE);
        }
        if busy {
            return None;
        }
        match self.partial_since {
            Some(t) => Some(t + MESSAGE_DEADLINE),
            None => Some(self.idle_since + IDLE_DEADLINE),
        }
    }
}

/// Log lines about refused calls, from every connection together: the first
/// [`DENIAL_LOG_BURST`] of each [`DENIAL_LOG_INTERVAL`], then a count (anyone may connect,
/// and each line goes to the console and /dev/kmsg).
#[derive(Debug, Default)]
pub struct LogLimiter {
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// One more line to log at `now`: whether to log it, and a count of lines not logged in
    /// the interval that just ended (to log first).
    pub fn admit(&mut self, now: Instant) -> (bool, Option<u64>) {
        let summary = self.flush(now);
        if self.window.map_or(true, |w| now >= w + DENIAL_LOG_INTERVAL) {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < DENIAL_LOG_BURST {
            self.logged += 1;
            (true, summary)
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            (false, summary)
        }
    }

    /// Once an interval is over: how many lines it did not log (None: nothing to say).
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self.deadline()?;
        if now < due {
            return None;
        }
        Some(std::mem::take(&mut self.suppressed))
    }

    /// When a count is due.
    pub fn deadline(&self) -> Option<Instant> {
        (self.suppressed > 0)
            .then_some(self.window)
            .flatten()
            .map(|w| w + DENIAL_LOG_INTERVAL)
    }
}

/// What makes a connection readable/writable from the loop's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// One client.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    pub peer: Peer,
    /// Root or a member of `[control] allowed-group`.
    pub privileged: bool,
    framer: Framer,
    out: Vec<u8>,
    /// A call on this connection waits for a deferred reply (replies go out in call order,
    /// so nothing more is read until it is sent).
    pub busy: bool,
    /// The peer shut down its side; close once everything owed to it is written.
    eof: bool,
    /// Close as soon as the output is flushed (after a protocol error).
    closing: bool,
    /// Broken: close now.
    dead: bool,
    /// Privileged calls refused so far.
    denied: u32,
    /// What the loop currently watches for.
    pub registered: Interest,
    /// Its deadlines.
    clock: Clock,
}

impl Connection {
    fn new(stream: UnixStream, peer: Peer, privileged: bool) -> Connection {
        Connection {
            stream,
            peer,
            privileged,
            framer: Framer::with_limit(if privileged {
                MAX_MESSAGE
            } else {
                MAX_UNPRIVILEGED_MESSAGE
            }),
            out: Vec::new(),
            busy: false,
            eof: false,
            closing: false,
            dead: false,
            denied: 0,
            registered: Interest::default(),
            clock: Clock::new(Instant::now()),
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// What to watch for now: no reading while a reply waits to be written (back-pressure:
    /// a client that pipelines calls and never reads gets one reply's worth, not all).
    pub fn interest(&self) -> Interest {
        Interest {
            read: !self.busy && !self.eof && !self.closing && self.out.is_empty(),
            write: !self.out.is_empty(),
        }
    }

    /// Nothing more will happen on this connection.
    pub fn finished(&self) -> bool {
        self.dead || ((self.eof || self.closing) && self.out.is_empty() && !self.busy)
    }

    /// Queue bytes for the peer and write what the socket takes now.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.dead {
            return;
        }
        self.out.extend_from_slice(bytes);
        self.clock.replied(Instant::now());
        self.flush();
        if self.out.len() > MAX_OUTPUT {
            log::debug!(
                "control client pid {} does not read its replies: closing",
                self.peer.pid
            );
            self.dead = true;
        }
    }

    /// Count a refused privileged call; how many so far.
    pub fn denied_call(&mut self) -> u32 {
        self.denied = self.denied.saturating_add(1);
        self.denied
    }

    /// Read nothing more; close once everything owed is written.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Queue an error reply, then close the connection (the stream cannot be trusted).
    pub fn send_and_close(&mut self, bytes: &[u8]) {
        self.send(bytes);
        self.closing = true;
    }

    /// Write as much pending output as the socket takes.
    pub fn flush(&mut self) {
        let mut written = 0;
        while written < self.out.len() {
            match send_nosignal(&self.stream, self.out.get(written..).unwrap_or_default()) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => written += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        self.out.drain(..written);
        self.clock.output(self.out.len(), Instant::now());
    }

    /// When this connection is closed unless something happens (None: it waits for us).
    pub fn deadline(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        self.clock.deadline(self.busy)
    }

    /// Its deadline has passed: close it now.
    pub fn expire(&mut self) {
        self.dead = true;
    }

    /// Read what the peer sent (within this wake-up's budget) into the framer.
    pub fn fill(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while total < READ_BUDGET && !self.eof && !self.dead && self.out.is_empty() {
            // Stop once a message's worth is buffered: `next_message` reports it as too long.
            if self.framer.pending() > self.framer.limit() {
                break;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    total += n;
                    self.framer.push(buf.get(..n).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        self.clock.input(self.framer.pending(), Instant::now());
    }

    /// The next complete message, if one is buffered and the connection may take a call.
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, WireError>> {
        if self.busy || self.closing || self.dead || !self.out.is_empty() {
            return None;
        }
        let msg = self.framer.next_message();
        if msg.is_some() {
            self.clock.message(self.framer.pending(), Instant::now());
        }
        msg
    }

    /// Is there a complete message waiting (checked after a deferred reply is sent)?
    pub fn has_input(&self) -> bool {
        self.framer.pending() > 0
    }

    /// A busy connection is not read; notice a peer that closed its socket meanwhile (a
    /// hang-up is reported by epoll whatever we watch for, so it must be acted on). A peer
    /// that only shut down its writing side still gets its reply.
    pub fn hung_up(&self) -> bool {
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => false,
        }
    }
}

/// The listening socket and every connection.
pub struct Server {
    listener: UnixListener,
    /// A spare descriptor given up when accept(2) hits EMFILE, so the pending connection can
    /// be accepted and closed instead of waking the loop forever.
    reserve: Option<OwnedFd>,
    pub path: PathBuf,
    allowed_group: Option<String>,
    pub conns: HashMap<u32, Connection>,
    next_id: u32,
}

impl Server {
    /// Create the socket: parent directories, a stale socket file removed (a live one left
    /// alone: another smss serves it), mode 0666 (GetStatus and ListSessions are for everyone;
    /// the other methods check SO_PEERCRED per call).
    pub fn bind(path: &Path, allowed_group: Option<String>) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if is_served(path) {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process serves this socket",
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let reserve = listener.as_fd().try_clone_to_owned().ok();
        Ok(Server {
            listener,
            reserve,
            path: path.to_path_buf(),
            allowed_group,
            conns: HashMap::new(),
            next_id: 0,
        })
    }

    pub fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Accept pending connections (at most 64 per wake-up); returns the new ids.
    pub fn accept(&mut self) -> Vec<u32> {
        let mut new = Vec::new();
        for _ in 0..64 {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(id) = self.admit(stream) {
                        new.push(id);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::warn!("control socket: out of file descriptors: refusing a client");
                    self.reserve = None;
                    drop(self.listener.accept());
                    self.reserve = self.listener.as_fd().try_clone_to_owned().ok();
                }
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(e) => {
                    log::warn!("control socket: accept failed: {e}");
                    break;
                }
            }
        }
        new
    }

    /// The earliest deadline of any connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(Connection::deadline).min()
    }

    /// Close every connection whose deadline has passed at `now`; their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            if c.deadline().is_some_and(|d| d <= now) {
                log::debug!(
                    "control client pid {} uid {}: deadline passed: closing",
                    c.peer.pid,
                    c.peer.uid
                );
                c.expire();
                out.push(*id);
            }
        }
        out
    }

    fn admit(&mut self, stream: UnixStream) -> Option<u32> {
        if stream.set_nonblocking(true).is_err() {
            return None;
        }
        let peer = match getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(c) => Peer {
                pid: c.pid(),
                uid: c.uid(),
                gid: c.gid(),
                groups: crate::sys::peercred::peer_groups(&stream).ok(),
            },
            Err(e) => {
                log::debug!("control socket: no peer credentials: {e}");
                return None;
            }
        };
        let privileged = users::is_privileged(&peer, self.allowed_group.as_deref());
        let held = Held {
            total: self.conns.len(),
            unprivileged: self.conns.values().filter(|c| !c.privileged).count(),
            same_uid: self
                .conns
                .values()
                .filter(|c| c.peer.uid == peer.uid)
                .count(),
        };
        if let Err((limit, value)) = admission(held, peer.uid, privileged) {
            log::debug!(
                "control socket: {limit} limit ({value}) reached: refusing pid {} uid {}",
                peer.pid,
                peer.uid
            );
            let reply = wire::encode_error(
                "io.smss.Manager.LimitReached",
                serde_json::json!({"limit": limit, "value": value}),
            );
            // A fresh socket's buffer takes this whole; if not, the peer just sees EOF.
            let _ = send_nosignal(&stream, &reply);
            return None;
        }
        let id = loop {
            self.next_id = self.next_id.wrapping_add(1);
            if !self.conns.contains_key(&self.next_id) {
                break self.next_id;
            }
        };
        self.conns
            .insert(id, Connection::new(stream, peer, privileged));
        Some(id)
    }
}

/// send(2) with MSG_NOSIGNAL: PID 1 blocks every signal into its signalfd, so a SIGPIPE
/// would be queued there (and forwarded to a container's command) instead of ignored.
fn send_nosignal(stream: &UnixStream, bytes: &[u8]) -> nix::Result<usize> {
    nix::sys::socket::send(
        stream.as_raw_fd(),
        bytes,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    )
}

/// Does a live listener answer on `path`? A non-blocking connect never waits: a full backlog
/// (EAGAIN) also means somebody is there.
fn is_served(path: &Path) -> bool {
    let Ok(fd) = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    !matches!(
        nix::sys::socket::connect(fd.as_raw_fd(), &addr),
        Err(nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ENOENT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_socket(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smss-server-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("control")
    }

    fn held(total: usize, unprivileged: usize, same_uid: usize) -> Held {
        Held {
            total,
            unprivileged,
            same_uid,
        }
    }

    #[test]
    fn root_always_has_slots_and_each_uid_has_a_cap() {
        // Root: only the total bounds it, and the reserve is its own.
        assert_eq!(admission(held(MAX_CONNECTIONS - 1, 0, 0), 0, true), Ok(()));
        assert_eq!(
            admission(held(MAX_CONNECTIONS, 0, 0), 0, true),
            Err(("connections", MAX_CONNECTIONS))
        );
        // Anyone else stops short of the reserve, acting or not.
        for privileged in [true, false] {
            assert_eq!(
                admission(held(MAX_CONNECTIONS - ROOT_RESERVE, 0, 0), 1000, privileged),
                Err(("connections", MAX_CONNECTIONS - ROOT_RESERVE))
            );
        }
        // Per uid.
        assert_eq!(
            admission(held(10, 0, MAX_CONNECTIONS_PER_UID), 1000, true),
            Err(("connections-per-uid", MAX_CONNECTIONS_PER_UID))
        );
        assert_eq!(
            admission(held(10, 8, MAX_UNPRIVILEGED_PER_UID), 1000, false),
            Err(("connections-per-uid", MAX_UNPRIVILEGED_PER_UID))
        );
        assert_eq!(admission(held(10, 8, 1), 1000, false), Ok(()));
        // Readers together.
        assert_eq!(
            admission(held(100, MAX_UNPRIVILEGED_CONNECTIONS, 0), 1000, false),
            Err(("connections", MAX_UNPRIVILEGED_CONNECTIONS))
        );
        assert_eq!(
            admission(held(100, MAX_UNPRIVILEGED_CONNECTIONS, 0), 1000, true),
            Ok(())
        );
    }

    /// Whatever the other uids hold (each within its cap), root gets a slot until the total
    /// is reached, and no uid but root ever holds more than its cap.
    #[test]
    fn no_mix_of_uids_locks_root_out() {
        // Fill greedily with many uids, each taking what admission allows.
        let mut per_uid = std::collections::HashMap::<u32, usize>::new();
        let (mut total, mut unpriv) = (0, 0);
        for round in 0..2000u32 {
            let uid = 1 + round % 40;
            let privileged = uid % 2 == 0;
            let h = held(total, unpriv, *per_uid.get(&uid).unwrap_or(&0));
            if admission(h, uid, privileged).is_ok() {
                total += 1;
                unpriv += usize::from(!privileged);
                *per_uid.entry(uid).or_default() += 1;
            }
        }
        assert!(total <= MAX_CONNECTIONS - ROOT_RESERVE);
        assert!(unpriv <= MAX_UNPRIVILEGED_CONNECTIONS);
        for root_held in 0..ROOT_RESERVE {
            assert_eq!(
                admission(held(total + root_held, unpriv, root_held), 0, true),
                Ok(())
            );
        }
    }

    #[test]
    fn deadlines_of_a_connection() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = Clock::new(t0);
        assert_eq!(c.deadline(false), Some(t0 + IDLE_DEADLINE));
        // Half a message: the shorter deadline, from its first byte, however it trickles.
        c.input(5, t0 + s);
        c.input(6, t0 + 5 * s);
        assert_eq!(c.deadline(false), Some(t0 + s + MESSAGE_DEADLINE));
        // Taken whole: idle again, from then.
        c.message(0, t0 + 6 * s);
        assert_eq!(c.deadline(false), Some(t0 + 6 * s + IDLE_DEADLINE));
        // Waiting for a deferred reply: no deadline, however long it takes...
        assert_eq!(c.deadline(true), None);
        // ...then idle from the reply on.
        c.replied(t0 + 100 * s);
        c.output(0, t0 + 100 * s);
        assert_eq!(c.deadline(false), Some(t0 + 100 * s + IDLE_DEADLINE));
        // A reply the peer does not read.
        c.output(10, t0 + 101 * s);
        assert_eq!(c.deadline(false), Some(t0 + 101 * s + MESSAGE_DEADLINE));
        assert_eq!(c.deadline(true), Some(t0 + 101 * s + MESSAGE_DEADLINE));
        c.output(0, t0 + 102 * s);
        assert_eq!(c.deadline(false), Some(t0 + 102 * s + IDLE_DEADLINE));
        // Pipelined: the rest of the next message counts from when the first was taken.
        c.message(3, t0 + 103 * s);
        assert_eq!(c.deadline(false), Some(t0 + 103 * s + MESSAGE_DEADLINE));
    }

    #[test]
    fn denials_are_logged_a_few_at_a_time_then_counted() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        let logged = (0..1000)
            .filter(|_| {
                let (log, summary) = l.admit(t0);
                assert_eq!(summary, None);
                log
            })
            .count();
        assert_eq!(logged, DENIAL_LOG_BURST as usize);
        assert_eq!(l.deadline(), Some(t0 + DENIAL_LOG_INTERVAL));
        assert_eq!(l.flush(t0 + DENIAL_LOG_INTERVAL / 2), None);
        // The count once the interval is over (the timer), or with the next line.
        let mut again = LogLimiter::default();
        for _ in 0..20 {
            again.admit(t0);
        }
        assert_eq!(l.flush(t0 + DENIAL_LOG_INTERVAL), Some(1000 - 10));
        assert_eq!(l.deadline(), None);
        assert_eq!(
            again.admit(t0 + DENIAL_LOG_INTERVAL),
            (true, Some(20 - u64::from(DENIAL_LOG_BURST)))
        );
    }

    #[test]
    fn binds_replaces_stale_and_refuses_live() {
        let p = temp_socket("stale");
        let s = Server::bind(&p, None).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        // Live: refused.
        assert!(Server::bind(&p, None).is_err());
        drop(s);
        // Stale (the listener is gone, the file stays): replaced.
        assert!(p.exists());
        let _s = Server::bind(&p, None).unwrap();
    }

    #[test]
    fn round_trip_and_framing() {
        let p = temp_socket("rt");
        let mut s = Server::bind(&p, None).unwrap();
        let mut c = UnixStream::connect(&p).unwrap();
        let ids = s.accept();
        assert_eq!(ids.len(), 1);
        let conn = s.conns.get_mut(&ids[0]).unwrap();
        assert_eq!(conn.privileged, nix::unistd::geteuid().is_root());
        c.write_all(b"{\"method\":\"a.B\"}\0{\"meth").unwrap();
        conn.fill();
        assert_eq!(
            conn.next_message(),
            Some(Ok(b"{\"method\":\"a.B\"}".to_vec()))
        );
        assert_eq!(conn.next_message(), None);
        conn.send(b"reply\0");
        let mut got = [0u8; 6];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"reply\0");
        drop(c);
        conn.fill();
        assert!(conn.finished());
    }

    #[test]
    fn a_client_that_never_reads_is_dropped() {
        let p = temp_socket("noread");
        let mut s = Server::bind(&p, None).unwrap();
        let _c = UnixStream::connect(&p).unwrap();
        let id = s.accept()[0];
        let conn = s.conns.get_mut(&id).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..100 {
            conn.send(&chunk);
            if conn.finished() {
                break;
            }
        }
        assert!(conn.finished(), "output was not capped");
    }

    #[test]
    fn no_more_calls_are_taken_while_a_reply_waits() {
        let p = temp_socket("backpressure");
        let mut s = Server::bind(&p, None).unwrap();
        let mut c = UnixStream::connect(&p).unwrap();
        let id = s.accept()[0];
        let conn = s.conns.get_mut(&id).unwrap();
        c.write_all(b"{\"method\":\"a.One\"}\0{\"method\":\"a.Two\"}\0")
            .unwrap();
        conn.fill();
        assert_eq!(
            conn.next_message(),
            Some(Ok(b"{\"method\":\"a.One\"}".to_vec()))
        );
        // A reply bigger than the socket takes at once stays queued...
        let reply = vec![b'r'; 1 << 20];
        conn.send(&reply);
        assert!(!conn.finished());
        // ...and until it is written, the second call waits and nothing more is read.
        assert_eq!(conn.next_message(), None);
        assert!(!conn.interest().read);
        assert!(conn.interest().write);
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 1 << 20];
            c.read_exact(&mut got).unwrap();
            c
        });
        while conn.interest().write {
            let mut fds = [PollFd::new(conn.fd(), PollFlags::POLLOUT)];
            poll(&mut fds, PollTimeout::from(5000u16)).unwrap();
            conn.flush();
        }
        let _c = reader.join().unwrap();
        assert_eq!(
            conn.next_message(),
            Some(Ok(b"{\"method\":\"a.Two\"}".to_vec()))
        );
        assert!(conn.interest().read);
    }
}
