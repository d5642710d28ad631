//! The single-threaded event loop: one epoll over the signalfd, the readiness socket, the
//! control socket and session report pipes; the next timer is the wait's timeout.
//!
//! Setup may fail; the loop may not: every error inside it is logged and handled where it
//! happens (architecture.md convention 7).

pub mod api;
pub mod boot;
pub mod core;
pub mod sessions;
pub mod stop;
mod subsystems;
pub mod timeline;
mod uevents;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use smss_config::{CommandSpec, Config, Environment, ForwardTo};

use crate::mode::Mode;
use crate::os::notify;
use crate::sys::process::{self, Detach, SpawnError, SpawnSpec};
use crate::sys::{self, ExitStatus, Reaped};

/// What smss was asked to run, decided by `main`.
#[derive(Debug)]
pub struct Options {
    pub mode: Mode,
    pub config: Config,
    /// `smss -- CMD ARGS`: the initial command, overriding the configured one (bytes).
    pub command: Option<Vec<OsString>>,
    pub forward_to: ForwardTo,
    /// Phases `main` already ran (early mounts happen before the config can be read).
    pub early_phases: Vec<PhaseRecord>,
    /// Where `smss-session` lives (next to our own executable first).
    pub session_binary: PathBuf,
    /// No configuration file was found: a container then runs as a minimal, tini-like init
    /// (no control socket, nothing written under /run or /var).
    pub config_from_file: bool,
}

/// One boot phase as `GetStatus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseRecord {
    pub name: String,
    pub start_us: u64,
    pub duration_us: u64,
    pub result: String,
}

/// Why we started a process, which decides what its exit means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The session-0 initial command (or `smss -- CMD`).
    InitialCommand,
    Subsystem(String),
    /// boot-execute, setup-execute, execute entries.
    Command(&'static str),
    /// A running `smss-session` instance creating session N.
    SessionInstance(u32),
    /// The spare `smss-session`, started ahead and waiting for a session's parameters.
    SpareInstance,
    /// A process reported by a session instance (subsystem or login manager of session N).
    SessionMember {
        session: u32,
        leader: bool,
    },
}

/// A process we started and still wait for.
#[derive(Debug, Clone)]
pub struct Child {
    pub name: String,
    pub role: Role,
    pub critical: bool,
}

/// What an epoll event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    Signal,
    Notify,
    ControlListener,
    ControlClient(u64),
    SessionReport(u32),
    /// A session's cgroup.events (cgroup2) or its pidfds (no cgroup2) while it is watched.
    SessionWatch(u32),
    /// The kernel's uevent socket (hotplug).
    Uevent,
    /// The hold socket of `smss-session exec` (pid) started by LoadDeferredSubsystem: what
    /// its exec did.
    HeldExec(i32),
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Signal => 0,
            Token::Notify => 1,
            Token::ControlListener => 2,
            Token::Uevent => 3,
            Token::ControlClient(n) => (1 << 32) | (n & 0xffff_ffff),
            Token::SessionReport(n) => (2 << 32) | n as u64,
            Token::SessionWatch(n) => (3 << 32) | n as u64,
            Token::HeldExec(pid) => (4 << 32) | pid as u32 as u64,
        }
    }

    fn decode(v: u64) -> Token {
        match (v >> 32, v & 0xffff_ffff) {
            (0, 0) => Token::Signal,
            (0, 1) => Token::Notify,
            (0, 3) => Token::Uevent,
            (0, _) => Token::ControlListener,
            (1, n) => Token::ControlClient(n),
            (2, n) => Token::SessionReport(n as u32),
            (4, n) => Token::HeldExec(n as u32 as i32),
            (_, n) => Token::SessionWatch(n as u32),
        }
    }
}

/// A deadline the loop must wake up for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// A required subsystem has not said READY=1 in time.
    Readiness { pid: i32 },
    /// The stop's grace period (TERM -> KILL) or the KILL wait ran out.
    Stop,
    /// Look again for processes that have not had the stop's SIGTERM.
    StopResweep,
    /// A look the rate limit put off.
    StopRescan,
    /// A session's grace period (TERM -> KILL) ran out.
    SessionKill(u32),
    /// A session's `smss-session` instance has not reported in time.
    SessionStart(u32),
    /// The boot is over and the loop has been quiet for a moment: trim the working set.
    TrimWorkingSet,
    /// A control connection's deadline, or the count of denied calls not logged.
    ControlDeadline,
    /// `smss-session exec` (pid), started by LoadDeferredSubsystem, has not exec'd in time.
    HeldExec(i32),
}

