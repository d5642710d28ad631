//! The instance link: read a running instance's report and messages, send its keeper commands.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::table::{instance_deadline, take_spawning, SessionState};
use super::teardown::alive;
use crate::control::instance::{InstanceMessage, KeeperCommand, Report, MAX_REPORT};
use crate::control::manager::MethodError;
use crate::os::cgroup::{CGROUP_PARENT, CGROUP_ROOT};
use crate::os::procs;
use crate::supervise::{Child, Role, Supervisor, Timer};
use crate::sys;

/// The pipe to a running instance and what it has written so far.
pub(super) struct InstanceLink {
    pub(super) sock: UnixStream,
    /// The `smss-session` process.
    pub(super) pid: i32,
    pub(super) buf: Vec<u8>,
}

impl Supervisor {
    /// The instance has not reported within its deadline: kill it, then stop what it started.
    pub(crate) fn on_session_start_timer(&mut self, id: u32) {
        let secs = self
            .sessions
            .sessions
            .get(&id)
            .map_or(0, |s| instance_deadline(&s.params).as_secs());
        self.abort_instance(id, format!("smss-session did not report within {secs} s"));
        self.resume_clients();
    }

    /// Give up on a session's running instance: SIGKILL it (and, without a cgroup, remember
    /// its descendants so the teardown finds them), fail the creation and end the session.
    pub(super) fn abort_instance(&mut self, id: u32, why: String) {
        // What it wrote so far first: the processes it started (or its report, which makes
        // the session active, and TerminateSession then ends it the ordinary way).
        self.read_instance(id, false);
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
        }
        let Some(link) = s.instance.take() else {
            return;
        };
        // Everything the instance started so far is below it (it has not exited, and it is
        // a subreaper when there is no cgroup): stopped first, so it starts (and reaps)
        // nothing between the look and the kill, then remembered with start times.
        let _ = sys::kill(link.pid, libc::SIGSTOP);
        if let Some(all) = procs::snapshot() {
            for p in procs::descendants(&all, &[link.pid]) {
                if !s.members.contains_key(&p.pid) {
                    s.strays.insert((p.pid, p.start_time));
                }
            }
        }
        let _ = sys::kill(link.pid, libc::SIGKILL);
        self.unwatch(link.sock.as_fd());
        self.instance_failed(id, why);
    }

    /// A session instance wrote to (or closed) its report socket.
    pub(crate) fn on_session_report(&mut self, id: u32) {
        let starting = |s: &Self| {
            s.sessions
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Starting)
        };
        let was_starting = starting(self);
        let closed = self.read_instance(id, false);
        if closed && starting(self) {
            self.instance_failed(id, "smss-session ended without a report".into());
        }
        self.start_queued_sessions();
        self.resume_clients();
        if was_starting && !starting(self) {
            // Answered: sessions are in use; a spare starts if none runs (the first one,
            // or after failures).
            self.after_answer();
        }
    }

    /// Read and act on what the instance wrote (`exited`: it is gone, so read what is left
    /// and close). True once the link is closed.
    pub(super) fn read_instance(&mut self, id: u32, exited: bool) -> bool {
        let starting = |s: &Self| {
            s.sessions
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Starting)
        };
        // Read at the instance's exit (the reaper saw it before epoll brought the report):
        // an answer like on_session_report's, which starts the spare.
        let answer_at_exit = exited && starting(self);
        let Some(link) = self
            .sessions
            .sessions
            .get_mut(&id)
            .and_then(|s| s.instance.as_mut())
        else {
            return true;
        };
        let mut eof = exited;
        let mut chunk = [0u8; 4096];
        loop {
            match (&link.sock).read_chunk(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    link.buf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if link.buf.len() > MAX_REPORT && !link.buf.contains(&b'\n') {
                        eof = true;
                        break;
                    }
                    // A keeper writes little; an instance that writes more than this at
                    // once is read on the next wake-up.
                    if link.buf.len() > 4 * MAX_REPORT {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        while let Some(i) = link.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = link.buf.drain(..=i).collect();
            line.pop();
            lines.push(line);
        }
        if eof {
            if let Some(link) = self
                .sessions
                .sessions
                .get_mut(&id)
                .and_then(|s| s.instance.take())
            {
                self.unwatch(link.sock.as_fd());
            }
        }
        // A member's exit is logged after the batch: the `empty` that may follow it answers a
        // TerminateSession, and the log line is not on that path.
        let outer = self.sessions.exits_later.replace(Vec::new());
        for line in lines {
            self.instance_message(id, &line);
        }
        let later = std::mem::replace(&mut self.sessions.exits_later, outer);
        for l in later.unwrap_or_default() {
            log::info!("{l}");
        }
        if answer_at_exit && !starting(self) {
            self.after_answer();
        }
        eof
    }

    /// One line from a session's instance or keeper.
    fn instance_message(&mut self, id: u32, line: &[u8]) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        match serde_json::from_slice::<InstanceMessage>(line) {
            Ok(InstanceMessage::Started(mut m)) => {
                if m.start_time == 0 {
                    // The instance leaves it to us (reading it would hold its release back).
                    // The process is the instance's child, not reaped, or (the instance died)
                    // ours: the pid still names it.
                    m.start_time = crate::os::procs::read(m.pid).map_or(0, |p| p.start_time);
                }
                if s.state == SessionState::Starting {
                    s.members.insert(m.pid, m);
                } else if s.keeper && s.state == SessionState::Active {
                    // A subsystem started on request: a member now; the reply waits for
                    // `running` (or `spawn_failed` when it cannot exec).
                    s.members.insert(m.pid, m);
                }
            }
            Ok(InstanceMessage::Running { pid }) => {
                if let Some(name) = s.members.get(&pid).map(|m| m.name.clone()) {
                    log::info!("session {id}: subsystem {name} started on request (pid {pid})");
                    for w in take_spawning(s, &name) {
                        self.reply_deferred(w, Ok(json!({ "pid": pid })));
                    }
                }
            }
            Ok(InstanceMessage::SpawnFailed { name, error }) => {
                log::warn!("session {id}: failed to start subsystem {name}: {error}");
                for w in take_spawning(s, &name) {
                    self.reply_deferred(w, Err(MethodError::failed(error.clone())));
                }
            }
            Ok(InstanceMessage::Report(r)) => self.handle_report(id, r),
            Ok(InstanceMessage::Exited { pid, status }) => {
                if let Some(name) = s.members.get(&pid).map(|m| m.name.clone()) {
                    self.member_exited(id, pid, &name, &status);
                }
            }
            Ok(InstanceMessage::Empty) if s.keeper => self.keeper_empty(id),
            Ok(InstanceMessage::Empty) => {
                log::warn!("session {id}: `empty` from an instance that is not its keeper")
            }
            Err(e) if s.state == SessionState::Starting => {
                self.instance_failed(id, format!("unreadable report: {e}"))
            }
            Err(e) => log::warn!("session {id}: unreadable line from its keeper: {e}"),
        }
    }

    fn handle_report(&mut self, id: u32, report: Report) {
        let now = self.uptime_us();
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
        }
        // The answer first: what follows (the members, the cgroup's watch, the log line and
        // the timeline) is not on the caller's path.
        let waiter = s.create_waiter.take();
        if let Some(w) = waiter {
            let answer = match &report.error {
                Some(err) => Err(MethodError::failed(err.clone())),
                None => Ok(json!({"id": id, "pids": report.pids})),
            };
            self.reply_deferred(w, answer);
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        s.cgroup = report.cgroup.as_ref().map(PathBuf::from);
        s.leader = report.leader;
        s.state = SessionState::Active;
        s.keeper = report.keeper && report.error.is_none();
        let keeper = s.keeper;
        // A process may already be gone (and reaped as an orphan, if its instance exited
        // first): only live ones become members. A keeper's members are its children: it
        // tells us when they exit.
        let mut dead = Vec::new();
        for m in &report.members {
            if keeper {
                s.members.insert(m.pid, m.clone());
            } else if alive(m.pid) {
                s.members.insert(m.pid, m.clone());
                self.children.insert(
                    m.pid,
                    Child {
                        name: m.name.clone(),
                        role: Role::SessionMember {
                            session: id,
                            leader: Some(m.pid) == report.leader,
                        },
                        critical: false,
                    },
                );
            } else {
                s.members.remove(&m.pid);
                dead.push(m.clone());
            }
        }
        let cgroup = s.cgroup.clone();
        // The instance has done its part (it exits now, or lives on as the keeper): its
        // creation slot is free. Not left to its exit: a failed session may be gone (and
        // out of the table) before the exit is reaped, and the slot would never come back.
        self.release_slot(id);
        if let Some(cg) = cgroup {
            self.watch_cgroup(id, &cg);
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let result = match &report.error {
            Some(err) => format!("failed: {err}"),
            None => "ok".to_string(),
        };
        self.timeline.session_done(id, now, &result);
        if let Some(err) = report.error {
            log::error!("session {id}: {err}");
            return self.end_session(id, format!("failed to start: {err}"));
        }
        if s.keeper && !self.sessions.keeper_mode_logged {
            log::info!(
                "no cgroup2 hierarchy at {CGROUP_ROOT}: each session is tracked by its session \
                 ids, kept by its smss-session (logged once)"
            );
            self.sessions.keeper_mode_logged = true;
        }
        let Some(s) = self.sessions.sessions.get(&id) else {
            return;
        };
        log::info!(
            "session {id} created: seat {} tty {} leader pid {}",
            s.params.seat.as_deref().unwrap_or("-"),
            s.params.tty.as_deref().unwrap_or("-"),
            report.leader.map_or("-".to_string(), |p| p.to_string()),
        );
        let terminate = s.terminate_requested;
        if terminate {
            self.end_session(id, "terminated by request".into());
        } else if report
            .leader
            .map_or(true, |l| dead.iter().any(|m| m.pid == l))
        {
            self.end_session(id, "its login manager exited".into());
        } else if let Some(m) = dead.iter().find(|m| m.critical) {
            self.end_session(id, format!("session subsystem {} exited", m.name));
        }
    }

    /// The instance ended without a usable report: stop whatever it started (its cgroup, if
    /// it made one, holds it) and fail the request.
    pub(super) fn instance_failed(&mut self, id: u32, why: String) {
        let now = self.uptime_us();
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
        }
        // Its slot is free now (see handle_report): the session may end before the
        // instance's exit is reaped.
        if std::mem::take(&mut s.slot) {
            self.sessions.instances = self.sessions.instances.saturating_sub(1);
        }
        log::error!("session {id}: {why}");
        self.timeline
            .session_done(id, now, &format!("failed: {why}"));
        let cg = Path::new(CGROUP_ROOT)
            .join(CGROUP_PARENT)
            .join(format!("session-{id}"));
        let cg = cg.join("cgroup.procs").exists().then_some(cg);
        s.cgroup = cg.clone();
        s.state = SessionState::Active;
        if let Some(w) = s.create_waiter.take() {
            self.reply_deferred(w, Err(MethodError::failed(why.clone())));
        }
        // Its emptying finishes the teardown (not only the kill timer).
        if let Some(cg) = cg {
            self.watch_cgroup(id, &cg);
        }
        self.end_session(id, why);
    }

    /// Write a command to the session's keeper; a keeper that cannot be told is killed (its
    /// exit then hands what is left to us).
    pub(crate) fn tell_keeper(&mut self, id: u32, command: &KeeperCommand) {
        let Some(link) = self
            .sessions
            .sessions
            .get(&id)
            .filter(|s| s.keeper)
            .and_then(|s| s.instance.as_ref())
        else {
            return;
        };
        let mut line = serde_json::to_vec(command).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = (&link.sock).write_all(&line) {
            log::warn!("session {id}: failed to write to its keeper: {e}; killing it");
            let _ = sys::kill(link.pid, libc::SIGKILL);
        }
    }
}

/// Read without blocking (the socket is non-blocking).
trait ReadChunk {
    fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl ReadChunk for &UnixStream {
    fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(self, buf)
    }
}
