//! Sessions: PID 1's side of session creation (SmStartCsr: a short-lived `smss-session`
//! instance per session, at most `parallel-session-creation` at once), the reported pids,
//! and tearing a session down (SmStopCsr: SIGTERM, SIGKILL after the grace period, remove
//! the runtime directory and the cgroup).
//!
//! A session is gone when its reported processes have exited and nothing else is left in it:
//! with cgroup2, its cgroup is unpopulated (watched through `cgroup.events`, so double-forked
//! daemons count); without, no live process has one of its session or process-group ids
//! (watched through pidfds).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serde_json::{json, Value};
use smss_config::Ready;

use super::boot::DEFAULT_READY_TIMEOUT;
use super::{procs, Child, Role, Supervisor, Timer, Token, KILL_WAIT};
use crate::control::instance::{
    self, Member, Report, SessionParams, SubsystemSpec, CGROUP_PARENT, CGROUP_ROOT, MAX_PARAMS,
    MAX_REPORT,
};
use crate::control::manager::{CreateSession, MethodError};
use crate::control::users;
use crate::sys::process::{self, Detach, SpawnSpec};
use crate::sys::{self, ExitStatus};

/// The least time between two scans of /proc for session numbers nobody holds any more.
const PRUNE_INTERVAL: Duration = Duration::from_millis(100);

/// A seat's boot session that ends sooner than this after it started is not re-created (a
/// getty that cannot open its tty would otherwise spin).
const RESPAWN_MIN_LIFETIME: Duration = Duration::from_secs(2);

/// Pidfds watched at once for a terminating session without a cgroup.
const MAX_WATCHED_PIDS: usize = 64;

/// How long an instance may take beyond its notify subsystems' readiness timeouts before
/// PID 1 gives up on it: a hung `smss-session` must not hold a creation slot for ever.
const INSTANCE_SLACK: Duration = Duration::from_secs(30);

/// The whole time an instance gets to report.
fn instance_deadline(p: &SessionParams) -> Duration {
    p.subsystems
        .iter()
        .filter(|s| s.notify)
        .map(|s| Duration::from_millis(s.ready_timeout_ms))
        .fold(INSTANCE_SLACK, Duration::saturating_add)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for a free instance slot (or for the boot to finish).
    Queued,
    /// Its `smss-session` instance runs.
    Starting,
    Active,
    Terminating,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Queued => "queued",
            SessionState::Starting => "starting",
            SessionState::Active => "active",
            SessionState::Terminating => "terminating",
        }
    }
}

/// The pipe to a running instance and what it has written so far.
struct InstanceLink {
    sock: UnixStream,
    /// The `smss-session` process.
    pid: i32,
    buf: Vec<u8>,
}

/// How we learn that a terminating session's last process is gone.
enum Watch {
    /// `cgroup.events` (its `populated` line), polled for EPOLLPRI.
    Cgroup(fs::File),
    /// pidfds of the processes left, in an epoll of their own.
    Pids(Epoll, HashMap<u64, OwnedFd>),
}

impl Watch {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Watch::Cgroup(f) => f.as_fd(),
            Watch::Pids(e, _) => e.0.as_fd(),
        }
    }
}

/// One interactive session.
pub struct Session {
    pub id: u32,
    pub params: SessionParams,
    pub state: SessionState,
    pub created_us: u64,
    created: Instant,
    pub leader: Option<i32>,
    /// Reported processes still alive (our children once the instance has exited).
    pub members: BTreeMap<i32, Member>,
    /// Session / process-group ids that mark its processes when there is no cgroup.
    sids: Vec<i32>,
    pub cgroup: Option<PathBuf>,
    instance: Option<InstanceLink>,
    watch: Option<Watch>,
    create_waiter: Option<u32>,
    terminate_waiters: Vec<u32>,
    /// TerminateSession came while the instance was still running.
    terminate_requested: bool,
    /// Ended by TerminateSession (a seat session is then not re-created).
    by_request: bool,
    killed: bool,
    /// A seat session created at boot: re-created when its login manager exits.
    respawn: bool,
    reason: String,
}

/// Every session, the creation queue and the running instances.
#[derive(Default)]
pub struct SessionTable {
    pub sessions: BTreeMap<u32, Session>,
    last_id: u32,
    queue: VecDeque<u32>,
    instances: usize,
    /// Runtime directories renamed aside so far (names them uniquely).
    removals: u64,
    /// When [`Supervisor::prune_session_ids`] last scanned /proc.
    last_prune: Option<Instant>,
}

/// Alive: neither a zombie nor being reaped (X).
fn alive(pid: i32) -> bool {
    procs::read(pid).is_some_and(|p| p.alive())
}

