//! The session's login manager: on the seat's terminal (its controlling terminal, in the
//! foreground) when there is one, as the session's user when one is given.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use smss::control::instance::{self, Member, Report, SessionParams};
use smss::os::users::User;
use smss::sys::process::Detach;
use smss_config::Environment;

use crate::spawn::{start_held, Execing, Held, SpawnError};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0}")]
    Expand(String),
    #[error("failed to open {}: {source}", path.display())]
    OpenTty {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// Start the login manager: released, on its way to its exec (see [`Execing::finish`]).
pub fn start_login_manager(
    p: &SessionParams,
    env: &Environment,
    user: Option<&User>,
    link: &UnixStream,
) -> Result<Execing, LoginError> {
    let argv = instance::expand_argv(&p.command, env).map_err(LoginError::Expand)?;
    // The held child drops privileges, then execs the command (the pid we report stays the
    // login manager's); start_held looks the program up in the session's PATH, once.
    let as_user = user.filter(|u| u.uid != 0);
    let tty = match &p.tty {
        Some(t) => Some(open_seat_tty(t).map_err(|source| LoginError::OpenTty {
            path: PathBuf::from(t),
            source,
        })?),
        None => None,
    };
    let held = Held {
        argv,
        env: env.vars().to_vec(),
        detach: if tty.is_some() {
            Detach::SessionWithTerminal
        } else {
            Detach::Session
        },
        stdio: tty.as_ref().map(|t| t.as_raw_fd()),
        cwd: user.map(|u| PathBuf::from(&u.home)).filter(|h| h.is_dir()),
        user: as_user.map(|u| u.name.clone()),
    };
    let name = p.command.first().cloned().unwrap_or_default();
    Ok(start_held(held, link, name, false)?)
}

/// The login manager exec'd: into the report (its log line comes after the report, see
/// [`started_line`]).
pub fn started(member: Member, report: &mut Report) -> i32 {
    let pid = member.pid;
    report.pids.push(pid);
    report.members.push(member);
    pid
}

/// The log line of a session's login manager, once it is in `report`.
pub fn started_line(p: &SessionParams, report: &Report) -> Option<String> {
    let pid = report.leader?;
    Some(format!(
        "session {}: login manager {} started (pid {pid})",
        p.id,
        p.command.first().map_or("", String::as_str)
    ))
}

/// Open a seat's terminal for the login manager: O_NOCTTY (it must not become *our*
/// controlling terminal) and O_NONBLOCK (a serial line without carrier would otherwise block
/// the open forever, as agetty knows), then back to blocking for the login manager. It must
/// be a terminal: it becomes the login manager's controlling terminal (TIOCSCTTY), which
/// /dev/null, say, cannot be.
fn open_seat_tty(path: &str) -> std::io::Result<fs::File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    if !nix::unistd::isatty(f.as_raw_fd()).unwrap_or(false) {
        return Err(std::io::Error::other("not a terminal"));
    }
    let flags = OFlag::from_bits_truncate(fcntl(f.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(f)
}
