//! The executor of the engine's decisions ([`super::core`]): signals, /proc scans, timers and
//! the end (exit, or the machine taken down). The stop ends when the processes are gone,
//! never after a fixed sleep.

use std::collections::VecDeque;
use std::time::Duration;

use super::core::{Action, StopTimer};
pub use super::core::{Goal, Source, Spared, Stage};
use super::{Supervisor, Timer};
use crate::mode::Mode;
use crate::os::procs;
use crate::sys;

impl Supervisor {
    /// The engine's clock: time since smss started.
    pub(crate) fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Is a stop under way?
    pub fn stopping(&self) -> bool {
        self.engine.stopping()
    }

    /// A stop asked for over the control socket (a repeated one is the explicit force).
    pub fn request_stop(&mut self, goal: Goal) {
        let now = self.now();
        let a = self
            .engine
            .request_stop(goal, Source::Control, now, sys::has_children());
        self.execute(a);
    }

    /// Begin the stop; a no-op when one is already under way (its first goal stands).
    pub fn begin_stop(&mut self, goal: Goal) {
        let now = self.now();
        let a = self.engine.begin_stop(goal, None, now, sys::has_children());
        self.execute(a);
    }

    /// Carry out the engine's actions, feeding scans back until it asks for nothing more.
    pub(crate) fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Signal { pid, sig } => {
                    if let Err(e) = sys::kill(pid, sig) {
                        log::debug!("kill({pid}, {}): {e}", super::signal_name(sig));
                    }
                }
                Action::SignalAll(sig) => {
                    // Never as a subreaper: kill(-1) there reaches every process of the host.
                    if self.mode.is_pid1() {
                        let _ = sys::kill(-1, sig);
                    }
                }
                Action::Scan => {
                    let snapshot = self.scan();
                    queue.extend(self.engine.on_scan(snapshot.as_deref()));
                }
                Action::ReadPidCursor => {
                    let cursor = procs::pid_cursor()
                        .map(|(last_pid, ticks)| super::core::PidCursor { last_pid, ticks });
                    let now = self.now();
                    queue.extend(self.engine.on_pid_cursor(cursor, now));
                }
                Action::ScanNew => {
                    let look = self.scan_new();
                    let look = look.as_ref().map(|(l, n)| (l.as_slice(), n.as_slice()));
                    queue.extend(self.engine.on_scan_new(look));
                }
                Action::ArmTimer(t, d) => {
                    let timer = stop_timer(t);
                    self.cancel_timer(&timer);
                    self.add_timer(Self::deadline_after(d), timer);
                }
                Action::CancelTimer(t) => self.cancel_timer(&stop_timer(t)),
                Action::Survivors(pids) => {
                    for pid in pids {
                        log::warn!("still running: pid {pid} ({})", procs::name(pid));
                    }
                }
                Action::Log(level, msg) => log::log!(level, "{msg}"),
                Action::Exit(code) => {
                    self.end_sessions_at_stop();
                    self.finished = Some(code);
                }
                Action::Machine(cmd) => {
                    self.end_sessions_at_stop();
                    crate::shutdown::take_down_machine(cmd);
                    // reboot(2) failed (logged); nothing else to do but say why we exit.
                    self.finished = Some(1);
                }
            }
        }
    }

    /// /proc for the stop, each process's early signals sent as soon as it is read
    /// ([`super::core::Engine::on_scan_early`]). A subreaper without /proc knows only its own
    /// children.
    fn scan(&mut self) -> Option<Vec<procs::ProcInfo>> {
        let all = procs::snapshot_each(|p| {
            let early = self.engine.on_scan_early(p);
            self.execute(early);
        });
        match all {
            Some(all) => Some(all),
            None if self.mode == Mode::Subreaper => Some(
                self.children
                    .keys()
                    .map(|&pid| self.child_info(pid))
                    .collect(),
            ),
            None => None,
        }
    }

    /// The quick look for newcomers: every pid /proc lists, read only when the last look did
    /// not list it.
    fn scan_new(&self) -> Option<(Vec<i32>, Vec<procs::ProcInfo>)> {
        match procs::snapshot_new(|pid| self.engine.listed(pid)) {
            Some(look) => Some(look),
            None if self.mode == Mode::Subreaper => {
                let listed: Vec<i32> = self.children.keys().copied().collect();
                let new = listed
                    .iter()
                    .filter(|&&pid| !self.engine.listed(pid))
                    .map(|&pid| self.child_info(pid))
                    .collect();
                Some((listed, new))
            }
            None => None,
        }
    }

    /// What a subreaper without /proc knows of its child `pid`.
    fn child_info(&self, pid: i32) -> procs::ProcInfo {
        procs::ProcInfo {
            pid,
            state: 'S',
            ppid: self.engine.me,
            pgid: pid,
            session: 0,
            tty_nr: 0,
            start_time: 0,
            comm: [0; 16],
            kernel_thread: false,
        }
    }

    pub(super) fn on_stop_timer(&mut self, t: StopTimer) {
        let now = self.now();
        let a = self.engine.on_timer(t, now);
        self.execute(a);
    }

    /// Called after every wake-up: look for newcomers while stopping.
    pub(super) fn check_stop(&mut self) {
        if self.stopping() {
            // The spare instance ends at once (EOF on its socket), whether or not the
            // stop's signals reached it first.
            self.drop_spare();
        }
        let now = self.now();
        let a = self.engine.on_wake(now);
        self.execute(a);
    }
}

fn stop_timer(t: StopTimer) -> Timer {
    match t {
        StopTimer::Deadline => Timer::Stop,
        StopTimer::Resweep => Timer::StopResweep,
        StopTimer::Rescan => Timer::StopRescan,
    }
}
