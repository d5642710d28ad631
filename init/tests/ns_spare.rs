//! Tier 3, adversarial: the spare `smss-session` (started ahead, handed a session's
//! parameters) and session processes held in a forked child of the instance, in the
//! situations a user brings: a spare that dies at the hand-over or is stopped, leaks over many
//! sessions, what a session's processes inherit (descriptors, signal mask, identity), PATH
//! lookups.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use ns_control_common::{start, Opts, Smss};
use serde_json::{json, Value};
use smss::control::wire::{self, Reply};

fn pid_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a pid: {v}"))
}

fn debug_opts() -> Opts<'static> {
    Opts {
        env: &[("SMSS_LOG", "debug")],
        ..Opts::default()
    }
}

/// With a cgroup2 hierarchy of the namespace's own (sessions get cgroups, no keeper).
fn cgroup_opts() -> Opts<'static> {
    Opts {
        cgroup2: true,
        ..debug_opts()
    }
}

/// The host pid of namespace pid `ns_pid` of this smss's PID namespace.
fn host_pid(s: &Smss, ns_pid: i64) -> i32 {
    find_host_pid(s, ns_pid).unwrap_or_else(|| panic!("no host pid for namespace pid {ns_pid}"))
}

/// [`host_pid`], None when no such process is left.
fn find_host_pid(s: &Smss, ns_pid: i64) -> Option<i32> {
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
            return Some(pid);
        }
    }
    None
}

fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// The state letter of host pid `pid` (R, S, T, Z, ...).
fn state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, t)| t.trim_start().chars().next())
        .unwrap_or('?')
}

/// Wait (bounded) until host pid `pid` is in state `want`.
fn wait_state(pid: i32, want: char) {
    let deadline = Instant::now() + TIMEOUT;
    while state(pid) != want {
        assert!(Instant::now() < deadline, "pid {pid} never got to {want}");
        std::thread::yield_now();
    }
}

