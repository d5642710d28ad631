//! Building a session from its parameters: runtime directory, cgroup, session subsystems, login
//! manager. Every failure becomes the report's error (with what was started so far, which PID 1
//! stops and cleans up).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smss::control::instance::{self, Report, SessionParams, SubsystemSpec};
use smss::os::notify::NotifySocket;
use smss::os::users;
use smss::sys::process::{self, Detach};
use smss_config::Environment;

use crate::readiness::{self, ReadinessError};
use crate::runtime_dir::{self, RuntimeDirError};
use crate::spawn::{spawn_held, Held, SpawnError};
use crate::{cgroup, login};

#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("failed to find user {0}: no such user")]
    NoUser(String),
    #[error(transparent)]
    RuntimeDir(#[from] RuntimeDirError),
    #[error("pids_max: failed to set the session cgroup's pids.max")]
    PidsMax,
    /// A `%VAR%` that does not expand (the message names it).
    #[error("{0}")]
    Expand(String),
    #[error("failed to start an empty command")]
    EmptyCommand,
    #[error("failed to find program {0}: not found in PATH")]
    NoProgram(String),
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
    #[error("subsystem {name}: {source}")]
    Subsystem { name: String, source: StartError },
    #[error("login manager: {0}")]
    LoginManager(#[from] login::LoginError),
}

/// Why one session process did not start (or not get ready).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Readiness(#[from] ReadinessError),
}

/// A report of a session that failed before anything was started.
pub fn failure(id: u32, error: String) -> Report {
    Report {
        id,
        error: Some(error),
        ..Default::default()
    }
}

/// Build the session; every failure ends up in the report (with what was started so far,
/// which PID 1 stops and cleans up).
/// With the report, what to log once it is sent (a log line written on the way can cost
/// the creation its CPU: whoever reads the log wakes up).
pub fn set_up(p: &SessionParams, link: &UnixStream) -> (Report, Option<String>) {
    let mut report = Report {
        id: p.id,
        ..Default::default()
    };
    if let Err(e) = build(p, link, &mut report) {
        report.error = Some(e.to_string());
    }
    let line = login::started_line(p, &report);
    (report, line)
}

fn build(p: &SessionParams, link: &UnixStream, report: &mut Report) -> Result<(), SetUpError> {
    let user = match &p.user {
        Some(name) => Some(users::find_user(name).ok_or(SetUpError::NoUser(name.clone()))?),
        None => None,
    };
    let dir = Path::new(&p.runtime_dir);
    let dirfd = runtime_dir::create(dir, user.as_ref())?;
    let (cgroup, limited) = cgroup::set_up(p.id, p.pids_max);
    report.cgroup = cgroup.map(|c| c.display().to_string());
    if report.cgroup.is_none() {
        // No cgroup to hold the session: this process will, as its keeper. A subreaper
        // before anything is started, so nothing started can get out from below it.
        match smss::sys::set_child_subreaper() {
            Ok(()) => report.keeper = true,
            Err(e) => log::warn!("session {}: failed to become a subreaper: {e}", p.id),
        }
    }
    if p.pids_max.is_some() && !limited {
        // Asked for, not enforceable: fail rather than run without the limit.
        return Err(SetUpError::PidsMax);
    }
    let env = instance::session_environment(std::env::vars().collect(), p, user.as_ref());
    let line = |v: &Option<String>| v.as_ref().map(|s| format!("{s}\n")).unwrap_or_default();
    runtime_dir::write_file(&dirfd, dir, "environment", &runtime_dir::env_file(&env))?;
    runtime_dir::write_file(&dirfd, dir, "seat", &line(&p.seat))?;
    runtime_dir::write_file(&dirfd, dir, "tty", &line(&p.tty))?;

    let mut notify = None;
    for sub in &p.subsystems {
        start_subsystem(p.id, sub, &env, &mut notify, link, report)?;
    }
    let execing = login::start_login_manager(p, &env, user.as_ref(), link)?;
    // The pids file is written while the login manager execs: it is there before the report
    // (and the reply to CreateSession), and not on their path.
    let pids: String = report
        .pids
        .iter()
        .chain([execing.pid()].iter())
        .map(|p| format!("{p}\n"))
        .collect();
    let written = runtime_dir::write_file(&dirfd, dir, "pids", &pids);
    let member = execing.finish().map_err(login::LoginError::from)?;
    report.leader = Some(login::started(member, report));
    Ok(written?)
}

/// Start one session subsystem; wait for READY=1 when it is a notify one.
fn start_subsystem(
    id: u32,
    sub: &SubsystemSpec,
    env: &Environment,
    notify: &mut Option<NotifySocket>,
    link: &UnixStream,
    report: &mut Report,
) -> Result<(), SetUpError> {
    let mut vars = env.vars().to_vec();
    if sub.notify {
        if notify.is_none() {
            *notify = Some(readiness::bind()?);
        }
        if let Some(n) = notify.as_ref() {
            vars.push(("NOTIFY_SOCKET".into(), n.address.clone()));
        }
    }
    let argv = instance::expand_argv(&sub.argv, env).map_err(SetUpError::Expand)?;
    resolve(&argv, env)?;
    let held = Held {
        argv,
        env: vars,
        detach: Detach::Session,
        stdio: None,
        cwd: None,
        user: None,
    };
    let failed = |source: StartError| SetUpError::Subsystem {
        name: sub.name.clone(),
        source,
    };
    let member =
        spawn_held(held, link, sub.name.clone(), sub.critical).map_err(|e| failed(e.into()))?;
    let pid = member.pid;
    report.pids.push(pid);
    report.members.push(member);
    log::info!("session {id}: subsystem {} started (pid {pid})", sub.name);
    if let (true, Some(n)) = (sub.notify, notify.as_ref()) {
        readiness::wait_ready(pid, n, Duration::from_millis(sub.ready_timeout_ms))
            .map_err(|e| failed(e.into()))?;
        log::info!("session {id}: subsystem {} is ready", sub.name);
    }
    Ok(())
}

/// The program `argv` runs, looked up in the session's PATH.
pub fn resolve(argv: &[String], env: &Environment) -> Result<PathBuf, SetUpError> {
    let first = argv.first().ok_or(SetUpError::EmptyCommand)?;
    process::resolve_program(first, env.get("PATH"))
        .ok_or_else(|| SetUpError::NoProgram(first.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's error is these texts; PID 1 passes them on (CreateSession's `reason`).
    #[test]
    fn messages_name_their_object() {
        let e = SetUpError::Subsystem {
            name: "mute".into(),
            source: ReadinessError::NotReady(Duration::from_millis(500)).into(),
        };
        assert_eq!(e.to_string(), "subsystem mute: not ready after 500 ms");
        assert_eq!(
            SetUpError::NoProgram("nope".into()).to_string(),
            "failed to find program nope: not found in PATH"
        );
        let e = SetUpError::from(RuntimeDirError::Write {
            path: PathBuf::from("/run/x/pids"),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert!(
            e.to_string().starts_with("failed to write /run/x/pids: "),
            "{e}"
        );
        assert_eq!(
            SetUpError::NoUser("bob".into()).to_string(),
            "failed to find user bob: no such user"
        );
    }
}