/// `populated` of a cgroup's `cgroup.events`; None when unreadable.
fn populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

fn read_events(f: &fs::File) -> Option<bool> {
    let mut buf = [0u8; 256];
    // Reading from offset 0 also re-arms kernfs' poll notification.
    let n = f.read_at(&mut buf, 0).ok()?;
    populated(std::str::from_utf8(buf.get(..n)?).ok()?)
}

/// Every pid in `cg` and its descendants' `cgroup.procs`.
fn cgroup_procs(cg: &Path, out: &mut Vec<i32>, depth: u32) {
    if let Ok(text) = fs::read_to_string(cg.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if depth == 0 {
        return;
    }
    if let Ok(dir) = fs::read_dir(cg) {
        for e in dir.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_procs(&e.path(), out, depth - 1);
            }
        }
    }
}

/// rmdir a cgroup and its descendants, deepest first.
fn remove_cgroup(cg: &Path, depth: u32) -> std::io::Result<()> {
    if depth > 0 {
        if let Ok(dir) = fs::read_dir(cg) {
            for e in dir.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = remove_cgroup(&e.path(), depth - 1);
                }
            }
        }
    }
    fs::remove_dir(cg)
}

/// `KEY=VALUE` strings of a request.
fn parse_environment(list: &[String]) -> Result<Vec<(String, String)>, MethodError> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(MethodError::invalid(
                "environment",
                format!("{kv:?} is not KEY=VALUE"),
            )),
        })
        .collect()
}

impl Supervisor {
    /// The plan is done: one interactive session per `[[seats]]` entry when `[sessions]
    /// initial-command` is set (the NumberOfInitialSessions analogue), then whatever
    /// CreateSession queued during the boot.
    pub(crate) fn on_boot_complete(&mut self) {
        if self.cfg.sessions.initial_command.is_some() {
            let seats: Vec<String> = self.cfg.seats.iter().map(|s| s.name.clone()).collect();
            for seat in seats {
                let req = CreateSession {
                    seat: Some(seat.clone()),
                    ..Default::default()
                };
                if let Err(e) = self.create_session(req, None, true) {
                    log::error!(
                        "failed to create the session of seat {seat}: {}",
                        e.parameters
                    );
                }
            }
        } else if !self.cfg.seats.is_empty() {
            log::info!("no [sessions] initial-command: the seats get no session at boot");
        }
        self.start_queued_sessions();
        self.resume_clients();
    }

