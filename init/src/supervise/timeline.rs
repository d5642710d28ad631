//! When each thing the boot started began and ended, for GetStatus and `smctl analyze`: boot
//! commands, session-0 subsystems (with their readiness), session creations and a bugcheck,
//! on the clock of the phases' `start_us` (microseconds since smss started), plus the kernel's
//! time before smss. Pure bookkeeping: the supervisor calls it with the time; no I/O here.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::sys::ExitStatus;

/// At most this many session creations are remembered (the oldest are forgotten first).
pub const MAX_SESSION_RECORDS: usize = 256;
/// At most this many boot commands are recorded (a configuration may list any number).
pub const MAX_COMMAND_RECORDS: usize = 1024;
/// At most this many session-0 subsystems are recorded (one per name).
pub const MAX_SUBSYSTEM_RECORDS: usize = 1024;

/// smss's start: the instant and the kernel's boot-time clock then.
static START: OnceLock<(Instant, Option<Duration>)> = OnceLock::new();

/// Mark smss's start (first thing in `main`). Later calls change nothing.
pub fn mark_start() {
    START.get_or_init(|| (Instant::now(), boottime()));
}

/// The instant smss started (now, if `mark_start` was never called: a library user).
pub fn start_instant() -> Instant {
    START.get_or_init(|| (Instant::now(), boottime())).0
}

/// Microseconds from smss's start to `t`.
pub fn since_start_us(t: Instant) -> u64 {
    t.saturating_duration_since(start_instant()).as_micros() as u64
}

/// How long the kernel had been up when smss started, in microseconds: the first field of
/// /proc/uptime, read through the clock behind it (CLOCK_BOOTTIME), since /proc is not yet
/// mounted when the machine's init starts.
pub fn kernel_us() -> Option<u64> {
    START
        .get()
        .and_then(|(_, b)| *b)
        .map(|d| d.as_micros() as u64)
}

fn boottime() -> Option<Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(Duration::from)
}

/// The result of a subsystem that did not say READY=1 within its ready-timeout.
pub const NOT_READY: &str = "failed: not ready in time";

/// One BootExecute, SetupExecute or Execute command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    pub phase: &'static str,
    pub line: String,
    pub pid: Option<i32>,
    pub start_us: u64,
    pub end_us: Option<u64>,
    /// `running`, `ok`, `exited:N`, `killed:SIG`, `skipped: ...`, `failed: ...`.
    pub result: String,
}

/// One session-0 subsystem (Required at boot, Optional on request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemRecord {
    pub name: String,
    pub pid: Option<i32>,
    /// `ready = "notify"`: start to ready is a readiness wait.
    pub notify: bool,
    pub start_us: u64,
    pub ready_us: Option<u64>,
    pub end_us: Option<u64>,
    /// `waiting` (for READY=1), `running`, `exited:N`, `killed:SIG`, `failed: ...`.
    pub result: String,
}

/// One session's creation: from the request to the instance's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: u32,
    pub seat: Option<String>,
    pub created_us: u64,
    pub ready_us: Option<u64>,
    /// `creating`, `ok`, `failed: ...`.
    pub result: String,
}

/// A bugcheck (a critical process died, or a fatal boot step failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugcheckRecord {
    pub process: String,
    pub pid: i32,
    pub status: String,
    pub at_us: u64,
}

/// Everything recorded so far.
#[derive(Debug, Default)]
pub struct Timeline {
    pub commands: Vec<CommandRecord>,
    pub subsystems: Vec<SubsystemRecord>,
    pub sessions: VecDeque<SessionRecord>,
    pub bugcheck: Option<BugcheckRecord>,
}

fn status_result(status: ExitStatus) -> String {
    if status == ExitStatus::Exited(0) {
        "ok".to_string()
    } else {
        status.to_string()
    }
}

impl Timeline {
    /// A boot command was started (`pid`), or could not be (`pid` None, `result` says why).
    pub fn command(
        &mut self,
        phase: &'static str,
        line: &str,
        pid: Option<i32>,
        now_us: u64,
        result: &str,
    ) {
        if self.commands.len() >= MAX_COMMAND_RECORDS {
            return;
        }
        self.commands.push(CommandRecord {
            phase,
            line: line.to_string(),
            pid,
            start_us: now_us,
            end_us: pid.is_none().then_some(now_us),
            result: result.to_string(),
        });
    }