/// The engine's whole state. One instance, owned by the loop.
pub struct Supervisor {
    pub mode: Mode,
    pub cfg: Config,
    /// The environment every child gets (the Session Manager's `SmpDefaultEnvironment`).
    pub env: Environment,
    /// Inherited variables that are not UTF-8 (name or value), kept as bytes and passed on
    /// as they came: [`Environment`] holds text, and a lossy copy would merge names that
    /// differ only in invalid bytes.
    raw_env: Vec<(OsString, OsString)>,
    pub children: HashMap<i32, Child>,
    pub phases: Vec<PhaseRecord>,
    pub started: Instant,
    pub session_binary: PathBuf,
    /// Container/subreaper mode on the built-in defaults: touch nothing on disk, serve no
    /// socket; just run the command, forward signals and reap (what tini users expect).
    pub minimal: bool,
    epoll: Epoll,
    sigfd: SignalFd,
    /// The readiness socket of the Required subsystem being waited for: one per wait, so a
    /// datagram on it can only be about that subsystem (s6's notification-fd idea).
    notify: Option<notify::NotifySocket>,
    timers: Vec<(Instant, Timer)>,
    boot: boot::BootState,
    command: Option<Vec<OsString>>,
    /// The decisions about signals, the initial command and the stop (`core`); this
    /// struct carries them out.
    engine: core::Engine,
    /// Set when the loop should return this exit code.
    finished: Option<i32>,
    /// The working-set trim is due: `run` does it once the handlers have returned.
    trim_due: bool,
    /// The control socket and its connections (`api`).
    control: api::Control,
    /// Interactive sessions (`sessions`).
    sessions: sessions::SessionTable,
    /// When commands, subsystems and session creations started and ended (`GetStatus`).
    pub timeline: timeline::Timeline,
    /// LoadDeferredSubsystem calls waiting for the exec of the `smss-session exec` they
    /// started (by its pid).
    held_execs: HashMap<i32, subsystems::HeldExec>,
    /// Hotplug (`uevents`): the uevent socket, the modaliases already handled, the helper.
    uevents: Option<uevents::Hotplug>,
}

