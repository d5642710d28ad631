//! Subsystems: Required ones at boot, Optional ones on request (SmLoadDeferedSubsystem).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::json;
use smss_config::{CommandSpec, Ready};

use super::boot::{Step, Wait, DEFAULT_READY_TIMEOUT};
use super::sessions::SessionState;
use super::{Child, Role, Supervisor, Timer, Token};
use crate::control::instance::{self, KeeperCommand, Member, EXEC_MARK};
use crate::control::manager::MethodError;
use crate::os::{procs, users};
use crate::sys::process::{self, Detach, SpawnSpec};

impl Supervisor {
    /// SubSystems\Required, in order, each ready before the next. "debug" was dropped by the
    /// planner, as Windows skips it.
    pub(super) fn start_required(&mut self, subsystems: &[(String, CommandSpec)]) -> Step {
        while let Some((name, spec)) = subsystems.get(self.boot.step) {
            self.boot.step += 1;
            let critical = spec.is_critical(true);
            let mut extra = Vec::new();
            if spec.ready == Ready::Notify {
                match self.open_notify_socket().ok() {
                    Some(address) => extra.push(("NOTIFY_SOCKET".to_string(), address)),
                    // It could never say READY=1: fail now rather than after the timeout.
                    None if critical => {
                        self.boot
                            .problems
                            .push(format!("subsystem {name}: no readiness socket"));
                        return Step::Fatal(name.clone());
                    }
                    None => {
                        self.problem(format!(
                            "subsystem {name}: no readiness socket; not started"
                        ));
                        continue;
                    }
                }
            }
            let now = self.uptime_us();
            let spawned = self.spawn_command(
                spec,
                name,
                Role::Subsystem(name.clone()),
                critical,
                Detach::Session,
                &extra,
            );
            let notify = spec.ready == Ready::Notify;
            match &spawned {
                Ok(pid) if notify => {
                    self.timeline
                        .subsystem_started(name, Some(*pid), true, now, "waiting")
                }
                Ok(pid) => self
                    .timeline
                    .subsystem_started(name, Some(*pid), false, now, "running"),
                Err(e) => self.timeline.subsystem_started(
                    name,
                    None,
                    notify,
                    now,
                    &format!("failed: {e}"),
                ),
            }
            match spawned {
                Ok(pid) => {
                    log::info!("subsystem {name} started (pid {pid})");
                    if spec.ready == Ready::Notify {
                        let timeout = spec.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT);
                        self.add_timer(Self::deadline_after(timeout), Timer::Readiness { pid });
                        return Step::Wait(Wait::Ready {
                            pid,
                            name: name.clone(),
                        });
                    }
                }
                Err(e) if critical => {
                    self.boot.problems.push(format!("subsystem {name}: {e}"));
                    return Step::Fatal(name.clone());
                }
                Err(e) => self.problem(format!("subsystem {name}: {e}")),
            }
        }
        Step::Done
    }

    /// SmLoadDeferedSubsystem: an Optional subsystem, in session 0 (our child) or inside an
    /// interactive session (its cgroup, its environment). The running one's pid if started;
    /// None when a session's keeper starts it: `waiter` then gets the pid.
    pub(crate) fn load_deferred_subsystem(
        &mut self,
        name: &str,
        session: Option<u32>,
        waiter: Option<u32>,
    ) -> Result<Option<i32>, MethodError> {
        let optional = self
            .cfg
            .subsystems
            .optional
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name));
        let Some((name, spec)) = self
            .cfg
            .subsystems
            .get_entry(name)
            .filter(|_| optional)
            .map(|(n, s)| (n.to_string(), s.clone()))
        else {
            return Err(MethodError::no_such_subsystem(name));
        };
        match session.filter(|s| *s != 0) {
            None => {
                let running = self.children.iter().find_map(|(pid, c)| match &c.role {
                    Role::Subsystem(n) if n.eq_ignore_ascii_case(&name) => Some(*pid),
                    _ => None,
                });
                if let Some(pid) = running {
                    return Ok(Some(pid));
                }
                // No NOTIFY_SOCKET: the reply does not wait for readiness, and the socket that
                // exists during boot belongs to the subsystem the boot waits for (a READY=1
                // from this one, running as root, would count as that one's).
                let extra = Vec::new();
                let critical = spec.is_critical(false);
                let now = self.uptime_us();
                let pid = self
                    .spawn_command(
                        &spec,
                        &name,
                        Role::Subsystem(name.clone()),
                        critical,
                        Detach::Session,
                        &extra,
                    )
                    .map_err(|e| MethodError::failed(e.to_string()))?;
                log::info!("subsystem {name} started on request (pid {pid})");
                self.timeline
                    .subsystem_started(&name, Some(pid), false, now, "running");
                Ok(Some(pid))
            }
            Some(id) => {
                let s = self
                    .sessions
                    .sessions
                    .get(&id)
                    .filter(|s| s.state == SessionState::Active)
                    .ok_or_else(|| MethodError::no_such_session(id))?;
                if let Some(h) = self
                    .held_execs
                    .values_mut()
                    .find(|h| h.session == id && h.name.eq_ignore_ascii_case(&name))
                {
                    // Started by an earlier call whose exec is still to come (a member
                    // already): one answer for both.
                    h.waiters.extend(waiter);
                    return Ok(None);
                }
                if let Some((pid, _)) = s
                    .members
                    .iter()
                    .find(|(_, m)| m.name.eq_ignore_ascii_case(&name))
                {
                    return Ok(Some(*pid));
                }
                let user = s.params.user.as_deref().and_then(users::find_user);
                let env = instance::session_environment(
                    self.env.vars().to_vec(),
                    &s.params,
                    user.as_ref(),
                );
                let argv = instance::expand_argv(&spec.argv, &env).map_err(MethodError::failed)?;
                if s.keeper {
                    // Without a cgroup: its keeper starts it, so that it (and whatever it
                    // forks) stays below the keeper like the rest of the session.
                    let asked = s
                        .spawning
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&name));
                    let command = KeeperCommand::Spawn {
                        name: name.clone(),
                        argv,
                        env: env.vars().to_vec(),
                        user: s.params.user.clone(),
                    };
                    if let Some(s) = self.sessions.sessions.get_mut(&id) {
                        s.spawning.push((name, waiter));
                    }
                    if !asked {
                        self.tell_keeper(id, &command);
                    }
                    return Ok(None);
                }
                // Through `smss-session exec`, which joins the cgroup (and drops to the
                // session's user) before exec, so nothing it forks escapes the session. As
                // root, what cannot run is refused first; either way the reply waits for the
                // exec (`--hold`): a user's command may be one that user cannot execute.
                if user.as_ref().map_or(true, |u| u.uid == 0) {
                    let first = argv.first().map_or("", String::as_str);
                    process::check_root_can_execute(first, env.get("PATH"))
                        .map_err(MethodError::failed)?;
                }
                let io = |e: std::io::Error| {
                    MethodError::failed(format!("failed to create the hold socket: {e}"))
                };
                let (ours, theirs) = UnixStream::pair().map_err(io)?;
                ours.set_nonblocking(true).map_err(io)?;
                let fd = theirs.as_raw_fd();
                let program = self.session_binary.clone();
                let mut full = vec![
                    program.display().to_string(),
                    "exec".to_string(),
                    "--hold".to_string(),
                    fd.to_string(),
                ];
                if let Some(cg) = &s.cgroup {
                    full.extend(["--cgroup".to_string(), cg.display().to_string()]);
                }
                if let Some(u) = &s.params.user {
                    full.extend(["--user".to_string(), u.clone()]);
                }
                full.push("--".into());
                full.extend(argv);
                let spawn = SpawnSpec {
                    program,
                    argv: full,
                    env: env.vars().to_vec(),
                    detach: Detach::Session,
                    stdio: None,
                    pass_fd: Some(fd),
                    cwd: None,
                };
                let pid = process::spawn(&spawn)
                    .map_err(|e| MethodError::failed(e.to_string()))?
                    .as_raw();
                drop(theirs);
                self.children.insert(
                    pid,
                    Child {
                        name: name.clone(),
                        role: Role::SessionMember {
                            session: id,
                            leader: false,
                        },
                        critical: false,
                    },
                );
                if let Some(s) = self.sessions.sessions.get_mut(&id) {
                    s.members.insert(
                        pid,
                        Member {
                            pid,
                            name: name.clone(),
                            critical: false,
                            // Our child, not reaped: the pid is this process's.
                            start_time: procs::read(pid).map_or(0, |p| p.start_time),
                        },
                    );
                }
                // PID 1 knows of it now: let it go on. One byte into an empty socket never
                // waits. Without it, it exits without running anything (our end closes).
                if let Err(e) = (&ours).write_all(b"g") {
                    if let Some(s) = self.sessions.sessions.get_mut(&id) {
                        s.members.remove(&pid);
                    }
                    return Err(MethodError::failed(format!(
                        "failed to release subsystem {name} (pid {pid}): {e}"
                    )));
                }
                if let Some(mut old) = self.held_execs.remove(&pid) {
                    // Only if a pid came back while its socket was unread: answer that one
                    // (that process is gone).
                    old.eof = true;
                    self.finish_held_exec(pid, old);
                }
                if let Err(e) = self.watch(ours.as_fd(), Token::HeldExec(pid)) {
                    // Unwatched, the answer would never come: answer now, as before.
                    log::warn!("session {id}: failed to watch the hold socket of pid {pid}: {e}");
                    log::info!("session {id}: subsystem {name} started on request (pid {pid})");
                    return Ok(Some(pid));
                }
                self.add_timer(Instant::now() + EXEC_OUTCOME_TIMEOUT, Timer::HeldExec(pid));
                let held = HeldExec {
                    sock: ours,
                    session: id,
                    name,
                    waiters: waiter.into_iter().collect(),
                    said: Vec::new(),
                    eof: false,
                };
                self.held_execs.insert(pid, held);
                Ok(None)
            }
        }
    }

    /// The hold socket of `smss-session exec` (`pid`) is readable, or (`deadline`) its time
    /// ran out: answer the calls once its exec is known (EOF: it exec'd, or a reason).
    pub(super) fn on_held_exec(&mut self, pid: i32, deadline: bool) {
        let Some(h) = self.held_execs.get_mut(&pid) else {
            return;
        };
        let (mut done, mut eof) = (false, false);
        let mut chunk = [0u8; 512];
        while !done {
            match (&h.sock).read(&mut chunk) {
                Ok(0) => (done, eof) = (true, true),
                Ok(n) => {
                    let room = MAX_EXEC_REASON.saturating_sub(h.said.len());
                    h.said
                        .extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                    // Enough to tell: a reason that long is cut here.
                    done = h.said.len() >= MAX_EXEC_REASON;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The socket is no use any more: as good as closed.
                Err(_) => (done, eof) = (true, true),
            }
        }
        done |= deadline;
        if !done {
            return;
        }
        if let Some(mut h) = self.held_execs.remove(&pid) {
            h.eof = eof;
            if deadline && !eof && h.said.is_empty() {
                log::warn!(
                    "session {}: subsystem {} (pid {pid}) did not exec within {} s",
                    h.session,
                    h.name,
                    EXEC_OUTCOME_TIMEOUT.as_secs()
                );
            }
            self.finish_held_exec(pid, h);
        }
        self.resume_clients();
    }

    /// Answer the calls waiting for `pid`'s exec, from what it said.
    fn finish_held_exec(&mut self, pid: i32, h: HeldExec) {
        self.unwatch(h.sock.as_fd());
        self.cancel_timer(&Timer::HeldExec(pid));
        let active = self
            .sessions
            .sessions
            .get(&h.session)
            .is_some_and(|s| s.state == SessionState::Active);
        let result = match exec_outcome(&h.said, h.eof) {
            ExecOutcome::Started if active => {
                log::info!(
                    "session {}: subsystem {} started on request (pid {pid})",
                    h.session,
                    h.name
                );
                Ok(json!({ "pid": pid }))
            }
            ExecOutcome::NotRun if active => {
                log::warn!(
                    "session {}: subsystem {} (pid {pid}): {ENDED_BEFORE_EXEC}",
                    h.session,
                    h.name
                );
                if let Some(s) = self.sessions.sessions.get_mut(&h.session) {
                    s.members.remove(&pid);
                }
                Err(MethodError::failed(ENDED_BEFORE_EXEC))
            }
            // Not run when the session ends (killed by its teardown, most likely).
            ExecOutcome::Started | ExecOutcome::NotRun => {
                Err(MethodError::failed("the session ended"))
            }
            ExecOutcome::Failed(why) => {
                log::warn!(
                    "session {}: failed to start subsystem {}: {why}",
                    h.session,
                    h.name
                );
                // It exits at once: not a member any longer, so that a new call starts it
                // anew instead of naming this pid.
                if let Some(s) = self.sessions.sessions.get_mut(&h.session) {
                    s.members.remove(&pid);
                }
                Err(MethodError::failed(why))
            }
        };
        for w in h.waiters {
            self.reply_deferred(w, result.clone());
        }
    }
}

