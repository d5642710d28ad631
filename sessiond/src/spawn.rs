//! Starting a session process so that PID 1 knows of it before it runs anything.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use smss::control::instance::{InstanceMessage, Member};
use smss::os::users;
use smss::sys::held::{self, Credentials, HeldFailure, HeldSpec};
use smss::sys::process::{self, Detach};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to find user {0}: no such user")]
    NoUser(String),
    #[error("failed to find program {0}: not found in PATH")]
    NotFound(String),
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

/// Start a session process held back until PID 1 knows of it: a forked child of the
/// instance (or keeper) that waits for a byte on a socket before it execs the command; the
/// byte is written once the `started` line is. An instance killed in between closes the
/// socket, and the child exits without having run anything (so nothing can start unknown to
/// PID 1). The same socket brings back why the exec failed (it is closed on a successful
/// exec), so a command that cannot run fails its request, as SmStartCsr does, instead of
/// exiting later. The program is looked up in the command's PATH here, once, as root (the
/// child execs the path: no failed execve per PATH directory); should the child, as the
/// user, be refused it (EACCES), it tries the name in the later PATH directories, as execvp
/// as the user would have.
pub(crate) fn spawn_held(
    h: Held,
    link: &UnixStream,
    name: String,
    critical: bool,
) -> Result<Member, SpawnError> {
    start_held(h, link, name, critical)?.finish()
}

/// A session process released and on its way to its exec (PID 1 knows of it): what the
/// caller does before [`Execing::finish`] runs while the process execs.
pub(crate) struct Execing {
    member: Member,
    /// None when it could not be released (it then exits having run nothing).
    child: Option<held::HeldChild>,
    program: String,
    user: Option<String>,
}

impl Execing {
    pub fn pid(&self) -> i32 {
        self.member.pid
    }

    /// Wait for the exec: the member, or why it could not run (its exit is still to be
    /// reported).
    pub fn finish(self) -> Result<Member, SpawnError> {
        let Some(child) = self.child else {
            return Ok(self.member);
        };
        let pid = self.member.pid;
        let why = match child.outcome(EXEC_OUTCOME_TIMEOUT) {
            None => return Ok(self.member),
            Some(HeldFailure::Exec(source)) => exec_error(&self.program, source),
            Some(HeldFailure::Credentials(source)) => format!(
                "failed to become {}: {source}",
                self.user.as_deref().unwrap_or_default()
            ),
        };
        log::error!("{why}");
        Err(SpawnError::Exec { pid, why })
    }
}

/// [`spawn_held`] up to the release: PID 1 has been told of the process, which now execs.
pub(crate) fn start_held(
    h: Held,
    link: &UnixStream,
    name: String,
    critical: bool,
) -> Result<Execing, SpawnError> {
    let user = match &h.user {
        Some(u) => Some(users::find_user(u).ok_or_else(|| SpawnError::NoUser(u.clone()))?),
        None => None,
    };
    let first = h.argv.first().cloned().unwrap_or_default();
    let path = h
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    // A relative PATH directory is relative to where the command will run (the user's
    // home), as it was for execvp after the chdir: looked up there from here.
    let exec_dir = user
        .as_ref()
        .map(|u| PathBuf::from(&u.home))
        .or(h.cwd.clone());
    let rebased = exec_dir.as_deref().and_then(|d| rebase_path(path, d));
    let path = rebased.as_deref().or(path);
    let program = process::resolve_program(&first, path)
        .ok_or_else(|| SpawnError::NotFound(first.clone()))?;
    let alternatives = later_in_path(&first, path, &program);
    let creds = user.as_ref().map(|u| Credentials {
        uid: u.uid,
        gid: u.gid,
        groups: users::supplementary_groups(u),
        home: PathBuf::from(&u.home),
    });
    let child = held::spawn_held(&HeldSpec {
        program: &program,
        alternatives: &alternatives,
        argv: &h.argv,
        env: &h.env,
        detach: h.detach,
        stdio: h.stdio,
        cwd: h.cwd.as_deref(),
        user: creds.as_ref(),
    })?;
    let pid = child.pid.as_raw();
    let mut member = started(link, pid, name, critical);
    let child = match child.release() {
        Ok(()) => Some(child),
        Err(e) => {
            log::warn!("failed to release pid {pid}: {e}");
            None
        }
    };
    // Read while it execs, not before the release: our child, not reaped, so the pid is
    // still its own. (PID 1 reads it too, on `started`, for the case that we die first.)
    member.start_time = smss::os::procs::read(pid).map_or(0, |p| p.start_time);
    Ok(Execing {
        member,
        child,
        program: first,
        user: h.user,
    })
}

