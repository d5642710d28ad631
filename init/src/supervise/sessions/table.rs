//! The session table: each session's state and the pure steps on it.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::link::InstanceLink;
use super::teardown::Watch;
use crate::control::instance::{Member, SessionParams};

/// How long an instance may take beyond its notify subsystems' readiness timeouts before
/// PID 1 gives up on it: a hung `smss-session` must not hold a creation slot for ever.
const INSTANCE_SLACK: Duration = Duration::from_secs(30);

/// The whole time an instance gets to report.
pub(super) fn instance_deadline(p: &SessionParams) -> Duration {
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

/// One interactive session.
pub struct Session {
    pub id: u32,
    pub params: SessionParams,
    pub state: SessionState,
    pub created_us: u64,
    pub(super) created: Instant,
    pub leader: Option<i32>,
    /// Reported processes still alive (our children once the instance has exited).
    pub members: BTreeMap<i32, Member>,
    /// Processes found below its members during a teardown without a cgroup or keeper, with
    /// their start times: looked for again until they are gone, even once orphaned.
    pub(super) strays: std::collections::BTreeSet<(i32, u64)>,
    /// Its instance stays as its keeper (no cgroup) and is alive.
    pub(crate) keeper: bool,
    /// Its instance holds a creation slot (until it reports or exits).
    pub(super) slot: bool,
    /// Subsystems its keeper was asked to start, and who waits for each one's pid.
    pub(crate) spawning: Vec<(String, Option<u32>)>,
    pub cgroup: Option<PathBuf>,
    pub(super) instance: Option<InstanceLink>,
    pub(super) watch: Option<Watch>,
    pub(super) create_waiter: Option<u32>,
    pub(super) terminate_waiters: Vec<u32>,
    /// TerminateSession came while the instance was still running.
    pub(super) terminate_requested: bool,
    /// Ended by TerminateSession (a seat session is then not re-created).
    pub(super) by_request: bool,
    pub(super) killed: bool,
    /// A seat session created at boot: re-created when its login manager exits.
    pub(super) respawn: bool,
    pub(super) reason: String,
}

/// Every session, the creation queue and the running instances.
#[derive(Default)]
pub struct SessionTable {
    pub sessions: BTreeMap<u32, Session>,
    pub(super) last_id: u32,
    pub(super) queue: VecDeque<u32>,
    pub(super) instances: usize,
    /// Runtime directories renamed aside so far (names them uniquely).
    pub(super) removals: u64,
    /// The instance started ahead for the next creation (`spare`).
    pub(super) spare: Option<super::spare::Spare>,
    pub(super) spare_state: super::spare::SpareState,
    /// Sessions whose keeper said `empty`: it has no child left and waits to be handed the
    /// runtime directory (`remove`).
    pub(super) emptied: std::collections::BTreeSet<u32>,
    /// While an instance's lines are acted on: the members' exits logged after them, so a
    /// keeper's `exited` + `empty` are answered first (`Some`), else logged at once.
    pub(super) exits_later: Option<Vec<String>>,
    /// A session kept by its instance (no cgroup2) was logged as such: once per boot.
    pub(super) keeper_mode_logged: bool,
    /// The stop found no process left: sessions end without a directory removal.
    pub(super) all_gone: bool,
}

/// The waiters for subsystem `name` that a keeper was asked to start (all of them: one start
/// answers every request made meanwhile).
pub(super) fn take_spawning(s: &mut Session, name: &str) -> Vec<u32> {
    let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut s.spawning)
        .into_iter()
        .partition(|(n, _)| n.eq_ignore_ascii_case(name));
    s.spawning = rest;
    done.into_iter().filter_map(|(_, w)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::instance::SubsystemSpec;

    fn params(subsystems: Vec<SubsystemSpec>) -> SessionParams {
        SessionParams {
            id: 1,
            seat: None,
            tty: None,
            user: None,
            command: Vec::new(),
            environment: Vec::new(),
            subsystems,
            runtime_dir: "/run/smss/sessions/1".into(),
            pids_max: None,
        }
    }

    fn subsystem(name: &str, notify: bool, ready_timeout_ms: u64) -> SubsystemSpec {
        SubsystemSpec {
            name: name.into(),
            argv: vec!["/bin/true".into()],
            notify,
            ready_timeout_ms,
            critical: false,
        }
    }

    fn session(spawning: Vec<(String, Option<u32>)>) -> Session {
        Session {
            id: 1,
            params: params(Vec::new()),
            state: SessionState::Active,
            created_us: 0,
            created: Instant::now(),
            leader: None,
            members: BTreeMap::new(),
            strays: Default::default(),
            keeper: true,
            slot: false,
            spawning,
            cgroup: None,
            instance: None,
            watch: None,
            create_waiter: None,
            terminate_waiters: Vec::new(),
            terminate_requested: false,
            by_request: false,
            killed: false,
            respawn: false,
            reason: String::new(),
        }
    }

    #[test]
    fn deadline_adds_notify_timeouts_to_the_slack() {
        assert_eq!(instance_deadline(&params(Vec::new())), INSTANCE_SLACK);
        let p = params(vec![
            subsystem("a", true, 5_000),
            subsystem("b", false, 60_000),
            subsystem("c", true, 1_500),
        ]);
        assert_eq!(
            instance_deadline(&p),
            INSTANCE_SLACK + Duration::from_millis(6_500)
        );
        let huge = params(vec![subsystem("a", true, u64::MAX)]);
        assert!(instance_deadline(&huge) >= Duration::from_millis(u64::MAX));
    }

    #[test]
    fn take_spawning_answers_every_waiter_of_that_name_only() {
        let mut s = session(vec![
            ("Dbus".into(), Some(1)),
            ("audio".into(), Some(2)),
            ("dbus".into(), None),
            ("DBUS".into(), Some(3)),
        ]);
        assert_eq!(take_spawning(&mut s, "dbus"), vec![1, 3]);
        assert_eq!(s.spawning, vec![("audio".to_string(), Some(2))]);
        assert!(take_spawning(&mut s, "dbus").is_empty());
        assert_eq!(take_spawning(&mut s, "AUDIO"), vec![2]);
        assert!(s.spawning.is_empty());
    }

    #[test]
    fn state_names() {
        let names: Vec<_> = [
            SessionState::Queued,
            SessionState::Starting,
            SessionState::Active,
            SessionState::Terminating,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(names, ["queued", "starting", "active", "terminating"]);
    }
}
