//! Sessions: PID 1's side of session creation (SmStartCsr: a short-lived `smss-session`
//! instance per session, at most `parallel-session-creation` at once), the reported pids,
//! and tearing a session down (SmStopCsr: SIGTERM, SIGKILL after the grace period, remove
//! the runtime directory and the cgroup).
//!
//! A session is gone when its reported processes have exited and nothing else is left in it:
//! with cgroup2, its cgroup is unpopulated (watched through `cgroup.events`, so double-forked
//! daemons count); without, its instance stays as the session's keeper (a child subreaper
//! that holds every process of the session below it, see `smss-session`), and the session is
//! gone when the keeper says `empty` (it has reaped its last child; it then deletes the
//! runtime directory PID 1 renamed aside, and exits). PID 1 then never scans /proc for a
//! session while it runs.
//!
//! Should a keeper die first (SIGKILLed by someone), what was below it comes to PID 1: the
//! members it reported (each as it started them, with its start time, so a reused pid is
//! never taken for one) are adopted, and the teardown also finds their descendants of the
//! moment in /proc (each signalled through a pidfd, after a start-time check).
//!
//! `table` holds the state, `creation` starts sessions (`spare`: the instance started
//! ahead), `link` reads their instances, and `teardown` ends them; optional subsystems
//! started on request are in `super::subsystems`.

mod creation;
mod link;
mod spare;
mod table;
mod teardown;

pub use table::{Session, SessionState, SessionTable};

use serde_json::{json, Value};

use crate::supervise::Supervisor;

impl Supervisor {
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