/// The namespace pid of a spare that runs `smss-session` (smss logs its start at debug).
fn live_spare(s: &Smss) -> i64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let line = s.expect_log("spare smss-session started (pid ", TIMEOUT);
        let pid: i64 = line
            .rsplit("(pid ")
            .next()
            .and_then(|r| r.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
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

/// Once no session is left: the one live `smss-session` of the namespace (the spare), not
/// one of `not` (bounded wait: instances of ended sessions exit by themselves).
fn the_only_instance(s: &Smss, not: &[i64]) -> i64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let live: Vec<i64> = std::fs::read_dir(s.ns_path("/proc"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
            .filter(|p| {
                std::fs::read_to_string(s.ns_path(&format!("/proc/{p}/comm")))
                    .is_ok_and(|c| c.trim() == "smss-session")
                    && s.ns_alive(*p)
                    // Not an ended session's remover (`smss-session remove DIR`, started
                    // after the answer: it may still run when the next spare has not
                    // started yet).
                    && !std::fs::read(s.ns_path(&format!("/proc/{p}/cmdline")))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"remove"))
            })
            .collect();
        if let [one] = live[..] {
            if !not.contains(&one) {
                return one;
            }
        }
        assert!(
            Instant::now() < deadline,
            "smss-session processes: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The descriptors namespace pid `pid` has open, with what they are.
fn fds(s: &Smss, pid: i64) -> Vec<(u32, String)> {
    let dir = s.ns_path(&format!("/proc/{pid}/fd"));
    let mut v: Vec<(u32, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.display().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// A line of namespace pid `pid`'s /proc status (`Uid`, `SigBlk`, ...), its value.
fn status(s: &Smss, pid: i64, key: &str) -> String {
    let text = std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/status"))).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// Descriptors above 2 this test process has (inherited from whoever ran the tests, they
/// reach smss too: not smss's to close).
fn foreign_fds() -> BTreeSet<(u32, String)> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (n > 2).then(|| (n, target.display().to_string()))
        })
        .collect()
}

/// Wait (bounded) until `sleep` at namespace pid `pid` is in its sleep: its start-up (the
/// dynamic loader, the locale files it opens and closes) is done. CreateSession answers at
/// the exec, so the program may still be starting when the answer comes.
fn wait_asleep(s: &Smss, pid: i64, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // The first field of /proc/PID/syscall is the call it is blocked in: nanosleep (35)
        // or clock_nanosleep (230) on x86-64.
        let call =
            std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/syscall"))).unwrap_or_default();
        if matches!(call.split_whitespace().next(), Some("35" | "230")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) never got to its sleep: {call:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a session process may inherit: stdio only, an empty mask, nothing ignored. Looked
/// at once it sleeps (see [`wait_asleep`]): what it opens itself while it starts is not
/// inherited.
fn assert_clean(s: &Smss, pid: i64, what: &str) {
    wait_asleep(s, pid, what);
    let foreign = foreign_fds();
    let open: Vec<(u32, String)> = fds(s, pid)
        .into_iter()
        .filter(|f| !foreign.contains(f))
        .collect();
    let numbers: BTreeSet<u32> = open.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        BTreeSet::from([0, 1, 2]),
        "{what} (pid {pid}) inherited descriptors: {open:?}"
    );
    assert_eq!(status(s, pid, "SigBlk"), "0000000000000000", "{what}");
    assert_eq!(status(s, pid, "SigIgn"), "0000000000000000", "{what}");
}

/// The session's command is exec'd once CreateSession answers (the instance waits for the
/// exec's outcome): what it runs with is what it was given.
#[test]
fn session_processes_get_only_stdio_an_empty_mask_and_no_ignored_signal() {
    session_processes_get_only_stdio_an_empty_mask_and_no_ignored_signal_in("clean", debug_opts());
}

#[test]
fn session_processes_get_only_stdio_an_empty_mask_and_no_ignored_signal_with_a_cgroup() {
    session_processes_get_only_stdio_an_empty_mask_and_no_ignored_signal_in(
        "clean-cg",
        cgroup_opts(),
    );
}

fn session_processes_get_only_stdio_an_empty_mask_and_no_ignored_signal_in(name: &str, opts: Opts) {
    require_unshare!();
    let config = "[subsystems]\noptional = [\"posix\"]\n\
         posix = { command = [\"sleep\", \"1001\"] }\n\
         early = { command = [\"sleep\", \"1002\"] }\n\
         [sessions]\nsession-subsystems = [\"early\"]\n[shutdown]\ngrace-period = \"2s\"\n";
    let s = start(name, config, opts);
    // Cold (the first: its own instance), then warm (handed to the spare).
    let cold = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let warm = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.expect_log(
        &format!(
            "session {}: handed to the spare smss-session (pid {spare})",
            warm["id"]
        ),
        TIMEOUT,
    );
    for (v, what) in [(&cold, "cold"), (&warm, "warm")] {
        let pids = v["pids"].as_array().unwrap();
        assert_eq!(pids.len(), 2, "{v}");
        assert_clean(&s, pid_of(&pids[0]), &format!("{what} session subsystem"));
        assert_clean(&s, pid_of(&pids[1]), &format!("{what} login manager"));
    }
    // Started later by the session's keeper (no cgroup here).
    let inner = pid_of(
        &s.ok(
            "LoadDeferredSubsystem",
            json!({"name": "posix", "session": warm["id"]}),
        )["pid"],
    );
    let deadline = Instant::now() + TIMEOUT;
    while std::fs::read_to_string(s.ns_path(&format!("/proc/{inner}/comm")))
        .map_or(true, |c| c.trim() != "sleep")
    {
        assert!(
            Instant::now() < deadline,
            "the deferred subsystem never exec'd"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_clean(&s, inner, "deferred subsystem in a session");
    s.assert_serving();
}

/// Nothing of PID 1's grows with the number of sessions: its descriptors, its children
/// (spares and instances are reaped), its zombies.
#[test]
fn two_hundred_sessions_leak_no_descriptor_and_no_process() {
    two_hundred_sessions_leak_no_descriptor_and_no_process_in("leaks", debug_opts());
}

#[test]
fn two_hundred_sessions_leak_no_descriptor_and_no_process_with_a_cgroup() {
    two_hundred_sessions_leak_no_descriptor_and_no_process_in("leaks-cg", cgroup_opts());
}

fn two_hundred_sessions_leak_no_descriptor_and_no_process_in(name: &str, opts: Opts) {
    require_unshare!();
    let s = start(name, "[shutdown]\ngrace-period = \"2s\"\n", opts);
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let spare = live_spare(&s);
    let pid1_fds = |s: &Smss| fds(s, 1);
    let before = pid1_fds(&s);
    let c = s.client();
    let mut c = c;
    for _ in 0..200 {
        let v = match c
            .call(
                "io.smss.Manager.CreateSession",
                json!({"command": ["sleep", "1000"]}),
            )
            .unwrap()
        {
            Reply::Ok(v) => v,
            other => panic!("{other:?}"),
        };
        match c
            .call("io.smss.Manager.TerminateSession", json!({ "id": v["id"] }))
            .unwrap()
        {
            Reply::Ok(t) => assert_eq!(t["state"], "gone", "{t}"),
            other => panic!("{other:?}"),
        }
    }
    drop(c);
    // The processes of the namespace settle to PID 1 and one spare (no zombie, no stray
    // instance); bounded.
    let procs = |s: &Smss| -> Vec<(i64, String)> {
        std::fs::read_dir(s.ns_path("/proc"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
            .filter_map(|p| {
                let st = std::fs::read_to_string(s.ns_path(&format!("/proc/{p}/stat"))).ok()?;
                Some((p, st))
            })
            .collect()
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now = procs(&s);
        if now.len() == 2 {
            assert!(
                now.iter().all(|(_, st)| !st.contains(") Z")),
                "zombies: {now:?}"
            );
            assert!(now.iter().any(|(p, _)| *p == 1));
            assert!(now.iter().all(|(p, _)| *p == 1 || s.ns_alive(*p)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after 200 sessions: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client connection of before may still be open until PID 1's next wake-up sees its
    // end: wait (bounded) for the count to come back down.
    let deadline = Instant::now() + TIMEOUT;
    let mut after = pid1_fds(&s);
    while after.len() > before.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = pid1_fds(&s);
    }
    // No more descriptors (the spare's socket is a different one by now; a client
    // connection of before may be closed since).
    assert!(
        after.len() <= before.len(),
        "PID 1's descriptors before: {before:?}\nafter: {after:?} (first spare {spare})"
    );
    s.assert_serving();
}

/// Read one varlink reply (NUL-terminated) from a raw connection.
fn read_reply(c: &mut UnixStream) -> Reply {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = c.read(&mut b).expect("read a reply");
        assert_eq!(n, 1, "connection closed after {buf:?}");
        if b[0] == 0 {
            return wire::parse_reply(&buf).unwrap();
        }
        buf.push(b[0]);
    }
}

/// Hold host pid `pid` (traced by this thread) at the entry of its next epoll_wait: what
/// is ready by then is what that epoll_wait returns, all in one wake-up.
fn stop_at_epoll_wait(pid: i32) {
    let waitstop = || {
        let mut st = 0;
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
        assert!(libc::WIFSTOPPED(st), "pid {pid} did not stop: {st:#x}");
    };
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            0,
            libc::PTRACE_O_TRACESYSGOOD as libc::c_long,
        )
    };
    assert_eq!(r, 0, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
    assert_eq!(
        unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0) },
        0
    );
    waitstop();
    // Syscall stops alternate entry, exit; the interrupt left us outside any.
    let mut entry = true;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no epoll_wait");
        assert_eq!(unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, 0) }, 0);
        waitstop();
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs) },
            0
        );
        let nr = regs.orig_rax as i64;
        if entry
            && (nr == libc::SYS_epoll_wait
                || nr == libc::SYS_epoll_pwait
                || nr == libc::SYS_epoll_pwait2)
        {
            return;
        }
        entry = !entry;
    }
}

