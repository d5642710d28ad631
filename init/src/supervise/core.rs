//! The engine's decisions about signals, the initial command's end and the stop, without
//! doing any of it: events go in (a signal, an exit, a /proc scan, a timer, "no children
//! left"), [`Action`]s come out (signal a pid or group, scan /proc, arm a timer, exit, take the
//! machine down). The supervisor is the executor: it is the only side that touches `sys`.
//!
//! Time is an input (`now`, since any fixed origin), so every decision is deterministic and
//! unit- and property-tested below.
//!
//! The stop:
//! 1. SIGTERM (and SIGCONT; SIGHUP as well to a process with a controlling terminal, which
//!    is how an interactive shell that ignores SIGTERM learns that its session ends) to every
//!    process we are responsible for, except who already had the stop signal forwarded.
//! 2. The /proc scan is repeated until a scan finds nobody new (a process forked while the
//!    previous scan was being signalled), again on every wake-up (at most every
//!    [`RESCAN_MIN`]) and on a backing-off timer: a process forked later, or an orphan
//!    reparented to us, gets its SIGTERM too. Each process gets SIGTERM once (keyed by pid
//!    and start time, so a reused pid is a new process).
//! 3. When nothing is left, the stop ends at once. When the grace period runs out, every
//!    survivor is named (the executor logs pid and name), then SIGKILLed; as PID 1 also by
//!    `kill(-1, SIGKILL)`, which the kernel makes atomic with fork.
//! 4. After [`KILL_WAIT`] the stop ends regardless (processes stuck in the kernel).

use std::collections::HashSet;
use std::time::Duration;

use smss_config::ForwardTo;

use super::procs::{self, ProcInfo};
use crate::mode::Mode;
use crate::sys::{ExitStatus, RebootCmd};

/// How long the stop waits after SIGKILL for processes stuck in the kernel (D state).
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// Wake-ups rescan /proc during the stop at most this often.
pub const RESCAN_MIN: Duration = Duration::from_millis(10);
/// The re-sweep timer's first interval; it doubles up to [`RESWEEP_MAX`].
pub const RESWEEP_FIRST: Duration = Duration::from_millis(50);
pub const RESWEEP_MAX: Duration = Duration::from_secs(1);
/// Scans in a row while each still finds someone new (a fork bomb must not hold the loop;
/// the next wake-up or the re-sweep timer goes on).
pub const MAX_PASSES: u32 = 16;

/// How a stop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Container / subreaper: exit with the initial command's (or the crashed process's) status.
    Exit,
    /// System: swapoff, sync, unmount, reboot(2).
    Machine(RebootCmd),
}

/// Who already had the stop signal forwarded and is left out of the SIGTERM sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spared {
    Process(i32),
    /// Every member of this process group.
    Group(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Term,
    Kill,
}

/// The stop's two timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopTimer {
    /// The grace period (TERM -> KILL), then the KILL wait.
    Deadline,
    /// Look again for processes that have not had SIGTERM.
    Resweep,
}

/// Where a stop request came from: a repeated control request is the explicit force; a
/// repeated signal is not in container and subreaper mode (it is forwarded, nothing more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signal,
    Control,
}

/// What the executor does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// kill(pid, sig); a negative pid is a process group.
    Signal {
        pid: i32,
        sig: i32,
    },
    /// kill(-1, sig): every process of the namespace but us (PID-1 modes only).
    SignalAll(i32),
    /// Read /proc and hand the result to [`Engine::on_scan`].
    Scan,
    /// (Re)arm a timer to fire after this long.
    ArmTimer(StopTimer, Duration),
    CancelTimer(StopTimer),
    /// Log each of these pids with its name as a survivor of the grace period (before the
    /// SIGKILL that follows).
    Survivors(Vec<i32>),
    Log(log::Level, String),
    /// Container / subreaper: exit with this code.
    Exit(i32),
    /// System: take the machine down.
    Machine(RebootCmd),
}

/// A stop under way.
#[derive(Debug, Clone)]
pub struct Stop {
    pub goal: Goal,
    pub stage: Stage,
    /// When it began (`now` of the event that began it).
    pub began: Duration,
    spared: Option<Spared>,
    /// (pid, start time) of every process that had SIGTERM.
    signalled: HashSet<(i32, u64)>,
    /// Without /proc: kill(-1) was sent.
    signalled_all: bool,
    /// Scans in a row in this round.
    passes: u32,
    last_scan: Duration,
    resweep: Duration,
    /// Survivors already named (the first scan of the KILL stage).
    named: bool,
    done: bool,
}