    /// Validate a CreateSession request and queue it. The reply (to `waiter`) comes when
    /// the instance has reported.
    pub(crate) fn create_session(
        &mut self,
        req: CreateSession,
        waiter: Option<u32>,
        respawn: bool,
    ) -> Result<u32, MethodError> {
        if self.stopping() {
            return Err(MethodError::failed("smss is stopping"));
        }
        let max = self.cfg.sessions.max_sessions;
        if self.sessions.sessions.len() >= max as usize {
            return Err(MethodError::limit_reached("max-sessions", max.into()));
        }
        let seat = match &req.seat {
            Some(name) => Some(
                self.cfg
                    .seats
                    .iter()
                    .find(|s| s.name == *name)
                    .cloned()
                    .ok_or_else(|| {
                        MethodError::invalid("seat", format!("no seat {name} in [[seats]]"))
                    })?,
            ),
            None => None,
        };
        if let Some(seat) = &seat {
            let taken = self
                .sessions
                .sessions
                .values()
                .any(|s| s.params.seat.as_deref() == Some(seat.name.as_str()));
            if taken && !req.allow_shared_seat {
                return Err(MethodError::limit_reached("seat", 1));
            }
        }
        let tty = req
            .tty
            .clone()
            .or_else(|| seat.as_ref().map(|s| s.tty.display().to_string()));
        if let Some(t) = &tty {
            if !Path::new(t).is_absolute() {
                return Err(MethodError::invalid("tty", "must be an absolute path"));
            }
            use std::os::unix::fs::FileTypeExt;
            match fs::metadata(t) {
                Ok(m) if m.file_type().is_char_device() => {}
                Ok(_) => {
                    return Err(MethodError::invalid(
                        "tty",
                        format!("{t} is not a character device"),
                    ))
                }
                Err(e) => return Err(MethodError::invalid("tty", format!("{t}: {e}"))),
            }
        }
        let user = match &req.user {
            Some(u) => Some(
                users::find_user(u)
                    .ok_or_else(|| {
                        MethodError::invalid("user", format!("no user {u} in /etc/passwd"))
                    })?
                    .name,
            ),
            None => None,
        };
        let command = match (&req.command, &self.cfg.sessions.initial_command) {
            (Some(c), _) if !c.is_empty() && c.iter().all(|a| !a.contains('\0')) => c.clone(),
            (Some(_), _) => {
                return Err(MethodError::invalid(
                    "command",
                    "must be a non-empty list of arguments without NUL",
                ))
            }
            (None, Some(spec)) => spec.argv.clone(),
            (None, None) => {
                return Err(MethodError::invalid(
                    "command",
                    "no command given and [sessions] initial-command is not set",
                ))
            }
        };
        let environment = parse_environment(&req.environment)?;
        let mut subsystems = Vec::new();
        for name in &self.cfg.sessions.session_subsystems {
            let Some((name, spec)) = self.cfg.subsystems.get_entry(name) else {
                log::warn!("session subsystem {name} has no definition in [subsystems]");
                continue;
            };
            subsystems.push(SubsystemSpec {
                name: name.to_string(),
                argv: spec.argv.clone(),
                notify: spec.ready == Ready::Notify,
                ready_timeout_ms: spec
                    .ready_timeout
                    .unwrap_or(DEFAULT_READY_TIMEOUT)
                    .as_millis() as u64,
                critical: spec.is_critical(true),
            });
        }
        let id = loop {
            self.sessions.last_id = self.sessions.last_id.checked_add(1).unwrap_or(1);
            if !self.sessions.sessions.contains_key(&self.sessions.last_id) {
                break self.sessions.last_id;
            }
        };
        let runtime_dir = Path::new(smss_config::plan::SESSIONS_DIRECTORY).join(id.to_string());
        let params = SessionParams {
            id,
            seat: seat.map(|s| s.name),
            tty,
            user,
            command,
            environment,
            subsystems,
            runtime_dir: runtime_dir.display().to_string(),
            pids_max: req.pids_max,
        };
        self.sessions.sessions.insert(
            id,
            Session {
                id,
                params,
                state: SessionState::Queued,
                created_us: self.uptime_us(),
                created: Instant::now(),
                leader: None,
                members: BTreeMap::new(),
                sids: Vec::new(),
                cgroup: None,
                instance: None,
                watch: None,
                create_waiter: waiter,
                terminate_waiters: Vec::new(),
                terminate_requested: false,
                by_request: false,
                killed: false,
                respawn,
                reason: String::new(),
            },
        );
        self.sessions.queue.push_back(id);
        Ok(id)
    }

    /// Start instances for queued sessions while slots are free (not before the boot is
    /// done, never during a stop).
    pub(crate) fn start_queued_sessions(&mut self) {
        if !self.boot.done || self.stopping() {
            return;
        }
        let limit = self.cfg.sessions.parallel_session_creation.max(1) as usize;
        while self.sessions.instances < limit {
            let Some(id) = self.sessions.queue.pop_front() else {
                return;
            };
            match self.spawn_instance(id) {
                Ok(()) => self.sessions.instances += 1,
                Err(why) => {
                    log::error!("session {id}: {why}");
                    if let Some(s) = self.sessions.sessions.remove(&id) {
                        self.answer_session_waiters(s, Err(MethodError::failed(why)));
                    }
                }
            }
        }
    }

