//! Sessions: PID 1's side of session creation (the per-session `smss-session` instance),
//! the reported pids, and tearing a session down.

use super::{Child, Supervisor};
use crate::sys::ExitStatus;

impl Supervisor {
    /// The plan is done: create the initial interactive sessions.
    pub(crate) fn on_boot_complete(&mut self) {}

    /// A session instance wrote to (or closed) its report pipe.
    pub(crate) fn on_session_report(&mut self, _id: u32) {}

    /// A process belonging to a session (its instance, subsystem or login manager) exited.
    pub(crate) fn on_session_process_exit(&mut self, pid: i32, child: &Child, status: ExitStatus) {
        log::info!("{} (pid {pid}) {status}", child.name);
    }

    /// A terminated session's grace period ran out.
    pub(crate) fn on_session_kill_timer(&mut self, _id: u32) {}
}