/// A spare that is dead (a zombie not reaped yet) when PID 1 hands it a request: the write
/// fails (EPIPE), PID 1 survives it (and its own SIGPIPE), and the request goes to a fresh
/// instance and is answered once. PID 1 is held (ptrace) at the entry of its epoll_wait while
/// the request arrives and the spare dies, so both come in one wake-up, whose reaping runs
/// after the call is handled.
#[test]
fn a_spare_dead_at_the_hand_over_leaves_the_request_to_a_fresh_instance() {
    require_unshare!();
    let s = start(
        "handover",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    let first = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&wire::encode_call(
        "io.smss.Manager.GetStatus",
        json!({}),
        false,
    ))
    .unwrap();
    assert!(matches!(read_reply(&mut c), Reply::Ok(_)));
    let init = s.init;
    let spare_host = host_pid(&s, spare);
    // The tracer must be one thread throughout: this one, until the detach.
    stop_at_epoll_wait(init);
    c.write_all(&wire::encode_call(
        "io.smss.Manager.CreateSession",
        json!({"command": ["sleep", "1000"]}),
        false,
    ))
    .unwrap();
    kill(spare_host, nix::sys::signal::Signal::SIGKILL);
    wait_state(spare_host, 'Z');
    assert_eq!(unsafe { libc::ptrace(libc::PTRACE_DETACH, init, 0, 0) }, 0);
    let v = match read_reply(&mut c) {
        Reply::Ok(v) => v,
        other => panic!("the request was lost with the spare: {other:?}"),
    };
    s.expect_log(
        &format!("failed to hand it to the spare smss-session (pid {spare})"),
        TIMEOUT,
    );
    assert_ne!(v["id"], first["id"]);
    assert!(s.ns_alive(pid_of(&v["pids"][0])), "{v}");
    // Answered once: the next reply on the connection is the next call's.
    c.write_all(&wire::encode_call(
        "io.smss.Manager.GetStatus",
        json!({}),
        false,
    ))
    .unwrap();
    match read_reply(&mut c) {
        Reply::Ok(st) => assert!(st.get("mode").is_some(), "a second reply: {st}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sessions().len(), 2, "{:?}", s.sessions());
    // And sessions go on being handed to spares.
    let next = live_spare(&s);
    let w = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.expect_log(
        &format!(
            "session {}: handed to the spare smss-session (pid {next})",
            w["id"]
        ),
        TIMEOUT,
    );
}

/// A stopped spare (SIGSTOP) handed a request: the request fails by the instance deadline
/// instead of holding the client forever, and the next one is created.
#[test]
fn a_request_handed_to_a_stopped_spare_fails_by_the_instance_deadline() {
    require_unshare!();
    let s = start(
        "stoppedspare",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let host = host_pid(&s, spare);
    kill(host, nix::sys::signal::Signal::SIGSTOP);
    wait_state(host, 'T');
    let mut c = smss::control::client::Client::connect(&s.socket).unwrap();
    c.set_timeout(Some(Duration::from_secs(90))).unwrap();
    let t = Instant::now();
    let r = c
        .call(
            "io.smss.Manager.CreateSession",
            json!({"command": ["sleep", "1000"]}),
        )
        .unwrap();
    match r {
        Reply::Error { error, parameters } => {
            assert_eq!(error, "io.smss.Manager.Failed");
            assert!(
                parameters["reason"]
                    .as_str()
                    .unwrap()
                    .contains("did not report within"),
                "{parameters}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    // Killed (SIGKILL reaches a stopped process; its death is not synchronous with the reply).
    let deadline = Instant::now() + TIMEOUT;
    while s.ns_alive(spare) {
        assert!(
            Instant::now() < deadline,
            "the stopped instance was left alive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    assert!(s.ns_alive(pid_of(&v["pids"][0])));
    s.assert_serving();
}

/// A stop while a request sits in a stopped spare: the request is answered (failed) and the
/// stop ends within its grace period, not the instance's 30 s.
#[test]
fn a_stop_with_a_request_in_a_stopped_spare_answers_it_and_ends_in_time() {
    require_unshare!();
    let s = start(
        "stopspare",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let host = host_pid(&s, spare);
    kill(host, nix::sys::signal::Signal::SIGSTOP);
    wait_state(host, 'T');
    let socket = s.socket.clone();
    let creator = std::thread::spawn(move || {
        let mut c = smss::control::client::Client::connect(&socket).unwrap();
        c.set_timeout(Some(Duration::from_secs(90))).unwrap();
        c.call(
            "io.smss.Manager.CreateSession",
            json!({"command": ["sleep", "1000"]}),
        )
    });
    s.expect_log(
        &format!("handed to the spare smss-session (pid {spare})"),
        TIMEOUT,
    );
    let t = Instant::now();
    let out = s.poweroff();
    assert!(t.elapsed() < Duration::from_secs(20), "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    match creator.join().unwrap() {
        Ok(Reply::Error { .. }) | Err(_) => {}
        Ok(other) => panic!("created during the stop: {other:?}"),
    }
}

/// A script without `#!` cannot be exec'd (ENOEXEC): the creation fails and says so, it is
/// not left waiting. A file in PATH that is not executable is skipped, as execvp does.
#[test]
fn path_lookups_skip_what_cannot_run_and_report_what_fails() {
    require_unshare!();
    let s = start(
        "pathlookup",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    let a = s.ns_path("/run/a");
    let b = s.ns_path("/run/b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let put = |p: std::path::PathBuf, text: &str, mode: u32| {
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    put(a.join("revtool"), "#!/bin/sh\nexit 3\n", 0o644);
    put(b.join("revtool"), "#!/bin/sh\nexec sleep 1000\n", 0o755);
    put(a.join("noshebang"), "exec sleep 1000\n", 0o755);
    for round in 0..2 {
        let v = s.ok(
            "CreateSession",
            json!({"command": ["revtool"], "environment": ["PATH=/run/a:/run/b:/usr/bin:/bin"]}),
        );
        // Exec'd /run/b's (/run/a's cannot run: EACCES would have failed the creation).
        assert!(s.ns_alive(pid_of(&v["pids"][0])), "round {round}: {v}");
        let p = s.err(
            "CreateSession",
            json!({"command": ["noshebang"], "environment": ["PATH=/run/a:/usr/bin:/bin"]}),
            "io.smss.Manager.Failed",
        );
        assert!(
            p["reason"]
                .as_str()
                .unwrap()
                .contains("failed to execute noshebang: ENOEXEC"),
            "round {round}: {p}"
        );
    }
    s.assert_serving();
}

/// A user of our own in the namespace (its /etc/passwd and /etc/group bind-mounted over):
/// `rev` (4242), primary group 4242, also a member of `extra` (4243), home /run/home-rev.
fn with_test_user(s: &Smss) {
    let passwd = s.dir.join("passwd");
    let group = s.dir.join("group");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\nrev:x:4242:4242::/run/home-rev:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(
        &group,
        "root:x:0:\nrev:x:4242:\nextra:x:4243:someone,rev\nother:x:4244:someone\n\
         nogroup:x:65534:\n",
    )
    .unwrap();
    let mount = |args: &[&str]| {
        let o = std::process::Command::new("timeout")
            .args(["20", "nsenter", "-t", &s.init.to_string(), "-m"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    mount(&["mount", "--bind", passwd.to_str().unwrap(), "/etc/passwd"]);
    mount(&["mount", "--bind", group.to_str().unwrap(), "/etc/group"]);
    let home = s.ns_path("/run/home-rev");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(4242), Some(4242)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A user's session process runs with the user's uid, gid and supplementary groups, in the
/// user's home (cold and warm alike).
#[test]
fn a_user_session_gets_its_ids_groups_and_home() {
    require_unshare!();
    let s = start(
        "usergroups",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    with_test_user(&s);
    for round in ["cold", "warm"] {
        let v = s.ok(
            "CreateSession",
            json!({"user": "rev", "command": ["sleep", "1000"]}),
        );
        let pid = pid_of(&v["pids"][0]);
        assert_eq!(status(&s, pid, "Uid"), "4242\t4242\t4242\t4242", "{round}");
        assert_eq!(status(&s, pid, "Gid"), "4242\t4242\t4242\t4242", "{round}");
        let groups: BTreeSet<String> = status(&s, pid, "Groups")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(
            groups,
            BTreeSet::from(["4242".to_string(), "4243".to_string()]),
            "{round}"
        );
        let cwd = std::fs::read_link(s.ns_path(&format!("/proc/{pid}/cwd"))).unwrap();
        assert!(cwd.ends_with("run/home-rev"), "{round}: {}", cwd.display());
        assert_clean(&s, pid, round);
    }
    s.assert_serving();
}

/// A program in PATH that root may run but the session's user may not (0700 root) is passed
/// over for the next one the user can run, as execvp running as the user does (the lookup
/// is made as root, before the change of identity).
#[test]
fn a_user_session_skips_a_program_in_path_only_root_can_run() {
    require_unshare!();
    let s = start(
        "userpath",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    with_test_user(&s);
    use std::os::unix::fs::PermissionsExt;
    for (dir, text, mode) in [
        ("/run/c", "#!/bin/sh\nexit 3\n", 0o700),
        ("/run/d", "#!/bin/sh\nexec sleep 1000\n", 0o755),
    ] {
        let d = s.ns_path(dir);
        std::fs::create_dir(&d).unwrap();
        let p = d.join("revtool");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for round in ["cold", "warm"] {
        let v = s.ok(
            "CreateSession",
            json!({"user": "rev", "command": ["revtool"],
                   "environment": ["PATH=/run/c:/run/d:/usr/bin:/bin"]}),
        );
        assert!(s.ns_alive(pid_of(&v["pids"][0])), "{round}: {v}");
    }
    // Where the user can run none, the creation fails with the first refusal.
    let p = s.err(
        "CreateSession",
        json!({"user": "rev", "command": ["revtool"],
               "environment": ["PATH=/run/c:/usr/bin:/bin"]}),
        "io.smss.Manager.Failed",
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("failed to execute revtool: EACCES"),
        "{p}"
    );
    s.assert_serving();
}

/// max-sessions counts sessions, not the spare: at the limit the spare waits, and the
/// session that comes once one ended is handed to it.
#[test]
fn at_max_sessions_the_spare_waits_and_takes_the_next_session() {
    require_unshare!();
    let s = start(
        "sparemax",
        "[sessions]\nmax-sessions = 1\n[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let p = s.err(
        "CreateSession",
        json!({"command": ["sleep", "1000"]}),
        "io.smss.Manager.LimitReached",
    );
    assert_eq!(p, json!({"limit": "max-sessions", "value": 1}));
    assert!(s.ns_alive(spare));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let w = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.expect_log(
        &format!(
            "session {}: handed to the spare smss-session (pid {spare})",
            w["id"]
        ),
        TIMEOUT,
    );
    assert_eq!(s.sessions().len(), 1);
}

/// A stopped spare (SIGSTOP, never handed anything) does not hold up a stop with a long
/// grace period: the stop's SIGCONT and SIGTERM (or EOF) end it.
#[test]
fn a_stopped_spare_does_not_hold_up_the_stop() {
    require_unshare!();
    let s = start(
        "stoppedidle",
        "[shutdown]\ngrace-period = \"30s\"\n",
        debug_opts(),
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let spare = live_spare(&s);
    let host = host_pid(&s, spare);
    kill(host, nix::sys::signal::Signal::SIGSTOP);
    wait_state(host, 'T');
    let t = Instant::now();
    let out = s.poweroff();
    assert!(t.elapsed() < Duration::from_secs(15), "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// A relative PATH directory is the user's (execvp after the change to the home directory
/// found it there): `bin` in PATH finds ~/bin/revtool.
#[test]
fn a_user_sessions_relative_path_directory_is_in_its_home() {
    require_unshare!();
    let s = start(
        "relpath",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    with_test_user(&s);
    use std::os::unix::fs::PermissionsExt;
    let bin = s.ns_path("/run/home-rev/bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("revtool"), "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(bin.join("revtool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for round in ["cold", "warm"] {
        let v = s.ok(
            "CreateSession",
            json!({"user": "rev", "command": ["revtool"],
                   "environment": ["PATH=bin:/usr/bin:/bin"]}),
        );
        assert!(s.ns_alive(pid_of(&v["pids"][0])), "{round}: {v}");
    }
    s.assert_serving();
}

/// The failure paths leak nothing either: creations that fail before the fork (no such
/// program), after it (ENOEXEC), and spares killed untaken. Every failed creation is
/// answered: none keeps a creation slot (parallel-session-creation, 4 by default) once its
/// session has ended.
#[test]
fn failed_creations_and_killed_spares_leak_no_descriptor_and_no_process() {
    failed_creations_and_killed_spares_leak_no_descriptor_and_no_process_in(
        "failleaks",
        debug_opts(),
    );
}

#[test]
fn failed_creations_and_killed_spares_leak_no_descriptor_and_no_process_with_a_cgroup() {
    failed_creations_and_killed_spares_leak_no_descriptor_and_no_process_in(
        "failleaks-cg",
        cgroup_opts(),
    );
}

fn failed_creations_and_killed_spares_leak_no_descriptor_and_no_process_in(name: &str, opts: Opts) {
    require_unshare!();
    let s = start(name, "[shutdown]\ngrace-period = \"2s\"\n", opts);
    let noexec = s.ns_path("/run/noshebang");
    std::fs::write(&noexec, "exec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    the_only_instance(&s, &[]);
    let before = fds(&s, 1);
    let mut c = s.client();
    for i in 0..100 {
        let command = if i % 2 == 0 {
            json!(["no-such-program-here"])
        } else {
            json!(["/run/noshebang"])
        };
        let r = c.call(
            "io.smss.Manager.CreateSession",
            json!({ "command": command }),
        );
        // Unanswered: the creation slots were used up (a failed session ended before its
        // instance's exit was reaped, and the slot went with it).
        match r.unwrap_or_else(|e| panic!("call {i} not answered: {e:?}")) {
            Reply::Error { error, .. } => assert_eq!(error, "io.smss.Manager.Failed"),
            other => panic!("{other:?}"),
        }
    }
    drop(c);
    // Spares killed untaken: replaced three times in a row, then a creation (answered by an
    // instance of its own) starts one again.
    let mut killed = Vec::new();
    while killed.len() < 3 {
        let spare = the_only_instance(&s, &killed);
        // The only one seen may be the last failed creation's instance on its way out (gone
        // before the next spare started): look again.
        let Some(host) = find_host_pid(&s, spare) else {
            continue;
        };
        kill(host, nix::sys::signal::Signal::SIGKILL);
        s.expect_log(&format!("spare smss-session (pid {spare}) killed"), TIMEOUT);
        killed.push(spare);
    }
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    the_only_instance(&s, &killed);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = std::fs::read_dir(s.ns_path("/proc"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<i64>().is_ok())
            })
            .count();
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} processes left");
        std::thread::sleep(Duration::from_millis(20));
    }
    // As above: a client connection may still be open until PID 1's next wake-up.
    let deadline = Instant::now() + TIMEOUT;
    let mut after = fds(&s, 1);
    while after.len() > before.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = fds(&s, 1);
    }
    assert!(
        after.len() <= before.len(),
        "PID 1's descriptors before: {before:?}\nafter: {after:?}"
    );
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());
    s.assert_serving();
}

/// Eight clients at once, four creation slots: every request answered once with a session
/// of its own (spares taken and started under contention), and all of it gone afterwards.
/// A request near the parameters' size limit is handed over whole.
#[test]
fn concurrent_and_large_creations_are_each_answered_once() {
    require_unshare!();
    let s = start(
        "concurrent",
        "[sessions]\nparallel-session-creation = 4\n[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    the_only_instance(&s, &[]);
    // ~60 kB of environment (MAX_PARAMS is 64 kB): a warm hand-over of one write.
    let big: Vec<String> = (0..60)
        .map(|i| format!("BIG{i}={}", "x".repeat(1000)))
        .collect();
    let v = s.ok(
        "CreateSession",
        json!({"command": ["sh", "-c", "[ ${#BIG59} = 1000 ] && exec sleep 1000"],
               "environment": big}),
    );
    let pid = pid_of(&v["pids"][0]);
    let deadline = Instant::now() + TIMEOUT;
    while std::fs::read_to_string(s.ns_path(&format!("/proc/{pid}/comm")))
        .is_ok_and(|c| c.trim() != "sleep")
    {
        assert!(
            Instant::now() < deadline,
            "the big session's check never passed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        s.ns_alive(pid),
        "the big session's environment was cut: {v}"
    );
    s.ok("TerminateSession", json!({ "id": v["id"] }));
    let socket = s.socket.clone();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = smss::control::client::Client::connect(&socket).unwrap();
                c.set_timeout(Some(TIMEOUT)).unwrap();
                let mut ids = Vec::new();
                for _ in 0..5 {
                    match c
                        .call(
                            "io.smss.Manager.CreateSession",
                            json!({"command": ["sleep", "1000"]}),
                        )
                        .unwrap()
                    {
                        Reply::Ok(v) => ids.push(v["id"].as_u64().unwrap()),
                        other => panic!("{other:?}"),
                    }
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an id answered twice");
    assert_eq!(n, 40);
    let list = s.sessions();
    assert_eq!(list.len(), 40, "{list:?}");
    assert!(list.iter().all(|v| v["state"] == "active"), "{list:?}");
    let mut c = s.client();
    for id in ids {
        match c
            .call("io.smss.Manager.TerminateSession", json!({ "id": id }))
            .unwrap()
        {
            Reply::Ok(t) => assert_eq!(t["state"], "gone", "{t}"),
            other => panic!("{other:?}"),
        }
    }
    the_only_instance(&s, &[]);
    s.assert_serving();
}

/// A spare killed after it was handed a request but before it read it: the request fails
/// cleanly (answered once), its session ends, and the next creation works.
#[test]
fn a_spare_killed_after_the_hand_over_fails_the_request_cleanly() {
    require_unshare!();
    let s = start(
        "killtaken",
        "[shutdown]\ngrace-period = \"2s\"\n",
        debug_opts(),
    );
    s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    let spare = live_spare(&s);
    let host = host_pid(&s, spare);
    kill(host, nix::sys::signal::Signal::SIGSTOP);
    wait_state(host, 'T');
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&wire::encode_call(
        "io.smss.Manager.CreateSession",
        json!({"command": ["sleep", "1000"]}),
        false,
    ))
    .unwrap();
    let l = s.expect_log(
        &format!("handed to the spare smss-session (pid {spare})"),
        TIMEOUT,
    );
    let id: u64 = l
        .split("session ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{l}"));
    kill(host, nix::sys::signal::Signal::SIGKILL);
    match read_reply(&mut c) {
        Reply::Error { error, parameters } => {
            assert_eq!(error, "io.smss.Manager.Failed", "{parameters}")
        }
        other => panic!("created by a dead instance: {other:?}"),
    }
    s.expect_log(&format!("session {id} ended"), TIMEOUT);
    c.write_all(&wire::encode_call(
        "io.smss.Manager.GetStatus",
        json!({}),
        false,
    ))
    .unwrap();
    match read_reply(&mut c) {
        Reply::Ok(st) => assert!(st.get("mode").is_some(), "a second reply: {st}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.sessions().len(), 1, "{:?}", s.sessions());
    let v = s.ok("CreateSession", json!({"command": ["sleep", "1000"]}));
    assert!(s.ns_alive(pid_of(&v["pids"][0])));
}

/// An instance whose report PID 1 reads only when it reaps it (the report and the exit came
/// while PID 1 was busy with something else, so the reaper saw the exit first) still counts
/// as an answer: sessions are in use, and the first spare starts. PID 1 is held (ptrace) at
/// the return of an epoll_wait that brought only a control call, while the instance reports
/// and exits.
#[test]
fn a_report_read_at_the_instances_exit_still_starts_the_spare() {
    require_unshare!();
    let config = "[subsystems]\nearly = { command = [\"sh\", \"-c\", \"cat @DIR@/go >/dev/null; \
         @SMCTL@ notify READY=1; exec sleep 1000\"], ready = \"notify\", \
         ready-timeout = \"60s\" }\n\
         [sessions]\nsession-subsystems = [\"early\"]\n[shutdown]\ngrace-period = \"2s\"\n";
    // With a cgroup: the instance exits after its report (without, it stays as the keeper).
    let s = start("exitreport", config, cgroup_opts());
    let go = s.dir.join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(&wire::encode_call(
        "io.smss.Manager.GetStatus",
        json!({}),
        false,
    ))
    .unwrap();
    assert!(matches!(read_reply(&mut c), Reply::Ok(_)));
    let socket = s.socket.clone();
    let creator = std::thread::spawn(move || {
        let mut c = smss::control::client::Client::connect(&socket).unwrap();
        c.set_timeout(Some(Duration::from_secs(90))).unwrap();
        c.call(
            "io.smss.Manager.CreateSession",
            json!({"command": ["sleep", "1000"]}),
        )
    });
    let l = s.expect_log("session 1: smss-session started (pid ", TIMEOUT);
    let instance: i64 = l
        .rsplit("(pid ")
        .next()
        .and_then(|r| r.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("{l}"));
    let instance_host = host_pid(&s, instance);
    s.expect_log("session 1: subsystem early started", TIMEOUT);
    let init = s.init;
    stop_at_epoll_wait(init);
    c.write_all(&wire::encode_call(
        "io.smss.Manager.GetStatus",
        json!({}),
        false,
    ))
    .unwrap();
    // On to the return of that epoll_wait (with the call in its events).
    loop {
        assert_eq!(unsafe { libc::ptrace(libc::PTRACE_SYSCALL, init, 0, 0) }, 0);
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(init, &mut st, libc::__WALL) }, init);
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::ptrace(libc::PTRACE_GETREGS, init, 0, &mut regs) },
            0
        );
        if (regs.rax as i64) > 0 {
            break;
        }
        // Woken with nothing (a timer): on to the next epoll_wait.
        assert_eq!(unsafe { libc::ptrace(libc::PTRACE_DETACH, init, 0, 0) }, 0);
        stop_at_epoll_wait(init);
    }
    // The instance finishes while PID 1 is held: report, then exit (a zombie until reaped).
    let g = go.clone();
    common::bounded(move || std::fs::write(g, "go\n").unwrap());
    wait_state(instance_host, 'Z');
    assert_eq!(unsafe { libc::ptrace(libc::PTRACE_DETACH, init, 0, 0) }, 0);
    assert!(matches!(read_reply(&mut c), Reply::Ok(_)));
    match creator.join().unwrap() {
        Ok(Reply::Ok(v)) => assert_eq!(v["id"], 1, "{v}"),
        other => panic!("{other:?}"),
    }
    s.expect_log("spare smss-session started (pid ", TIMEOUT);
}
