//! The hand-off between PID 1 and a session instance (`smss-session`), the analogue of the
//! arguments the master smss.exe gives its per-session copy. PID 1 writes [`SessionParams`] as
//! one JSON line into a socketpair; the instance reads it from the inherited descriptor
//! (`--fd N`), sets the session up and writes [`InstanceMessage`] lines back on the same
//! descriptor: `started` for each process as soon as it is started (so a killed instance
//! leaves nothing PID 1 does not know of), then the `report`.
//!
//! With a session cgroup the instance then exits. Without one (no cgroup2) it stays as the
//! session's *keeper*: a child subreaper from the start, so every process of the session,
//! setsid() or double-forked, stays below it; it reaps them, writes `exited` for each member,
//! and takes [`KeeperCommand`] lines from PID 1: end them, or start a subsystem in the session
//! (LoadDeferredSubsystem, so that it is below the keeper too). It exits when it has no child
//! left, which is when the session is gone.

use serde::{Deserialize, Serialize};
use smss_config::Environment;

/// The largest parameter document PID 1 sends (it must fit the socket buffer at once).
pub const MAX_PARAMS: usize = 64 * 1024;
/// The longest line PID 1 reads from an instance.
pub const MAX_REPORT: usize = 64 * 1024;
/// What `smss-session exec --hold` writes on its hold socket right before its exec: the
/// socket closing with nothing else after it is a started command; closing without it, a
/// process that ended (was killed) before it ran anything.
pub const EXEC_MARK: u8 = 0;

/// One line from PID 1 to a keeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeeperCommand {
    /// SIGTERM every process of the session.
    Term,
    /// SIGKILL every process of the session, then exit.
    Kill,
    /// Start a subsystem in the session: `argv` (expanded) with `env`, as `user` if given.
    Spawn {
        name: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        user: Option<String>,
    },
    /// The session is gone (the keeper said `empty`): delete `dir`, its runtime directory as
    /// PID 1 renamed it aside, then exit.
    Remove { dir: String },
}

/// A subsystem the instance starts inside the session (`[sessions] session-subsystems`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsystemSpec {
    pub name: String,
    /// Raw argv; `%VAR%` is expanded by the instance against the session environment.
    pub argv: Vec<String>,
    /// `ready = "notify"`: wait for READY=1 before the next one.
    pub notify: bool,
    pub ready_timeout_ms: u64,
    /// Its exit ends the session.
    pub critical: bool,
}

/// Everything a session instance needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParams {
    pub id: u32,
    pub seat: Option<String>,
    pub tty: Option<String>,
    pub user: Option<String>,
    /// The login manager: the request's command or `[sessions] initial-command`, raw.
    pub command: Vec<String>,
    /// Variables the request added (`KEY=VALUE` split), applied last.
    pub environment: Vec<(String, String)>,
    pub subsystems: Vec<SubsystemSpec>,
    /// `/run/smss/sessions/ID`.
    pub runtime_dir: String,
    /// The session cgroup's pids.max (`None`: the default, see `sessiond`).
    pub pids_max: Option<u64>,
}

/// One process the instance started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub pid: i32,
    pub name: String,
    pub critical: bool,
    /// Its start time (`/proc/PID/stat` field 22): PID 1 acts on the pid only while it
    /// still names this process. 0 in a `started` line: PID 1 reads it then.
    #[serde(default)]
    pub start_time: u64,
}

/// One line from an instance to PID 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceMessage {
    /// A process was started (written before the instance does anything else).
    Started(Member),
    /// The session is set up (or failed to be).
    Report(Report),
    /// A member exited (from a keeper, which reaps them): `status` as smss logs it.
    Exited { pid: i32, status: String },
    /// A keeper failed to start a subsystem PID 1 asked for (after its `Started`, when the
    /// process was started but could not exec the command).
    SpawnFailed { name: String, error: String },
    /// A process a keeper started on request (after its `Started`) has exec'd its command.
    Running { pid: i32 },
    /// A keeper has reaped its last child (every `exited` came before): nothing of the
    /// session is left. It then waits for `remove` (or PID 1's end of the link closing) and
    /// exits.
    Empty,
}

/// The instance's one line back to PID 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Report {
    pub id: u32,
    /// Every process started, in start order (subsystems first, the login manager last).
    pub pids: Vec<i32>,
    /// The login manager: the session ends when it exits.
    pub leader: Option<i32>,
    pub members: Vec<Member>,
    /// The session cgroup, when cgroup2 was available.
    pub cgroup: Option<String>,
    /// The instance stays as the session's keeper (no cgroup): PID 1 ends the session
    /// through it and learns of its members' exits from it.
    #[serde(default)]
    pub keeper: bool,
    /// Set when the session could not be set up; `pids` are what was started before that
    /// (PID 1 stops them and cleans up).
    pub error: Option<String>,
}