/// The decisions' state: the mode, the initial command and the stop.
#[derive(Debug, Clone)]
pub struct Engine {
    pub mode: Mode,
    /// Our own pid.
    pub me: i32,
    pub grace: Duration,
    pub forward_to: ForwardTo,
    /// `smss -- CMD`: the command ending ends a container.
    pub command_given: bool,
    /// The initial command's pid while it runs.
    pub initial: Option<i32>,
    pub initial_status: Option<ExitStatus>,
    /// Set by a bugcheck in container/subreaper mode: the status we exit with.
    pub crash_status: Option<ExitStatus>,
    pub stop: Option<Stop>,
}

/// What a signal means as the machine's init (busybox/sysvinit conventions; SIGINT is
/// Ctrl-Alt-Del with RB_DISABLE_CAD).
pub fn machine_signal(sig: i32) -> Option<RebootCmd> {
    match sig {
        libc::SIGINT | libc::SIGTERM => Some(RebootCmd::Reboot),
        libc::SIGUSR1 => Some(RebootCmd::Halt),
        libc::SIGUSR2 | libc::SIGPWR => Some(RebootCmd::Poweroff),
        _ => None,
    }
}

/// The signals that stop a container (and are forwarded like every other).
pub fn is_stop_signal(sig: i32) -> bool {
    sig == libc::SIGTERM || sig == libc::SIGINT
}

/// The status a container/subreaper smss exits with: a crash's, else the initial command's
/// own, else 0.
pub fn exit_code(crash: Option<ExitStatus>, initial: Option<ExitStatus>) -> i32 {
    crash.or(initial).map(ExitStatus::code).unwrap_or(0)
}

