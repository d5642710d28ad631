//! Sessions: PID 1's side of session creation (SmStartCsr: a short-lived `smss-session`
//! instance per session, at most `parallel-session-creation` at once), the reported pids,
//! and tearing a session down (SmStopCsr: SIGTERM, SIGKILL after the grace period, remove
//! the runtime directory and the cgroup).
//!
//! A session is gone when its reported processes have exited and nothing else is left in it:
//! with cgroup2, its cgroup is unpopulated (watched through `cgroup.events`, so double-forked
//! daemons count); without, its instance stays as the session's keeper (a child subreaper
//! that holds every process of the session below it, see `smss-session`), and the session is
//! gone when the keeper exits. PID 1 then never scans /proc for a session while it runs.
//!
//! Should a keeper die first (SIGKILLed by someone), what was below it comes to PID 1: the
//! members it reported (each as it started them, with its start time, so a reused pid is
//! never taken for one) are adopted, and the teardown also finds their descendants of the
//! moment in /proc (each signalled through a pidfd, after a start-time check).

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
use super::{Child, Role, Supervisor, Timer, Token, KILL_WAIT};
use crate::control::instance::{
    self, InstanceMessage, KeeperCommand, Member, Report, SessionParams, SubsystemSpec, MAX_PARAMS,
    MAX_REPORT,
};
use crate::control::manager::{CreateSession, MethodError};
use crate::os::cgroup::{CGROUP_PARENT, CGROUP_ROOT};
use crate::os::{procs, users};
use crate::sys::process::{self, Detach, SpawnSpec};
use crate::sys::{self, ExitStatus};

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
    /// Processes found below its members during a teardown without a cgroup or keeper, with
    /// their start times: looked for again until they are gone, even once orphaned.
    strays: std::collections::BTreeSet<(i32, u64)>,
    /// Its instance stays as its keeper (no cgroup) and is alive.
    keeper: bool,
    /// Its instance holds a creation slot (until it reports or exits).
    slot: bool,
    /// Subsystems its keeper was asked to start, and who waits for each one's pid.
    spawning: Vec<(String, Option<u32>)>,
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
}

/// Alive: neither a zombie nor being reaped (X).
fn alive(pid: i32) -> bool {
    procs::read(pid).is_some_and(|p| p.alive())
}

