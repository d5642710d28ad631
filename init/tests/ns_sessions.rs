//! Tier 3: sessions of a real smss (PID 1 of a fresh PID + mount namespace): login managers
//! on seats' terminals at boot, CreateSession / TerminateSession, a session ending with its
//! login manager, double-forked daemons killed through the session cgroup (a cgroup2
//! hierarchy of the namespace's own), session subsystems with readiness, deferred subsystems,
//! users, limits, the rename queue and Shutdown.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::TIMEOUT;
use ns_control_common::{start, Opts, Smss};
use serde_json::{json, Value};

/// A TOML basic string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A TOML array of strings.
fn argv(a: &[&str]) -> String {
    format!(
        "[{}]",
        a.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

/// A pseudo-terminal for a seat: its slave path and everything written to it, line by line.
struct Pty {
    path: String,
    master: File,
    lines: Receiver<String>,
    _slave: OwnedFd,
}

fn pty() -> Pty {
    let p = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&p.slave)
        .unwrap()
        .display()
        .to_string();
    let master = File::from(p.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while let Ok(1) = reader.read(&mut b) {
            if b[0] == b'\n' {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(text).is_err() {
                    return;
                }
                line.clear();
            } else {
                line.push(b[0]);
            }
        }
    });
    Pty {
        path,
        master,
        lines: rx,
        _slave: p.slave,
    }
}

impl Pty {
    fn expect(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("{}: no line containing {needle:?}", self.path),
            }
        }
    }
}

/// `key=value` words of a line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn pid_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a pid: {v}"))
}

/// Open a fifo from another thread (open blocks until the other side opens too), bounded.
fn open_fifo(path: &Path, write: bool) -> File {
    let p = path.to_path_buf();
    common::bounded(move || {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(p)
            .unwrap()
    })
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
}

/// The login manager of the seat tests: says where it runs, then waits for a line on its
/// terminal (a user logging out) and exits.
const LOGIN: &str = "echo \"login seat=$SEAT session=$SESSION tty=$(tty) arg=$0 \
                     ctty=$(cut -d' ' -f7 /proc/$$/stat) fg=$(cut -d' ' -f8 /proc/$$/stat) pid=$$\"; \
                     read line; echo \"logout $line\"";