/// How long `smss-session exec` may take to exec (or say why it could not) before it is taken
/// as started, as a keeper does: normally microseconds.
const EXEC_OUTCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a reason read from the hold socket (`smss-session exec` writes one line).
const MAX_EXEC_REASON: usize = 4096;

/// A LoadDeferredSubsystem into a session with a cgroup, waiting for the exec.
pub(super) struct HeldExec {
    /// PID 1's end of `smss-session exec --hold`'s socket: the go byte went out on it; the
    /// reason a failed exec gives comes back, and a successful exec closes it.
    sock: UnixStream,
    session: u32,
    name: String,
    /// Control connections waiting for the answer.
    waiters: Vec<u32>,
    /// What came back so far (at most [`MAX_EXEC_REASON`]).
    said: Vec<u8>,
    /// The socket closed (rather than the deadline ran out).
    eof: bool,
}

/// What the bytes read from a hold socket up to its EOF (or the deadline) mean.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExecOutcome {
    /// The exec closed the socket (or nothing was said in time).
    Started,
    /// The reason `smss-session exec` gives, the keeper's words.
    Failed(String),
    /// The socket closed without the exec mark: it ended (was killed) before its exec.
    NotRun,
}

/// Why a command never ran when `smss-session exec` closed its socket before its exec mark.
const ENDED_BEFORE_EXEC: &str = "smss-session exec ended before it ran the command";