impl Supervisor {
    /// Set up the loop's file descriptors. Signals must already be blocked.
    pub fn new(opts: Options) -> std::io::Result<Supervisor> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let sigfd = sys::signal_fd()?;
        epoll.add(
            &sigfd,
            EpollEvent::new(EpollFlags::EPOLLIN, Token::Signal.encode()),
        )?;
        // Never a panic: a non-UTF-8 variable from the runtime must not kill PID 1; it is
        // kept aside as bytes.
        let (base, raw_env) = split_environment(std::env::vars_os());
        let plan = smss_config::plan::plan(&opts.config);
        let engine = core::Engine::new(
            opts.mode,
            sys::getpid(),
            opts.config.shutdown.grace_period,
            opts.forward_to,
            opts.command.is_some(),
        );
        let mut supervisor = Supervisor {
            mode: opts.mode,
            env: Environment::new(base),
            raw_env,
            cfg: opts.config,
            children: HashMap::new(),
            phases: opts.early_phases,
            // The phases' clock starts with the process (`main` marks it), not here.
            started: timeline::start_instant(),
            session_binary: opts.session_binary,
            minimal: opts.mode != Mode::System && !opts.config_from_file,
            epoll,
            sigfd,
            notify: None,
            timers: Vec::new(),
            boot: boot::BootState::new(plan),
            command: opts.command,
            engine,
            finished: None,
            trim_due: false,
            control: api::Control::default(),
            sessions: sessions::SessionTable::default(),
            timeline: timeline::Timeline::default(),
            held_execs: HashMap::new(),
            uevents: None,
        };
        supervisor.open_control();
        Ok(supervisor)
    }

    /// Run until the end. Returns the exit code in container/subreaper mode; in system mode it
    /// returns only if reboot(2) itself failed.
    pub fn run(&mut self) -> i32 {
        self.boot_continue();
        let mut events = [EpollEvent::empty(); 32];
        loop {
            if let Some(code) = self.finished {
                return code;
            }
            let timeout = self.next_timeout();
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    log::error!("epoll_wait failed: {e}");
                    0
                }
            };
            self.on_wakeup(events.get(..n).unwrap_or_default());
            if std::mem::take(&mut self.trim_due) {
                // From this small frame, not from inside the handlers: what they used below
                // it is dead now, and the trim drops it too.
                // Logged first: with debug logging the line's own formatting runs deep, and
                // the trim then drops those pages too.
                log::debug!("trimming the working set");
                sys::trim_working_set();
            }
        }
    }

    /// One wake-up's work. Out of line: the handlers' frames (buffers, inlined calls; 17 kB
    /// when they were part of `run`) exist only while they run, so the stack an idle smss
    /// keeps resident is the loop's own.
    #[inline(never)]
    fn on_wakeup(&mut self, events: &[EpollEvent]) {
        for ev in events {
            self.dispatch(Token::decode(ev.data()));
        }
        // Drain on every wake-up: SIGCHLD coalesces, and a stranger may die at any time.
        self.reap_zombies();
        self.fire_timers(Instant::now());
        self.check_stop();
    }

    fn dispatch(&mut self, token: Token) {
        match token {
            Token::Signal => self.read_signals(),
            Token::Notify => self.read_notifications(),
            Token::ControlListener | Token::ControlClient(_) => self.on_control_event(token),
            Token::SessionReport(id) => self.on_session_report(id),
            Token::SessionWatch(id) => self.on_session_watch(id),
            Token::Uevent => self.on_uevents(),
            Token::HeldExec(pid) => self.on_held_exec(pid, false),
        }
    }

    /// Microseconds since smss started.
    pub fn uptime_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Watch `fd` for input under `token`.
    pub fn watch(&self, fd: BorrowedFd<'_>, token: Token) -> std::io::Result<()> {
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token.encode()))?;
        Ok(())
    }

    /// Stop watching `fd` (call before closing it).
    pub fn unwatch(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// `now + d`, saturating (a configured duration can be absurdly long; `Instant + d` panics).
    pub fn deadline_after(d: Duration) -> Instant {
        let now = Instant::now();
        now.checked_add(d)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86400)))
            .unwrap_or(now)
    }

    pub fn add_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push((at, timer));
    }

    pub fn cancel_timer(&mut self, timer: &Timer) {
        self.timers.retain(|(_, t)| t != timer);
    }

    fn next_timeout(&self) -> PollTimeout {
        let Some(next) = self.timers.iter().map(|(at, _)| *at).min() else {
            return PollTimeout::NONE;
        };
        let ms = next
            .saturating_duration_since(Instant::now())
            .as_millis()
            .saturating_add(1);
        PollTimeout::try_from(ms.min(i32::MAX as u128) as u32).unwrap_or(PollTimeout::MAX)
    }

    fn fire_timers(&mut self, now: Instant) {
        let (due, rest): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|(at, _)| *at <= now);
        self.timers = rest;
        for (_, timer) in due {
            match timer {
                Timer::Readiness { pid } => self.on_readiness_timeout(pid),
                Timer::Stop => self.on_stop_timer(core::StopTimer::Deadline),
                Timer::StopResweep => self.on_stop_timer(core::StopTimer::Resweep),
                Timer::StopRescan => self.on_stop_timer(core::StopTimer::Rescan),
                Timer::SessionKill(id) => self.on_session_kill_timer(id),
                Timer::SessionStart(id) => self.on_session_start_timer(id),
                Timer::ControlDeadline => self.on_control_deadline(),
                Timer::HeldExec(pid) => self.on_held_exec(pid, true),
                Timer::TrimWorkingSet => self.trim_due = true,
            }
        }
    }

    fn read_signals(&mut self) {
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let sig = info.ssi_signo as i32;
                    // The kernel names us as the sender of a SIGPIPE our own write raised.
                    let from_self = info.ssi_pid as i32 == self.engine.me;
                    self.on_signal(sig, from_self);
                }
                Ok(None) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("failed to read the signalfd: {e}");
                    return;
                }
            }
        }
    }

    /// The engine decides (`core::Engine::on_signal`): busybox/sysvinit conventions as the
    /// machine's init, forwarding as a container's.
    fn on_signal(&mut self, sig: i32, from_self: bool) {
        if sig == libc::SIGCHLD {
            return;
        }
        let now = self.now();
        let a = self
            .engine
            .on_signal(sig, from_self, now, sys::has_children());
        self.execute(a);
    }

    /// A fresh readiness socket for the next subsystem, watched by the loop.
    pub(crate) fn open_notify_socket(&mut self) -> std::io::Result<String> {
        self.close_notify_socket();
        let n = notify::NotifySocket::bind()?;
        self.watch(n.as_fd(), Token::Notify)?;
        let address = n.address.clone();
        self.notify = Some(n);
        Ok(address)
    }

    pub(crate) fn close_notify_socket(&mut self) {
        if let Some(n) = self.notify.take() {
            self.unwatch(n.as_fd());
        }
    }

    fn read_notifications(&mut self) {
        let Some(sock) = self.notify.as_ref() else {
            return;
        };
        // Anyone in the network namespace can send to an abstract socket: a bounded batch
        // per wake-up (the socket is level-triggered, the rest comes next round), so a
        // sender that keeps the queue full neither grows memory nor stalls the loop.
        let mut msgs = Vec::new();
        while msgs.len() < NOTIFY_BATCH {
            match sock.recv() {
                Some(m) => msgs.push(m),
                None => break,
            }
        }
        for m in msgs {
            self.on_notification(m);
        }
    }

    /// Reap every exited child; strangers (orphans reparented to us) are expected.
    pub fn reap_zombies(&mut self) {
        loop {
            match sys::reap_one() {
                Reaped::Child(pid, status) => {
                    self.on_exit(pid.as_raw(), status);
                }
                Reaped::Pending => break,
                Reaped::NoChildren => {
                    let now = self.now();
                    let a = self.engine.on_no_children(now);
                    self.execute(a);
                    break;
                }
            }
        }
    }

    fn on_exit(&mut self, pid: i32, status: ExitStatus) {
        let child = self.children.remove(&pid);
        let now = self.uptime_us();
        self.timeline.process_exited(pid, status, now);
        let critical = child.as_ref().is_some_and(|c| c.critical);
        if self.boot_on_exit(pid, status, critical) {
            return;
        }
        let Some(child) = child else {
            if self.on_hotplug_helper_exit(pid, status) {
                return;
            }
            log::debug!("reaped orphan pid {pid} ({status})");
            return;
        };
        if child.role == Role::SpareInstance {
            self.on_spare_exit(pid, status);
            self.resume_clients();
            return;
        }
        if matches!(
            child.role,
            Role::SessionInstance(_) | Role::SessionMember { .. }
        ) {
            self.on_session_process_exit(pid, &child, status);
            return;
        }
        log::info!("{} (pid {pid}) {status}", child.name);
        if Some(pid) == self.engine.initial {
            let now = self.now();
            let a = self.engine.on_exit(pid, status, now, sys::has_children());
            self.execute(a);
            // `smss -- CMD`: the command ending is the container's normal end, not a crash.
            if self.command.is_some() && self.mode != Mode::System {
                return;
            }
        }
        if child.critical && !self.stopping() {
            self.bugcheck(&child.name, pid, status);
        }
    }

    /// Start a process with the Session Manager's environment (plus `extra`).
    pub fn spawn_command(
        &mut self,
        spec: &CommandSpec,
        name: &str,
        role: Role,
        critical: bool,
        detach: Detach,
        extra_env: &[(String, String)],
    ) -> Result<i32, SpawnError> {
        // Most commands add nothing: borrow the environment rather than copying every
        // variable (and its index) for each start.
        let env = if extra_env.is_empty() {
            std::borrow::Cow::Borrowed(&self.env)
        } else {
            let mut env = self.env.clone();
            for (k, v) in extra_env {
                env.set(k, v);
            }
            std::borrow::Cow::Owned(env)
        };
        // Each argument within MAX_ARG_STRLEN, as execve would insist (E2BIG).
        let argv: Vec<String> = spec
            .argv
            .iter()
            .map(|a| env.expand(a))
            .collect::<Result<_, _>>()
            .map_err(|_| SpawnError::Exec {
                program: name.to_string(),
                source: std::io::Error::from_raw_os_error(libc::E2BIG),
            })?;
        let Some(first) = argv.first() else {
            return Err(SpawnError::NotFound(name.to_string()));
        };
        let program = process::resolve_program(first, env.get("PATH"))
            .ok_or_else(|| SpawnError::NotFound(first.clone()))?;
        let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
        let pid = start_os(
            program,
            &argv,
            &exec_environment(env.vars(), &self.raw_env),
            detach,
        )?;
        self.adopt(pid, name, role, critical);
        Ok(pid)
    }

    /// A child we started: its name, role and criticality, for the reaper.
    pub(crate) fn adopt(&mut self, pid: i32, name: &str, role: Role, critical: bool) {
        log::debug!("started {name} as pid {pid}");
        self.children.insert(
            pid,
            Child {
                name: name.to_string(),
                role,
                critical,
            },
        );
    }

    /// A critical process died (or a fatal boot step failed): interface.md section 3.
    pub fn bugcheck(&mut self, name: &str, pid: i32, status: ExitStatus) {
        let now = self.uptime_us();
        self.timeline.bugcheck(name, pid, status, now);
        crate::bugcheck::report(name, pid, status);
        match self.mode {
            Mode::System => {
                crate::bugcheck::crash(self.cfg.crash_control.effective_action(), status)
            }
            Mode::Container | Mode::Subreaper => {
                let now = self.now();
                let a = self.engine.crashed(status, now, sys::has_children());
                self.execute(a);
            }
        }
    }
}