    /// Start `smss-session --id ID --fd N` with the parameters waiting in its socket.
    fn spawn_instance(&mut self, id: u32) -> Result<(), String> {
        let Some(s) = self.sessions.sessions.get(&id) else {
            return Err("vanished from the queue".into());
        };
        let doc = serde_json::to_vec(&s.params).map_err(|e| e.to_string())?;
        if doc.len() > MAX_PARAMS {
            return Err(format!(
                "session parameters are larger than {MAX_PARAMS} bytes"
            ));
        }
        let io = |e: std::io::Error| format!("failed to create the report socket: {e}");
        let (ours, theirs) = UnixStream::pair().map_err(io)?;
        // Non-blocking before the write: PID 1 must never wait on it (the document fits the
        // socket buffer, so this takes it whole).
        ours.set_nonblocking(true).map_err(io)?;
        (&ours).write_all(&doc).map_err(io)?;
        ours.shutdown(std::net::Shutdown::Write).map_err(io)?;
        let fd = theirs.as_raw_fd();
        let program = self.session_binary.clone();
        let spec = SpawnSpec {
            argv: vec![
                program.display().to_string(),
                "--id".into(),
                id.to_string(),
                "--fd".into(),
                fd.to_string(),
                "--log".into(),
                log::max_level().as_str().to_ascii_lowercase(),
            ],
            program,
            env: self.env.vars().to_vec(),
            detach: Detach::Session,
            stdio: None,
            pass_fd: Some(fd),
            cwd: None,
        };
        let pid = process::spawn(&spec).map_err(|e| e.to_string())?.as_raw();
        drop(theirs);
        log::debug!("session {id}: smss-session started (pid {pid})");
        self.children.insert(
            pid,
            Child {
                name: format!("smss-session {id}"),
                role: Role::SessionInstance(id),
                critical: false,
            },
        );
        if let Err(e) = self.watch(ours.as_fd(), Token::SessionReport(id)) {
            // Its report is still read when it exits.
            log::warn!("session {id}: failed to watch the report socket: {e}");
        }
        let deadline = instance_deadline(&s.params);
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            s.state = SessionState::Starting;
            s.instance = Some(InstanceLink {
                sock: ours,
                pid,
                buf: Vec::new(),
            });
        }
        self.add_timer(Instant::now() + deadline, Timer::SessionStart(id));
        Ok(())
    }

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
    fn abort_instance(&mut self, id: u32, why: String) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
        }
        let Some(link) = s.instance.take() else {
            return;
        };
        // What the instance started so far are its children (it has not exited): every one
        // is a session leader of its own, so its pid marks its processes. Stopped first, so
        // it starts nothing more between the look and the kill.
        let _ = sys::kill(link.pid, libc::SIGSTOP);
        if let Some(all) = procs::snapshot() {
            s.sids
                .extend(all.iter().filter(|p| p.ppid == link.pid).map(|p| p.pid));
        }
        let _ = sys::kill(link.pid, libc::SIGKILL);
        self.unwatch(link.sock.as_fd());
        self.instance_failed(id, why);
    }

    /// A session instance wrote to (or closed) its report socket.
    pub(crate) fn on_session_report(&mut self, id: u32) {
        match self.read_report(id, false) {
            Some(Ok(line)) => self.handle_report(id, &line),
            Some(Err(why)) => self.instance_failed(id, why),
            None => {}
        }
        self.resume_clients();
    }

    /// Read what the instance wrote: `Some(Ok(line))` once its report line is complete,
    /// `Some(Err)` at EOF without one (or when it exited: `exited`), None to wait for more.
    fn read_report(&mut self, id: u32, exited: bool) -> Option<Result<Vec<u8>, String>> {
        let link = self.sessions.sessions.get_mut(&id)?.instance.as_mut()?;
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
                    if link.buf.len() > MAX_REPORT {
                        eof = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let line = link
            .buf
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| link.buf.get(..i).unwrap_or_default().to_vec());
        if line.is_none() && !eof {
            return None;
        }
        let link = self.sessions.sessions.get_mut(&id)?.instance.take()?;
        self.unwatch(link.sock.as_fd());
        Some(line.ok_or_else(|| "smss-session ended without a report".to_string()))
    }

    fn handle_report(&mut self, id: u32, line: &[u8]) {
        self.cancel_timer(&Timer::SessionStart(id));
        let report: Report = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return self.instance_failed(id, format!("unreadable report: {e}")),
        };
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        s.cgroup = report.cgroup.as_ref().map(PathBuf::from);
        s.leader = report.leader;
        s.state = SessionState::Active;
        // A process may already be gone (and reaped as an orphan, if its instance exited
        // first): only live ones become members.
        let mut dead = Vec::new();
        for m in &report.members {
            s.sids.push(m.pid);
            if alive(m.pid) {
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
                dead.push(m.clone());
            }
        }
        if let Some(cg) = s.cgroup.clone() {
            self.watch_cgroup(id, &cg);
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let waiter = s.create_waiter.take();
        if let Some(err) = report.error {
            log::error!("session {id}: {err}");
            if let Some(w) = waiter {
                self.reply_deferred(w, Err(MethodError::failed(err.clone())));
            }
            return self.end_session(id, format!("failed to start: {err}"));
        }
        log::info!(
            "session {id} created: seat {} tty {} leader pid {}",
            s.params.seat.as_deref().unwrap_or("-"),
            s.params.tty.as_deref().unwrap_or("-"),
            report.leader.map_or("-".to_string(), |p| p.to_string()),
        );
        let terminate = s.terminate_requested;
        if let Some(w) = waiter {
            self.reply_deferred(w, Ok(json!({"id": id, "pids": report.pids})));
        }
        if terminate {
            self.end_session(id, "terminated by request".into());
        } else if report
            .leader
            .is_none_or(|l| dead.iter().any(|m| m.pid == l))
        {
            self.end_session(id, "its login manager exited".into());
        } else if let Some(m) = dead.iter().find(|m| m.critical) {
            self.end_session(id, format!("session subsystem {} exited", m.name));
        }
    }

    /// The instance ended without a usable report: stop whatever it started (its cgroup, if
    /// it made one, holds it) and fail the request.
    fn instance_failed(&mut self, id: u32, why: String) {
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
        }
        log::error!("session {id}: {why}");
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

    /// A process belonging to a session (its instance, subsystem or login manager) exited.
    pub(crate) fn on_session_process_exit(&mut self, pid: i32, child: &Child, status: ExitStatus) {
        match child.role {
            Role::SessionInstance(id) => {
                self.sessions.instances = self.sessions.instances.saturating_sub(1);
                if status == ExitStatus::Exited(0) {
                    log::debug!("session {id}: smss-session (pid {pid}) {status}");
                } else {
                    log::warn!("session {id}: smss-session (pid {pid}) {status}");
                }
                // The report was written before the exit: read it now, whatever the order
                // in which epoll and the reaper saw the two.
                match self.read_report(id, true) {
                    Some(Ok(line)) => self.handle_report(id, &line),
                    Some(Err(_)) => {
                        self.instance_failed(id, format!("smss-session {status} without a report"))
                    }
                    None => {}
                }
                self.start_queued_sessions();
            }
            Role::SessionMember { session, leader } => {
                log::info!("session {session}: {} (pid {pid}) {status}", child.name);
                let Some(s) = self.sessions.sessions.get_mut(&session) else {
                    return self.resume_clients();
                };
                let member = s.members.remove(&pid);
                if s.state == SessionState::Active {
                    if leader {
                        self.end_session(session, format!("its login manager {status}"));
                    } else if let Some(m) = member.filter(|m| m.critical) {
                        self.end_session(session, format!("session subsystem {} {status}", m.name));
                    }
                }
                self.check_session_gone(session);
            }
            _ => log::info!("{} (pid {pid}) {status}", child.name),
        }
        self.resume_clients();
    }

    /// TerminateSession. `waiter` (if any) is answered when the session is gone.
    pub(crate) fn terminate_session(
        &mut self,
        id: u32,
        waiter: Option<u32>,
    ) -> Result<(), MethodError> {
        let s = self
            .sessions
            .sessions
            .get_mut(&id)
            .ok_or_else(|| MethodError::no_such_session(id))?;
        s.by_request = true;
        s.terminate_waiters.extend(waiter);
        match s.state {
            SessionState::Queued => {
                self.sessions.queue.retain(|q| *q != id);
                if let Some(s) = self.sessions.sessions.remove(&id) {
                    log::info!("session {id}: terminated before it started");
                    self.answer_session_waiters(
                        s,
                        Err(MethodError::failed("terminated before it started")),
                    );
                }
            }
            // The instance is killed rather than awaited: a hung one would otherwise hold the
            // terminator (and a creation slot) until its deadline.
            SessionState::Starting => {
                s.terminate_requested = true;
                self.abort_instance(id, "terminated by request while starting".into());
            }
            SessionState::Active => self.end_session(id, "terminated by request".into()),
            SessionState::Terminating => {}
        }
        Ok(())
    }

    /// Stop every process of the session: SIGTERM now, SIGKILL after the grace period.
    fn end_session(&mut self, id: u32, reason: String) {
        let grace = self.cfg.shutdown.grace_period;
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Active {
            return;
        }
        log::info!("session {id} ending: {reason}");
        s.state = SessionState::Terminating;
        s.reason = reason;
        for pid in session_processes(s) {
            let _ = sys::kill(pid, libc::SIGTERM);
            // A login shell ignores SIGTERM; its terminal hanging up is what ends it.
            if procs::read(pid).is_some_and(|p| p.tty_nr != 0) {
                let _ = sys::kill(pid, libc::SIGHUP);
            }
            let _ = sys::kill(pid, libc::SIGCONT);
        }
        self.add_timer(Instant::now() + grace, Timer::SessionKill(id));
        self.check_session_gone(id);
    }

    /// Finish the session if nothing of it is left; otherwise make sure we hear when that
    /// changes.
    fn check_session_gone(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Terminating || !s.members.is_empty() {
            return;
        }
        if let Some(cg) = &s.cgroup {
            // Its watch reports the change to unpopulated.
            let events = fs::read_to_string(cg.join("cgroup.events")).unwrap_or_default();
            if populated(&events) != Some(false) {
                return;
            }
            return self.finalize_session(id);
        }
        if matches!(s.watch, Some(Watch::Pids(..))) {
            return;
        }
        let left = session_processes(s);
        if left.is_empty() {
            return self.finalize_session(id);
        }
        // Orphans are reaped without telling us: watch their pidfds.
        let Ok(inner) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
            return;
        };
        // At most MAX_WATCHED_PIDS descriptors: when those are gone, the next look finds
        // the rest (a session of thousands must not use up PID 1's descriptors).
        let mut fds = HashMap::new();
        for pid in left.into_iter().take(MAX_WATCHED_PIDS) {
            if let Ok(fd) = sys::fd::pidfd_open(pid) {
                if inner
                    .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, pid as u64))
                    .is_ok()
                {
                    fds.insert(pid as u64, fd);
                }
            }
        }
        if fds.is_empty() {
            // No pidfds (Linux < 5.3): the kill timer finishes the session.
            return;
        }
        let watch = Watch::Pids(inner, fds);
        if self.watch(watch.fd(), Token::SessionWatch(id)).is_ok() {
            if let Some(s) = self.sessions.sessions.get_mut(&id) {
                s.watch = Some(watch);
            }
        }
    }

    /// Watch the session cgroup's `cgroup.events` for `populated 0`.
    fn watch_cgroup(&mut self, id: u32, cg: &Path) {
        let Ok(file) = fs::File::open(cg.join("cgroup.events")) else {
            return;
        };
        let _ = read_events(&file);
        // kernfs files are always readable: only EPOLLPRI says the content changed.
        let ev = EpollEvent::new(EpollFlags::EPOLLPRI, Token::SessionWatch(id).encode());
        if let Err(e) = self.epoll.add(file.as_fd(), ev) {
            log::warn!("session {id}: failed to watch {}: {e}", cg.display());
            return;
        }
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            s.watch = Some(Watch::Cgroup(file));
        }
    }

    /// The session cgroup's events changed, or one of the watched pidfds became readable.
    pub(crate) fn on_session_watch(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let mut empty = false;
        match s.watch.as_mut() {
            Some(Watch::Cgroup(f)) => empty = read_events(f) == Some(false),
            Some(Watch::Pids(inner, fds)) => {
                let mut events = [EpollEvent::empty(); 32];
                if let Ok(n) = inner.wait(&mut events, EpollTimeout::ZERO) {
                    for ev in events.iter().take(n) {
                        if let Some(fd) = fds.remove(&ev.data()) {
                            let _ = inner.delete(&fd);
                        }
                    }
                }
                if fds.is_empty() {
                    if let Some(w) = s.watch.take() {
                        self.unwatch(w.fd());
                    }
                }
            }
            None => {}
        }
        if empty
            && self
                .sessions
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Active)
        {
            self.end_session(id, "no process is left in it".into());
        }
        self.check_session_gone(id);
        self.resume_clients();
    }

    /// A terminating session's grace period ran out: SIGKILL what is left; after a further
    /// KILL_WAIT, give up on processes stuck in the kernel and finish anyway.
    pub(crate) fn on_session_kill_timer(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Terminating {
            return;
        }
        if s.killed {
            log::error!("session {id}: processes survived SIGKILL; removing the session anyway");
            self.finalize_session(id);
            return self.resume_clients();
        }
        s.killed = true;
        let left = session_processes(s);
        log::warn!(
            "session {id}: {} process(es) still running after SIGTERM: sending SIGKILL",
            left.len()
        );
        if let Some(cg) = &s.cgroup {
            // cgroup.kill (Linux 5.14) also catches processes forking right now.
            let _ = fs::write(cg.join("cgroup.kill"), "1");
        }
        for pid in left {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        self.add_timer(Instant::now() + KILL_WAIT, Timer::SessionKill(id));
        self.check_session_gone(id);
        self.resume_clients();
    }

    /// Everything of the session is gone: remove its cgroup and runtime directory, answer
    /// whoever waits, re-create a seat's boot session.
    fn finalize_session(&mut self, id: u32) {
        self.cancel_timer(&Timer::SessionKill(id));
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(mut s) = self.sessions.sessions.remove(&id) else {
            return;
        };
        if let Some(w) = s.watch.take() {
            self.unwatch(w.fd());
        }
        if let Some(link) = s.instance.take() {
            self.unwatch(link.sock.as_fd());
        }
        if let Some(cg) = &s.cgroup {
            if let Err(e) = remove_cgroup(cg, 8) {
                log::warn!(
                    "session {id}: failed to remove cgroup {}: {e}",
                    cg.display()
                );
            }
        }
        self.remove_runtime_dir(id, Path::new(&s.params.runtime_dir));
        // Members stuck in the kernel stay our children; their exit finds no session.
        log::info!("session {id} ended ({})", s.reason);
        let respawn = s.respawn && !s.by_request && !self.stopping();
        let lived = s.created.elapsed();
        let seat = s.params.seat.clone();
        let reason = s.reason.clone();
        self.answer_session_waiters(s, Err(MethodError::failed(reason)));
        if let (true, Some(seat)) = (respawn, seat) {
            if lived < RESPAWN_MIN_LIFETIME {
                log::warn!(
                    "seat {seat}: its session ended {} ms after it started; not re-creating it",
                    lived.as_millis()
                );
            } else {
                let req = CreateSession {
                    seat: Some(seat.clone()),
                    ..Default::default()
                };
                match self.create_session(req, None, true) {
                    Ok(new) => log::info!("seat {seat}: new session {new}"),
                    Err(e) => log::error!(
                        "seat {seat}: failed to re-create its session: {}",
                        e.parameters
                    ),
                }
                self.start_queued_sessions();
            }
        }
    }

    /// Remove an ended session's runtime directory without doing the work in PID 1 (it was
    /// the user's and may hold any number of files): renamed aside at once, so the id can be
    /// used again, then deleted by `smss-session remove`.
    fn remove_runtime_dir(&mut self, id: u32, dir: &Path) {
        // Unique across restarts of smss on a /run that persists (the clock) and within one
        // tick (the counter).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = dir.with_file_name(format!(".ended-{id}-{now}-{}", self.sessions.removals));
        self.sessions.removals = self.sessions.removals.wrapping_add(1);
        match fs::rename(dir, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                log::warn!("session {id}: failed to remove {}: {e}", dir.display());
                return;
            }
        }
        let program = self.session_binary.clone();
        let spec = SpawnSpec {
            argv: vec![
                program.display().to_string(),
                "remove".into(),
                aside.display().to_string(),
            ],
            program,
            env: self.env.vars().to_vec(),
            detach: Detach::Session,
            stdio: None,
            pass_fd: None,
            cwd: None,
        };
        match process::spawn(&spec) {
            Ok(pid) => {
                self.children.insert(
                    pid.as_raw(),
                    Child {
                        name: format!("smss-session remove (session {id})"),
                        role: Role::Command("remove"),
                        critical: false,
                    },
                );
            }
            Err(e) => log::warn!(
                "session {id}: failed to start smss-session remove for {}: {e}",
                aside.display()
            ),
        }
    }

    /// Forget the session and process-group ids (of sessions without a cgroup) that no
    /// process holds any more: the kernel may hand such a number to an unrelated process
    /// next, which a teardown must not mistake for the session's. Called after reaping, so a
    /// number is dropped soon after its last holder is gone.
    ///
    /// A scan reads every process's stat, and anyone can make PID 1 reap (orphans): at most
    /// one scan per [`PRUNE_INTERVAL`]; a prune asked for sooner runs on a timer instead.
    pub(crate) fn prune_session_ids(&mut self) {
        if !self
            .sessions
            .sessions
            .values()
            .any(|s| s.cgroup.is_none() && !s.sids.is_empty())
        {
            return;
        }
        let now = Instant::now();
        if let Some(at) = prune_deferred_until(self.sessions.last_prune, now) {
            if !self
                .timers
                .iter()
                .any(|(_, t)| *t == Timer::PruneSessionIds)
            {
                self.add_timer(at, Timer::PruneSessionIds);
            }
            return;
        }
        self.sessions.last_prune = Some(now);
        let Some(held) = held_ids() else {
            return;
        };
        for s in self.sessions.sessions.values_mut() {
            s.sids.retain(|id| held.contains(id));
        }
    }

    /// A session left the table: the creator (if still waiting) gets `create`, terminators
    /// learn it is gone.
    fn answer_session_waiters(&mut self, s: Session, create: Result<Value, MethodError>) {
        if let Some(w) = s.create_waiter {
            self.reply_deferred(w, create);
        }
        for w in s.terminate_waiters {
            self.reply_deferred(w, Ok(json!({"state": "gone"})));
        }
    }

    /// SmLoadDeferedSubsystem: an Optional subsystem, in session 0 (our child) or inside an
    /// interactive session (its cgroup, its environment). The running one's pid if started.
    pub(crate) fn load_deferred_subsystem(
        &mut self,
        name: &str,
        session: Option<u32>,
    ) -> Result<i32, MethodError> {
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
                    return Ok(pid);
                }
                // No NOTIFY_SOCKET: the reply does not wait for readiness, and the socket that
                // exists during boot belongs to the subsystem the boot waits for (a READY=1
                // from this one, running as root, would count as that one's).
                let extra = Vec::new();
                let critical = spec.is_critical(false);
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
                Ok(pid)
            }
            Some(id) => {
                let s = self
                    .sessions
                    .sessions
                    .get(&id)
                    .filter(|s| s.state == SessionState::Active)
                    .ok_or_else(|| MethodError::no_such_session(id))?;
                if let Some((pid, _)) = s
                    .members
                    .iter()
                    .find(|(_, m)| m.name.eq_ignore_ascii_case(&name))
                {
                    return Ok(*pid);
                }
                let user = s.params.user.as_deref().and_then(users::find_user);
                let env = instance::session_environment(
                    self.env.vars().to_vec(),
                    &s.params,
                    user.as_ref(),
                );
                let argv = instance::expand_argv(&spec.argv, &env);
                // Through `smss-session exec`, which joins the cgroup (and drops to the
                // session's user) before exec, so nothing it forks escapes the session.
                let program = self.session_binary.clone();
                let mut full = vec![program.display().to_string(), "exec".to_string()];
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
                    pass_fd: None,
                    cwd: None,
                };
                let pid = process::spawn(&spawn)
                    .map_err(|e| MethodError::failed(e.to_string()))?
                    .as_raw();
                log::info!("session {id}: subsystem {name} started on request (pid {pid})");
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
                    s.sids.push(pid);
                    s.members.insert(
                        pid,
                        Member {
                            pid,
                            name,
                            critical: false,
                        },
                    );
                }
                Ok(pid)
            }
        }
    }

    /// ListSessions' entries.
    pub(crate) fn sessions_json(&self) -> Value {
        Value::Array(
            self.sessions
                .sessions
                .values()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "seat": s.params.seat,
                        "tty": s.params.tty,
                        "user": s.params.user,
                        "leader_pid": s.leader,
                        "state": s.state.as_str(),
                        "created_us": s.created_us,
                        "pids": s.members.keys().collect::<Vec<_>>(),
                        "runtime_dir": s.params.runtime_dir,
                        "cgroup": s.cgroup.as_ref().map(|c| c.display().to_string()),
                    })
                })
                .collect(),
        )
    }
}