    /// A session-0 subsystem was started (`pid`) or could not be (`pid` None, `result`).
    /// It replaces an earlier record of the same name that has ended.
    pub fn subsystem_started(
        &mut self,
        name: &str,
        pid: Option<i32>,
        notify: bool,
        now_us: u64,
        result: &str,
    ) {
        let rec = SubsystemRecord {
            name: name.to_string(),
            pid,
            notify,
            start_us: now_us,
            // An exec subsystem is ready once exec'd (Windows: once the process exists).
            ready_us: (!notify && pid.is_some()).then_some(now_us),
            end_us: pid.is_none().then_some(now_us),
            result: result.to_string(),
        };
        let full = self.subsystems.len() >= MAX_SUBSYSTEM_RECORDS;
        match self
            .subsystems
            .iter_mut()
            .find(|s| s.name.eq_ignore_ascii_case(name))
        {
            Some(old) => *old = rec,
            None if !full => self.subsystems.push(rec),
            None => {}
        }
    }

    fn live_subsystem(&mut self, pid: i32) -> Option<&mut SubsystemRecord> {
        self.subsystems
            .iter_mut()
            .find(|s| s.pid == Some(pid) && s.end_us.is_none())
    }

    /// The subsystem `pid` said READY=1.
    pub fn subsystem_ready(&mut self, pid: i32, now_us: u64) {
        if let Some(s) = self.live_subsystem(pid) {
            s.ready_us.get_or_insert(now_us);
            s.result = "running".to_string();
        }
    }

    /// The subsystem `pid` did not become ready in time: `killed` (a critical one), or left
    /// running (the boot goes on without it).
    pub fn subsystem_not_ready(&mut self, pid: i32, now_us: u64, killed: bool) {
        if let Some(s) = self.live_subsystem(pid) {
            if killed {
                s.end_us = Some(now_us);
            }
            s.result = NOT_READY.to_string();
        }
    }

    /// A process exited: ends the command or subsystem record it belongs to, if any.
    pub fn process_exited(&mut self, pid: i32, status: ExitStatus, now_us: u64) {
        if let Some(c) = self
            .commands
            .iter_mut()
            .find(|c| c.pid == Some(pid) && c.end_us.is_none())
        {
            c.end_us = Some(now_us);
            c.result = status_result(status);
        } else if let Some(s) = self.live_subsystem(pid) {
            s.end_us = Some(now_us);
            // Not ready in time stays the reason; otherwise how it ended.
            if s.result != NOT_READY {
                s.result = status.to_string();
            }
        }
    }

    /// A session was requested.
    pub fn session_created(&mut self, id: u32, seat: Option<&str>, created_us: u64) {
        while self.sessions.len() >= MAX_SESSION_RECORDS {
            self.sessions.pop_front();
        }
        self.sessions.push_back(SessionRecord {
            id,
            seat: seat.map(str::to_string),
            created_us,
            ready_us: None,
            result: "creating".to_string(),
        });
    }

    /// The session's creation ended: `ok`, or `failed: why`. Only the first end counts.
    pub fn session_done(&mut self, id: u32, now_us: u64, result: &str) {
        if let Some(s) = self
            .sessions
            .iter_mut()
            .rev()
            .find(|s| s.id == id && s.ready_us.is_none())
        {
            s.ready_us = Some(now_us);
            s.result = result.to_string();
        }
    }

    /// The first bugcheck is the one that counts.
    pub fn bugcheck(&mut self, process: &str, pid: i32, status: ExitStatus, now_us: u64) {
        self.bugcheck.get_or_insert_with(|| BugcheckRecord {
            process: process.to_string(),
            pid,
            status: status.to_string(),
            at_us: now_us,
        });
    }

