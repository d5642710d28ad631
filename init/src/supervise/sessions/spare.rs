//! The spare instance: one `smss-session` started ahead, blocked reading its parameters, so
//! that CreateSession hands a request over instead of exec'ing an instance on the request's
//! path. A deviation from Windows, whose smss starts its per-session copy for the request.
//!
//! The first spare starts once sessions are in use (after the first creation is answered);
//! a container that never creates a session never has one. Each time a spare is taken, the
//! next one starts at once, while the taken one sets its session up: PID 1 has nothing to do
//! for that request until the report, so the exec it waits for is hidden in the instance's
//! work (started after the reply instead, it held up the client's next call: TerminateSession
//! +70 µs median under SCHED_FIFO, twice as slow on a loaded machine). A spare that dies
//! untaken is replaced, at most [`MAX_SPARE_FAILURES`] times in a row (a spare taken or a
//! creation answered resets the count), so a broken `smss-session` cannot start a restart
//! loop. At a stop, PID 1 closes its end of the spare's socket: the spare reads EOF and exits
//! 0 (a stop's SIGTERM ends it too: it blocks no signal while it waits). A spare is no
//! session: it is in no list, holds no creation slot and has no id.

use std::os::unix::net::UnixStream;

use crate::supervise::{Child, Role, Supervisor};
use crate::sys::process;
use crate::sys::ExitStatus;

/// Spares that may die (or fail to start) in a row, untaken, before no more are started
/// until the next creation is answered.
pub(super) const MAX_SPARE_FAILURES: u32 = 3;

/// A started spare: its pid and PID 1's end of its socket.
pub(crate) struct Spare {
    pub(super) pid: i32,
    pub(super) sock: UnixStream,
}

/// What PID 1 knows when it decides about a spare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpareState {
    /// A session was created (sessions are in use here).
    pub(crate) in_use: bool,
    /// A spare is running.
    pub(crate) running: bool,
    /// Spares that died or failed to start in a row, untaken.
    pub(crate) failures: u32,
}

/// What happens to spares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpareEvent {
    /// A creation was answered (whether its instance was a spare or not): sessions are in
    /// use, and an instance just worked, so the failures count starts again.
    Answered,
    /// The spare was handed a session.
    Taken,
    /// A spare was started.
    Started,
    /// Starting one failed.
    StartFailed,
    /// The running spare exited untaken (`stopping`: because of the stop).
    Died { stopping: bool },
}

impl SpareState {
    pub(crate) fn on(mut self, ev: SpareEvent) -> SpareState {
        match ev {
            SpareEvent::Answered => {
                self.in_use = true;
                self.failures = 0;
            }
            SpareEvent::Taken => {
                self.running = false;
                self.failures = 0;
            }
            SpareEvent::Started => self.running = true,
            SpareEvent::StartFailed => self.failures = self.failures.saturating_add(1),
            SpareEvent::Died { stopping } => {
                self.running = false;
                if !stopping {
                    self.failures = self.failures.saturating_add(1);
                }
            }
        }
        self
    }

    /// Start a spare now?
    pub(crate) fn wanted(self, stopping: bool) -> bool {
        self.in_use && !self.running && !stopping && self.failures < MAX_SPARE_FAILURES
    }
}

impl Supervisor {
    fn spare_event(&mut self, ev: SpareEvent) {
        self.sessions.spare_state = self.sessions.spare_state.on(ev);
    }

    /// A creation was answered: sessions are in use; start a spare if none runs.
    pub(super) fn after_answer(&mut self) {
        self.spare_event(SpareEvent::Answered);
        self.ensure_spare();
    }

    /// Start a spare when one is wanted (never during a stop, never without smss-session).
    pub(super) fn ensure_spare(&mut self) {
        if !self.sessions.spare_state.wanted(self.stopping())
            || self.session_binary.as_os_str().is_empty()
        {
            return;
        }
        match self.start_spare() {
            Ok(spare) => {
                log::debug!("spare smss-session started (pid {})", spare.pid);
                self.children.insert(
                    spare.pid,
                    Child {
                        name: "spare smss-session".into(),
                        role: Role::SpareInstance,
                        critical: false,
                    },
                );
                self.sessions.spare = Some(spare);
                self.spare_event(SpareEvent::Started);
            }
            Err(why) => {
                log::warn!("failed to start a spare smss-session: {why}");
                self.spare_event(SpareEvent::StartFailed);
            }
        }
    }

