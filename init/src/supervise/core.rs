//! The engine's decisions about signals, the initial command's end and the stop, without
//! doing any of it: events go in (a signal, an exit, a /proc scan, a timer, "no children
//! left"), [`Action`]s come out (signal a pid or group, scan /proc, arm a timer, exit, take the
//! machine down). The supervisor is the executor: it is the only side that touches `sys`.
//!
//! Time is an input (`now`, since any fixed origin), so every decision is deterministic and
//! unit- and property-tested below.
//!
//! The stop:
//! 1. SIGTERM (and SIGCONT when stopped; SIGHUP as well to a process with a controlling
//!    terminal, which is how an interactive shell that ignores SIGTERM learns that its session
//!    ends) to every process we are responsible for, except who already had the stop signal
//!    forwarded.
//! 2. /proc is listed again until a look finds nobody new (a process forked while the
//!    previous scan was being signalled; [`Action::ScanNew`] reads only the pids the previous
//!    look did not list), and read whole again on every wake-up (at most every
//!    [`RESCAN_MIN`]) and on a backing-off timer: a process forked later, or an orphan
//!    reparented to us, gets its SIGTERM too. Each process gets SIGTERM once per program
//!    (keyed by pid, start time and name: a reused pid is a new process, and so is one that
//!    exec'd after its SIGTERM, which a shell's child may have lost between fork and exec).
//! 3. When nothing is left, the stop ends at once. When the grace period runs out, every
//!    survivor is named (the executor logs pid and name), then SIGKILLed; as PID 1 also by
//!    `kill(-1, SIGKILL)`, which the kernel makes atomic with fork.
//! 4. After [`KILL_WAIT`] the stop ends regardless (processes stuck in the kernel).

use std::collections::HashSet;
use std::time::Duration;

use smss_config::ForwardTo;

use crate::mode::Mode;
use crate::os::procs::{self, ProcInfo};
use crate::sys::{ExitStatus, RebootCmd};

/// How long the stop waits after SIGKILL for processes stuck in the kernel (D state).
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// Wake-ups rescan /proc during the stop at most this often...
pub const RESCAN_MIN: Duration = Duration::from_millis(10);
/// ...and, on a crowded machine, at most every this much per process the last scan saw (a
/// scan reads every process's stat: with thousands dying at once, each one's exit must not
/// cost PID 1 a scan).
pub const RESCAN_PER_PROCESS: Duration = Duration::from_micros(10);
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

impl Spared {
    /// Is `p` the spared process, or a member of the spared group?
    fn covers(self, p: &ProcInfo) -> bool {
        match self {
            Spared::Process(s) => s == p.pid,
            Spared::Group(g) => p.pgid == g,
        }
    }
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
    /// A wake-up came sooner than [`RESCAN_MIN`] after the last scan: look then.
    Rescan,
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
    /// Read the pid namespace's last allocated pid (`/proc/sys/kernel/ns_last_pid`) and the
    /// boot-time clock, and hand them to [`Engine::on_pid_cursor`] (`None` when the pid
    /// cannot be read).
    ReadPidCursor,
    /// List /proc, read only the pids [`Engine::listed`] says the last look did not list,
    /// and hand both to [`Engine::on_scan_new`]: the look for processes forked while a
    /// sweep was being signalled.
    ScanNew,
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

/// What [`Action::ReadPidCursor`] reads: the pid namespace's last allocated pid and the
/// boot-time clock in clock ticks (the unit of a process's start time in /proc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidCursor {
    pub last_pid: i32,
    pub ticks: u64,
}

/// A stop under way.
#[derive(Debug, Clone)]
pub struct Stop {
    pub goal: Goal,
    pub stage: Stage,
    /// When it began (`now` of the event that began it).
    pub began: Duration,
    spared: Option<Spared>,
    /// The stop signal to forward to the spared initial command once the first scan has
    /// recorded who is spared: whoever a handler forks after the forwarding is not, and
    /// gets its SIGTERM.
    forward: Option<Action>,
    /// (pid, start time, name) of every process that had SIGTERM. A process that execs
    /// another program after its SIGTERM counts as new: a shell's child that took the
    /// SIGTERM in the shell's inherited handler between fork and exec lost it at the exec.
    signalled: HashSet<(i32, u64, [u8; 16])>,
    /// Without /proc: kill(-1) was sent.
    signalled_all: bool,
    /// The first sweep may be one kill(-1, SIGTERM) (PID-1 modes, and whoever is spared had
    /// SIGTERM forwarded anyway): it waits for [`Action::ReadPidCursor`].
    fast: bool,
    /// kill(-1, SIGTERM) went out when this was the namespace's last pid: until the first
    /// full look every process up to it had its SIGTERM (it existed before the kill, which is
    /// atomic with fork); one above it was forked since, maybe by a SIGTERM handler.
    swept_below: Option<i32>,
    /// The boot-time clock (ticks) at the kill(-1).
    swept_at: u64,
    /// Who was spared when the kill(-1) went out (it had SIGTERM from it, as forwarded).
    swept_spared: Option<Spared>,
    /// The processes of the first look taken as reached by the kill(-1): if the pid cursor
    /// wrapped during the look, those at or under its new value may be newcomers.
    covered: Vec<i32>,
    /// Scans in a row in this round.
    passes: u32,
    /// The pids the last look listed (a quick look reads none of these again)...
    listed: HashSet<i32>,
    /// ...and those of them that were ours (a subreaper's newcomer is ours when its parent is).
    ours: HashSet<i32>,
    /// The look under way signalled someone as it read them ([`Engine::on_scan_early`]).
    found_early: bool,
    last_scan: Duration,
    /// Processes the last scan saw.
    last_scan_size: usize,
    /// A [`StopTimer::Rescan`] is armed.
    rescan_pending: bool,
    resweep: Duration,
    /// Survivors already named (the first scan of the KILL stage).
    named: bool,
    done: bool,
}