#[test]
fn seats_get_login_managers_on_their_terminals_and_sessions_come_and_go() {
    require_unshare!();
    let (t0, t1) = (pty(), pty());
    let config = format!(
        "[sessions]\ninitial-command = {{ command = {} }}\n\
         [[seats]]\nname = \"seat0\"\ntty = {}\n[[seats]]\nname = \"seat1\"\ntty = {}\n\
         [shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", LOGIN, "%TTY%"]),
        q(&t0.path),
        q(&t1.path)
    );
    let s = start("seats", &config, Opts::default());
    // One session per seat, its login manager on the seat's terminal: stdio, controlling
    // terminal, foreground process group; %TTY% expanded in its arguments.
    let l0 = t0.expect("login seat=seat0");
    let l1 = t1.expect("login seat=seat1");
    for (l, t) in [(&l0, &t0), (&l1, &t1)] {
        assert_eq!(field(l, "tty"), t.path, "{l}");
        assert_eq!(field(l, "arg"), t.path, "{l}");
        assert_ne!(field(l, "ctty"), "0", "no controlling terminal: {l}");
        assert_eq!(
            field(l, "fg"),
            field(l, "pid"),
            "not in the foreground: {l}"
        );
    }
    let id0: u32 = field(&l0, "session").parse().unwrap();
    let id1: u32 = field(&l1, "session").parse().unwrap();
    // The login manager may print before its instance has reported: wait for both
    // sessions to be active (the report is sent after the pids file is written).
    s.expect_logs(
        &[
            format!("session {id0} created:"),
            format!("session {id1} created:"),
        ],
        TIMEOUT,
    );
    let list = s.sessions();
    assert_eq!(list.len(), 2, "{list:?}");
    for v in &list {
        assert_eq!(v["state"], "active", "{v}");
        assert!(v["cgroup"].is_null(), "this namespace has no cgroup2: {v}");
    }
    // The runtime directory and its files.
    let dir = s.ns_path(&format!("/run/smss/sessions/{id0}"));
    assert_eq!(
        std::fs::read_to_string(dir.join("seat")).unwrap(),
        "seat0\n"
    );
    let env = std::fs::read_to_string(dir.join("environment")).unwrap();
    for want in [
        format!("SESSION={id0}"),
        "SEAT=seat0".into(),
        format!("TTY={}", t0.path),
        format!("XDG_RUNTIME_DIR=/run/smss/sessions/{id0}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
    assert_eq!(pids.trim(), field(&l0, "pid"));
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

    // A seat in use is taken, unless sharing is asked for; unknown seats are refused.
    s.err(
        "CreateSession",
        json!({"seat": "seat1", "command": ["true"]}),
        "io.smss.Manager.LimitReached",
    );
    let p = s.err(
        "CreateSession",
        json!({"seat": "seat9", "command": ["true"]}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(p["parameter"], "seat");
    // (On a terminal of its own: a tty must be a terminal, see
    // a_tty_that_is_not_a_terminal_fails_the_creation.)
    let t2 = pty();
    let shared = s.ok(
        "CreateSession",
        json!({"seat": "seat1", "allow_shared_seat": true, "tty": t2.path, "command": ["sleep", "1000"]}),
    );

    // TerminateSession replies once the session is gone: processes, runtime directory.
    let leader0: i64 = field(&l0, "pid").parse().unwrap();
    let v = s.ok("TerminateSession", json!({ "id": id0 }));
    assert_eq!(v["state"], "gone");
    assert!(!s.ns_alive(leader0));
    assert!(!dir.exists(), "{} left behind", dir.display());
    let ids: Vec<u64> = s
        .sessions()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![u64::from(id1), shared["id"].as_u64().unwrap()]);
    // Terminated on request: the seat is free and not re-created by itself.
    let again = s.ok(
        "CreateSession",
        json!({"seat": "seat0", "command": ["sleep", "1000"]}),
    );
    assert!(again["id"].as_u64().unwrap() > u64::from(id1));

    // The shared session holds seat1 too: end it, or seat1 gets no new session below.
    s.ok("TerminateSession", json!({"id": shared["id"]}));

    // A user logging out on seat1: its login manager exits, the session ends, and (having
    // lived long enough) the seat gets a new session with a new login prompt.
    // The re-creation rule (a session younger than 2 s is not re-created) is a policy
    // threshold, not synchronisation: wait it out, measured on smss's own clock (the session
    // was created at boot complete, not when the namespace started).
    let created = s
        .sessions()
        .iter()
        .find(|v| v["id"] == id1)
        .and_then(|v| v["created_us"].as_u64())
        .expect("session id1 and its created_us");
    let now = s.ok("GetStatus", json!({}))["uptime_us"]
        .as_u64()
        .expect("uptime_us");
    let lived = Duration::from_micros(now.saturating_sub(created));
    if lived < Duration::from_millis(2100) {
        std::thread::sleep(Duration::from_millis(2100) - lived);
    }
    let mut m = t1.master.try_clone().unwrap();
    m.write_all(b"bye\n").unwrap();
    t1.expect("logout bye");
    s.expect_log(&format!("session {id1} ended"), TIMEOUT);
    let relogin = t1.expect("login seat=seat1");
    assert_ne!(field(&relogin, "session"), id1.to_string());

    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
}

/// The runtime directory's files are all there when CreateSession returns: `pids` (written
/// while the login manager execs, off the reply's path) lists the reply's pids, in each of
/// several creations in a row; a command that cannot be exec'd still fails its request.
#[test]
fn the_pids_file_lists_the_replys_pids_when_create_session_returns() {
    require_unshare!();
    let s = start("pidsfile", "", Opts::default());
    for _ in 0..5 {
        let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
        let id = v["id"].as_u64().unwrap();
        let dir = s.ns_path(&format!("/run/smss/sessions/{id}"));
        let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
        let want: String = v["pids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}\n", pid_of(p)))
            .collect();
        assert_eq!(pids, want, "{v}");
        s.ok("TerminateSession", json!({ "id": id }));
    }
    let e = s.err(
        "CreateSession",
        json!({"command": ["/dev/null"]}),
        "io.smss.Manager.Failed",
    );
    assert!(e.to_string().contains("failed to execute /dev/null"), "{e}");
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn a_session_ends_with_its_login_manager_and_takes_its_processes_along() {
    require_unshare!();
    let s = start(
        "leader",
        "[shutdown]\ngrace-period = \"30s\"\n",
        Opts::default(),
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    let script = format!(
        "sleep 1000 & echo $! > {d}/bg; read x < {f}; exit 3",
        d = s.dir.display(),
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let leader = pid_of(&v["pids"][0]);
    // The shell opens the fifo after it wrote bg's pid.
    let mut w = open_fifo(&fifo, true);
    let bg: i64 = std::fs::read_to_string(s.dir.join("bg"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(s.ns_alive(bg));
    let t = Instant::now();
    w.write_all(b"go\n").unwrap();
    drop(w);
    s.expect_log(
        &format!("session {id}: sh (pid {leader}) exited:3"),
        TIMEOUT,
    );
    s.expect_log(&format!("session {id} ended"), TIMEOUT);
    // The background child shared the login manager's session id: it got SIGTERM, and the
    // session ended when it was gone, not after the grace period.
    assert!(!s.ns_alive(bg), "background process {bg} survived");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "waited for the grace period (30 s)"
    );
    assert!(s.sessions().is_empty());
    assert!(!s.ns_path(&format!("/run/smss/sessions/{id}")).exists());
    // The directory was renamed aside at once and is deleted by the session's keeper (no
    // cgroup2 here) once it is handed it, not by PID 1 itself.
    let line = s.expect_log(
        &format!("smss-session remove (session {id}, its keeper)"),
        TIMEOUT,
    );
    assert!(line.contains("exited:0"), "{line}");
    let left: Vec<_> = std::fs::read_dir(s.ns_path("/run/smss/sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    s.assert_serving();
}

#[test]
fn a_session_of_two_hundred_processes_without_a_cgroup_ends_without_the_grace_period() {
    require_unshare!();
    let s = start(
        "many",
        "[shutdown]\ngrace-period = \"20s\"\n",
        Opts::default(),
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    // More processes than smss watches pidfds of at once: the teardown looks again when the
    // first batch is gone.
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); done; echo started > {f}; wait",
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    assert_eq!(text.trim(), "started");
    let t = Instant::now();
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "waited for the grace period: {:?}",
        t.elapsed()
    );
    // Dead, that is: some may still be zombies waiting for PID 1 to reap them.
    let left = std::fs::read_dir(s.ns_path("/proc"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/comm")))
                .is_ok_and(|c| c.trim() == "sleep")
                && s.ns_alive(*pid)
        })
        .count();
    assert_eq!(left, 0, "sleep processes survived the session");
    s.assert_serving();
}

/// A process may rename itself to bytes that are not UTF-8 (prctl, /proc/self/comm); without
/// a cgroup, smss finds a session's processes in /proc, and such a one must not escape.
#[test]
fn a_member_named_with_non_utf8_bytes_does_not_escape_its_session() {
    require_unshare!();
    let s = start(
        "bytes",
        "[shutdown]\ngrace-period = \"20s\"\n",
        Opts::default(),
    );
    let (fifo, hold) = (s.dir.join("fifo"), s.dir.join("hold"));
    mkfifo(&fifo);
    mkfifo(&hold);
    let renamer = s.dir.join("renamer.sh");
    std::fs::write(
        &renamer,
        format!(
            "printf 'x\\377\\376' > /proc/self/comm || exit 1\n\
             echo $$ > {f}\n\
             read x < {h}\n",
            f = fifo.display(),
            h = hold.display()
        ),
    )
    .unwrap();
    let script = format!("sh {} & wait", renamer.display());
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    let pid: i64 = text.trim().parse().unwrap();
    let stat = std::fs::read(s.ns_path(&format!("/proc/{pid}/stat"))).unwrap();
    assert!(stat.windows(2).any(|w| w == b"\xff\xfe"), "{stat:?}");
    assert!(s.ns_alive(pid));
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    assert!(!s.ns_alive(pid), "the renamed process {pid} survived");
    s.assert_serving();
}

#[test]
fn terminate_kills_a_double_forked_daemon_through_the_session_cgroup() {
    require_unshare!();
    if ns_control_common::host_cgroup2().is_none() {
        panic!("no cgroup2 mount on this host: the QEMU tier covers cgroup sessions");
    }
    let s = start(
        "cgroup",
        "[shutdown]\ngrace-period = \"5s\"\n",
        Opts {
            cgroup2: true,
            ..Default::default()
        },
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    // A daemon the classic way: fork, setsid, fork; its parent exits. It has left the login
    // manager's session and process group; only the cgroup still knows it.
    let script = format!(
        "( setsid sh -c 'trap \"\" TERM; sleep 1000 & echo $! > {f}; wait' & ); exec sleep 1000",
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let mut r = open_fifo(&fifo, false);
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    let daemon: i64 = text.trim().parse().unwrap();
    assert!(s.ns_alive(daemon));

    let listed = s.sessions();
    let cg = format!("/sys/fs/cgroup/smss/session-{id}");
    assert_eq!(listed[0]["cgroup"], cg.as_str(), "{listed:?}");
    // cgroup.procs lists pids as the reader's PID namespace sees them: ours, the host's.
    let procs = std::fs::read_to_string(s.ns_path(&format!("{cg}/cgroup.procs"))).unwrap();
    let host_daemon = host_pid(&s, daemon);
    assert!(
        procs.lines().any(|p| p == host_daemon.to_string()),
        "daemon {daemon} not in {cg}: {procs}"
    );
    let t = Instant::now();
    let v = s.ok("TerminateSession", json!({ "id": id }));
    assert_eq!(v["state"], "gone");
    // Its setsid'd shell ignores SIGTERM: it takes the SIGKILL after the grace period.
    assert!(
        t.elapsed() >= Duration::from_millis(4900),
        "{:?}",
        t.elapsed()
    );
    assert!(!s.ns_alive(daemon), "the double-forked daemon survived");
    assert!(!s.ns_path(&cg).exists(), "{cg} left behind");
    assert!(s.sessions().is_empty());
    // With a cgroup there is no keeper: the runtime directory, renamed aside before the
    // answer, is deleted by an `smss-session remove` PID 1 starts after it.
    let run = s.ns_path("/run/smss/sessions");
    assert!(!run.join(id.to_string()).exists());
    let line = s.expect_log(&format!("smss-session remove (session {id})"), TIMEOUT);
    assert!(line.contains("exited:0"), "{line}");
    let left: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
    assert!(left.is_empty(), "left in {}: {left:?}", run.display());
    s.assert_serving();
}

#[test]
fn session_subsystems_start_first_and_may_wait_for_readiness() {
    require_unshare!();
    let sub = "echo \"windows of session $SESSION\" > @DIR@/sub-$SESSION; \
               @SMCTL@ notify READY=1 STATUS=up; exec sleep 1000";
    let config = format!(
        "[subsystems]\nwindows = {{ command = {}, ready = \"notify\", ready-timeout = \"10s\" }}\n\
         [sessions]\nsession-subsystems = [\"windows\"]\n\
         initial-command = {{ command = {} }}\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", sub]),
        argv(&[
            "sh",
            "-c",
            "echo \"login manager saw: $(cat @DIR@/sub-$SESSION)\"; exec sleep 1000"
        ]),
    );
    let s = start("subsystems", &config, Opts::default());
    let v = s.ok("CreateSession", json!({}));
    let id = v["id"].as_u64().unwrap();
    let pids = v["pids"].as_array().unwrap();
    assert_eq!(pids.len(), 2, "{v}");
    s.ns().expect_line(
        &format!("login manager saw: windows of session {id}"),
        TIMEOUT,
    );
    let st = s.ok("GetStatus", json!({}));
    let subs = st["subsystems"].as_array().unwrap();
    assert!(
        subs.iter()
            .any(|x| x["name"] == "windows" && x["session"] == id && x["kind"] == "session"),
        "{subs:?}"
    );
    // The session subsystem is critical for its session: its death ends the session (and
    // only the session).
    let sub_pid = pid_of(&pids[0]);
    let list = s.sessions();
    assert_eq!(list[0]["leader_pid"], pids[1], "{list:?}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid(&s, sub_pid)),
        nix::sys::signal::Signal::SIGKILL,
    );
    s.expect_log(&format!("session {id} ended"), TIMEOUT);
    s.assert_serving();
}

/// The one readiness trust rule (os::notify::from_service) in a session too: a root helper
/// that is neither the subsystem nor its child (a subshell's child here, gone by the time its
/// datagram is read) counts when it names no other MAINPID, as it does for PID 1's subsystems.
#[test]
fn a_root_helpers_readiness_counts_for_a_session_subsystem() {
    require_unshare!();
    let notify = "python3 -c \"import os,socket; a=os.environ['NOTIFY_SOCKET']; a='\\0'+a[1:] if a[0]=='@' else a; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'READY=1', a)\"";
    let sub = format!("({notify}; true); exec sleep 1000");
    let config = format!(
        "[subsystems]\nwindows = {{ command = {}, ready = \"notify\", ready-timeout = \"5s\" }}\n\
         [sessions]\nsession-subsystems = [\"windows\"]\n\
         initial-command = {{ command = {} }}\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", &sub]),
        argv(&["sleep", "1000"]),
    );
    let s = start("root-helper-ready", &config, Opts::default());
    let v = s.ok("CreateSession", json!({}));
    assert_eq!(v["pids"].as_array().map(Vec::len), Some(2), "{v}");
    s.assert_serving();
}

/// The host pid of namespace pid `ns_pid` of this smss's PID namespace (NSpid in the host's
/// /proc/PID/status, in the same namespace as its PID 1).
fn host_pid(s: &Smss, ns_pid: i64) -> i32 {
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", s.init)).unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last().map(str::to_string));
        if inner.as_deref() == Some(ns_pid.to_string().as_str())
            && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(ns.clone())
        {
            return pid;
        }
    }
    panic!("no host pid for namespace pid {ns_pid}");
}

#[test]
fn a_session_subsystem_that_never_gets_ready_fails_the_creation() {
    require_unshare!();
    let config = format!(
        "[subsystems]\nwindows = {{ command = {}, ready = \"notify\", ready-timeout = \"500ms\" }}\n\
         [sessions]\nsession-subsystems = [\"windows\"]\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sleep", "1000"]),
    );
    let s = start("notready", &config, Opts::default());
    let p = s.err(
        "CreateSession",
        json!({"command": ["sleep", "1000"]}),
        "io.smss.Manager.Failed",
    );
    assert!(p["reason"].as_str().unwrap().contains("not ready"), "{p}");
    s.expect_log("session 1 ended", TIMEOUT);
    assert!(s.sessions().is_empty());
    assert!(!s.ns_path("/run/smss/sessions/1").exists());
    s.assert_serving();
}

/// CreateSession (running `sleep 1000`) on a connection of its own, answered when it is.
fn create_in_background(s: &Smss) -> std::thread::JoinHandle<smss::control::wire::Reply> {
    let socket = s.socket.clone();
    std::thread::spawn(move || {
        let mut c = smss::control::client::Client::connect(&socket).unwrap();
        c.set_timeout(Some(TIMEOUT)).unwrap();
        c.call(
            "io.smss.Manager.CreateSession",
            json!({"command": ["sleep", "1000"]}),
        )
        .unwrap()
    })
}

#[test]
fn terminating_a_session_that_is_still_starting_kills_its_instance_at_once() {
    require_unshare!();
    let fifo_name = "starting-fifo";
    // A session subsystem that never gets ready, with a minute to do it: its instance waits.
    let config =
        format!(
        "[subsystems]\nwindows = {{ command = {}, ready = \"notify\", ready-timeout = \"60s\" }}\n\
         [sessions]\nsession-subsystems = [\"windows\"]\n[shutdown]\ngrace-period = \"5s\"\n",
        argv(&["sh", "-c", &format!("echo $$ > @DIR@/{fifo_name}; exec sleep 1000")]),
    );
    let s = start("starting", &config, Opts::default());
    let fifo = s.dir.join(fifo_name);
    mkfifo(&fifo);
    let creator = create_in_background(&s);
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    let sub: i64 = text.trim().parse().unwrap();
    assert_eq!(s.sessions()[0]["state"], "starting");
    // The instance is killed rather than awaited (its subsystem had 60 s to get ready), and
    // what it started goes with it.
    let t = Instant::now();
    let v = s.ok("TerminateSession", json!({"id": 1}));
    assert_eq!(v["state"], "gone");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    match creator.join().unwrap() {
        smss::control::wire::Reply::Error { error, parameters } => {
            assert_eq!(error, "io.smss.Manager.Failed");
            assert!(
                parameters["reason"]
                    .as_str()
                    .unwrap()
                    .contains("terminated"),
                "{parameters}"
            );
        }
        other => panic!("created anyway: {other:?}"),
    }
    assert!(!s.ns_alive(sub), "the instance's subsystem survived");
    s.expect_log("smss-session (pid", TIMEOUT);
    assert!(s.sessions().is_empty());
    assert!(!s.ns_path("/run/smss/sessions/1").exists());
    // The creation slot is free again: the next session's instance starts its subsystem.
    let again = create_in_background(&s);
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    assert!(text.trim().parse::<i64>().is_ok(), "{text:?}");
    assert_eq!(s.ok("TerminateSession", json!({"id": 2}))["state"], "gone");
    assert!(matches!(
        again.join().unwrap(),
        smss::control::wire::Reply::Error { .. }
    ));
    s.assert_serving();
}

#[test]
fn deferred_subsystems_start_on_request_in_session_zero_or_a_session() {
    require_unshare!();
    let config = format!(
        "[subsystems]\nrequired = [\"windows\"]\noptional = [\"posix\"]\n\
         windows = {{ command = {} }}\nposix = {{ command = {} }}\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sleep", "1000"]),
        argv(&["sh", "-c", "echo \"posix in session ${SESSION:-0}\"; exec sleep 1000"]),
    );
    let s = start("deferred", &config, Opts::default());
    let st = s.ok("GetStatus", json!({}));
    let posix = |st: &Value| {
        st["subsystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "posix" && x["session"] == 0)
            .cloned()
            .unwrap()
    };
    assert_eq!(posix(&st)["state"], "deferred", "{st}");
    let pid = s.ok("LoadDeferredSubsystem", json!({"name": "posix"}))["pid"].clone();
    s.ns().expect_line("posix in session 0", TIMEOUT);
    // Already running: the same pid.
    let again = s.ok("LoadDeferredSubsystem", json!({"name": "POSIX"}))["pid"].clone();
    assert_eq!(pid, again);
    assert_eq!(posix(&s.ok("GetStatus", json!({})))["state"], "running");
    // Required ones and unknown ones are not deferred subsystems.
    s.err(
        "LoadDeferredSubsystem",
        json!({"name": "windows"}),
        "io.smss.Manager.NoSuchSubsystem",
    );
    s.err(
        "LoadDeferredSubsystem",
        json!({"name": "os2"}),
        "io.smss.Manager.NoSuchSubsystem",
    );
    s.err(
        "LoadDeferredSubsystem",
        json!({"name": "posix", "session": 42}),
        "io.smss.Manager.NoSuchSession",
    );
    // Inside a session: its environment, one of its processes, gone with it.
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    let inner = pid_of(
        &s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "posix", "session": id}),
        )["pid"],
    );
    s.ns()
        .expect_line(&format!("posix in session {id}"), TIMEOUT);
    let pids = s.sessions()[0]["pids"].clone();
    assert!(
        pids.as_array().unwrap().iter().any(|p| pid_of(p) == inner),
        "{pids}"
    );
    s.ok("TerminateSession", json!({ "id": id }));
    assert!(!s.ns_alive(inner));
    assert!(
        s.ns_alive(pid_of(&pid)),
        "session 0's posix went with the session"
    );
    s.assert_serving();
}