    /// `smss-session --fd N`: no id, no parameters yet.
    fn start_spare(&self) -> Result<Spare, String> {
        let io = |e: std::io::Error| format!("failed to create its socket: {e}");
        let (ours, theirs) = UnixStream::pair().map_err(io)?;
        ours.set_nonblocking(true).map_err(io)?;
        let spec = self.instance_spec(None, std::os::fd::AsRawFd::as_raw_fd(&theirs));
        let pid = process::spawn(&spec).map_err(|e| e.to_string())?.as_raw();
        Ok(Spare { pid, sock: ours })
    }

    /// The running spare, for a session: taken out (the caller hands it the parameters).
    pub(super) fn take_spare(&mut self) -> Option<Spare> {
        let spare = self.sessions.spare.take()?;
        self.spare_event(SpareEvent::Taken);
        Some(spare)
    }

    /// A stop began: the spare gets EOF and exits by itself.
    pub(crate) fn drop_spare(&mut self) {
        if let Some(spare) = self.sessions.spare.take() {
            log::debug!("ending the spare smss-session (pid {})", spare.pid);
            drop(spare.sock);
        }
    }

    /// A spare exited before it was taken (the stop ended it, or it died): replaced, within
    /// the bound.
    pub(crate) fn on_spare_exit(&mut self, pid: i32, status: ExitStatus) {
        let stopping = self.stopping();
        let current = self.sessions.spare.as_ref().is_some_and(|s| s.pid == pid);
        if current {
            self.sessions.spare = None;
        }
        if stopping || (status == ExitStatus::Exited(0) && !current) {
            log::debug!("spare smss-session (pid {pid}) {status}");
        } else {
            log::warn!("spare smss-session (pid {pid}) {status}");
        }
        if current {
            self.spare_event(SpareEvent::Died { stopping });
        }
        self.ensure_spare();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the model's world does: the executor's own events come from the state.
    #[derive(Debug, Clone, Copy)]
    enum World {
        Answer,
        Take,
        FailToStart,
        Die,
        Stop,
    }

    fn world() -> impl Strategy<Value = World> {
        prop_oneof![
            Just(World::Answer),
            Just(World::Take),
            Just(World::FailToStart),
            Just(World::Die),
            Just(World::Stop),
        ]
    }

    #[test]
    fn no_spare_before_sessions_are_in_use_nor_during_a_stop() {
        let s = SpareState::default();
        assert!(!s.wanted(false));
        let s = s.on(SpareEvent::Answered);
        assert!(s.wanted(false));
        assert!(!s.wanted(true));
        assert!(!s.on(SpareEvent::Started).wanted(false));
    }

    #[test]
    fn a_stop_is_no_failure() {
        let s = SpareState::default()
            .on(SpareEvent::Answered)
            .on(SpareEvent::Started)
            .on(SpareEvent::Died { stopping: true });
        assert_eq!(s.failures, 0);
    }

    proptest! {
        /// Whatever happens, spares are started (as the executor does: whenever wanted)
        /// at most MAX_SPARE_FAILURES + 1 times between two uses (a spare taken, or a
        /// creation answered), never during a stop, and never two at once.
        #[test]
        fn spares_do_not_restart_in_a_loop(world in proptest::collection::vec(world(), 0..200)) {
            let mut s = SpareState::default();
            let mut stopping = false;
            let mut starts_since_use = 0u32;
            // The next start attempts fail (a broken smss-session).
            let mut broken = false;
            for w in world {
                let ev = match w {
                    World::Answer => SpareEvent::Answered,
                    World::Take if s.running => SpareEvent::Taken,
                    World::Die if s.running => SpareEvent::Died { stopping },
                    World::FailToStart => {
                        broken = !broken;
                        continue;
                    }
                    World::Stop => {
                        stopping = true;
                        continue;
                    }
                    _ => continue,
                };
                if matches!(ev, SpareEvent::Answered | SpareEvent::Taken) {
                    starts_since_use = 0;
                }
                s = s.on(ev);
                // The executor: start one whenever wanted (a failed start is tried again
                // only when wanted again).
                while s.wanted(stopping) {
                    prop_assert!(!stopping);
                    starts_since_use += 1;
                    prop_assert!(starts_since_use <= MAX_SPARE_FAILURES + 1);
                    s = s.on(if broken { SpareEvent::StartFailed } else { SpareEvent::Started });
                }
                prop_assert!(starts_since_use <= MAX_SPARE_FAILURES + 1);
                prop_assert!(!(s.running && s.wanted(stopping)));
            }
        }
    }
}
