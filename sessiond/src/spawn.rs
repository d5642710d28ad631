//! Starting a session process so that PID 1 knows of it before it runs anything.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use smss::control::instance::{InstanceMessage, Member};
use smss::sys::process::{self, Detach, SpawnSpec};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to find myself: {0}")]
    FindSelf(std::io::Error),
    #[error("failed to create a pipe: {0}")]
    Pipe(nix::errno::Errno),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
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
/// exec --hold FD`, which waits for a byte on a pipe before it execs the command; the byte is
/// written once the `started` line is. An instance killed in between closes the pipe, and the
/// process exits without having run anything (so nothing can start unknown to PID 1).
pub(crate) fn spawn_held(
    h: Held,
    link: &UnixStream,
    name: String,
    critical: bool,
) -> Result<Member, SpawnError> {
    let me = std::env::current_exe().map_err(SpawnError::FindSelf)?;
    let (hold, go) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
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
    }
    Ok(member)
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
