//! Starting a session process so that PID 1 knows of it before it runs anything.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use smss::control::instance::{InstanceMessage, Member};
use smss::sys::process::{self, Detach, SpawnSpec};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to find myself: {0}")]
    FindSelf(std::io::Error),
    #[error("failed to create a socket pair: {0}")]
    SocketPair(nix::errno::Errno),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    /// Started (PID 1 was told of `pid`) but could not exec: `why` is what it said. Its exit
    /// is still to be reported.
    #[error("{why}")]
    Exec { pid: i32, why: String },
}

impl SpawnError {
    /// The pid PID 1 was already told of, when the process started but could not exec.
    pub fn started(&self) -> Option<i32> {
        match self {
            SpawnError::Exec { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// A session process to start.
pub(crate) struct Held {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub detach: Detach,
    pub stdio: Option<std::os::fd::RawFd>,
    pub cwd: Option<PathBuf>,
    /// Drop to this user before exec.
    pub user: Option<String>,
}

/// Start a session process held back until PID 1 knows of it: it starts as `smss-session
/// exec --hold FD`, which waits for a byte on a socket before it execs the command; the byte
/// is written once the `started` line is. An instance killed in between closes the socket,
/// and the process exits without having run anything (so nothing can start unknown to PID 1).
/// The same socket brings back why the exec failed (it is closed on a successful exec), so a
/// command that cannot run fails its request, as SmStartCsr does, instead of exiting later.
pub(crate) fn spawn_held(
    h: Held,
    link: &UnixStream,
    name: String,
    critical: bool,
) -> Result<Member, SpawnError> {
    let me = std::env::current_exe().map_err(SpawnError::FindSelf)?;
    let (hold, go) = {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(SpawnError::SocketPair)?
    };
    let mut argv = vec![
        me.display().to_string(),
        "exec".into(),
        "--hold".into(),
        hold.as_raw_fd().to_string(),
    ];
    if let Some(u) = h.user {
        argv.extend(["--user".into(), u]);
    }
    argv.push("--".into());
    argv.extend(h.argv);
    let spec = SpawnSpec {
        program: me,
        argv,
        env: h.env,
        detach: h.detach,
        stdio: h.stdio,
        pass_fd: Some(hold.as_raw_fd()),
        cwd: h.cwd,
    };
    let pid = process::spawn(&spec)?.as_raw();
    drop(hold);
    let member = started(link, pid, name, critical);
    if let Err(e) = nix::unistd::write(&go, b"g") {
        log::warn!("failed to release pid {pid}: {e}");
        return Ok(member);
    }
    match exec_outcome(&go, EXEC_OUTCOME_TIMEOUT) {
        Some(why) => Err(SpawnError::Exec { pid, why }),
        None => Ok(member),
    }
}

/// How long a released process may take to exec (or say why it could not) before it is taken
/// as started: a user lookup and a cgroup write, normally milliseconds.
const EXEC_OUTCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// What a released `exec --hold` process wrote before its socket closed: nothing when it
/// exec'd (close-on-exec), the reason when it could not. Bounded in size and time.
fn exec_outcome(go: &OwnedFd, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut why = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "a session process did not exec within {} s",
                timeout.as_secs()
            );
            break;
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match nix::unistd::read(go.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                why.extend_from_slice(buf.get(..n).unwrap_or_default());
                if why.len() >= 4096 {
                    break;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => break,
        }
    }
    (!why.is_empty()).then(|| String::from_utf8_lossy(&why).into_owned())
}

/// A process was started: into the report, and at once to PID 1 (so that an instance killed
/// before its report leaves nothing PID 1 does not know of).
fn started(link: &UnixStream, pid: i32, name: String, critical: bool) -> Member {
    let member = Member {
        pid,
        name,
        critical,
        // Our child, not reaped: the pid is still this process's.
        start_time: smss::os::procs::read(pid).map_or(0, |p| p.start_time),
    };
    let mut line =
        serde_json::to_vec(&InstanceMessage::Started(member.clone())).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = (&*link).write_all(&line) {
        log::warn!("failed to tell smss about pid {pid}: {e}");
    }
    member
}