impl Engine {
    pub fn new(
        mode: Mode,
        me: i32,
        grace: Duration,
        forward_to: ForwardTo,
        command_given: bool,
    ) -> Engine {
        Engine {
            mode,
            me,
            grace,
            forward_to,
            command_given,
            initial: None,
            initial_status: None,
            crash_status: None,
            stop: None,
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// A signal arrived. `from_self`: the kernel names us as its sender (a SIGPIPE our own
    /// write raised), which is never forwarded.
    pub fn on_signal(
        &mut self,
        sig: i32,
        from_self: bool,
        now: Duration,
        has_children: bool,
    ) -> Vec<Action> {
        let name = super::signal_name(sig);
        if sig == libc::SIGCHLD || (from_self && sig == libc::SIGPIPE) {
            return Vec::new();
        }
        match self.mode {
            Mode::System => match machine_signal(sig) {
                Some(cmd) => {
                    let mut a = vec![Action::Log(
                        log::Level::Info,
                        format!("received {name}: {}", reboot_word(cmd)),
                    )];
                    a.extend(self.request_stop(
                        Goal::Machine(cmd),
                        Source::Signal,
                        now,
                        has_children,
                    ));
                    a
                }
                None => vec![Action::Log(log::Level::Debug, format!("ignoring {name}"))],
            },
            Mode::Container | Mode::Subreaper => {
                let mut a = self.forward(sig);
                if is_stop_signal(sig) {
                    if self.stopping() {
                        a.push(Action::Log(
                            log::Level::Info,
                            format!("received {name}: forwarded; the stop goes on"),
                        ));
                    } else {
                        a.push(Action::Log(
                            log::Level::Info,
                            format!("received {name}: stopping"),
                        ));
                        // The initial command just had the signal: the sweep must not send it
                        // a second SIGTERM (to many programs a second one means "force quit").
                        let spared = self.initial.map(|p| match self.forward_to {
                            ForwardTo::Process => Spared::Process(p),
                            ForwardTo::ProcessGroup => Spared::Group(p),
                        });
                        a.extend(self.begin_stop(Goal::Exit, spared, now, has_children));
                    }
                }
                a
            }
        }
    }

    /// Pass `sig` to the initial command (or its process group).
    fn forward(&self, sig: i32) -> Vec<Action> {
        match self.initial {
            Some(pid) => vec![Action::Signal {
                pid: match self.forward_to {
                    ForwardTo::Process => pid,
                    ForwardTo::ProcessGroup => -pid,
                },
                sig,
            }],
            None => vec![Action::Log(
                log::Level::Debug,
                format!(
                    "no initial command to forward {} to",
                    super::signal_name(sig)
                ),
            )],
        }
    }

    /// A stop asked for from outside. Repeated while processes are still given their grace
    /// period, it is the explicit force (SIGKILL now) when it comes over the control socket,
    /// or as a signal to the machine's init; a repeated signal in container and subreaper
    /// mode was forwarded and does nothing more.
    pub fn request_stop(
        &mut self,
        goal: Goal,
        source: Source,
        now: Duration,
        has_children: bool,
    ) -> Vec<Action> {
        if self.stopping() {
            if source == Source::Control || self.mode == Mode::System {
                let mut a = vec![Action::Log(
                    log::Level::Info,
                    "second stop request: killing the remaining processes now".into(),
                )];
                a.extend(self.escalate(now));
                return a;
            }
            return Vec::new();
        }
        self.begin_stop(goal, None, now, has_children)
    }

    /// The initial command started.
    pub fn initial_started(&mut self, pid: i32) {
        self.initial = Some(pid);
    }

    /// `smss -- CMD` could not start CMD (126/127, like a shell): the container ends here.
    pub fn initial_failed(&mut self, code: i32, now: Duration, has_children: bool) -> Vec<Action> {
        self.initial_status = Some(ExitStatus::Exited(code));
        self.begin_stop(Goal::Exit, None, now, has_children)
    }

    /// A child we started exited. Returns what follows when it was the initial command.
    pub fn on_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        now: Duration,
        has_children: bool,
    ) -> Vec<Action> {
        if Some(pid) != self.initial {
            return Vec::new();
        }
        self.initial = None;
        self.initial_status = Some(status);
        if self.command_given && self.mode != Mode::System {
            // `smss -- CMD`: the command ending is the container's normal end.
            return self.begin_stop(Goal::Exit, None, now, has_children);
        }
        Vec::new()
    }

    /// A critical process died in container/subreaper mode (a bugcheck): stop, and exit with
    /// its status (the first crash's).
    pub fn crashed(
        &mut self,
        status: ExitStatus,
        now: Duration,
        has_children: bool,
    ) -> Vec<Action> {
        if self.crash_status.is_none() {
            self.crash_status = Some(status);
        }
        self.begin_stop(Goal::Exit, None, now, has_children)
    }

    /// Begin the stop; a no-op when one is already under way (its first goal stands).
    pub fn begin_stop(
        &mut self,
        goal: Goal,
        spared: Option<Spared>,
        now: Duration,
        has_children: bool,
    ) -> Vec<Action> {
        if self.stop.is_some() {
            return Vec::new();
        }
        self.stop = Some(Stop {
            goal,
            stage: Stage::Term,
            began: now,
            spared,
            signalled: HashSet::new(),
            signalled_all: false,
            passes: 0,
            last_scan: now,
            resweep: RESWEEP_FIRST,
            named: false,
            done: false,
        });
        // The common container end: the only child just exited. Nothing to signal or sweep.
        if !has_children {
            return self.finish(now);
        }
        vec![
            Action::Log(
                log::Level::Info,
                format!(
                    "stopping: SIGTERM to all processes, SIGKILL after {} ms",
                    self.grace.as_millis()
                ),
            ),
            Action::ArmTimer(StopTimer::Deadline, self.grace),
            Action::ArmTimer(StopTimer::Resweep, RESWEEP_FIRST),
            Action::Scan,
        ]
    }

    /// The result of a [`Action::Scan`]: `None` when /proc cannot be read.
    pub fn on_scan(&mut self, snapshot: Option<&[ProcInfo]>) -> Vec<Action> {
        let (me, pid1) = (self.me, self.mode.is_pid1());
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done {
            return Vec::new();
        }
        let mut a = Vec::new();
        let Some(all) = snapshot else {
            // No /proc: kill(-1) reaches everything but us, once per stage.
            if pid1 {
                match stop.stage {
                    Stage::Term if !stop.signalled_all => {
                        stop.signalled_all = true;
                        a.push(Action::SignalAll(libc::SIGTERM));
                        a.push(Action::SignalAll(libc::SIGCONT));
                    }
                    Stage::Kill if !stop.named => {
                        stop.named = true;
                        a.push(Action::SignalAll(libc::SIGKILL));
                    }
                    _ => {}
                }
            }
            return a;
        };
        let targets: Vec<&ProcInfo> = procs::stop_targets(all, me, pid1)
            .into_iter()
            .filter_map(|pid| all.iter().find(|p| p.pid == pid))
            .filter(|p| p.alive())
            .collect();
        match stop.stage {
            Stage::Term => {
                let mut found = false;
                for p in targets {
                    let spared = match stop.spared {
                        Some(Spared::Process(s)) => s == p.pid,
                        Some(Spared::Group(g)) => p.pgid == g,
                        None => false,
                    };
                    if spared || !stop.signalled.insert((p.pid, p.start_time)) {
                        continue;
                    }
                    found = true;
                    a.push(Action::Signal {
                        pid: p.pid,
                        sig: libc::SIGTERM,
                    });
                    if p.tty_nr != 0 {
                        a.push(Action::Signal {
                            pid: p.pid,
                            sig: libc::SIGHUP,
                        });
                    }
                    // A stopped process cannot act on SIGTERM until it is continued.
                    a.push(Action::Signal {
                        pid: p.pid,
                        sig: libc::SIGCONT,
                    });
                }
                // Someone new: look again, for what they (or others) forked meanwhile.
                if found && stop.passes < MAX_PASSES {
                    stop.passes += 1;
                    a.push(Action::Scan);
                }
            }
            Stage::Kill => {
                let pids: Vec<i32> = targets.iter().map(|p| p.pid).collect();
                if !stop.named && !pids.is_empty() {
                    a.push(Action::Survivors(pids.clone()));
                }
                let first = !stop.named;
                stop.named = true;
                for pid in &pids {
                    a.push(Action::Signal {
                        pid: *pid,
                        sig: libc::SIGKILL,
                    });
                }
                if pid1 && first {
                    // Atomic with fork: nobody forked meanwhile escapes.
                    a.push(Action::SignalAll(libc::SIGKILL));
                }
            }
        }
        a
    }

    /// Any wake-up of the loop while stopping: look again for newcomers (rate-limited).
    pub fn on_wake(&mut self, now: Duration) -> Vec<Action> {
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done || now.saturating_sub(stop.last_scan) < RESCAN_MIN {
            return Vec::new();
        }
        stop.last_scan = now;
        stop.passes = 0;
        vec![Action::Scan]
    }

    pub fn on_timer(&mut self, timer: StopTimer, now: Duration) -> Vec<Action> {
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done {
            return Vec::new();
        }
        match (timer, stop.stage) {
            (StopTimer::Resweep, _) => {
                stop.last_scan = now;
                stop.passes = 0;
                stop.resweep = (stop.resweep * 2).min(RESWEEP_MAX);
                vec![
                    Action::Scan,
                    Action::ArmTimer(StopTimer::Resweep, stop.resweep),
                ]
            }
            (StopTimer::Deadline, Stage::Term) => self.escalate(now),
            (StopTimer::Deadline, Stage::Kill) => {
                let mut a = vec![Action::Log(
                    log::Level::Error,
                    format!(
                        "processes survived SIGKILL for {} s; giving up on them",
                        KILL_WAIT.as_secs()
                    ),
                )];
                a.extend(self.finish(now));
                a
            }
        }
    }

    /// The grace period is over (or the explicit force): name the survivors, SIGKILL them.
    fn escalate(&mut self, now: Duration) -> Vec<Action> {
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.stage == Stage::Kill || stop.done {
            return Vec::new();
        }
        stop.stage = Stage::Kill;
        stop.last_scan = now;
        stop.passes = 0;
        vec![
            Action::Log(
                log::Level::Warn,
                format!(
                    "processes still running {} ms after SIGTERM: sending SIGKILL",
                    now.saturating_sub(stop.began).as_millis()
                ),
            ),
            Action::ArmTimer(StopTimer::Deadline, KILL_WAIT),
            Action::Scan,
        ]
    }

    /// waitpid said ECHILD: nobody is left.
    pub fn on_no_children(&mut self, now: Duration) -> Vec<Action> {
        match &self.stop {
            Some(s) if !s.done => self.finish(now),
            _ => Vec::new(),
        }
    }

    fn finish(&mut self, now: Duration) -> Vec<Action> {
        let code = exit_code(self.crash_status, self.initial_status);
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        stop.done = true;
        let mut a = vec![
            Action::CancelTimer(StopTimer::Deadline),
            Action::CancelTimer(StopTimer::Resweep),
            Action::Log(
                log::Level::Info,
                format!(
                    "all processes gone {} us after the stop began",
                    now.saturating_sub(stop.began).as_micros()
                ),
            ),
        ];
        a.push(match stop.goal {
            Goal::Exit => Action::Exit(code),
            Goal::Machine(cmd) => Action::Machine(cmd),
        });
        a
    }
}

pub fn reboot_word(cmd: RebootCmd) -> &'static str {
    match cmd {
        RebootCmd::Reboot => "reboot",
        RebootCmd::Poweroff => "power off",
        RebootCmd::Halt => "halt",
    }
}