/// Does the cgroup2 hierarchy sessions use offer the pids controller (`pids_max`)?
fn pids_controller_available() -> bool {
    fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
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
        if req.pids_max.is_some() && !pids_controller_available() {
            // A limit that would not be enforced is refused, not accepted silently.
            return Err(MethodError::invalid(
                "pids_max",
                format!(
                    "no cgroup2 pids controller at {CGROUP_ROOT}: the limit cannot be enforced"
                ),
            ));
        }
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
        let label = match req.command {
            Some(_) => "the session's command",
            None => "[sessions] initial-command",
        };
        if let Some(what) =
            instance::missing_tty_user(tty.as_deref(), &environment, label, &command, &subsystems)
        {
            return Err(MethodError::invalid(
                "tty",
                format!("{what} uses %TTY% but the session has no terminal: give a tty or a seat"),
            ));
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
                strays: Default::default(),
                keeper: false,
                slot: false,
                spawning: Vec::new(),
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
        if let Some(s) = self.sessions.sessions.get(&id) {
            self.timeline
                .session_created(id, s.params.seat.as_deref(), s.created_us);
        }
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
                    let now = self.uptime_us();
                    self.timeline
                        .session_done(id, now, &format!("failed: {why}"));
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
        // socket buffer, so this takes it whole). One line: the link stays open for the
        // keeper's commands.
        ours.set_nonblocking(true).map_err(io)?;
        let mut doc = doc;
        doc.push(b'\n');
        (&ours).write_all(&doc).map_err(io)?;
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
            s.slot = true;
            s.instance = Some(InstanceLink {
                sock: ours,
                pid,
                buf: Vec::new(),
            });
        }
        self.add_timer(Instant::now() + deadline, Timer::SessionStart(id));
        Ok(())
    }

    /// The session's instance no longer needs its creation slot (it reported or exited).
    fn release_slot(&mut self, id: u32) {
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            if std::mem::take(&mut s.slot) {
                self.sessions.instances = self.sessions.instances.saturating_sub(1);
            }
        }
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
        let closed = self.read_instance(id, false);
        if closed
            && self
                .sessions
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Starting)
        {
            self.instance_failed(id, "smss-session ended without a report".into());
        }
        self.start_queued_sessions();
        self.resume_clients();
    }

    /// Read and act on what the instance wrote (`exited`: it is gone, so read what is left
    /// and close). True once the link is closed.
    fn read_instance(&mut self, id: u32, exited: bool) -> bool {
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
        for line in lines {
            self.instance_message(id, &line);
        }
        eof
    }

    /// One line from a session's instance or keeper.
    fn instance_message(&mut self, id: u32, line: &[u8]) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        match serde_json::from_slice::<InstanceMessage>(line) {
            Ok(InstanceMessage::Started(m)) => {
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
        if keeper {
            // The keeper lives on: the creation slot is free now.
            self.release_slot(id);
        }
        if let Some(cg) = cgroup {
            self.watch_cgroup(id, &cg);
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let waiter = s.create_waiter.take();
        let result = match &report.error {
            Some(err) => format!("failed: {err}"),
            None => "ok".to_string(),
        };
        self.timeline.session_done(id, now, &result);
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
            .map_or(true, |l| dead.iter().any(|m| m.pid == l))
        {
            self.end_session(id, "its login manager exited".into());
        } else if let Some(m) = dead.iter().find(|m| m.critical) {
            self.end_session(id, format!("session subsystem {} exited", m.name));
        }
    }

    /// The instance ended without a usable report: stop whatever it started (its cgroup, if
    /// it made one, holds it) and fail the request.
    fn instance_failed(&mut self, id: u32, why: String) {
        let now = self.uptime_us();
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Starting {
            return;
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

    /// A process belonging to a session (its instance, subsystem or login manager) exited.
    pub(crate) fn on_session_process_exit(&mut self, pid: i32, child: &Child, status: ExitStatus) {
        match child.role {
            Role::SessionInstance(id) => {
                self.release_slot(id);
                if status == ExitStatus::Exited(0) {
                    log::debug!("session {id}: smss-session (pid {pid}) {status}");
                } else {
                    log::warn!("session {id}: smss-session (pid {pid}) {status}");
                }
                // What it wrote before the exit (its report, its members' exits): read it
                // now, whatever the order in which epoll and the reaper saw the two.
                self.read_instance(id, true);
                if self
                    .sessions
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.state == SessionState::Starting)
                {
                    self.instance_failed(id, format!("smss-session {status} without a report"));
                }
                self.adopt_members(id, status);
                self.start_queued_sessions();
            }
            Role::SessionMember { session, .. } => {
                self.member_exited(session, pid, &child.name, &status.to_string());
            }
            _ => log::info!("{} (pid {pid}) {status}", child.name),
        }
        self.resume_clients();
    }

    /// A member of session `id` exited (reaped by us, or by its keeper).
    fn member_exited(&mut self, id: u32, pid: i32, name: &str, status: &str) {
        log::info!("session {id}: {name} (pid {pid}) {status}");
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let member = s.members.remove(&pid);
        if s.state == SessionState::Active {
            if s.leader == Some(pid) {
                self.end_session(id, format!("its login manager {status}"));
            } else if let Some(m) = member.filter(|m| m.critical) {
                self.end_session(id, format!("session subsystem {} {status}", m.name));
            }
        }
        self.check_session_gone(id);
    }

    /// The session's instance exited: its children are ours now. Members still alive (the
    /// same processes: start times are compared) become our children; the others are gone.
    /// A keeper that exits while its session is active was killed: the session ends.
    fn adopt_members(&mut self, id: u32, status: ExitStatus) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let was_keeper = std::mem::take(&mut s.keeper);
        let spawning: Vec<u32> = std::mem::take(&mut s.spawning)
            .into_iter()
            .filter_map(|(_, w)| w)
            .collect();
        for w in spawning {
            self.reply_deferred(w, Err(MethodError::failed("the session's keeper exited")));
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let mut adopted = Vec::new();
        for (pid, m) in std::mem::take(&mut s.members) {
            if self.children.contains_key(&pid) {
                s.members.insert(pid, m);
                continue;
            }
            let same = m.start_time != 0
                && procs::read(pid).is_some_and(|p| p.alive() && p.start_time == m.start_time);
            if same {
                self.children.insert(
                    pid,
                    Child {
                        name: m.name.clone(),
                        role: Role::SessionMember {
                            session: id,
                            leader: s.leader == Some(pid),
                        },
                        critical: false,
                    },
                );
                adopted.push(pid);
                s.members.insert(pid, m);
            }
        }
        let (state, killed) = (s.state, s.killed);
        if state == SessionState::Active && was_keeper {
            log::warn!("session {id}: its keeper smss-session {status}");
            self.end_session(id, format!("its keeper {status}"));
        } else if state == SessionState::Terminating {
            // Signalled through the keeper so far: now directly.
            let sig = if killed { libc::SIGKILL } else { libc::SIGTERM };
            for pid in adopted {
                let _ = sys::kill(pid, sig);
                let _ = sys::kill(pid, libc::SIGCONT);
            }
            self.check_session_gone(id);
        }
    }

    /// Write a command to the session's keeper; a keeper that cannot be told is killed (its
    /// exit then hands what is left to us).
    fn tell_keeper(&mut self, id: u32, command: &KeeperCommand) {
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

    /// Every process of the session PID 1 itself must signal, found now: with a cgroup, its
    /// members and the cgroup's processes (by pid); without, the members that are our
    /// children (by pid: unreaped, so theirs), the members of a session whose keeper is gone
    /// and the strays (by pid and start time), and every process below those.
    fn session_processes(&self, id: u32) -> Vec<(i32, Option<u64>)> {
        let Some(s) = self.sessions.sessions.get(&id) else {
            return Vec::new();
        };
        let me = sys::getpid();
        let ours = |pid: &i32| {
            self.children.get(pid).is_some_and(
                |c| matches!(c.role, Role::SessionMember { session, .. } if session == id),
            )
        };
        let mut out: Vec<(i32, Option<u64>)> = Vec::new();
        if let Some(cg) = &s.cgroup {
            let mut pids: Vec<i32> = s.members.keys().copied().collect();
            cgroup_procs(cg, &mut pids, 8);
            pids.sort_unstable();
            pids.dedup();
            out.extend(pids.into_iter().map(|p| (p, None)));
        } else {
            let unverified: Vec<(i32, u64)> = s
                .members
                .values()
                .filter(|m| !ours(&m.pid) && !s.keeper && m.start_time != 0)
                .map(|m| (m.pid, m.start_time))
                .chain(s.strays.iter().copied())
                .collect();
            let mut roots: Vec<i32> = s.members.keys().copied().filter(|p| ours(p)).collect();
            out.extend(roots.iter().map(|p| (*p, None)));
            if roots.is_empty() && unverified.is_empty() {
                return out;
            }
            let Some(all) = procs::snapshot() else {
                return out;
            };
            let started: HashMap<i32, u64> = all.iter().map(|p| (p.pid, p.start_time)).collect();
            for (pid, start) in unverified {
                if started.get(&pid) == Some(&start) {
                    roots.push(pid);
                    out.push((pid, Some(start)));
                }
            }
            out.extend(
                procs::descendants(&all, &roots)
                    .iter()
                    .filter(|p| !p.kernel_thread && p.alive())
                    .map(|p| (p.pid, Some(p.start_time))),
            );
        }
        out.retain(|(p, _)| *p != me && *p > 0);
        out
    }

    /// Signal what [`Supervisor::session_processes`] found, and remember the processes found
    /// below the members (they are looked for again even once their parents are gone).
    fn signal_session(&mut self, id: u32, targets: &[(i32, Option<u64>)], sigs: &[i32]) {
        for (pid, start) in targets {
            for sig in sigs {
                send_to_member(*pid, *start, *sig);
                // A login shell ignores SIGTERM; its terminal hanging up is what ends it.
                if *sig == libc::SIGTERM && procs::read(*pid).is_some_and(|p| p.tty_nr != 0) {
                    send_to_member(*pid, *start, libc::SIGHUP);
                }
            }
        }
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            for (pid, start) in targets {
                if let (Some(t), false) = (start, s.members.contains_key(pid)) {
                    s.strays.insert((*pid, *t));
                }
            }
        }
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
                let now = self.uptime_us();
                self.timeline
                    .session_done(id, now, "failed: terminated before it started");
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
        let targets = self.session_processes(id);
        self.signal_session(id, &targets, &[libc::SIGTERM, libc::SIGCONT]);
        self.tell_keeper(id, &KeeperCommand::Term);
        self.add_timer(Instant::now() + grace, Timer::SessionKill(id));
        self.check_session_gone(id);
    }

    /// Finish the session if nothing of it is left; otherwise make sure we hear when that
    /// changes.
    fn check_session_gone(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        // A keeper exits once nothing of the session is left: its exit tells.
        if s.state != SessionState::Terminating || s.keeper || !s.members.is_empty() {
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
        let left: Vec<i32> = self.session_processes(id).iter().map(|t| t.0).collect();
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
            if let (true, Some(link)) = (s.keeper, s.instance.as_ref()) {
                let _ = sys::kill(link.pid, libc::SIGKILL);
            }
            self.finalize_session(id);
            return self.resume_clients();
        }
        s.killed = true;
        let keeper = s.keeper;
        if let Some(cg) = &s.cgroup {
            // cgroup.kill (Linux 5.14) also catches processes forking right now.
            let _ = fs::write(cg.join("cgroup.kill"), "1");
        }
        let left = self.session_processes(id);
        if keeper {
            log::warn!("session {id}: still running after SIGTERM: its keeper sends SIGKILL");
        } else {
            log::warn!(
                "session {id}: {} process(es) still running after SIGTERM: sending SIGKILL",
                left.len()
            );
        }
        self.signal_session(id, &left, &[libc::SIGKILL]);
        self.tell_keeper(id, &KeeperCommand::Kill);
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
        // A creation that never reported ends here (instance failed, killed, terminated).
        let now = self.uptime_us();
        self.timeline
            .session_done(id, now, &format!("failed: {}", s.reason));
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

    /// A session left the table: the creator (if still waiting) gets `create`, terminators
    /// learn it is gone.
    fn answer_session_waiters(&mut self, s: Session, create: Result<Value, MethodError>) {
        if let Some(w) = s.create_waiter {
            self.reply_deferred(w, create);
        }
        for w in s.spawning.into_iter().filter_map(|(_, w)| w) {
            self.reply_deferred(w, Err(MethodError::failed("the session ended")));
        }
        for w in s.terminate_waiters {
            self.reply_deferred(w, Ok(json!({"state": "gone"})));
        }
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
                // session's user) before exec, so nothing it forks escapes the session. Its
                // exec failing is not seen here: as root, what cannot run is refused first.
                if user.as_ref().map_or(true, |u| u.uid == 0) {
                    let first = argv.first().map_or("", String::as_str);
                    process::check_root_can_execute(first, env.get("PATH"))
                        .map_err(MethodError::failed)?;
                }
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
                    s.members.insert(
                        pid,
                        Member {
                            pid,
                            name,
                            critical: false,
                            // Our child, not reaped: the pid is this process's.
                            start_time: procs::read(pid).map_or(0, |p| p.start_time),
                        },
                    );
                }
                Ok(Some(pid))
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

/// The waiters for subsystem `name` that a keeper was asked to start (all of them: one start
/// answers every request made meanwhile).
fn take_spawning(s: &mut Session, name: &str) -> Vec<u32> {
    let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut s.spawning)
        .into_iter()
        .partition(|(n, _)| n.eq_ignore_ascii_case(name));
    s.spawning = rest;
    done.into_iter().filter_map(|(_, w)| w).collect()
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

/// `sig` to a session member: to exactly the process that started at `start` when it is known
/// (pids are reused), else to the pid (our own child, whose pid cannot be reused before we
/// reap it).
fn send_to_member(pid: i32, start: Option<u64>, sig: i32) {
    match start {
        None => {
            let _ = sys::kill(pid, sig);
        }
        Some(t) => {
            procs::signal_exact(pid, t, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
