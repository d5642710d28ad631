//! `smss-session exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]`: wait for a
//! byte on FD (a process held until PID 1 knows of it), join the cgroup, drop to the user,
//! say on FD that the exec comes now (`EXEC_MARK`), exec. PID 1 uses it for a subsystem started later in a session with a cgroup
//! (LoadDeferredSubsystem): it writes the byte once it has recorded the pid, and replies once
//! the exec closed FD (started) or the reason came back on it (failed); an instance or keeper holds its own processes in a forked child
//! instead (`smss::sys::held`), with no exec of this binary.

use std::ffi::{CString, OsString};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use smss::logging;
use smss::os::users::{self, User};
use smss::sys::process;

use crate::args;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("failed to find user {0}: no such user")]
    NoUser(String),
    #[error("failed to become {user}: {source}")]
    DropPrivileges {
        user: String,
        source: nix::errno::Errno,
    },
    #[error("failed to find program {}: not found in PATH", .0.to_string_lossy())]
    NotFound(OsString),
    #[error("failed to execute {}: an argument contains NUL", .0.to_string_lossy())]
    Nul(OsString),
    #[error("failed to execute {}: {source}", program.to_string_lossy())]
    Exec {
        program: OsString,
        source: nix::errno::Errno,
    },
}

impl ExecError {
    /// The exit status a shell would give: 127 not found, 126 otherwise.
    pub fn code(&self) -> i32 {
        match self {
            ExecError::NotFound(_) => 127,
            ExecError::Exec {
                source: nix::errno::Errno::ENOENT,
                ..
            } => 127,
            _ => 126,
        }
    }
}

pub fn main(a: args::Exec) -> i32 {
    logging::init(
        std::env::var("SMSS_LOG").ok().as_deref(),
        log::LevelFilter::Warn,
    );
    // Held until the instance has told PID 1 about us; its going away first means the
    // session is being torn down: run nothing. The socket stays open (close-on-exec) to tell
    // the instance why the exec failed, if it does.
    let mut held = None;
    if let Some(fd) = &a.hold {
        let Some(fd) = released(fd) else {
            return 126;
        };
        held = Some(fd);
    }
    if let Some(cg) = &a.cgroup {
        let procs = cg.join("cgroup.procs");
        if let Err(e) = fs::write(&procs, std::process::id().to_string()) {
            log::warn!("failed to join cgroup {}: {e}", cg.display());
        }
    }
    let e = run(a.user.as_deref(), &a.command, held.as_ref());
    log::error!("{e}");
    if let Some(fd) = &held {
        let _ = nix::sys::socket::send(
            fd.as_raw_fd(),
            e.to_string().as_bytes(),
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
    }
    e.code()
}

/// The hold descriptor (`fd` as given on the command line), once a byte arrived on it.
fn released(fd: &str) -> Option<std::os::fd::OwnedFd> {
    fd.parse::<i32>()
        .ok()
        .and_then(|fd| smss::sys::fd::take_inherited(fd).ok())
        .filter(|fd| {
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(fd.as_raw_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r == Ok(1),
                }
            }
        })
}

/// Drop to `user`, exec `cmd`: returns only on failure. Right before the exec, `held` gets
/// [`smss::control::instance::EXEC_MARK`]: its socket closing without it means this process
/// ended before it ran the command (killed, say), which is no start.
fn run(user: Option<&str>, cmd: &[OsString], held: Option<&std::os::fd::OwnedFd>) -> ExecError {
    if let Some(name) = user {
        let Some(u) = users::find_user(name) else {
            return ExecError::NoUser(name.to_string());
        };
        if let Err(source) = drop_privileges(&u) {
            return ExecError::DropPrivileges {
                user: name.to_string(),
                source,
            };
        }
    }
    let program = cmd.first().cloned().unwrap_or_default();
    let args: Vec<CString> = match cmd.iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(a) => a,
        Err(_) => return ExecError::Nul(program),
    };
    if args.is_empty() {
        return ExecError::Nul(program);
    }
    // Looked up here and exec'd by path, not execvp: glibc's execvp runs a file without `#!`
    // with /bin/sh (its ENOEXEC fallback), which smss's other starts do not.
    let Some(path) = process::resolve_program_os(&program, std::env::var_os("PATH").as_deref())
    else {
        return ExecError::NotFound(program);
    };
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return ExecError::Nul(program);
    };
    if let Some(fd) = held {
        let _ = nix::sys::socket::send(
            fd.as_raw_fd(),
            &[smss::control::instance::EXEC_MARK],
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
    }
    let source = match nix::unistd::execv(&path, &args) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    ExecError::Exec { program, source }
}

/// initgroups + setgid + setuid, in that order (after setuid we could do neither).
fn drop_privileges(u: &User) -> nix::Result<()> {
    let gids: Vec<nix::unistd::Gid> = users::supplementary_groups(u)
        .into_iter()
        .map(nix::unistd::Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&gids)?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(u.gid))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(u.uid))?;
    if std::env::set_current_dir(&u.home).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    Ok(())
}