/// Decide from what `smss-session exec` said (`eof`: its socket closed; else the deadline ran
/// out): [`EXEC_MARK`] alone then EOF means its exec succeeded; any other bytes are why it
/// failed (as text; bytes that are not UTF-8 are replaced); EOF without the mark means it
/// ended (was killed) before its exec ([`ExecOutcome::NotRun`]). Silence until the deadline counts as started, as a
/// keeper's start does.
pub(super) fn exec_outcome(said: &[u8], eof: bool) -> ExecOutcome {
    let (marked, rest) = match said.split_first() {
        Some((&EXEC_MARK, rest)) => (true, rest),
        _ => (false, said),
    };
    if rest.is_empty() {
        return if marked || !eof {
            ExecOutcome::Started
        } else {
            ExecOutcome::NotRun
        };
    }
    let text = String::from_utf8_lossy(rest);
    let why = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    ExecOutcome::Failed(if why.is_empty() {
        "the command could not be executed".to_string()
    } else {
        why.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_then_eof_means_started() {
        assert_eq!(exec_outcome(&[EXEC_MARK], true), ExecOutcome::Started);
    }

    /// Killed before its exec (frozen in the cgroup, say): the socket closes as an exec
    /// closes it, but without the mark.
    #[test]
    fn eof_without_the_mark_means_it_ended_before_its_exec() {
        assert_eq!(exec_outcome(b"", true), ExecOutcome::NotRun);
        // Silence until the deadline: taken as started.
        assert_eq!(exec_outcome(b"", false), ExecOutcome::Started);
        assert_eq!(exec_outcome(&[EXEC_MARK], false), ExecOutcome::Started);
    }

    #[test]
    fn a_reason_means_failed_with_that_reason() {
        // Before the mark (the user could not be become), and after it (the exec failed).
        assert_eq!(
            exec_outcome(
                b"failed to become alice: EPERM: Operation not permitted\n",
                true
            ),
            ExecOutcome::Failed("failed to become alice: EPERM: Operation not permitted".into())
        );
        let mut said = vec![EXEC_MARK];
        said.extend_from_slice(b"failed to execute /srv/x: EACCES: Permission denied");
        assert_eq!(
            exec_outcome(&said, true),
            ExecOutcome::Failed("failed to execute /srv/x: EACCES: Permission denied".into())
        );
    }

    #[test]
    fn any_bytes_are_a_failure_even_unreadable_ones() {
        assert_eq!(
            exec_outcome(b" \n", true),
            ExecOutcome::Failed("the command could not be executed".into())
        );
        match exec_outcome(b"failed to execute /x\xff: ENOEXEC", true) {
            ExecOutcome::Failed(why) => assert!(why.starts_with("failed to execute /x"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Started exactly when nothing but the mark came (or nothing before the deadline);
        /// a failure's reason is never empty.
        #[test]
        fn started_only_when_nothing_but_the_mark(
            said in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            eof in proptest::prelude::any::<bool>(),
        ) {
            match exec_outcome(&said, eof) {
                ExecOutcome::Started => proptest::prop_assert!(
                    said == [EXEC_MARK] || (said.is_empty() && !eof)
                ),
                ExecOutcome::Failed(why) => {
                    proptest::prop_assert!(said != [EXEC_MARK]);
                    proptest::prop_assert!(!why.is_empty());
                }
                ExecOutcome::NotRun => proptest::prop_assert!(said.is_empty() && eof),
            }
        }
    }
}