    /// The latest record of session-0 subsystem `name`.
    pub fn subsystem(&self, name: &str) -> Option<&SubsystemRecord> {
        self.subsystems
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// GetStatus's `commands`.
    pub fn commands_json(&self) -> Value {
        Value::Array(
            self.commands
                .iter()
                .map(|c| {
                    json!({
                        "phase": c.phase,
                        "line": c.line,
                        "pid": c.pid,
                        "start_us": c.start_us,
                        "end_us": c.end_us,
                        "result": c.result,
                    })
                })
                .collect(),
        )
    }

    /// The timing fields a session-0 subsystem's GetStatus entry gets.
    pub fn subsystem_fields(&self, name: &str) -> Option<Value> {
        let s = self.subsystem(name)?;
        Some(json!({
            "ready": if s.notify { "notify" } else { "exec" },
            "start_us": s.start_us,
            "ready_us": s.ready_us,
            "end_us": s.end_us,
            "result": s.result,
        }))
    }

    /// GetStatus's `session_creations`.
    pub fn sessions_json(&self) -> Value {
        Value::Array(
            self.sessions
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "seat": s.seat,
                        "created_us": s.created_us,
                        "ready_us": s.ready_us,
                        "result": s.result,
                    })
                })
                .collect(),
        )
    }

    /// GetStatus's `bugcheck`.
    pub fn bugcheck_json(&self) -> Value {
        match &self.bugcheck {
            Some(b) => json!({
                "process": b.process,
                "pid": b.pid,
                "status": b.status,
                "at_us": b.at_us,
            }),
            None => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_ends_with_its_exit_status() {
        let mut t = Timeline::default();
        t.command("boot-execute", "fsck -n /dev/vda", Some(10), 100, "running");
        t.command(
            "boot-execute",
            "missing",
            None,
            150,
            "skipped: program not found",
        );
        t.process_exited(10, ExitStatus::Exited(0), 400);
        t.command("execute", "probe", Some(11), 500, "running");
        t.process_exited(11, ExitStatus::Exited(3), 900);
        let c = &t.commands;
        assert_eq!(
            (c[0].start_us, c[0].end_us, c[0].result.as_str()),
            (100, Some(400), "ok")
        );
        assert_eq!(
            (c[1].end_us, c[1].result.as_str()),
            (Some(150), "skipped: program not found")
        );
        assert_eq!((c[2].end_us, c[2].result.as_str()), (Some(900), "exited:3"));
    }

    #[test]
    fn a_notify_subsystem_waits_and_an_exec_one_is_ready_at_once() {
        let mut t = Timeline::default();
        t.subsystem_started("demo", Some(20), true, 1000, "waiting");
        t.subsystem_started("csrss", Some(21), false, 1100, "running");
        assert_eq!(t.subsystem("demo").unwrap().ready_us, None);
        assert_eq!(t.subsystem("CSRSS").unwrap().ready_us, Some(1100));
        t.subsystem_ready(20, 3000);
        t.subsystem_ready(20, 4000); // a second READY=1 changes nothing
        let d = t.subsystem("demo").unwrap();
        assert_eq!((d.ready_us, d.result.as_str()), (Some(3000), "running"));
        t.process_exited(21, ExitStatus::Killed(9), 5000);
        let c = t.subsystem("csrss").unwrap();
        assert_eq!((c.end_us, c.result.as_str()), (Some(5000), "killed:KILL"));
        // Started again on request: the new run replaces the ended one.
        t.subsystem_started("csrss", Some(30), false, 6000, "running");
        assert_eq!(t.subsystems.len(), 2);
        assert_eq!(t.subsystem("csrss").unwrap().end_us, None);
    }

    #[test]
    fn a_readiness_timeout_ends_the_subsystem_as_failed() {
        let mut t = Timeline::default();
        t.subsystem_started("slow", Some(5), true, 10, "waiting");
        t.subsystem_not_ready(5, 60_000_010, true);
        let s = t.subsystem("slow").unwrap();
        assert_eq!(s.ready_us, None);
        assert_eq!(s.end_us, Some(60_000_010));
        assert_eq!(s.result, NOT_READY);
        // Its later reaping does not overwrite the reason.
        t.process_exited(5, ExitStatus::Killed(9), 60_000_100);
        assert_eq!(t.subsystem("slow").unwrap().result, NOT_READY);
        // A non-critical one runs on: no end until it exits, the reason kept.
        t.subsystem_started("lazy", Some(6), true, 20, "waiting");
        t.subsystem_not_ready(6, 1_000, false);
        assert_eq!(t.subsystem("lazy").unwrap().end_us, None);
        t.process_exited(6, ExitStatus::Exited(0), 5_000);
        let s = t.subsystem("lazy").unwrap();
        assert_eq!((s.end_us, s.result.as_str()), (Some(5_000), NOT_READY));
    }

    #[test]
    fn session_records_are_bounded_and_end_once() {
        let mut t = Timeline::default();
        for id in 1..=(MAX_SESSION_RECORDS as u32 + 10) {
            t.session_created(id, Some("seat0"), id as u64);
        }
        assert_eq!(t.sessions.len(), MAX_SESSION_RECORDS);
        assert_eq!(t.sessions.front().unwrap().id, 11);
        let last = MAX_SESSION_RECORDS as u32 + 10;
        t.session_done(last, 9000, "ok");
        t.session_done(last, 9500, "failed: ended");
        let s = t.sessions.back().unwrap();
        assert_eq!((s.ready_us, s.result.as_str()), (Some(9000), "ok"));
    }

    #[test]
    fn the_first_bugcheck_counts() {
        let mut t = Timeline::default();
        assert_eq!(t.bugcheck_json(), Value::Null);
        t.bugcheck("windows", 57, ExitStatus::Exited(3), 100);
        t.bugcheck("other", 58, ExitStatus::Exited(1), 200);
        assert_eq!(t.bugcheck_json()["process"], "windows");
        assert_eq!(t.bugcheck_json()["status"], "exited:3");
    }

    #[test]
    fn the_start_is_marked_once() {
        mark_start();
        let a = start_instant();
        mark_start();
        assert_eq!(a, start_instant());
        assert!(since_start_us(Instant::now()) < 3_600_000_000);
    }
}