impl Stop {
    /// No /proc: kill(-1) reaches everything but us, once per stage (PID-1 modes only).
    fn without_proc(&mut self, pid1: bool) -> Vec<Action> {
        let mut a: Vec<Action> = self.forward.take().into_iter().collect();
        if pid1 {
            match self.stage {
                Stage::Term if !self.signalled_all => {
                    self.signalled_all = true;
                    a.push(Action::SignalAll(libc::SIGTERM));
                    a.push(Action::SignalAll(libc::SIGCONT));
                }
                Stage::Kill if !self.named => {
                    self.named = true;
                    a.push(Action::SignalAll(libc::SIGKILL));
                }
                _ => {}
            }
        }
        a
    }

    /// Signal what a look found alive and ours, as the stage says.
    fn signal(&mut self, targets: Vec<&ProcInfo>, pid1: bool) -> Vec<Action> {
        let mut a: Vec<Action> = self.forward.take().into_iter().collect();
        match self.stage {
            Stage::Term => {
                let mut found = false;
                // Who had the forwarded signal is left out of the first scan only (marked as
                // signalled): whoever joins the spared group later needs its SIGTERM too.
                let spared_now = self.spared.take();
                for p in targets {
                    let spared = spared_now.is_some_and(|s| s.covers(p));
                    if !self.signalled.insert((p.pid, p.start_time, p.comm)) {
                        continue;
                    }
                    if spared {
                        // It had the forwarded signal, but a stopped one cannot act on it.
                        if is_stopped(p) {
                            a.push(Action::Signal {
                                pid: p.pid,
                                sig: libc::SIGCONT,
                            });
                        }
                        continue;
                    }
                    found = true;
                    a.extend(term_signals(p));
                }
                found |= std::mem::take(&mut self.found_early);
                // Someone new: look again for what they (or others) forked meanwhile. Only
                // the pids this look did not list need reading: a process seen already had
                // its SIGTERM (or is not ours). One that exec'd since is read again by the
                // next full look, on a wake-up or the re-sweep timer.
                if found && self.passes < MAX_PASSES {
                    self.passes += 1;
                    a.push(Action::ScanNew);
                }
            }
            Stage::Kill => {
                let pids: Vec<i32> = targets.iter().map(|p| p.pid).collect();
                if !self.named && !pids.is_empty() {
                    a.push(Action::Survivors(pids.clone()));
                }
                let first = !self.named;
                self.named = true;
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
}

/// The sweep's signals to one process: SIGTERM; SIGHUP as well with a controlling terminal;
/// SIGCONT when it is stopped (it cannot act on SIGTERM until continued). Only a stopped one:
/// a SIGCONT that stops nothing is noise to a program that handles it (dumb-init's tests see
/// it).
fn term_signals(p: &ProcInfo) -> Vec<Action> {
    let mut a = vec![Action::Signal {
        pid: p.pid,
        sig: libc::SIGTERM,
    }];
    if p.tty_nr != 0 {
        a.push(Action::Signal {
            pid: p.pid,
            sig: libc::SIGHUP,
        });
    }
    if is_stopped(p) {
        a.push(Action::Signal {
            pid: p.pid,
            sig: libc::SIGCONT,
        });
    }
    a
}

/// Stopped by a signal (T) or by a tracer (t): it acts on nothing but SIGCONT and SIGKILL.
fn is_stopped(p: &ProcInfo) -> bool {
    matches!(p.state, 'T' | 't')
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
                if !is_stop_signal(sig) {
                    return self.forward(sig);
                }
                if self.stopping() {
                    let mut a = self.forward(sig);
                    a.push(Action::Log(
                        log::Level::Info,
                        format!("received {name}: forwarded; the stop goes on"),
                    ));
                    return a;
                }
                let mut a = vec![Action::Log(
                    log::Level::Info,
                    format!("received {name}: stopping"),
                )];
                // The initial command has the signal forwarded: the sweep must not send it a
                // second SIGTERM (to many programs a second one means "force quit"). The
                // forwarding waits for the first scan, which records who is spared.
                let spared = self.initial.map(|p| match self.forward_to {
                    ForwardTo::Process => Spared::Process(p),
                    ForwardTo::ProcessGroup => Spared::Group(p),
                });
                let forward = self.forward(sig);
                let forwarded = spared.map(|_| sig);
                a.extend(self.begin_stop_forwarding(
                    Goal::Exit,
                    spared,
                    forwarded,
                    now,
                    has_children,
                ));
                match self.stop.as_mut() {
                    Some(stop) if !stop.done && spared.is_some() => {
                        stop.forward = forward.into_iter().next();
                        a
                    }
                    _ => forward.into_iter().chain(a).collect(),
                }
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
        self.begin_stop_forwarding(goal, spared, None, now, has_children)
    }

    /// [`Engine::begin_stop`], `spared` having `forwarded` forwarded to it.
    fn begin_stop_forwarding(
        &mut self,
        goal: Goal,
        spared: Option<Spared>,
        forwarded: Option<i32>,
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
            forward: None,
            signalled: HashSet::new(),
            signalled_all: false,
            fast: self.mode.is_pid1() && forwarded.map_or(true, |sig| sig == libc::SIGTERM),
            swept_below: None,
            swept_at: 0,
            swept_spared: None,
            covered: Vec::new(),
            passes: 0,
            listed: HashSet::new(),
            ours: HashSet::new(),
            found_early: false,
            last_scan: now,
            last_scan_size: 0,
            rescan_pending: false,
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
            if self.stop.as_ref().is_some_and(|s| s.fast) {
                Action::ReadPidCursor
            } else {
                Action::Scan
            },
        ]
    }

    /// The result of an [`Action::ReadPidCursor`].
    ///
    /// Before the first look: SIGTERM to everyone at once by kill(-1). The full look, which
    /// only adds what a process reached by it needs besides (SIGHUP with a terminal, SIGCONT
    /// when stopped) and gives SIGTERM to whoever was forked since (a pid above the cursor),
    /// waits for [`RESCAN_MIN`], so the reaping starts at once (when all are gone by then
    /// there is no look at all). A process forked between the cursor's read and the kill(-1)
    /// has a pid above it and was reached too: it gets a second SIGTERM (a window of a few
    /// microseconds; reading the cursor after the kill would instead let a process forked
    /// after it pass for one it reached). Without a cursor, the full look now, which signals
    /// each process as it reads it.
    ///
    /// After the first full look: if the cursor went down (pids wrapped meanwhile), that
    /// look's processes at or under it may have been forked after the kill(-1), and get
    /// their SIGTERM.
    pub fn on_pid_cursor(&mut self, cursor: Option<PidCursor>, now: Duration) -> Vec<Action> {
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done || stop.stage != Stage::Term {
            return Vec::new();
        }
        match (stop.fast, stop.swept_below) {
            (true, None) => {
                stop.fast = false;
                let Some(c) = cursor else {
                    return vec![Action::Scan];
                };
                stop.swept_below = Some(c.last_pid);
                stop.swept_at = c.ticks;
                stop.swept_spared = stop.spared.take();
                // The spared command's forwarded SIGTERM is this one.
                stop.forward = None;
                stop.signalled_all = true;
                stop.last_scan = now;
                stop.rescan_pending = true;
                // No look right away: whoever a SIGTERM handler forks does so after this,
                // and is found by the full look or a wake-up's look after it.
                vec![
                    Action::SignalAll(libc::SIGTERM),
                    Action::ArmTimer(StopTimer::Rescan, RESCAN_MIN),
                ]
            }
            (false, Some(before)) => {
                stop.swept_below = None;
                let covered = std::mem::take(&mut stop.covered);
                let spared = match stop.swept_spared {
                    Some(Spared::Process(p)) => Some(p),
                    _ => None,
                };
                match cursor {
                    Some(c) if c.last_pid >= before => Vec::new(),
                    _ => covered
                        .into_iter()
                        .filter(|&pid| {
                            cursor.map_or(true, |c| pid <= c.last_pid) && Some(pid) != spared
                        })
                        .map(|pid| Action::Signal {
                            pid,
                            sig: libc::SIGTERM,
                        })
                        .collect(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Did the last look at /proc list `pid`? (What a [`Action::ScanNew`] need not read.)
    pub fn listed(&self, pid: i32) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.listed.contains(&pid) || s.swept_below.is_some_and(|c| pid <= c))
    }

    /// One process of a full look, as soon as it is read (the executor then reads the rest,
    /// and hands the whole look to [`Engine::on_scan`]). In PID-1 modes during the TERM stage
    /// a process's SIGTERM depends on nothing but itself: it goes out now, so the first
    /// processes are on their way out while /proc is still being read. The initial command's
    /// forwarded signal goes out when the look reaches it. A spared group's members (the
    /// look must record them first), a subreaper's processes (ours only through the tree) and
    /// the KILL stage (the survivors are named first) wait for the whole look.
    pub fn on_scan_early(&mut self, p: &ProcInfo) -> Vec<Action> {
        let me = self.me;
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done || stop.stage != Stage::Term || !self.mode.is_pid1() {
            return Vec::new();
        }
        if p.pid == me || p.kernel_thread || !p.alive() {
            return Vec::new();
        }
        if stop.swept_below.is_some_and(|c| p.pid <= c) {
            // Reached by the kill(-1): what else it needs.
            if !stop.signalled.insert((p.pid, p.start_time, p.comm)) {
                return Vec::new();
            }
            stop.found_early = true;
            stop.covered.push(p.pid);
            let spared = stop.swept_spared.is_some_and(|s| s.covers(p));
            // A process forked within a clock tick of the kill(-1) may have been between fork
            // and exec then, and lost its SIGTERM in its parent's inherited handler: it gets
            // one of its own, as the per-process sweep gives every process it reads.
            let young = p.start_time.saturating_add(1) >= stop.swept_at;
            let mut a = term_signals(p);
            a.retain(|x| match x {
                Action::Signal { sig, .. } if *sig == libc::SIGTERM => young && !spared,
                Action::Signal { sig, .. } if *sig == libc::SIGHUP => !spared,
                _ => true,
            });
            return a;
        }
        match stop.spared {
            Some(Spared::Process(s)) if s == p.pid => {
                // on_scan records it as signalled (spared) when the look is over.
                return stop.forward.take().into_iter().collect();
            }
            Some(Spared::Group(g)) if p.pgid == g => return Vec::new(),
            _ => {}
        }
        if !stop.signalled.insert((p.pid, p.start_time, p.comm)) {
            return Vec::new();
        }
        stop.found_early = true;
        term_signals(p)
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
        let Some(all) = snapshot else {
            return stop.without_proc(pid1);
        };
        stop.last_scan_size = all.len();
        let ours: HashSet<i32> = procs::stop_targets(all, me, pid1).into_iter().collect();
        stop.listed = all.iter().map(|p| p.pid).collect();
        let targets: Vec<&ProcInfo> = all
            .iter()
            .filter(|p| p.alive() && ours.contains(&p.pid))
            .collect();
        stop.ours = ours;
        let mut a = stop.signal(targets, pid1);
        if stop.swept_below.is_some() {
            // The first full look after the kill(-1): did pids wrap meanwhile?
            a.push(Action::ReadPidCursor);
        }
        a
    }

    /// The result of a [`Action::ScanNew`]: every pid /proc listed, and the processes among
    /// them that the last look had not listed. `None` when /proc cannot be read.
    pub fn on_scan_new(&mut self, look: Option<(&[i32], &[ProcInfo])>) -> Vec<Action> {
        let (me, pid1) = (self.me, self.mode.is_pid1());
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done {
            return Vec::new();
        }
        let Some((listed, new)) = look else {
            return stop.without_proc(pid1);
        };
        stop.listed = listed.iter().copied().collect();
        let targets: Vec<&ProcInfo> = if pid1 {
            new.iter()
                .filter(|p| p.pid != me && !p.kernel_thread)
                .collect()
        } else {
            // Below us or below one of ours; parents may be listed after their children.
            let mut roots: Vec<i32> = stop.ours.iter().copied().collect();
            roots.push(me);
            let below: HashSet<i32> = procs::descendants(new, &roots)
                .iter()
                .map(|p| p.pid)
                .collect();
            new.iter().filter(|p| below.contains(&p.pid)).collect()
        };
        stop.ours.extend(targets.iter().map(|p| p.pid));
        let targets = targets.into_iter().filter(|p| p.alive()).collect();
        stop.signal(targets, pid1)
    }

    /// Any wake-up of the loop while stopping: look again for newcomers (rate-limited).
    pub fn on_wake(&mut self, now: Duration) -> Vec<Action> {
        let Some(stop) = self.stop.as_mut() else {
            return Vec::new();
        };
        if stop.done {
            return Vec::new();
        }
        let since = now.saturating_sub(stop.last_scan);
        let size = u32::try_from(stop.last_scan_size).unwrap_or(u32::MAX);
        let min = RESCAN_MIN.max(RESCAN_PER_PROCESS.saturating_mul(size));
        if since < min {
            // Too soon: look once the interval is over (the wake-up may be an exit whose
            // orphans, or an exec that lost its SIGTERM, need a look).
            if stop.rescan_pending {
                return Vec::new();
            }
            stop.rescan_pending = true;
            return vec![Action::ArmTimer(StopTimer::Rescan, min - since)];
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
            (StopTimer::Rescan, _) => {
                stop.rescan_pending = false;
                stop.last_scan = now;
                stop.passes = 0;
                vec![Action::Scan]
            }
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
            Action::CancelTimer(StopTimer::Rescan),
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

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1};

    const GRACE: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn engine(mode: Mode, forward_to: ForwardTo) -> Engine {
        let me = if mode == Mode::Subreaper { 50 } else { 1 };
        let mut e = Engine::new(mode, me, GRACE, forward_to, mode != Mode::System);
        e.initial_started(2);
        e
    }

    fn proc_(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo::fake(pid, ppid)
    }

    fn signals(a: &[Action]) -> Vec<(i32, i32)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Signal { pid, sig } => Some((*pid, *sig)),
                _ => None,
            })
            .collect()
    }

    fn sent(a: &[Action], sig: i32) -> Vec<i32> {
        signals(a)
            .into_iter()
            .filter(|(_, s)| *s == sig)
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn machine_signals_choose_the_reboot_command_and_ignore_the_rest() {
        for (sig, cmd) in [
            (SIGTERM, RebootCmd::Reboot),
            (SIGINT, RebootCmd::Reboot),
            (libc::SIGUSR1, RebootCmd::Halt),
            (libc::SIGUSR2, RebootCmd::Poweroff),
            (libc::SIGPWR, RebootCmd::Poweroff),
        ] {
            let mut e = engine(Mode::System, ForwardTo::Process);
            let a = e.on_signal(sig, false, ms(0), true);
            assert_eq!(e.stop.as_ref().map(|s| s.goal), Some(Goal::Machine(cmd)));
            // Nothing is forwarded to the initial command of a machine; the sweep begins
            // with the pid cursor (then kill(-1)).
            assert!(signals(&a).is_empty(), "{a:?}");
            assert!(a.contains(&Action::ReadPidCursor), "{a:?}");
        }
        for sig in [libc::SIGHUP, libc::SIGQUIT, libc::SIGWINCH, libc::SIGCHLD] {
            let mut e = engine(Mode::System, ForwardTo::Process);
            let a = e.on_signal(sig, false, ms(0), true);
            assert!(!e.stopping() && signals(&a).is_empty(), "{sig}: {a:?}");
        }
    }

    #[test]
    fn a_second_stop_signal_to_the_machine_is_the_explicit_force() {
        let mut e = engine(Mode::System, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        let a = e.on_signal(SIGTERM, false, ms(5), true);
        assert_eq!(e.stop.as_ref().map(|s| s.stage), Some(Stage::Kill));
        assert!(a.contains(&Action::Scan));
    }

    #[test]
    fn container_forwards_every_signal_to_the_process_or_its_group() {
        for (fwd, target) in [(ForwardTo::Process, 2), (ForwardTo::ProcessGroup, -2)] {
            for mode in [Mode::Container, Mode::Subreaper] {
                let mut e = engine(mode, fwd);
                let a = e.on_signal(SIGUSR1, false, ms(0), true);
                assert_eq!(signals(&a), vec![(target, SIGUSR1)]);
                assert!(!e.stopping());
                // SIGCHLD is ours, and so is a SIGPIPE we raised ourselves.
                assert!(e.on_signal(libc::SIGCHLD, false, ms(0), true).is_empty());
                assert!(e.on_signal(libc::SIGPIPE, true, ms(0), true).is_empty());
                let a = e.on_signal(libc::SIGPIPE, false, ms(0), true);
                assert_eq!(signals(&a), vec![(target, libc::SIGPIPE)]);
            }
        }
    }

    /// Issue 10 defect 1, in the core: SIGINT then SIGTERM are both forwarded, and neither
    /// escalates; only the grace period does.
    #[test]
    fn repeated_stop_signals_are_forwarded_and_never_escalate() {
        for mode in [Mode::Container, Mode::Subreaper] {
            let mut e = engine(mode, ForwardTo::Process);
            e.on_signal(SIGINT, false, ms(0), true);
            assert!(e.stopping());
            let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1)]));
            assert_eq!(signals(&a), vec![(2, SIGINT)]);
            for (i, sig) in [SIGTERM, SIGTERM, SIGINT].into_iter().enumerate() {
                let a = e.on_signal(sig, false, ms(10 * i as u64 + 10), true);
                assert_eq!(signals(&a), vec![(2, sig)], "{a:?}");
                assert_eq!(e.stop.as_ref().map(|s| s.stage), Some(Stage::Term));
            }
            // The initial command exits with its own status: that is the exit code.
            assert!(e
                .on_exit(2, ExitStatus::Exited(0), ms(100), false)
                .is_empty());
            let a = e.on_no_children(ms(101));
            assert_eq!(a.last(), Some(&Action::Exit(0)), "{a:?}");
        }
    }