#[test]
fn a_session_can_run_as_a_user() {
    require_unshare!();
    let s = start(
        "user",
        "[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    let v = s.ok(
        "CreateSession",
        json!({"user": "nobody", "command": ["sh", "-c", "echo \"user uid=$(id -u) gid=$(id -g) home=$HOME logname=$LOGNAME\"; exec sleep 1000"]}),
    );
    let line = s.ns().expect_line("user uid=", TIMEOUT);
    assert_eq!(field(&line, "uid"), "65534", "{line}");
    assert_eq!(field(&line, "gid"), "65534", "{line}");
    assert_eq!(field(&line, "logname"), "nobody", "{line}");
    let id = v["id"].as_u64().unwrap();
    let dir = s.ns_path(&format!("/run/smss/sessions/{id}"));
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 65534);
    assert_eq!(s.sessions()[0]["user"], "nobody");
    let p = s.err(
        "CreateSession",
        json!({"user": "no-such-user-here", "command": ["true"]}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(p["parameter"], "user");
}

#[test]
fn max_sessions_and_parallel_creation() {
    require_unshare!();
    let s = start(
        "limits",
        "[sessions]\nmax-sessions = 3\nparallel-session-creation = 1\n[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    // Three at once through one instance slot: queued, then created one after the other.
    let socket = s.socket.clone();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = smss::control::client::Client::connect(&socket).unwrap();
                c.set_timeout(Some(TIMEOUT)).unwrap();
                c.call(
                    "io.smss.Manager.CreateSession",
                    json!({"command": ["sleep", "1000"]}),
                )
                .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        match h.join().unwrap() {
            smss::control::wire::Reply::Ok(v) => ids.push(v["id"].as_u64().unwrap()),
            other => panic!("{other:?}"),
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    let p = s.err(
        "CreateSession",
        json!({"command": ["true"]}),
        "io.smss.Manager.LimitReached",
    );
    assert_eq!(p, json!({"limit": "max-sessions", "value": 3}));
    assert!(s.sessions().iter().all(|v| v["state"] == "active"));
    // smctl prints the id, lists, terminates.
    let o = s.smctl(&["session", "terminate", "2"]);
    assert!(o.status.success(), "{o:?}");
    let o = s.smctl(&["session", "create", "--", "sleep", "1000"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4");
    let o = s.smctl(&["session", "list", "--json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3, 4]);
    let o = s.smctl(&["session", "terminate", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no session 2"),
        "{o:?}"
    );
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn renames_are_queued_for_the_next_boot() {
    require_unshare!();
    let s = start(
        "rename",
        "[pending-file-rename-operations]\nqueue = \"@DIR@/queue\"\n",
        Opts::default(),
    );
    for args in [
        &["rename", "/a", "/b", "--replace"][..],
        &["rename", "/c"],
        &["rename", "/d", "/e"],
    ] {
        let o = s.smctl(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    let queue = std::fs::read(s.dir.join("queue")).unwrap();
    assert_eq!(queue, b"/a\0!/b\0/c\0\0/d\0/e\0");
    // smctl takes a relative path against its working directory (as mv does); the method
    // itself refuses one (the queue is applied from /).
    let o = s.smctl(&["rename", "relative", "/x"]);
    assert!(o.status.success(), "{o:?}");
    let cwd = std::env::current_dir().unwrap();
    let queue = std::fs::read(s.dir.join("queue")).unwrap();
    let tail = format!("{}/relative\0/x\0", cwd.display());
    assert!(
        queue.ends_with(tail.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&queue)
    );
    let e = s.err(
        "QueueFileRename",
        json!({"source": "relative", "destination": "/x"}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(e["parameter"], "source", "{e}");
    let o = s.smctl(&["reboot"]);
    assert!(o.status.success(), "{o:?}");
}

/// A login manager that exits at once races its instance's report (it may even be reaped as
/// an orphan before PID 1 reads the report): the session must still end, every time.
#[test]
fn login_managers_that_exit_at_once_never_leave_a_session_behind() {
    require_unshare!();
    let s = start(
        "instant",
        "[sessions]\nparallel-session-creation = 8\n[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    let n = 40;
    let socket = s.socket.clone();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = smss::control::client::Client::connect(&socket).unwrap();
                c.set_timeout(Some(TIMEOUT)).unwrap();
                c.call(
                    "io.smss.Manager.CreateSession",
                    json!({"command": ["true"]}),
                )
                .unwrap()
            })
        })
        .collect();
    for h in handles {
        assert!(matches!(
            h.join().unwrap(),
            smss::control::wire::Reply::Ok(_)
        ));
    }
    // Every session ends, and every runtime directory (renamed aside at the end) is removed
    // by its `smss-session remove`.
    let (mut ended, mut removed) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + TIMEOUT;
    while ended.len() < n || removed.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = s.ns().stderr.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "{} ended, {} removed after {TIMEOUT:?}",
                ended.len(),
                removed.len()
            )
        });
        // The number right after `marker`.
        let id = |marker: &str| -> u32 {
            l.split(marker)
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        };
        if l.contains(" ended (") {
            ended.insert(id("]: session "));
        } else if l.contains("smss-session remove (session ") && l.contains("exited:0") {
            removed.insert(id("remove (session "));
        }
    }
    assert!(s.sessions().is_empty());
    let dir = s.ns_path("/run/smss/sessions");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    s.assert_serving();
}

/// Nothing ignored reaches a session's login manager: not through PID 1, not through the
/// instance (whose Rust runtime used to ignore SIGPIPE), not as an inherited mask.
#[test]
fn login_managers_start_with_default_signal_dispositions() {
    require_unshare!();
    let s = start("sigdfl", "", Opts::default());
    let out = s.dir.join("status");
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    let script = format!(
        "grep -E '^Sig(Ign|Blk)' /proc/self/status > {o}; echo done > {f}; exec sleep 1000",
        o = out.display(),
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let mut r = open_fifo(&fifo, false);
    let mut done = String::new();
    r.read_to_string(&mut done).unwrap();
    let status = std::fs::read_to_string(&out).unwrap();
    assert!(status.contains("SigIgn:\t0000000000000000"), "{status}");
    assert!(status.contains("SigBlk:\t0000000000000000"), "{status}");
    s.ok("TerminateSession", json!({"id": v["id"]}));
}

/// `pids_max` asks for a limit only a cgroup2 pids controller can enforce: without one the
/// request is refused (InvalidParameter), never accepted silently without the limit.
#[test]
fn pids_max_without_a_pids_controller_is_refused() {
    require_unshare!();
    let s = start("pidsmax", "", Opts::default());
    let p = s.err(
        "CreateSession",
        json!({"command": ["sleep", "1000"], "pids_max": 100}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(p["parameter"], "pids_max", "{p}");
    assert!(s.sessions().is_empty());
    // Without it the same session is created.
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    s.assert_serving();
}

/// Live `comm` processes of the namespace (zombies do not count).
fn live_named(s: &Smss, comm: &str) -> Vec<i64> {
    std::fs::read_dir(s.ns_path("/proc"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/comm")))
                .is_ok_and(|c| c.trim() == comm)
                && s.ns_alive(*pid)
        })
        .collect()
}

/// Without cgroup2, a login manager whose children leave its session (setsid, some of them
/// double-forked so their parent is gone, some ignoring SIGTERM) must still take them all
/// along: TerminateSession reports "gone" only when none is left.
#[test]
fn children_that_call_setsid_do_not_escape_a_session_without_a_cgroup() {
    require_unshare!();
    let s = start(
        "setsid",
        "[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    let script = format!(
        "i=0; while [ $i -lt 100 ]; do \
           setsid sleep 1000 & \
           ( setsid sleep 1000 & ) ; \
           ( setsid sh -c 'trap \"\" TERM; exec sleep 1000' & ) ; \
           i=$((i+1)); done; echo started > {f}; wait",
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    assert_eq!(text.trim(), "started");
    let before = live_named(&s, "sleep").len();
    assert!(before >= 250, "only {before} sleep processes started");
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    let left = live_named(&s, "sleep");
    assert!(
        left.is_empty(),
        "{} of {before} processes escaped the session",
        left.len()
    );
    s.assert_serving();
}

/// An `smss-session` instance SIGKILLed before it reported (here while it waits for a
/// session subsystem's readiness) must not leave that subsystem, or its child, running.
#[test]
fn a_killed_instance_does_not_leave_its_session_subsystem_running() {
    require_unshare!();
    let fifo_dir = super_dir("killedinstance");
    let fifo = fifo_dir.join("fifo");
    mkfifo(&fifo);
    let sub = format!("sleep 1000 & echo $$ $! > {f}; wait", f = fifo.display());
    let config = format!(
        "[subsystems]\nwindows = {{ command = {}, ready = \"notify\", ready-timeout = \"60s\" }}\n\
         [sessions]\nsession-subsystems = [\"windows\"]\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", &sub]),
    );
    let s = start("killedinstance", &config, Opts::default());
    let create = create_in_background(&s);
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    let pids: Vec<i64> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    for p in &pids {
        assert!(s.ns_alive(*p));
    }
    // The instance: smss's child named smss-session.
    let instance = std::fs::read_dir(s.ns_path("/proc"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .find(|pid| {
            std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/comm")))
                .is_ok_and(|c| c.trim() == "smss-session")
        })
        .expect("the smss-session instance");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid(&s, instance)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    match create.join().unwrap() {
        smss::control::wire::Reply::Error { error, .. } => {
            assert_eq!(error, "io.smss.Manager.Failed")
        }
        other => panic!("created anyway: {other:?}"),
    }
    s.expect_log("session 1 ended", TIMEOUT);
    for p in &pids {
        assert!(!s.ns_alive(*p), "process {p} of the session survived");
    }
    s.assert_serving();
}

/// A directory for fifos made before smss starts (the test's own temp dir is made by start).
fn super_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("smss-pre-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// PID 1's CPU time (user + system, in clock ticks) from the host's /proc.
fn cpu_ticks(s: &Smss) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.init)).unwrap();
    let tail = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = tail.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Without cgroup2, what PID 1 spends while orphans churn must not depend on a session being
/// tracked (it used to scan every process's stat after each reap). Measures 10 s with and
/// 10 s without a session and prints both; slow and CPU-hungry, hence ignored by default:
/// `cargo test -p smss --test ns_sessions -- --ignored --nocapture`.
#[test]
#[ignore]
fn pid1_cost_with_orphans_churning_does_not_depend_on_sessions() {
    require_unshare!();
    let config = format!(
        "[subsystems]\nchurn = {{ command = {} }}\nidle = {{ command = {} }}\n\
         optional = [\"churn\", \"idle\"]\n[shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", "while :; do ( true & ); done"]),
        argv(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do sleep 1000 & i=$((i+1)); done; wait"
        ]),
    );
    let s = start("cost", &config, Opts::default());
    s.ok("LoadDeferredSubsystem", json!({"name": "idle"}));
    s.ok("LoadDeferredSubsystem", json!({"name": "churn"}));
    let window = Duration::from_secs(10);
    let measure = || {
        let t0 = cpu_ticks(&s);
        std::thread::sleep(window);
        cpu_ticks(&s) - t0
    };
    let without = measure();
    let v = s.ok(
        "CreateSession",
        json!({"command": ["sh", "-c", "i=0; while [ $i -lt 50 ]; do sleep 1000 & i=$((i+1)); done; wait"]}),
    );
    let with = measure();
    eprintln!("PID 1 CPU ticks in {window:?} with orphans churning: {without} without a session, {with} with one");
    assert!(
        with <= 2 * without + 30,
        "a tracked session made PID 1 spend {with} ticks instead of {without}"
    );
    let id = v["id"].as_u64().unwrap();
    s.ok("TerminateSession", json!({ "id": id }));
}

/// Without cgroup2 an active session's instance stays as its keeper; SIGKILLed, it hands its
/// members to smss, which ends the session and takes them along (and the members' own
/// children, found below them).
#[test]
fn a_killed_keeper_ends_its_session_and_takes_its_members_along() {
    require_unshare!();
    let s = start(
        "killedkeeper",
        "[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    let script = format!(
        "trap '' TERM; sleep 1000 & echo $$ $! > {f}; wait",
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    let pids: Vec<i64> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    // The keeper: the login manager's parent (the spare smss-session runs too).
    let stat = std::fs::read_to_string(s.ns_path(&format!("/proc/{}/stat", pids[0]))).unwrap();
    let keeper: i64 = stat
        .rsplit_once(')')
        .and_then(|(_, t)| t.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{stat}"));
    assert!(live_named(&s, "smss-session").contains(&keeper), "{stat}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid(&s, keeper)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    s.expect_log(&format!("session {id} ended"), TIMEOUT);
    for p in &pids {
        assert!(!s.ns_alive(*p), "process {p} of the session survived");
    }
    assert!(s.sessions().is_empty());
    s.assert_serving();
}

/// Without cgroup2 a subsystem started in a session on request is started by the session's
/// keeper, so a daemon it double-forks (setsid, parent gone, SIGTERM ignored) is still below
/// the keeper and ends with the session.
#[test]
fn a_subsystem_started_later_in_a_session_without_a_cgroup_cannot_escape_it() {
    require_unshare!();
    let pre = super_dir("deferredescape");
    let fifo = pre.join("fifo");
    mkfifo(&fifo);
    let daemon = format!(
        "( setsid sh -c 'trap \"\" TERM; echo $$ > {f}; exec sleep 1000' & ); exec sleep 1000",
        f = fifo.display()
    );
    let config = format!(
        "[subsystems]\nposix = {{ command = {} }}\noptional = [\"posix\"]\n\
         [shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sh", "-c", &daemon]),
    );
    let s = start("deferredescape", &config, Opts::default());
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    let sub = s.ok(
        "LoadDeferredSubsystem",
        json!({"name": "posix", "session": id}),
    );
    let sub_pid = pid_of(&sub["pid"]);
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    let daemon_pid: i64 = text.trim().parse().unwrap();
    assert!(s.ns_alive(sub_pid) && s.ns_alive(daemon_pid));
    // Asked again: the running one.
    let again = s.ok(
        "LoadDeferredSubsystem",
        json!({"name": "posix", "session": id}),
    );
    assert_eq!(again["pid"], sub["pid"]);
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    assert!(!s.ns_alive(sub_pid), "the subsystem {sub_pid} survived");
    assert!(
        !s.ns_alive(daemon_pid),
        "its double-forked daemon {daemon_pid} escaped the session"
    );
    s.assert_serving();
}

/// Issue 10 defect 3: at a session's end its processes with a controlling terminal also get
/// SIGHUP, so a login shell (which ignores SIGTERM) ends at once, not after the grace period.
#[test]
fn a_session_process_with_a_terminal_gets_sighup_at_the_end() {
    require_unshare!();
    let s = start(
        "hup",
        "[shutdown]\ngrace-period = \"30s\"\n",
        Opts::default(),
    );
    let term = pty();
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    let out = s.dir.join("hup");
    // The session leader (smss-session starts it in a session of its own) takes the terminal
    // as its controlling one by opening it, ignores SIGTERM like an interactive shell, and
    // notes a SIGHUP.
    let script = format!(
        "import os, signal\n\
         os.open({tty}, os.O_RDWR)\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         def hup(*_):\n    open({out}, 'w').write('HUP')\n    os._exit(0)\n\
         signal.signal(signal.SIGHUP, hup)\n\
         open({fifo}, 'w').write('ready')\n\
         while True:\n    signal.pause()\n",
        tty = q(&term.path),
        out = q(&out.display().to_string()),
        fifo = q(&fifo.display().to_string()),
    );
    let v = s.ok(
        "CreateSession",
        json!({"command": ["python3", "-c", script]}),
    );
    let id = v["id"].as_u64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    assert_eq!(text, "ready");
    let t = Instant::now();
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "waited for the grace period: {:?}",
        t.elapsed()
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "HUP");
    drop(term);
}

/// CreateSession fails (as SmStartCsr does when the process cannot be created) when its
/// command cannot be executed: a path that does not exist, a file without the execute bit,
/// the same as another user. The reply says so;
/// no session is left behind. Without cgroup2 (the instance is the session's keeper) and
/// with a cgroup (which the command is held in before it runs) alike.
#[test]
fn a_command_that_cannot_be_executed_fails_the_creation() {
    require_unshare!();
    unexecutable_commands_fail_the_creation("noexec", Opts::default());
}

#[test]
fn a_command_that_cannot_be_executed_fails_the_creation_with_a_cgroup() {
    require_unshare!();
    if ns_control_common::host_cgroup2().is_none() {
        panic!("no cgroup2 mount on this host: the QEMU tier covers cgroup sessions");
    }
    unexecutable_commands_fail_the_creation(
        "noexeccg",
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
}

fn unexecutable_commands_fail_the_creation(name: &str, opts: Opts) {
    let pre = super_dir(name);
    let plain = pre.join("plain-file");
    std::fs::write(&plain, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let missing = pre.join("no-such-program").display().to_string();
    let plain = plain.display().to_string();
    let s = start(name, "[shutdown]\ngrace-period = \"2s\"\n", opts);
    for (what, params) in [
        ("missing path", json!({"command": [missing]})),
        ("not executable", json!({"command": [plain]})),
        (
            "missing, as a user",
            json!({"user": "nobody", "command": ["no-such-program-anywhere"]}),
        ),
        (
            "not executable, as a user",
            json!({"user": "nobody", "command": [plain]}),
        ),
    ] {
        match s.call("CreateSession", params) {
            smss::control::wire::Reply::Error { error, parameters } => {
                assert_eq!(error, "io.smss.Manager.Failed", "{what}: {parameters}");
                let reason = parameters["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.contains("no-such-program") || reason.contains("plain-file"),
                    "{what}: the reason names the command: {parameters}"
                );
            }
            other => panic!("{what}: created anyway: {other:?}"),
        }
    }
    // Each failed creation ended its session, in any order: the reply goes out on the
    // instance's report, the end comes with its exit, so one session's end may be logged
    // after the next one's.
    let ended: Vec<String> = (1..=4).map(|id| format!("session {id} ended")).collect();
    s.expect_logs(&ended, TIMEOUT);
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// LoadDeferredSubsystem into a session fails when the subsystem's command cannot be executed,
/// as it does in session 0 (where smss starts it itself): the reply is an error, not the pid
/// of a process that is already gone. Without cgroup2 the session's keeper starts it.
#[test]
fn a_deferred_subsystem_that_cannot_be_executed_fails_in_a_session() {
    require_unshare!();
    deferred_unexecutable_fails("deferrednoexec", Opts::default());
}

/// The same with a session cgroup: smss starts `smss-session exec --hold --cgroup` itself; for
/// a root session it checks the program first (a missing file, no execute bit). A session of
/// another user, and other exec failures: the next test.
#[test]
fn a_deferred_subsystem_that_cannot_be_executed_fails_in_a_session_with_a_cgroup() {
    require_unshare!();
    deferred_unexecutable_fails(
        "deferrednoexeccg",
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
}

fn deferred_unexecutable_fails(name: &str, opts: Opts) {
    let config = "[subsystems]\noptional = [\"ghost\", \"plain\"]\n\
                  ghost = \"/nonexistent/ghost\"\nplain = \"/etc/passwd\"\n\
                  [shutdown]\ngrace-period = \"2s\"\n";
    let s = start(name, config, opts);
    // Session 0: smss's own spawn reports it.
    for sub in ["ghost", "plain"] {
        s.err(
            "LoadDeferredSubsystem",
            json!({ "name": sub }),
            "io.smss.Manager.Failed",
        );
    }
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    for sub in ["ghost", "plain"] {
        let p = s.err(
            "LoadDeferredSubsystem",
            json!({ "name": sub, "session": id }),
            "io.smss.Manager.Failed",
        );
        let reason = p["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("/nonexistent/ghost") || reason.contains("/etc/passwd"),
            "{sub}: {p}"
        );
    }
    // The session is untouched.
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    s.ok("TerminateSession", json!({ "id": id }));
    s.assert_serving();
}

/// LoadDeferredSubsystem into a session of another user with a cgroup: smss cannot check
/// beforehand what that user may execute, so the reply waits for the exec of `smss-session
/// exec --hold`. A command only root may run (EACCES), a script without `#!` (ENOEXEC) and a
/// script whose interpreter is missing (ENOENT) each fail the call with the reason, as SmLoadDeferedSubsystem
/// does; a command that runs gets its pid, a member of the session, in its cgroup.
#[test]
fn a_deferred_subsystem_its_user_cannot_execute_fails_in_a_session_with_a_cgroup() {
    require_unshare!();
    if ns_control_common::host_cgroup2().is_none() {
        panic!("no cgroup2 mount on this host: the QEMU tier covers cgroup sessions");
    }
    let pre = super_dir("deferreduser");
    let script = |name: &str, text: &str, mode: u32| {
        let p = pre.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    // Root's own (we run as root): nobody may not read or execute it.
    let locked = script("locked", "#!/bin/sh\nexec sleep 1000\n", 0o700);
    let noshebang = script("noshebang", "echo noshebang ran\nexec sleep 1000\n", 0o755);
    let nointerp = script("nointerp", "#!/nonexistent/interp\n", 0o755);
    let config = format!(
        "[subsystems]\noptional = [\"locked\", \"noshebang\", \"nointerp\", \"runs\"]\n\
         locked = {{ command = {} }}\nnoshebang = {{ command = {} }}\n\
         nointerp = {{ command = {} }}\nruns = {{ command = {} }}\n\
         [shutdown]\ngrace-period = \"2s\"\n",
        argv(&[&locked]),
        argv(&[&noshebang]),
        argv(&[&nointerp]),
        argv(&["sh", "-c", "echo \"runs as $(id -u)\"; exec sleep 1000"]),
    );
    let s = start(
        "deferreduser",
        &config,
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
    let v = s.ok(
        "CreateSession",
        json!({"user": "nobody", "command": ["sleep", "1000"]}),
    );
    let id = v["id"].as_u64().unwrap();
    for (sub, file, why) in [
        ("locked", "locked", "EACCES"),
        ("noshebang", "noshebang", "ENOEXEC"),
        ("nointerp", "nointerp", "ENOENT"),
    ] {
        match s.call(
            "LoadDeferredSubsystem",
            json!({ "name": sub, "session": id }),
        ) {
            smss::control::wire::Reply::Error { error, parameters } => {
                assert_eq!(error, "io.smss.Manager.Failed", "{sub}: {parameters}");
                let reason = parameters["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.contains(file) && reason.contains(why),
                    "{sub}: the reason names the command and the error: {parameters}"
                );
            }
            other => panic!("{sub}: told it started: {other:?}"),
        }
    }
    // A command the user can run: its pid, a member of the session, in the session's cgroup.
    let pid = pid_of(
        &s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "runs", "session": id}),
        )["pid"],
    );
    s.ns().expect_line("runs as 65534", TIMEOUT);
    let pids = s.sessions()[0]["pids"].clone();
    assert!(
        pids.as_array().unwrap().iter().any(|p| pid_of(p) == pid),
        "{pids}"
    );
    let cg = format!("/sys/fs/cgroup/smss/session-{id}");
    let procs = std::fs::read_to_string(s.ns_path(&format!("{cg}/cgroup.procs"))).unwrap();
    let host = host_pid(&s, pid);
    assert!(
        procs.lines().any(|p| p == host.to_string()),
        "{pid} not in {cg}: {procs}"
    );
    // Asked again while it runs: the same pid.
    let again = pid_of(
        &s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "RUNS", "session": id}),
        )["pid"],
    );
    assert_eq!(again, pid);
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    s.ok("TerminateSession", json!({ "id": id }));
    assert!(!s.ns_alive(pid));
    s.assert_serving();
}

/// A session's `tty` must be a terminal: the login manager is given it as its controlling
/// terminal, which a character device like /dev/null cannot be (TIOCSCTTY fails, and the
/// program would run with no terminal at all). The creation fails and says why.
#[test]
fn a_tty_that_is_not_a_terminal_fails_the_creation() {
    require_unshare!();
    let s = start(
        "nottytty",
        "[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    match s.call(
        "CreateSession",
        json!({"tty": "/dev/null", "command": ["sleep", "1000"]}),
    ) {
        smss::control::wire::Reply::Error { error, parameters } => {
            assert_eq!(error, "io.smss.Manager.Failed", "{parameters}");
            let reason = parameters["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("/dev/null"), "{parameters}");
            assert!(reason.contains("not a terminal"), "{parameters}");
        }
        other => panic!("created anyway: {other:?}"),
    }
    s.expect_log("session 1 ended", TIMEOUT);
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// A session subsystem that cannot be executed fails its session's creation the same way.
#[test]
fn a_session_subsystem_that_cannot_be_executed_fails_the_creation() {
    require_unshare!();
    let s = start(
        "subnoexec",
        "[subsystems]\nghost = { command = [\"/etc/passwd\"] }\n\
         [sessions]\nsession-subsystems = [\"ghost\"]\n[shutdown]\ngrace-period = \"2s\"\n",
        Opts::default(),
    );
    let p = s.err(
        "CreateSession",
        json!({"command": ["sleep", "1000"]}),
        "io.smss.Manager.Failed",
    );
    let reason = p["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("subsystem ghost") && reason.contains("/etc/passwd"),
        "{p}"
    );
    s.expect_log("session 1 ended", TIMEOUT);
    assert!(live_named(&s, "sleep").is_empty(), "the login manager ran");
    s.assert_serving();
}

/// Once sessions are in use, CreateSession execs nothing but the session's command: its
/// instance was started ahead (the spare) and holds the command in a forked child, not in an
/// exec of `smss-session exec --hold`. Shown by making `smss-session` unexecutable in the
/// namespace once the spare runs: the next creation still succeeds. The spare is no session,
/// and the stop ends it without a word.
#[test]
fn a_warm_create_session_execs_only_the_sessions_command() {
    require_unshare!();
    let s = start(
        "warm",
        "[shutdown]\ngrace-period = \"30s\"\n",
        Opts {
            env: &[("SMSS_LOG", "debug")],
            ..Opts::default()
        },
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let spare = live_spare(&s);
    assert!(s.ns_alive(spare));
    // Not a session.
    s.expect_log("session 1 ended", TIMEOUT);
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    let instance = Path::new(common::smss()).with_file_name("smss-session");
    let mount = |args: &[&str]| {
        let o = std::process::Command::new("timeout")
            .args(["20", "nsenter", "-t", &s.init.to_string(), "-m", "-p"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    mount(&["mount", "--bind", "/dev/null", instance.to_str().unwrap()]);
    let r = s.call("CreateSession", json!({"command": ["sleep", "1000"]}));
    mount(&["umount", instance.to_str().unwrap()]);
    let v = match r {
        smss::control::wire::Reply::Ok(v) => v,
        other => panic!("smss-session was exec'd on the request's path: {other:?}"),
    };
    assert!(s.ns_alive(pid_of(&v["pids"][0])), "{v}");
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    // The spare after that one could not start (smss-session was unexecutable then): said,
    // and not retried in a loop (at most 3 in a row). The next answered creation starts one
    // again.
    s.expect_log("warning: failed to start a spare smss-session", TIMEOUT);
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let spare = live_spare(&s);
    // A spare never holds up the stop (the grace period is 30 s), and ends without a word.
    let t = Instant::now();
    let out = s.poweroff();
    assert!(t.elapsed() < Duration::from_secs(15), "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let me = format!("spare smss-session (pid {spare})");
    for l in out.stderr.lines() {
        assert!(
            !(l.contains(&me) && (l.contains("error: ") || l.contains("warning: "))),
            "{l}"
        );
        assert!(!l.contains("still running"), "{l}");
    }
}

/// The namespace pid of a spare that runs `smss-session` (the next `started` line whose
/// process is there: smss logs it once the exec succeeded).
fn live_spare(s: &Smss) -> i64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let line = s.expect_log("spare smss-session started (pid ", TIMEOUT);
        let pid: i64 = line
            .rsplit("(pid ")
            .next()
            .and_then(|r| r.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        // Bounded look at its name (it may have died since).
        while s.ns_alive(pid) && Instant::now() < deadline {
            let comm = std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/comm")));
            if comm.is_ok_and(|c| c.trim() == "smss-session") {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(Instant::now() < deadline, "no spare got to smss-session");
    }
}

/// A spare killed before it was used is replaced (a creation then still finds one ready),
/// and it is nobody's session: the kill ends none.
#[test]
fn a_spare_that_dies_is_replaced() {
    require_unshare!();
    let s = start(
        "sparekill",
        "[shutdown]\ngrace-period = \"2s\"\n",
        Opts {
            env: &[("SMSS_LOG", "debug")],
            ..Opts::default()
        },
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let first = live_spare(&s);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid(&s, first)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let l = s.expect_log(&format!("spare smss-session (pid {first})"), TIMEOUT);
    assert!(l.contains("warning: ") && l.contains("killed:KILL"), "{l}");
    let second = live_spare(&s);
    assert_ne!(first, second);
    // Session 1 is untouched, and the next creation is handed to the new spare.
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    assert!(s.ns_alive(pid_of(&v["pids"][0])));
    let w = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.expect_log(
        &format!(
            "session {}: handed to the spare smss-session (pid {second})",
            w["id"]
        ),
        TIMEOUT,
    );
    s.assert_serving();
}

/// Without cgroup2 TerminateSession answers once the keeper has reaped the session's last
/// process (its `empty`), and the keeper, not a `smss-session remove` PID 1 starts, deletes
/// the runtime directory (renamed aside before the answer) after it: a user's files there,
/// subdirectories included, are gone within the bound, and the keeper exits after that.
#[test]
fn a_keeper_removes_its_sessions_runtime_directory_after_the_answer() {
    require_unshare!();
    let s = start("keeperrm", "", Opts::default());
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    let leader = v["pids"][0].as_i64().unwrap();
    let run = s.ns_path("/run/smss/sessions");
    let dir = run.join(id.to_string());
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    for i in 0..50 {
        std::fs::write(dir.join(format!("sub/f{i}")), "x").unwrap();
    }
    // The keeper: the login manager's parent (the spare smss-session runs too).
    let stat = std::fs::read_to_string(s.ns_path(&format!("/proc/{leader}/stat"))).unwrap();
    let keeper_pid: i64 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{stat}"));
    assert!(
        live_named(&s, "smss-session").contains(&keeper_pid),
        "{stat}"
    );
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    assert!(!s.ns_alive(leader), "the login manager survived");
    assert!(!dir.exists(), "{} is still at its name", dir.display());
    // The keeper's exit (logged like a remover's) comes after the deletion; PID 1 starts
    // no remover of its own.
    let keeper = format!("smss-session remove (session {id}, its keeper)");
    let deadline = Instant::now() + TIMEOUT;
    let l = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = s.ns().stderr.recv_timeout(left).unwrap_or_else(|_| {
            panic!("no `{keeper}` after {TIMEOUT:?}");
        });
        assert!(
            !l.contains(&format!("smss-session remove (session {id})")),
            "PID 1 started a remover: {l}"
        );
        if l.contains(&keeper) {
            break l;
        }
    };
    assert!(l.contains("exited:0"), "{l}");
    let left: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
    assert!(left.is_empty(), "left in {}: {left:?}", run.display());
    // Logged as exited: reaped, so gone.
    assert!(!s.ns_alive(keeper_pid), "the keeper is left");
    s.assert_serving();
}

/// A call in a thread of its own, on a fresh connection: its reply, or None when the
/// connection ended without one (smss stopped).
fn call_in_background(
    s: &Smss,
    method: &str,
    params: Value,
) -> std::thread::JoinHandle<Option<smss::control::wire::Reply>> {
    let socket = s.socket.clone();
    let method = format!("io.smss.Manager.{method}");
    std::thread::spawn(move || {
        let mut c = smss::control::client::Client::connect(&socket).unwrap();
        c.set_timeout(Some(TIMEOUT)).unwrap();
        c.call(&method, params).ok()
    })
}

/// Poll `f` (a state with no event to wait on: a cgroup file, a process list) until it holds,
/// within TIMEOUT.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Freeze session `id`'s cgroup: `smss-session exec --hold` joins it before its exec, so a
/// LoadDeferredSubsystem into it stays pending (frozen before the exec) until it is killed.
fn freeze_session(s: &Smss, id: u64) -> String {
    let cg = format!("/sys/fs/cgroup/smss/session-{id}");
    std::fs::write(s.ns_path(&format!("{cg}/cgroup.freeze")), "1").unwrap();
    wait_until("the session's cgroup frozen", || {
        std::fs::read_to_string(s.ns_path(&format!("{cg}/cgroup.events")))
            .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
    });
    cg
}

/// A LoadDeferredSubsystem into a session whose cgroup is frozen, pending: its call, once the
/// `smss-session exec --hold` it started is in the cgroup (frozen before its exec), and that
/// process's host pid.
fn pending_held_exec(
    s: &Smss,
    id: u64,
) -> (
    std::thread::JoinHandle<Option<smss::control::wire::Reply>>,
    i32,
) {
    let cg = freeze_session(s, id);
    let call = call_in_background(
        s,
        "LoadDeferredSubsystem",
        json!({"name": "late", "session": id}),
    );
    // Not the session's instance, which may still be on its way out of the cgroup.
    let wrapper = || {
        std::fs::read_to_string(s.ns_path(&format!("{cg}/cgroup.procs")))
            .unwrap_or_default()
            .lines()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"--hold"))
            })
    };
    wait_until("smss-session exec --hold in the session's cgroup", || {
        wrapper().is_some()
    });
    assert!(!call.is_finished(), "answered before its exec");
    (call, wrapper().unwrap())
}

const HELD_CONFIG: &str = "[subsystems]\noptional = [\"late\", \"quick\"]\n\
                           late = \"sleep 1000\"\nquick = \"true\"\n\
                           [shutdown]\ngrace-period = \"2s\"\n";

/// TerminateSession while a LoadDeferredSubsystem into it waits for the exec of `smss-session
/// exec --hold`: both are answered, the deferred call with a failure (the session ended), not
/// with the pid of a command that never ran.
#[test]
fn a_session_terminated_while_a_deferred_exec_is_pending_answers_both() {
    require_unshare!();
    let s = start(
        "heldterm",
        HELD_CONFIG,
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let (call, _) = pending_held_exec(&s, id);
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    match call.join().unwrap() {
        Some(smss::control::wire::Reply::Error { error, parameters }) => {
            assert_eq!(error, "io.smss.Manager.Failed", "{parameters}");
            assert!(
                parameters["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("the session ended")),
                "{parameters}"
            );
        }
        other => panic!("the pending call got {other:?}"),
    }
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// Shutdown while a LoadDeferredSubsystem waits for its exec: smss stops (no hang on the held
/// process) and the waiting call ends (answered, or its connection closed).
#[test]
fn shutdown_while_a_deferred_exec_is_pending_does_not_hang() {
    require_unshare!();
    let s = start(
        "heldstop",
        HELD_CONFIG,
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let (call, _) = pending_held_exec(&s, id);
    let t = Instant::now();
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let reply = call.join().unwrap();
    assert!(
        !matches!(reply, Some(smss::control::wire::Reply::Ok(_))),
        "told it started: {reply:?}"
    );
    assert!(t.elapsed() < TIMEOUT, "{:?}", t.elapsed());
}

/// A hundred LoadDeferredSubsystem calls into a session with a cgroup (each a held `smss-session
/// exec` whose command exits at once) leave PID 1 with the descriptors it had.
#[test]
fn a_hundred_deferred_execs_leak_no_descriptor() {
    require_unshare!();
    let s = start(
        "heldfds",
        HELD_CONFIG,
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.init))
            .unwrap()
            .count()
    };
    // CreateSession answers before PID 1 watches the session's cgroup and starts the first
    // spare; a call after it is served once both are done (PID 1 is one thread).
    s.assert_serving();
    let before = fds();
    for _ in 0..100 {
        s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "quick", "session": id}),
        );
    }
    // A connection just closed by the client may not have been seen end yet.
    let deadline = Instant::now() + TIMEOUT;
    while fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fds() <= before, "{} descriptors, {before} before", fds());
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    s.ok("TerminateSession", json!({ "id": id }));
    s.assert_serving();
}

/// Shutdown with sessions kept by keepers (no cgroup): each keeper says `empty` once its
/// members are gone and is handed its runtime directory; the stop does not wait for the
/// grace period, and nothing is logged as an error.
#[test]
fn shutdown_with_keeper_sessions_is_quick_and_clean() {
    require_unshare!();
    let s = start(
        "keeperstop",
        "[shutdown]\ngrace-period = \"20s\"\n",
        Opts::default(),
    );
    for _ in 0..3 {
        s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    }
    let t = Instant::now();
    let o = s.poweroff();
    let took = t.elapsed();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: {}",
        o.stderr
    );
    let bad: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}\n{}", o.stderr);
}

/// TerminateSession twice at once on a keeper's session: both answered `gone`.
#[test]
fn terminate_twice_at_once_answers_both() {
    require_unshare!();
    let s = start("keepertwice", HELD_CONFIG, Opts::default());
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let a = call_in_background(&s, "TerminateSession", json!({ "id": id }));
    let b = call_in_background(&s, "TerminateSession", json!({ "id": id }));
    for r in [a.join().unwrap(), b.join().unwrap()] {
        match r {
            Some(smss::control::wire::Reply::Ok(v)) => assert_eq!(v["state"], "gone", "{v}"),
            // The second may come after the session left the table.
            Some(smss::control::wire::Reply::Error { error, .. }) => {
                assert_eq!(error, "io.smss.Manager.NoSuchSession")
            }
            None => panic!("no answer"),
        }
    }
    // Asked after the empty keeper is gone: refused cleanly.
    s.err(
        "LoadDeferredSubsystem",
        json!({"name": "late", "session": id}),
        "io.smss.Manager.NoSuchSession",
    );
    s.assert_serving();
}

/// `smss-session exec --hold` killed after its release but before its exec (here: frozen in
/// the session's cgroup, which it joins first): its socket closes as an exec would close it,
/// but the command never ran. The call fails; it is not answered with the dead pid. Two calls
/// for the subsystem pending at once get one answer each; once thawed, a new call starts it.
#[test]
fn a_deferred_exec_killed_before_its_exec_fails_the_call() {
    require_unshare!();
    let s = start(
        "heldkill",
        HELD_CONFIG,
        Opts {
            cgroup2: true,
            ..Opts::default()
        },
    );
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let (first, wrapper) = pending_held_exec(&s, id);
    // The second call written here, then a call on another connection answered: smss has read
    // the second by then (no sleep), and it joins the first (no second smss-session exec).
    let mut second = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    second
        .write_all(&smss::control::wire::encode_call(
            "io.smss.Manager.LoadDeferredSubsystem",
            json!({"name": "LATE", "session": id}),
            false,
        ))
        .unwrap();
    s.assert_serving();
    let cg = format!("/sys/fs/cgroup/smss/session-{id}");
    unsafe { libc::kill(wrapper, libc::SIGKILL) };
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while second.read(&mut byte).unwrap() == 1 && byte[0] != 0 {
        reply.push(byte[0]);
    }
    let second = smss::control::wire::parse_reply(&reply).ok();
    for reply in [first.join().unwrap(), second] {
        match reply {
            Some(smss::control::wire::Reply::Error { error, parameters }) => {
                assert_eq!(error, "io.smss.Manager.Failed", "{parameters}")
            }
            other => panic!("told it started: {other:?}"),
        }
    }
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    std::fs::write(s.ns_path(&format!("{cg}/cgroup.freeze")), "0").unwrap();
    let pid = pid_of(
        &s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "late", "session": id}),
        )["pid"],
    );
    assert!(s.ns_alive(pid));
    s.ok("TerminateSession", json!({ "id": id }));
    s.assert_serving();
}

/// A keeper that does not act on PID 1's word (stopped here; stuck, say, in a user lookup for
/// a subsystem it starts): TerminateSession still ends the session's processes. After the
/// grace period and the wait for SIGKILL, PID 1 kills the keeper; its members come to PID 1
/// and must be killed too, not left running outside any session.
#[test]
fn a_stuck_keeper_does_not_leave_its_members_running() {
    require_unshare!();
    let s = start(
        "keeperstuck",
        "[shutdown]\ngrace-period = \"1s\"\n",
        Opts::default(),
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    let leader = v["pids"][0].as_i64().unwrap();
    let stat = std::fs::read_to_string(s.ns_path(&format!("/proc/{leader}/stat"))).unwrap();
    let keeper: i64 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{stat}"));
    unsafe { libc::kill(host_pid(&s, keeper), libc::SIGSTOP) };
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    // SIGKILLed before the answer; gone a moment later (bounded: nothing of smss tells).
    wait_until("the keeper gone", || !s.ns_alive(keeper));
    wait_until("the login manager gone (it outlived its session)", || {
        !s.ns_alive(leader)
    });
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// Shutdown with a keeper's session whose processes ignore SIGTERM: the stop's SIGKILL ends
/// them and the keeper; smss stops cleanly, within the stop's own bounds.
#[test]
fn shutdown_with_a_keeper_session_ignoring_sigterm_ends() {
    require_unshare!();
    let s = start(
        "keeperstopterm",
        "[shutdown]\ngrace-period = \"1s\"\n",
        Opts::default(),
    );
    let v = s.ok(
        "CreateSession",
        json!({"command": ["sh", "-c", "trap '' TERM; sleep 1000 & wait"]}),
    );
    let leader = v["pids"][0].as_i64().unwrap();
    assert!(s.ns_alive(leader));
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("session 1 ended"), "{}", o.stderr);
}

/// A seat's session kept by a keeper ends by itself (its login manager exits after more than
/// the respawn minimum): the keeper says `empty`, the seat gets a new session at once, with
/// its own runtime directory, while the old one, renamed aside, is deleted by the old keeper.
#[test]
fn a_seat_session_ended_through_its_keeper_is_re_created_with_a_fresh_directory() {
    require_unshare!();
    let t0 = pty();
    let config = format!(
        "[sessions]\ninitial-command = {{ command = {} }}\n\
         [[seats]]\nname = \"seat0\"\ntty = {}\n\
         [shutdown]\ngrace-period = \"2s\"\n",
        argv(&["sleep", "3"]),
        q(&t0.path),
    );
    let s = start("seatrespawn", &config, Opts::default());
    s.expect_log("session 1 created:", TIMEOUT);
    let run = s.ns_path("/run/smss/sessions");
    std::fs::write(run.join("1/marker"), "old").unwrap();
    s.expect_logs(
        &[
            "seat seat0: new session 2".to_string(),
            "smss-session remove (session 1, its keeper)".to_string(),
            "session 2 created:".to_string(),
        ],
        TIMEOUT,
    );
    assert!(!run.join("1").exists(), "session 1's directory is left");
    assert!(run.join("2").is_dir(), "session 2 has no directory");
    assert!(
        !run.join("2/marker").exists(),
        "session 2 got session 1's files"
    );
    let left: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ended-"))
        .collect();
    assert!(left.is_empty(), "left aside: {left:?}");
    s.assert_serving();
}

/// Login managers that fork a daemon (setsid, SIGTERM ignored) and exit at once, so the
/// daemon's fork and the keeper's last reap race: a keeper says `empty` only once nothing of
/// its session is left, so when every session has ended no daemon runs. And it says it after
/// the SIGKILL sweep that ends the daemon: the sessions end then, not KILL_WAIT later with
/// "processes survived SIGKILL" (the keeper used to wait in poll after its sweep, which had
/// taken every SIGCHLD, and said nothing until PID 1 killed it).
#[test]
fn a_daemon_forked_as_its_session_empties_does_not_outlive_it() {
    require_unshare!();
    let s = start(
        "keeperrace",
        "[sessions]\nparallel-session-creation = 8\n[shutdown]\ngrace-period = \"1s\"\n",
        Opts::default(),
    );
    let n = 16;
    for _ in 0..n {
        s.ok(
            "CreateSession",
            json!({"command": ["sh", "-c", "trap '' TERM; setsid sleep 1000 & exit 0"]}),
        );
    }
    let mut ended = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while ended.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let l =
            s.ns().stderr.recv_timeout(left).unwrap_or_else(|_| {
                panic!("sessions {ended:?} ended within {TIMEOUT:?}, not all {n}")
            });
        assert!(
            !l.contains("survived SIGKILL") && !l.contains("its keeper smss-session"),
            "a keeper did not end its session after its sweep: {l}"
        );
        if let Some((id, _)) = l
            .split_once("session ")
            .and_then(|(_, r)| r.split_once(" ended ("))
        {
            ended.insert(id.to_string());
        }
    }
    let left = live_named(&s, "sleep");
    assert!(left.is_empty(), "daemons outlived their sessions: {left:?}");
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// LoadDeferredSubsystem into a keeper's session (no cgroup) many times over, for a command
/// that exits at once: each call answered with a pid, the session stays (the subsystem is not
/// its last process), PID 1 keeps the descriptors it had.
#[test]
fn many_deferred_starts_through_a_keeper_leak_nothing() {
    require_unshare!();
    let s = start("keeperquick", HELD_CONFIG, Opts::default());
    let id = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}))["id"]
        .as_u64()
        .unwrap();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.init))
            .unwrap()
            .count()
    };
    // CreateSession answers before PID 1 starts the first spare; a call after it is served
    // once that is done (PID 1 is one thread).
    s.assert_serving();
    let before = fds();
    for _ in 0..50 {
        let v = s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "quick", "session": id}),
        );
        assert!(v["pid"].as_i64().is_some_and(|p| p > 0), "{v}");
    }
    let deadline = Instant::now() + TIMEOUT;
    while fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fds() <= before, "{} descriptors, {before} before", fds());
    let list = s.sessions();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "active", "{list:?}");
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    s.assert_serving();
}

