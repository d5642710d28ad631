//! The orderly stop: SIGTERM to everything, wait until all are gone or the grace period ends,
//! SIGKILL the rest, then exit (container) or take the machine down (system). It ends when the
//! processes are gone, never after a fixed sleep.

use std::collections::HashSet;
use std::time::Instant;

use super::{procs, Supervisor, Timer, KILL_WAIT};
use crate::mode::Mode;
use crate::sys;

/// How a stop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Container / subreaper: exit with the initial command's (or the crashed process's) status.
    Exit,
    /// System: swapoff, sync, unmount, reboot(2).
    Machine(sys::RebootCmd),
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

#[derive(Debug)]
pub struct Stop {
    pub goal: Goal,
    pub stage: Stage,
    pub started: Instant,
    /// Set by the reaper when waitpid says ECHILD.
    pub all_gone: bool,
    /// Pids already sent SIGTERM (a subreaper signals newcomers as they are reparented).
    signalled: HashSet<i32>,
    spared: Option<Spared>,
}

impl Supervisor {
    /// A stop asked for from outside (a signal, `Shutdown`): a second request while the
    /// first is still waiting on SIGTERM does not wait any longer.
    pub fn request_stop(&mut self, goal: Goal) {
        self.request_stop_sparing(goal, None);
    }

    /// [`Self::request_stop`], leaving out of the SIGTERM sweep who already got the signal.
    pub fn request_stop_sparing(&mut self, goal: Goal, spared: Option<Spared>) {
        if self.stop.is_some() {
            log::info!("second stop request: killing the remaining processes now");
            self.escalate_stop();
        } else {
            self.begin_stop_sparing(goal, spared);
        }
    }

    /// Begin the stop; a no-op when one is already under way (its first goal stands).
    pub fn begin_stop(&mut self, goal: Goal) {
        self.begin_stop_sparing(goal, None);
    }

    fn begin_stop_sparing(&mut self, goal: Goal, spared: Option<Spared>) {
        if self.stop.is_some() {
            return;
        }
        // The common container end: the only child just exited. Nothing to signal or sweep.
        if !sys::has_children() {
            self.stop = Some(Stop {
                goal,
                stage: Stage::Term,
                started: Instant::now(),
                all_gone: true,
                signalled: HashSet::new(),
                spared,
            });
            self.check_stop();
            return;
        }
        let grace = self.cfg.shutdown.grace_period;
        log::info!(
            "stopping: SIGTERM to all processes, SIGKILL after {} ms",
            grace.as_millis()
        );
        self.stop = Some(Stop {
            goal,
            stage: Stage::Term,
            started: Instant::now(),
            all_gone: false,
            signalled: HashSet::new(),
            spared,
        });
        self.signal_remaining(libc::SIGTERM);
        self.add_timer(Self::deadline_after(grace), Timer::Stop);
        // Already nobody left? The reaper decides on this wake-up.
        self.reap_zombies();
        self.check_stop();
    }

    /// Send `sig` to every process we are responsible for that has not had it yet.
    fn signal_remaining(&mut self, sig: i32) {
        let me = sys::getpid();
        let snapshot = procs::snapshot();
        let spared = self.stop.as_ref().and_then(|s| s.spared);
        let targets = match &snapshot {
            Some(all) => procs::stop_targets(all, me, self.mode.is_pid1()),
            None if self.mode.is_pid1() => {
                // No /proc: kill(-1) reaches everything but us.
                let _ = sys::kill(-1, sig);
                let _ = sys::kill(-1, libc::SIGCONT);
                return;
            }
            None => self.children.keys().copied().collect(),
        };
        let Some(stop) = self.stop.as_mut() else {
            return;
        };
        let pgid_of = |pid: i32| {
            snapshot
                .as_ref()
                .and_then(|all| all.iter().find(|p| p.pid == pid).map(|p| p.pgid))
        };
        for pid in targets {
            if sig == libc::SIGTERM && !stop.signalled.insert(pid) {
                continue;
            }
            let is_spared = match spared {
                Some(Spared::Process(p)) => p == pid,
                Some(Spared::Group(g)) => pgid_of(pid) == Some(g),
                None => false,
            };
            if sig == libc::SIGTERM && is_spared {
                continue;
            }
            let _ = sys::kill(pid, sig);
            if sig == libc::SIGTERM {
                // A stopped process cannot act on SIGTERM until it is continued.
                let _ = sys::kill(pid, libc::SIGCONT);
            }
        }
    }

    fn escalate_stop(&mut self) {
        let Some(stop) = self.stop.as_mut() else {
            return;
        };
        if stop.stage == Stage::Kill {
            return;
        }
        stop.stage = Stage::Kill;
        let waited = stop.started.elapsed();
        self.cancel_timer(&Timer::Stop);
        log::warn!(
            "processes still running {} ms after SIGTERM: sending SIGKILL",
            waited.as_millis()
        );
        self.signal_remaining(libc::SIGKILL);
        self.add_timer(Self::deadline_after(KILL_WAIT), Timer::Stop);
    }

    pub(super) fn on_stop_timer(&mut self) {
        match self.stop.as_ref().map(|s| s.stage) {
            Some(Stage::Term) => self.escalate_stop(),
            Some(Stage::Kill) => {
                log::error!(
                    "processes survived SIGKILL for {} s; giving up on them",
                    KILL_WAIT.as_secs()
                );
                self.finish_stop();
            }
            None => {}
        }
    }

    /// Called after every wake-up: finish once everything is gone.
    pub(super) fn check_stop(&mut self) {
        let Some(stop) = self.stop.as_ref() else {
            return;
        };
        if stop.all_gone {
            self.finish_stop();
        } else if self.mode == Mode::Subreaper && stop.stage == Stage::Term {
            // Orphans reparented to us after the first sweep have not had SIGTERM yet.
            self.signal_remaining(libc::SIGTERM);
        }
    }

    fn finish_stop(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        self.cancel_timer(&Timer::Stop);
        log::info!(
            "all processes gone {} us after the stop began",
            stop.started.elapsed().as_micros()
        );
        match stop.goal {
            Goal::Exit => self.finished = Some(self.exit_code()),
            Goal::Machine(cmd) => {
                crate::shutdown::take_down_machine(cmd);
                // reboot(2) failed (logged); nothing else to do but say why we exit.
                self.finished = Some(1);
            }
        }
    }
}