/// When a prune asked for at `now` must wait for, or None to scan now.
fn prune_deferred_until(last: Option<Instant>, now: Instant) -> Option<Instant> {
    let next = last? + PRUNE_INTERVAL;
    (now < next).then_some(next)
}

/// Every number in use as a pid, a process-group id or a session id (zombies included: they
/// still hold theirs). `None` without /proc.
fn held_ids() -> Option<std::collections::HashSet<i32>> {
    Some(
        procs::snapshot()?
            .iter()
            .flat_map(|p| [p.pid, p.pgid, p.session])
            .collect(),
    )
}

/// Every live process of a session: its cgroup's members, else every process in one of its
/// sessions or process groups; plus its reported members. Never us.
fn session_processes(s: &Session) -> Vec<i32> {
    let me = sys::getpid();
    let mut pids: Vec<i32> = s.members.keys().copied().collect();
    if let Some(cg) = &s.cgroup {
        cgroup_procs(cg, &mut pids, 8);
    } else if let Some(all) = procs::snapshot() {
        pids.extend(
            all.iter()
                .filter(|p| !p.kernel_thread && p.alive())
                .filter(|p| s.sids.contains(&p.session) || s.sids.contains(&p.pgid))
                .map(|p| p.pid),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|p| *p != me && *p > 0);
    pids
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One /proc scan per interval, however often orphans make PID 1 reap; a prune asked for
    /// in between is put off, not dropped.
    #[test]
    fn prunes_are_rate_limited() {
        let t0 = Instant::now();
        assert_eq!(prune_deferred_until(None, t0), None);
        let soon = t0 + PRUNE_INTERVAL / 2;
        assert_eq!(
            prune_deferred_until(Some(t0), soon),
            Some(t0 + PRUNE_INTERVAL)
        );
        assert_eq!(prune_deferred_until(Some(t0), t0 + PRUNE_INTERVAL), None);
    }

    #[test]
    fn cgroup_events() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated(""), None);
    }

    #[test]
    fn environment_strings() {
        assert_eq!(
            parse_environment(&["A=1".into(), "B==x".into(), "C=".into()]).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "=x".into()),
                ("C".into(), "".into())
            ]
        );
        assert!(parse_environment(&["=1".into()]).is_err());
        assert!(parse_environment(&["NOEQUALS".into()]).is_err());
    }

    #[test]
    fn stat_of_self() {
        let st = procs::read(std::process::id() as i32).unwrap();
        assert!(st.alive());
        // Compare with the kernel's own answer: under some CI runners the session leader
        // lives outside our pid namespace and the id reads as 0.
        assert_eq!(st.session, nix::unistd::getsid(None).unwrap().as_raw());
        assert_eq!(st.pgid, nix::unistd::getpgrp().as_raw());
        let held = held_ids().unwrap();
        assert!(held.contains(&(std::process::id() as i32)));
        assert!(held.contains(&st.pgid));
        assert!(held.contains(&st.session));
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