/// Without cgroup2, `term` signals the keeper's children at once and looks for the rest of
/// the session only later (when a member is reaped, or after a millisecond): a process below
/// a login manager that ignores SIGTERM and stays must still get its SIGTERM at once, not
/// at the end of the grace period.
#[test]
fn a_process_below_a_login_manager_that_ignores_sigterm_gets_sigterm_at_once() {
    require_unshare!();
    let s = start(
        "termbelow",
        "[shutdown]\ngrace-period = \"60s\"\n",
        Opts::default(),
    );
    let fifo = s.dir.join("fifo");
    mkfifo(&fifo);
    // sh's `trap ''` is inherited: env gives the grandchild SIGTERM's default action back.
    let script = format!(
        "trap '' TERM; env --default-signal=TERM sleep 1000 & echo started > {f}; \
         while :; do wait; done",
        f = fifo.display()
    );
    let v = s.ok("CreateSession", json!({"command": ["sh", "-c", script]}));
    let id = v["id"].as_u64().unwrap();
    let leader = v["pids"][0].as_i64().unwrap();
    let mut text = String::new();
    open_fifo(&fifo, false).read_to_string(&mut text).unwrap();
    assert_eq!(text.trim(), "started");
    wait_until("the grandchild started", || {
        live_named(&s, "sleep").len() == 1
    });
    let term = call_in_background(&s, "TerminateSession", json!({ "id": id }));
    let t = Instant::now();
    wait_until("the grandchild gone", || live_named(&s, "sleep").is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the grandchild got its SIGTERM only after {:?}",
        t.elapsed()
    );
    // The login manager ignores SIGTERM: the session is still ending.
    assert!(s.ns_alive(leader));
    assert!(!term.is_finished());
    s.assert_serving();
    // The namespace is killed with `s` (a poweroff would wait out the grace period).
    drop(term);
}

/// A keeper session's end is logged in order though the answer comes first: the member's
/// exit (read in the same batch as the keeper's `empty`), then `ended`.
#[test]
fn a_keeper_sessions_member_exit_is_logged_before_its_end() {
    require_unshare!();
    let s = start("termlog", "", Opts::default());
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let id = v["id"].as_u64().unwrap();
    let pid = pid_of(&v["pids"][0]);
    assert_eq!(
        s.ok("TerminateSession", json!({ "id": id }))["state"],
        "gone"
    );
    let exit = format!("session {id}: sleep (pid {pid}) ");
    let ended = format!("session {id} ended (");
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = s
            .ns()
            .stderr
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {ended:?} line; saw {seen:#?}"));
        if l.contains(&ended) {
            assert!(
                seen.iter().any(|x: &String| x.contains(&exit)),
                "{ended:?} before {exit:?}: {seen:#?}"
            );
            break;
        }
        seen.push(l);
    }
    s.assert_serving();
}