/// The session's environment: the instance's own (PID 1's `SmpDefaultEnvironment`), then
/// `SESSION`, `SEAT`, `TTY`, `XDG_RUNTIME_DIR` (so `%SESSION%`, `%SEAT%`, `%TTY%` expand),
/// the user's `USER`/`LOGNAME`/`HOME`/`SHELL`, then the request's variables.
pub fn session_environment(
    base: Vec<(String, String)>,
    p: &SessionParams,
    user: Option<&crate::os::users::User>,
) -> Environment {
    let mut env = Environment::new(base);
    // Never inherit PID 1's readiness socket: a session subsystem gets its instance's.
    env.remove("NOTIFY_SOCKET");
    env.set("SESSION", p.id.to_string());
    match &p.seat {
        Some(s) => env.set("SEAT", s.clone()),
        None => {
            env.remove("SEAT");
        }
    }
    match &p.tty {
        Some(t) => {
            env.set("TTY", t.clone());
            env.set("TTYNAME", tty_name(t).to_string());
        }
        None => {
            env.remove("TTY");
            env.remove("TTYNAME");
        }
    }
    env.set("XDG_RUNTIME_DIR", p.runtime_dir.clone());
    if let Some(u) = user {
        env.set("USER", u.name.clone());
        env.set("LOGNAME", u.name.clone());
        env.set("HOME", u.home.clone());
        env.set("SHELL", u.shell.clone());
    }
    for (k, v) in &p.environment {
        env.set(k, v.clone());
    }
    env
}

/// `%TTYNAME%`: the session's terminal relative to /dev (`tty1`, `pts/3`), as getty takes
/// its port (util-linux agetty opens `/dev/` + its argument, so `/dev/tty1` would be
/// `/dev//dev/tty1`); a terminal outside /dev keeps its full path.
pub fn tty_name(tty: &str) -> &str {
    match tty.strip_prefix("/dev/") {
        Some(rest) if !rest.is_empty() => rest.trim_start_matches('/'),
        _ => tty,
    }
}

/// The variables a session's terminal defines.
const TTY_VARIABLES: [&str; 2] = ["TTY", "TTYNAME"];

/// Which part of a session would run with a literal `%TTY%` (or `%TTYNAME%`): the login
/// manager (`command`, named `command_label`) or a session subsystem that has one in its
/// arguments, while the session gets no terminal (no tty in the request, no seat with one)
/// and the request's own variables set neither (the instance removes inherited ones, see
/// [`session_environment`]). A getty given `%TTY%` dies and the session with it, seconds later
/// and silently; CreateSession refuses the request instead, naming what needs the tty.
pub fn missing_tty_user(
    tty: Option<&str>,
    environment: &[(String, String)],
    command_label: &str,
    command: &[String],
    subsystems: &[SubsystemSpec],
) -> Option<String> {
    if tty.is_some()
        || environment
            .iter()
            .any(|(k, _)| TTY_VARIABLES.contains(&k.as_str()))
    {
        return None;
    }
    let uses_tty = |argv: &[String]| {
        argv.iter()
            .any(|a| TTY_VARIABLES.iter().any(|v| a.contains(&format!("%{v}%"))))
    };
    if uses_tty(command) {
        return Some(command_label.to_string());
    }
    subsystems
        .iter()
        .find(|s| uses_tty(&s.argv))
        .map(|s| format!("session subsystem {}", s.name))
}