    #[test]
    fn a_repeated_control_request_is_the_explicit_force_in_a_container() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.request_stop(Goal::Exit, Source::Control, ms(0), true);
        assert_eq!(e.stop.as_ref().map(|s| s.stage), Some(Stage::Term));
        e.request_stop(Goal::Exit, Source::Control, ms(1), true);
        assert_eq!(e.stop.as_ref().map(|s| s.stage), Some(Stage::Kill));
    }

    #[test]
    fn the_stop_with_no_children_left_ends_at_once_with_the_initial_status() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        let a = e.on_exit(2, ExitStatus::Killed(SIGTERM), ms(0), false);
        assert_eq!(a.last(), Some(&Action::Exit(128 + SIGTERM)));
        assert!(!a.contains(&Action::Scan));
        // The machine's initial command ending does not stop the machine.
        let mut e = engine(Mode::System, ForwardTo::Process);
        assert!(e.on_exit(2, ExitStatus::Exited(1), ms(0), false).is_empty());
        assert!(!e.stopping());
    }

    #[test]
    fn a_crash_status_wins_over_the_initial_commands() {
        assert_eq!(exit_code(None, None), 0);
        assert_eq!(exit_code(None, Some(ExitStatus::Exited(4))), 4);
        assert_eq!(
            exit_code(Some(ExitStatus::Exited(3)), Some(ExitStatus::Exited(4))),
            3
        );
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.crashed(ExitStatus::Exited(3), ms(0), true);
        e.on_exit(2, ExitStatus::Exited(0), ms(1), true);
        let a = e.on_no_children(ms(2));
        assert_eq!(a.last(), Some(&Action::Exit(3)));
    }

    /// Stage 1 without a pid cursor (no /proc/sys/kernel/ns_last_pid): SIGTERM to every
    /// target as the look reads it, SIGCONT to a stopped one, SIGHUP too with a terminal;
    /// never us, kernel threads or (as a subreaper) strangers; the spared initial command is
    /// left out.
    #[test]
    fn the_sweep_signals_every_target_once() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        let mut a = e.on_signal(SIGTERM, false, ms(0), true);
        assert_eq!(a.pop(), Some(Action::ReadPidCursor));
        assert_eq!(e.on_pid_cursor(None, ms(0)), vec![Action::Scan]);
        a.push(Action::Scan);
        assert_eq!(
            a[..],
            [
                Action::Log(log::Level::Info, "received SIGTERM: stopping".into()),
                Action::Log(
                    log::Level::Info,
                    "stopping: SIGTERM to all processes, SIGKILL after 10000 ms".into()
                ),
                Action::ArmTimer(StopTimer::Deadline, GRACE),
                Action::ArmTimer(StopTimer::Resweep, RESWEEP_FIRST),
                Action::Scan,
            ]
        );
        let mut tty = proc_(4, 2);
        tty.tty_nr = 34816;
        let mut kthread = proc_(5, 0);
        kthread.kernel_thread = true;
        let mut zombie = proc_(6, 1);
        zombie.state = 'Z';
        let mut stopped = proc_(3, 2);
        stopped.state = 'T';
        let all = [proc_(1, 0), proc_(2, 1), stopped, tty, kthread, zombie];
        let a = e.on_scan(Some(&all));
        // The forwarding comes once the scan has recorded who is spared.
        assert_eq!(
            signals(&a),
            vec![
                (2, SIGTERM),
                (3, SIGTERM),
                (3, SIGCONT),
                (4, SIGTERM),
                (4, SIGHUP),
            ]
        );
        // Someone new was found: look again (for newcomers only, `ScanNew`). The same
        // processes again: nothing, no scan.
        assert_eq!(a.last(), Some(&Action::ScanNew));
        let a = e.on_scan(Some(&all));
        assert!(a.is_empty(), "{a:?}");
        // A process forked meanwhile, and a reused pid (a new start time), get theirs.
        let mut reused = proc_(3, 2);
        reused.start_time = 999;
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1), reused, proc_(7, 3)]));
        assert_eq!(sent(&a, SIGTERM), vec![3, 7]);
        // A process that exec'd another program since its SIGTERM gets one again (a shell's
        // child may have taken it in the shell's handler and lost it at the exec).
        let mut execd = proc_(7, 3);
        execd.comm = *b"sleep\0\0\0\0\0\0\0\0\0\0\0";
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1), reused, execd]));
        assert_eq!(sent(&a, SIGTERM), vec![7]);
    }

    /// A stopped (Ctrl-Z'd) initial command cannot act on the forwarded stop signal until it
    /// is continued: it gets SIGCONT after it, like any stopped process in the sweep, and a
    /// running one none. (`podman stop` of a suspended `podman run -it` waited out the grace
    /// period and was SIGKILLed: exit 137.)
    #[test]
    fn a_stopped_initial_command_is_continued_after_the_forwarded_signal() {
        let mut stopped = proc_(2, 1);
        stopped.state = 'T';
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.on_signal(SIGINT, false, ms(0), true);
        let a = e.on_scan(Some(&[proc_(1, 0), stopped]));
        assert_eq!(signals(&a), vec![(2, SIGINT), (2, SIGCONT)]);
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.on_signal(SIGINT, false, ms(0), true);
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1)]));
        assert_eq!(signals(&a), vec![(2, SIGINT)]);
        // A group: the forward to the group, then SIGCONT to each stopped member.
        let mut member = proc_(3, 2);
        member.pgid = 2;
        member.state = 't';
        let mut running = proc_(4, 2);
        running.pgid = 2;
        for mode in [Mode::Container, Mode::Subreaper] {
            let mut e = engine(mode, ForwardTo::ProcessGroup);
            e.on_signal(SIGINT, false, ms(0), true);
            // As a subreaper (pid 50) the initial command is its child.
            let mut all = vec![proc_(1, 0), stopped, member, running];
            if mode == Mode::Subreaper {
                all[1].ppid = 50;
                all.insert(1, proc_(50, 1));
            }
            let a = e.on_scan(Some(&all));
            assert_eq!(
                signals(&a),
                vec![(-2, SIGINT), (2, SIGCONT), (3, SIGCONT)],
                "{mode:?}"
            );
        }
    }

    fn cursor(last_pid: i32, ticks: u64) -> Option<PidCursor> {
        Some(PidCursor { last_pid, ticks })
    }

    /// With a pid cursor, SIGTERM goes to everyone at once (kill(-1)) and the reaping starts;
    /// the look comes after RESCAN_MIN and adds only what each process needs besides: SIGHUP
    /// with a terminal (not to the spared command), SIGCONT when stopped, and SIGTERM to a
    /// process forked since (above the cursor) or within a tick before (it may have lost its
    /// SIGTERM at an exec). The spared command had SIGTERM from the kill(-1): nothing is
    /// forwarded on top.
    #[test]
    fn with_a_pid_cursor_the_sweep_is_one_kill_minus_one() {
        for mode in [Mode::Container, Mode::System] {
            let mut e = engine(mode, ForwardTo::Process);
            let a = e.on_signal(SIGTERM, false, ms(0), true);
            assert_eq!(a.last(), Some(&Action::ReadPidCursor), "{a:?}");
            assert!(signals(&a).is_empty(), "{a:?}");
            let a = e.on_pid_cursor(cursor(9, 100), ms(0));
            assert_eq!(
                a,
                vec![
                    Action::SignalAll(SIGTERM),
                    Action::ArmTimer(StopTimer::Rescan, RESCAN_MIN)
                ]
            );
            // Wake-ups (the reaping) before RESCAN_MIN look at nothing.
            assert!(e.on_wake(ms(3)).is_empty());
            let mut initial = proc_(2, 1);
            initial.state = 'T';
            initial.tty_nr = 34816;
            initial.start_time = 10;
            let mut tty = proc_(3, 2);
            tty.tty_nr = 34816;
            tty.start_time = 10;
            let mut plain = proc_(4, 2);
            plain.start_time = 10;
            let mut young = proc_(5, 2);
            young.start_time = 99;
            let mut newcomer = proc_(12, 4);
            newcomer.start_time = 101;
            let all = [proc_(1, 0), initial, tty, plain, young, newcomer];
            assert_eq!(
                e.on_timer(StopTimer::Rescan, RESCAN_MIN),
                vec![Action::Scan]
            );
            let mut early = Vec::new();
            for p in &all {
                early.extend(e.on_scan_early(p));
            }
            let spared_hup = if mode == Mode::System {
                vec![(2, SIGHUP), (2, SIGCONT)]
            } else {
                vec![(2, SIGCONT)]
            };
            let mut want = spared_hup;
            want.extend([(3, SIGHUP), (5, SIGTERM), (12, SIGTERM)]);
            assert_eq!(signals(&early), want, "{mode:?}");
            let a = e.on_scan(Some(&all));
            assert!(signals(&a).is_empty(), "{a:?}");
            assert_eq!(a.last(), Some(&Action::ReadPidCursor));
            // The cursor went on (no wrap): nothing more.
            assert!(e.on_pid_cursor(cursor(12, 101), ms(11)).is_empty());
            // Later looks: the same processes get nothing again.
            let a = e.on_scan(Some(&all));
            assert!(signals(&a).is_empty(), "{a:?}");
        }
    }

    /// Pids wrapped between the kill(-1) and the first look: the look's processes at or under
    /// the new cursor may have been forked after the kill, and get SIGTERM (not the spared
    /// command, which ran before).
    #[test]
    fn a_pid_wrap_before_the_first_look_gets_its_sigterms() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        e.on_pid_cursor(cursor(32760, 100), ms(0));
        e.on_timer(StopTimer::Rescan, RESCAN_MIN);
        let mut all = [proc_(1, 0), proc_(2, 1), proc_(3, 1), proc_(32750, 2)];
        for p in &mut all {
            p.start_time = 10;
        }
        for p in &all {
            assert!(signals(&e.on_scan_early(p)).is_empty());
        }
        e.on_scan(Some(&all));
        let a = e.on_pid_cursor(cursor(5, 101), ms(11));
        assert_eq!(signals(&a), vec![(3, SIGTERM)]);
    }

    /// The fast sweep only when it changes nothing: a forwarded SIGINT (Ctrl-C) is not a
    /// SIGTERM, so the command must not get one; and a subreaper never kill(-1)s.
    #[test]
    fn no_kill_minus_one_when_the_command_had_another_signal_or_as_a_subreaper() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        let a = e.on_signal(SIGINT, false, ms(0), true);
        assert_eq!(a.last(), Some(&Action::Scan), "{a:?}");
        let mut e = engine(Mode::Subreaper, ForwardTo::Process);
        let a = e.on_signal(SIGTERM, false, ms(0), true);
        assert_eq!(a.last(), Some(&Action::Scan), "{a:?}");
        assert!(e.on_pid_cursor(cursor(9, 1), ms(0)).is_empty());
    }

    /// The spared group is left out of the first scan only: who joins it later gets SIGTERM.
    #[test]
    fn a_process_joining_the_spared_group_later_gets_sigterm() {
        let mut e = engine(Mode::Container, ForwardTo::ProcessGroup);
        e.on_signal(SIGTERM, false, ms(0), true);
        let mut member = proc_(3, 2);
        member.pgid = 2;
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1), member]));
        assert_eq!(signals(&a), vec![(-2, SIGTERM)]);
        let mut late = proc_(8, 2);
        late.pgid = 2;
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1), member, late]));
        assert_eq!(sent(&a, SIGTERM), vec![8]);
    }

    #[test]
    fn a_subreaper_signals_only_its_descendants_and_never_everybody() {
        let mut e = engine(Mode::Subreaper, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        let all = [
            proc_(1, 0),
            proc_(50, 1),
            proc_(2, 50),
            proc_(3, 2),
            proc_(9, 1),
        ];
        let a = e.on_scan(Some(&all));
        assert_eq!(sent(&a, SIGTERM), vec![2, 3]);
        // Without /proc a subreaper cannot kill(-1).
        let mut e = engine(Mode::Subreaper, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        assert!(e.on_scan(None).is_empty());
        e.on_timer(StopTimer::Deadline, GRACE);
        let a = e.on_scan(Some(&all));
        assert_eq!(sent(&a, SIGKILL), vec![2, 3]);
        assert!(!a.iter().any(|x| matches!(x, Action::SignalAll(_))));
    }

    #[test]
    fn without_proc_pid1_uses_kill_minus_one_once_per_stage() {
        let mut e = engine(Mode::System, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        assert_eq!(
            e.on_scan(None),
            vec![Action::SignalAll(SIGTERM), Action::SignalAll(SIGCONT)]
        );
        assert!(e.on_scan(None).is_empty());
        e.on_timer(StopTimer::Deadline, GRACE);
        assert_eq!(e.on_scan(None), vec![Action::SignalAll(SIGKILL)]);
    }

    /// Stage 3: the grace period runs out: survivors named, then SIGKILL (and kill(-1) as
    /// PID 1); after the KILL wait the stop ends regardless.
    #[test]
    fn the_grace_period_names_the_survivors_then_kills() {
        let mut e = engine(Mode::System, ForwardTo::Process);
        e.on_signal(libc::SIGUSR2, false, ms(0), true);
        let all = [proc_(1, 0), proc_(2, 1), proc_(3, 2)];
        e.on_scan(Some(&all));
        let a = e.on_timer(StopTimer::Deadline, GRACE);
        assert_eq!(
            a,
            vec![
                Action::Log(
                    log::Level::Warn,
                    "processes still running 10000 ms after SIGTERM: sending SIGKILL".into()
                ),
                Action::ArmTimer(StopTimer::Deadline, KILL_WAIT),
                Action::Scan
            ]
        );
        let a = e.on_scan(Some(&all));
        assert_eq!(
            a,
            vec![
                Action::Survivors(vec![2, 3]),
                Action::Signal {
                    pid: 2,
                    sig: SIGKILL
                },
                Action::Signal {
                    pid: 3,
                    sig: SIGKILL
                },
                Action::SignalAll(SIGKILL),
            ]
        );
        let a = e.on_timer(StopTimer::Deadline, GRACE + KILL_WAIT);
        assert_eq!(a.last(), Some(&Action::Machine(RebootCmd::Poweroff)));
        // Nothing after the end.
        assert!(e.on_timer(StopTimer::Deadline, GRACE * 3).is_empty());
        assert!(e.on_no_children(GRACE * 3).is_empty());
    }

    #[test]
    fn all_gone_ends_the_stop_before_the_grace_period() {
        let mut e = engine(Mode::System, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        let a = e.on_no_children(ms(3));
        assert_eq!(
            a,
            vec![
                Action::CancelTimer(StopTimer::Deadline),
                Action::CancelTimer(StopTimer::Resweep),
                Action::CancelTimer(StopTimer::Rescan),
                Action::Log(
                    log::Level::Info,
                    "all processes gone 3000 us after the stop began".into()
                ),
                Action::Machine(RebootCmd::Reboot),
            ]
        );
    }

    #[test]
    fn rescans_are_rate_limited_and_the_resweep_timer_backs_off() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        assert!(e.on_wake(ms(100)).is_empty(), "no stop, no scan");
        e.begin_stop(Goal::Exit, None, ms(0), true);
        // Too soon after the first scan: a look is scheduled for when the interval is over,
        // once.
        assert_eq!(
            e.on_wake(ms(4)),
            vec![Action::ArmTimer(StopTimer::Rescan, ms(6))]
        );
        assert!(e.on_wake(ms(5)).is_empty());
        assert_eq!(e.on_timer(StopTimer::Rescan, ms(10)), vec![Action::Scan]);
        assert_eq!(e.on_wake(ms(20)), vec![Action::Scan]);
        assert_eq!(
            e.on_wake(ms(25)),
            vec![Action::ArmTimer(StopTimer::Rescan, ms(5))]
        );
        // After a scan of 5,000 processes, wake-ups look at most every 50 ms.
        e.on_timer(StopTimer::Rescan, ms(30));
        let crowd: Vec<ProcInfo> = (1..=5000).map(|p| proc_(p, 0)).collect();
        e.on_scan(Some(&crowd));
        assert_eq!(
            e.on_wake(ms(40)),
            vec![Action::ArmTimer(StopTimer::Rescan, ms(40))]
        );
        let mut intervals = Vec::new();
        for i in 0..8 {
            let a = e.on_timer(StopTimer::Resweep, ms(1000 + i));
            assert_eq!(a[0], Action::Scan);
            match a[1] {
                Action::ArmTimer(StopTimer::Resweep, d) => intervals.push(d.as_millis()),
                ref other => panic!("{other:?}"),
            }
        }
        assert_eq!(intervals, vec![100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    /// In PID-1 modes the sweep's SIGTERM goes out as each process is read, while the rest of
    /// /proc is still to be read; the forwarded signal goes to the initial command when the
    /// look reaches it. The whole look then adds nothing twice, and the look for newcomers
    /// still follows. A subreaper (its tree), a spared group (its members) and the KILL stage
    /// (the survivors are named first) wait for the whole look.
    #[test]
    fn the_sweep_signals_each_process_as_it_is_read() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        let mut stopped = proc_(3, 2);
        stopped.state = 'T';
        let mut kthread = proc_(5, 0);
        kthread.kernel_thread = true;
        let mut zombie = proc_(6, 1);
        zombie.state = 'Z';
        let all = [proc_(1, 0), proc_(2, 1), stopped, kthread, zombie];
        let mut early = Vec::new();
        for p in &all {
            early.extend(e.on_scan_early(p));
        }
        assert_eq!(
            signals(&early),
            vec![(2, SIGTERM), (3, SIGTERM), (3, SIGCONT)]
        );
        let a = e.on_scan(Some(&all));
        assert!(signals(&a).is_empty(), "{a:?}");
        assert_eq!(a.last(), Some(&Action::ScanNew));

        let mut e = engine(Mode::Container, ForwardTo::ProcessGroup);
        e.on_signal(SIGTERM, false, ms(0), true);
        let mut member = proc_(3, 2);
        member.pgid = 2;
        let all = [proc_(1, 0), proc_(2, 1), member, proc_(9, 1)];
        let early: Vec<Action> = all.iter().flat_map(|p| e.on_scan_early(p)).collect();
        assert_eq!(signals(&early), vec![(9, SIGTERM)]);
        let a = e.on_scan(Some(&all));
        assert_eq!(signals(&a), vec![(-2, SIGTERM)]);

        let mut e = engine(Mode::Subreaper, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        assert!(e.on_scan_early(&proc_(3, 50)).is_empty());
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        e.on_timer(StopTimer::Deadline, GRACE);
        assert!(e.on_scan_early(&proc_(3, 1)).is_empty());
    }

    /// After a sweep signalled someone, the look for processes forked meanwhile lists /proc
    /// but reads only the pids the previous look did not list; whoever it finds gets SIGTERM,
    /// and another such look follows. Nobody new: the stop waits (no full rescan at once).
    #[test]
    fn the_look_after_a_sweep_reads_only_newcomers() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        let all = [proc_(1, 0), proc_(2, 1), proc_(3, 2)];
        let a = e.on_scan(Some(&all));
        assert_eq!(sent(&a, SIGTERM), vec![2, 3]);
        assert_eq!(a.last(), Some(&Action::ScanNew));
        assert!(e.listed(1) && e.listed(3) && !e.listed(4));
        let a = e.on_scan_new(Some((&[1, 2, 3, 4], &[proc_(4, 3)])));
        assert_eq!(sent(&a, SIGTERM), vec![4]);
        assert_eq!(a.last(), Some(&Action::ScanNew));
        assert!(e.listed(4));
        assert!(e.on_scan_new(Some((&[1, 2, 3, 4], &[]))).is_empty());
        // A pid the quick look left unread is read again by the next full one (on a wake-up
        // or the re-sweep timer): one that exec'd since its SIGTERM gets another.
        let mut execd = proc_(4, 3);
        execd.comm = *b"sleep\0\0\0\0\0\0\0\0\0\0\0";
        let a = e.on_timer(StopTimer::Resweep, ms(50));
        assert_eq!(a[0], Action::Scan);
        let a = e.on_scan(Some(&[proc_(1, 0), proc_(2, 1), proc_(3, 2), execd]));
        assert_eq!(sent(&a, SIGTERM), vec![4]);

        // A subreaper: a newcomer below one of its own is ours (in any listing order), one
        // below a stranger is not.
        let mut e = engine(Mode::Subreaper, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        let all = [proc_(1, 0), proc_(50, 1), proc_(2, 50), proc_(9, 1)];
        let a = e.on_scan(Some(&all));
        assert_eq!(sent(&a, SIGTERM), vec![2]);
        assert_eq!(a.last(), Some(&Action::ScanNew));
        let new = [proc_(12, 10), proc_(10, 2), proc_(11, 9)];
        let a = e.on_scan_new(Some((&[1, 50, 2, 9, 12, 10, 11], &new)));
        let mut got = sent(&a, SIGTERM);
        got.sort_unstable();
        assert_eq!(got, vec![10, 12]);
        // Without /proc the quick look is the same as a full one: kill(-1) as PID 1.
        let mut e = engine(Mode::System, ForwardTo::Process);
        e.on_signal(SIGTERM, false, ms(0), true);
        assert_eq!(
            e.on_scan_new(None),
            vec![Action::SignalAll(SIGTERM), Action::SignalAll(SIGCONT)]
        );
    }

    #[test]
    fn a_fork_bomb_does_not_hold_the_loop() {
        let mut e = engine(Mode::Container, ForwardTo::Process);
        e.begin_stop(Goal::Exit, None, ms(0), true);
        let mut scans = 0;
        let mut next = 100;
        let mut all = vec![proc_(1, 0), proc_(next, 1)];
        let mut a = e.on_scan(Some(&all));
        // Every look finds a newcomer.
        while a.contains(&Action::ScanNew) {
            scans += 1;
            assert!(scans <= MAX_PASSES, "unbounded");
            next += 1;
            all.push(proc_(next, 1));
            let listed: Vec<i32> = all.iter().map(|p| p.pid).collect();
            a = e.on_scan_new(Some((&listed, &all[all.len() - 1..])));
        }
        assert_eq!(scans, MAX_PASSES);
    }
}

#[cfg(test)]
#[path = "core_props.rs"]
mod props;