/// Variables as bytes, exactly as inherited.
pub type RawVars = Vec<(OsString, OsString)>;

/// Split an inherited environment into the UTF-8 variables ([`Environment`]'s text) and the
/// rest, kept as bytes.
pub fn split_environment(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> (Vec<(String, String)>, RawVars) {
    let mut text = Vec::new();
    let mut raw = Vec::new();
    for (k, v) in vars {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => text.push((k, v)),
            (k, v) => raw.push((
                k.map(OsString::from).unwrap_or_else(|k| k),
                v.map(OsString::from).unwrap_or_else(|v| v),
            )),
        }
    }
    (text, raw)
}

/// Start `argv` (bytes) as `program` with `envp`: the Session Manager's environment plus
/// the inherited variables that are not UTF-8 ([`exec_environment`]).
pub(crate) fn start_os(
    program: PathBuf,
    argv: &[OsString],
    envp: &[(&[u8], &[u8])],
    detach: Detach,
) -> Result<i32, SpawnError> {
    let spawn = SpawnSpec {
        program,
        argv: Vec::new(),
        env: Vec::new(),
        detach,
        stdio: None,
        pass_fd: None,
        cwd: None,
    };
    Ok(process::spawn_os(&spawn, argv, envp)?.as_raw())
}

/// The environment a child gets: the engine's variables, then the inherited ones that are
/// not UTF-8, exactly as they came, unless the engine set a variable of the same name.
/// Borrowed: the bytes go straight into execve's `NAME=VALUE` strings, copied once there.
pub fn exec_environment<'a>(
    vars: &'a [(String, String)],
    raw: &'a [(OsString, OsString)],
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut out: Vec<(&[u8], &[u8])> = vars
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    for (k, v) in raw {
        if !vars.iter().any(|(n, _)| n.as_bytes() == k.as_bytes()) {
            out.push((k.as_bytes(), v.as_bytes()));
        }
    }
    out
}