/// `name` in the PATH directories after the one `found` is in (none for a name with a
/// slash): what the held child tries when it may not run `found`, as execvp would go on.
fn later_in_path(name: &str, path: Option<&str>, found: &std::path::Path) -> Vec<PathBuf> {
    if name.contains('/') {
        return Vec::new();
    }
    let path = path.unwrap_or(process::DEFAULT_PATH);
    let mut candidates = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(name));
    if candidates.by_ref().any(|c| c == found) {
        candidates.collect()
    } else {
        Vec::new()
    }
}

/// PATH with its relative directories made absolute against `dir`; None when it has none
/// (empty entries are left as they are: the lookup skips them).
fn rebase_path(path: Option<&str>, dir: &std::path::Path) -> Option<String> {
    let path = path?;
    let relative = |d: &str| !d.is_empty() && !d.starts_with('/');
    if !path.split(':').any(relative) {
        return None;
    }
    let dirs: Vec<String> = path
        .split(':')
        .map(|d| match relative(d) {
            true => dir.join(d).display().to_string(),
            false => d.to_string(),
        })
        .collect();
    Some(dirs.join(":"))
}

/// The reason `smss-session exec` gives for a failed exec (the same words either way).
fn exec_error(program: &str, source: nix::errno::Errno) -> String {
    format!("failed to execute {program}: {source}")
}

/// How long a released process may take to exec (or say why it could not) before it is taken
/// as started: normally microseconds.
const EXEC_OUTCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// A process was started: into the report, and at once to PID 1 (so that an instance killed
/// before its report leaves nothing PID 1 does not know of). Its start time is not in the
/// line (0): reading it from /proc would hold the release back, so PID 1 reads it itself.
fn started(link: &UnixStream, pid: i32, name: String, critical: bool) -> Member {
    let member = Member {
        pid,
        name,
        critical,
        start_time: 0,
    };
    let mut line =
        serde_json::to_vec(&InstanceMessage::Started(member.clone())).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = (&*link).write_all(&line) {
        log::warn!("failed to tell smss about pid {pid}: {e}");
    }
    member
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn relative_path_directories_are_rebased() {
        let home = Path::new("/home/u");
        assert_eq!(rebase_path(Some("/a:/b"), home), None);
        assert_eq!(rebase_path(None, home), None);
        assert_eq!(
            rebase_path(Some("bin:/usr/bin::./x"), home).as_deref(),
            Some("/home/u/bin:/usr/bin::/home/u/./x")
        );
    }

    #[test]
    fn alternatives_are_the_later_path_directories() {
        let p = Some("/a::/b:/c");
        assert_eq!(
            later_in_path("x", p, Path::new("/a/x")),
            vec![PathBuf::from("/b/x"), PathBuf::from("/c/x")]
        );
        assert!(later_in_path("x", p, Path::new("/c/x")).is_empty());
        assert!(later_in_path("./x", p, Path::new("./x")).is_empty());
        assert!(later_in_path("x", p, Path::new("/elsewhere/x")).is_empty());
        assert_eq!(
            later_in_path("x", None, Path::new("/usr/bin/x")),
            vec![PathBuf::from("/sbin/x"), PathBuf::from("/bin/x")]
        );
    }
}