/// Expand `%VAR%` in each argument against `env` (after splitting, like every smss command).
/// An argument that would pass the kernel's per-string limit is an error, as execve's E2BIG.
pub fn expand_argv(argv: &[String], env: &Environment) -> Result<Vec<String>, String> {
    argv.iter()
        .map(|a| {
            env.expand(a).map_err(|e| {
                format!(
                    "argument {:?}...: {e}",
                    a.chars().take(32).collect::<String>()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tty_is_needed_only_where_tty_would_stay_literal() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let getty = argv(&["/sbin/getty", "38400", "%TTY%"]);
        let sub = |name: &str, a: &[&str]| SubsystemSpec {
            name: name.into(),
            argv: argv(a),
            notify: false,
            ready_timeout_ms: 0,
            critical: true,
        };
        let label = "[sessions] initial-command";
        assert_eq!(
            missing_tty_user(None, &[], label, &getty, &[]).as_deref(),
            Some(label)
        );
        assert_eq!(
            missing_tty_user(Some("/dev/tty1"), &[], label, &getty, &[]),
            None
        );
        let env = vec![("TTY".to_string(), "/dev/ttyS1".to_string())];
        assert_eq!(missing_tty_user(None, &env, label, &getty, &[]), None);
        let agetty = argv(&["/sbin/getty", "38400", "%TTYNAME%"]);
        assert_eq!(
            missing_tty_user(None, &[], label, &agetty, &[]).as_deref(),
            Some(label)
        );
        let env = vec![("TTYNAME".to_string(), "ttyS1".to_string())];
        assert_eq!(missing_tty_user(None, &env, label, &agetty, &[]), None);
        // Other variables, and a lowercase %tty% (names are case-sensitive), need nothing.
        let other = argv(&["sh", "-c", "x", "%SEAT%", "%tty%"]);
        assert_eq!(missing_tty_user(None, &[], label, &other, &[]), None);
        assert_eq!(
            missing_tty_user(None, &[], label, &other, &[sub("con", &["con", "%TTY%"])]).as_deref(),
            Some("session subsystem con")
        );
    }

    fn params() -> SessionParams {
        SessionParams {
            id: 3,
            seat: Some("seat1".into()),
            tty: Some("/dev/pts/4".into()),
            user: None,
            command: vec!["getty".into(), "%TTY%".into(), "%SEAT%-%SESSION%".into()],
            environment: vec![("EXTRA".into(), "1".into()), ("SEAT".into(), "over".into())],
            subsystems: Vec::new(),
            runtime_dir: "/run/smss/sessions/3".into(),
            pids_max: None,
        }
    }

    #[test]
    fn environment_and_expansion() {
        let base = vec![
            ("PATH".into(), "/bin".into()),
            ("NOTIFY_SOCKET".into(), "@x".into()),
        ];
        let mut p = params();
        p.environment.pop();
        let env = session_environment(base, &p, None);
        assert_eq!(env.get("SESSION"), Some("3"));
        assert_eq!(env.get("TTY"), Some("/dev/pts/4"));
        assert_eq!(env.get("TTYNAME"), Some("pts/4"));
        assert_eq!(env.get("XDG_RUNTIME_DIR"), Some("/run/smss/sessions/3"));
        assert_eq!(env.get("NOTIFY_SOCKET"), None);
        assert_eq!(env.get("EXTRA"), Some("1"));
        assert_eq!(
            expand_argv(&p.command, &env).unwrap(),
            vec!["getty", "/dev/pts/4", "seat1-3"]
        );
    }

    #[test]
    fn request_variables_win() {
        let env = session_environment(Vec::new(), &params(), None);
        assert_eq!(env.get("SEAT"), Some("over"));
    }

    #[test]
    fn json_round_trip() {
        let p = params();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SessionParams>(&text).unwrap(), p);
        let r: Report = serde_json::from_str(
            r#"{"id":1,"pids":[5,6],"leader":6,"members":[],"cgroup":null,"error":null}"#,
        )
        .unwrap();
        assert_eq!(r.leader, Some(6));
        assert!(!r.keeper);
        let m = InstanceMessage::Exited {
            pid: 4,
            status: "exited:0".into(),
        };
        let line = serde_json::to_string(&m).unwrap();
        assert_eq!(line, r#"{"exited":{"pid":4,"status":"exited:0"}}"#);
        assert_eq!(serde_json::from_str::<InstanceMessage>(&line).unwrap(), m);
        assert_eq!(
            serde_json::to_string(&KeeperCommand::Term).unwrap(),
            r#""term""#
        );
        let c = KeeperCommand::Spawn {
            name: "posix".into(),
            argv: vec!["sh".into()],
            env: vec![("A".into(), "1".into())],
            user: None,
        };
        let line = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<KeeperCommand>(&line).unwrap(), c);
    }

    #[test]
    fn the_tty_name_is_relative_to_dev_as_getty_takes_it() {
        assert_eq!(tty_name("/dev/tty1"), "tty1");
        assert_eq!(tty_name("/dev/pts/3"), "pts/3");
        assert_eq!(tty_name("/dev//ttyS0"), "ttyS0");
        assert_eq!(tty_name("/run/console"), "/run/console");
        assert_eq!(tty_name("/dev/"), "/dev/");
    }

    /// A session without a terminal inherits neither variable.
    #[test]
    fn no_tty_no_tty_variables() {
        let mut p = params();
        p.tty = None;
        let base = vec![
            ("TTY".into(), "/dev/x".into()),
            ("TTYNAME".into(), "x".into()),
        ];
        let env = session_environment(base, &p, None);
        assert_eq!(env.get("TTY"), None);
        assert_eq!(env.get("TTYNAME"), None);
    }
}