pub fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

pub use core::KILL_WAIT;

/// Readiness messages handled per wake-up of the notify socket.
const NOTIFY_BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    fn raw(b: &[u8]) -> OsString {
        OsStr::from_bytes(b).to_os_string()
    }

    #[test]
    fn tokens_come_back_as_they_went() {
        for t in [
            Token::Signal,
            Token::Notify,
            Token::ControlListener,
            Token::Uevent,
            Token::ControlClient(7),
            Token::SessionReport(3),
            Token::SessionWatch(u32::MAX),
            Token::HeldExec(1),
            Token::HeldExec(i32::MAX),
        ] {
            assert_eq!(Token::decode(t.encode()), t);
        }
    }

    /// Issue 12 item 9: names that differ only in invalid bytes stay two variables, and
    /// values that are not UTF-8 pass on exactly; a variable the engine sets wins.
    #[test]
    fn the_environment_passes_on_bytes_exactly() {
        let inherited = vec![
            (raw(b"V\xff"), raw(b"one")),
            (raw(b"V\xfe"), raw(b"two")),
            (raw(b"PLAIN"), raw(b"x\xffy")),
            (raw(b"PATH"), raw(b"/opt/bin:/bin")),
            (raw(b"HOME"), raw(b"/root\xff")),
        ];
        let (text, bytes) = split_environment(inherited.into_iter());
        assert_eq!(
            text,
            vec![("PATH".to_string(), "/opt/bin:/bin".to_string())]
        );
        assert_eq!(bytes.len(), 4);
        let mut vars = text.clone();
        vars.push(("HOME".into(), "/home/set".into()));
        let env: Vec<(OsString, OsString)> = exec_environment(&vars, &bytes)
            .into_iter()
            .map(|(k, v)| (raw(k), raw(v)))
            .collect();
        assert_eq!(
            env,
            vec![
                (raw(b"PATH"), raw(b"/opt/bin:/bin")),
                (raw(b"HOME"), raw(b"/home/set")),
                (raw(b"V\xff"), raw(b"one")),
                (raw(b"V\xfe"), raw(b"two")),
                (raw(b"PLAIN"), raw(b"x\xffy")),
            ]
        );
    }
}
