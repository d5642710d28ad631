//! Tier 3: the control socket of a real smss (PID 1 of a fresh PID + mount namespace) — an
//! independent varlink client, SO_PEERCRED authorisation with real uids, and hostile input:
//! malformed, oversized, unknown, mistyped, never-reading and 500 simultaneous clients. After
//! each, GetStatus must still work.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::Duration;

use common::TIMEOUT;
use ns_control_common::{start, Opts, Smss};
use serde_json::{json, Value};

const CONFIG: &str = "[sessions]\nmax-sessions = 8\n[shutdown]\ngrace-period = \"2s\"\n";

fn raw(s: &Smss) -> UnixStream {
    let c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c
}

/// The next NUL-terminated message, parsed; None at EOF (or a reset).
fn read_msg(c: &mut UnixStream) -> Option<Value> {
    let mut msg = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match c.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(_) if b[0] == 0 => {
                return Some(serde_json::from_slice(&msg).expect("reply is JSON"))
            }
            Ok(_) => msg.push(b[0]),
        }
    }
}

fn send(c: &mut UnixStream, v: Value) {
    let mut m = serde_json::to_vec(&v).unwrap();
    m.push(0);
    c.write_all(&m).unwrap();
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[test]
fn python_varlink_client_creates_lists_and_terminates() {
    require_unshare!();
    // The client lives in the project's virtualenv (scripts/install-deps.sh test makes it with
    // Debian's own python3, which refuses a system-wide pip install).
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/venv/bin/python3");
    let have = Command::new(python)
        .args(["-c", "import varlink"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        if std::env::var_os("SMSS_ALLOW_SKIP").is_some() {
            eprintln!("SKIPPED: no varlink client in target/venv (scripts/install-deps.sh test)");
            return;
        }
        panic!("no python varlink client in target/venv: scripts/install-deps.sh test makes it");
    }
    let s = start("python", CONFIG, Opts::default());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/varlink_client.py");
    let marker = s.dir.join("marker");
    let o = Command::new("timeout")
        .args(["30", python, script])
        .arg(&s.socket)
        .arg(&marker)
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("OK"),
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    s.assert_serving();
}

/// Run smctl as uid/gid 65534 (nobody), with the given extra setpriv options. The copy in
/// the test's 0755 directory: the build tree may be where nobody cannot reach (under /root).
fn smctl_as_nobody(s: &Smss, setpriv: &[&str], args: &[&str]) -> std::process::Output {
    let smctl = s.dir.join("smctl");
    if !smctl.exists() {
        std::fs::copy(common::smctl(), &smctl).unwrap();
    }
    let mut c = Command::new("timeout");
    c.args(["20", "setpriv", "--reuid=65534"]);
    c.args(setpriv);
    c.args([
        "--",
        smctl.to_str().unwrap(),
        "--socket",
        s.socket.to_str().unwrap(),
    ]);
    c.args(args);
    c.output().unwrap()
}

#[test]
fn unprivileged_peers_may_only_read_and_the_allowed_group_may_act() {
    require_unshare!();
    let opts = Opts {
        allowed_group: Some("users"),
        ..Default::default()
    };
    let s = start("perm", CONFIG, opts);
    let nobody = ["--regid=65534", "--clear-groups"];
    // Reading is for everyone.
    let o = smctl_as_nobody(&s, &nobody, &["status", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let o = smctl_as_nobody(&s, &nobody, &["session", "list"]);
    assert!(o.status.success(), "{o:?}");
    // Acting is not.
    let o = smctl_as_nobody(&s, &nobody, &["subsystem", "start", "x"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied"),
        "{o:?}"
    );
    let o = smctl_as_nobody(
        &s,
        &nobody,
        &["call", "io.smss.Manager.Shutdown", r#"{"action":"halt"}"#],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["error"], "io.smss.Manager.PermissionDenied", "{out}");
    assert_eq!(out["parameters"]["uid"], 65534, "{out}");
    for args in [
        &["session", "create", "--", "true"][..],
        &["session", "terminate", "1"],
        &["rename", "/a", "/b"],
        &["reboot"],
    ] {
        let o = smctl_as_nobody(&s, &nobody, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("permission denied"),
            "{o:?}"
        );
    }
    // Membership of the allowed group, as a supplementary or as the primary group, is
    // enough: the call gets past authorisation (and fails on its merits).
    let users = nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("a group named users")
        .gid;
    let (supplementary, primary) = (format!("--groups={users}"), format!("--regid={users}"));
    for opts in [
        &["--regid=65534", supplementary.as_str()][..],
        &[primary.as_str(), "--clear-groups"],
    ] {
        let o = smctl_as_nobody(&s, opts, &["subsystem", "start", "nosuch"]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no optional subsystem nosuch"),
            "{opts:?}: {err}"
        );
    }
    s.assert_serving();
}

/// A connection as uid/gid 65534 without supplementary groups. SO_PEERCRED records the
/// connecting *thread's* credentials, and the raw syscalls change only the calling thread's
/// (setuid(3) would change the whole test process): a scratch thread drops them, connects
/// and ends.
fn connect_as_nobody(socket: &std::path::Path) -> UnixStream {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials.
        unsafe {
            let none = std::ptr::null::<libc::gid_t>();
            assert_eq!(libc::syscall(libc::SYS_setgroups, 0, none), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
        UnixStream::connect(&socket).unwrap()
    })
    .join()
    .unwrap()
}

/// Anyone may connect: a peer that floods privileged oneway calls (which get no reply to
/// slow it down) costs one log line, and its connection is closed after a few.
#[test]
fn a_flood_of_denied_calls_logs_once_and_is_cut_off() {
    require_unshare!();
    let s = start("flood", CONFIG, Opts::default());
    let mut c = connect_as_nobody(&s.socket);
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let call = b"{\"method\":\"io.smss.Manager.TerminateSession\",\"parameters\":{\"id\":1},\"oneway\":true}\0";
    for _ in 0..50 {
        // Fails (EPIPE) once smss has closed the connection.
        if c.write_all(call).is_err() {
            break;
        }
    }
    // Closed, not merely quiet: the read ends instead of timing out.
    let mut rest = Vec::new();
    match c.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let mut denied = 0;
    loop {
        let line = s
            .ns()
            .stderr
            .recv_timeout(TIMEOUT)
            .expect("no 'closing' log line");
        if line.contains("denied to uid 65534") {
            denied += 1;
        }
        if line.contains("closing uid 65534") {
            assert!(line.contains("after 8 denied calls"), "{line}");
            break;
        }
    }
    assert_eq!(denied, 1, "one info line per connection");
    s.assert_serving();
}

#[test]
fn malformed_messages_get_an_error_and_a_closed_connection() {
    require_unshare!();
    let s = start("malformed", CONFIG, Opts::default());
    for bad in [
        &b"{not json"[..],
        b"[1,2,3]",
        b"\"a string\"",
        b"{}",
        b"{\"method\": 42}",
        b"{\"method\": \"io.smss.Manager.GetStatus\", \"parameters\": [1]}",
        b"\xff\xfe\xfd",
    ] {
        let mut c = raw(&s);
        c.write_all(bad).unwrap();
        c.write_all(b"\0").unwrap();
        let reply = read_msg(&mut c).expect("an error reply");
        assert_eq!(
            error_of(&reply),
            "org.varlink.service.InvalidParameter",
            "{reply}"
        );
        assert!(
            read_msg(&mut c).is_none(),
            "connection left open after {bad:?}"
        );
        s.assert_serving();
    }
}

#[test]
fn a_message_over_one_mib_without_nul_is_cut_off() {
    require_unshare!();
    let s = start("huge", CONFIG, Opts::default());
    let mut c = raw(&s);
    let mut writer = c.try_clone().unwrap();
    // smss may close while we still write: that is the point; ignore the write error.
    let t = std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..(1 << 20) / chunk.len() + 2 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    // An error reply then EOF, or just EOF.
    if let Some(reply) = read_msg(&mut c) {
        assert_eq!(
            error_of(&reply),
            "org.varlink.service.InvalidParameter",
            "{reply}"
        );
        assert!(read_msg(&mut c).is_none());
    }
    t.join().unwrap();
    s.assert_serving();
}

#[test]
fn unknown_methods_and_wrong_types_get_varlink_errors_on_a_live_connection() {
    require_unshare!();
    let s = start("unknown", CONFIG, Opts::default());
    let mut c = raw(&s);
    let cases = [
        (
            json!({"method": "io.smss.Manager.Frobnicate"}),
            "org.varlink.service.MethodNotFound",
            None,
        ),
        (
            json!({"method": "com.example.Nope.Call"}),
            "org.varlink.service.InterfaceNotFound",
            None,
        ),
        (
            json!({"method": "org.varlink.service.Nope"}),
            "org.varlink.service.MethodNotFound",
            None,
        ),
        (
            json!({"method": "io.smss.Manager.TerminateSession", "parameters": {"id": "1"}}),
            "org.varlink.service.InvalidParameter",
            Some("id"),
        ),
        (
            json!({"method": "io.smss.Manager.TerminateSession", "parameters": {}}),
            "org.varlink.service.InvalidParameter",
            Some("id"),
        ),
        (
            json!({"method": "io.smss.Manager.CreateSession", "parameters": {"command": 5}}),
            "org.varlink.service.InvalidParameter",
            Some("command"),
        ),
        (
            json!({"method": "io.smss.Manager.CreateSession", "parameters": {"command": ["true"], "environment": ["x"]}}),
            "io.smss.Manager.InvalidParameter",
            Some("environment"),
        ),
        (
            json!({"method": "io.smss.Manager.CreateSession", "parameters": {"command": ["true"], "tty": "/dev/nonexistent-tty"}}),
            "io.smss.Manager.InvalidParameter",
            Some("tty"),
        ),
        (
            json!({"method": "io.smss.Manager.Shutdown", "parameters": {"action": "explode"}}),
            "org.varlink.service.InvalidParameter",
            Some("action"),
        ),
        (
            json!({"method": "io.smss.Manager.GetStatus", "parameters": {"verbose": true}}),
            "org.varlink.service.InvalidParameter",
            Some("verbose"),
        ),
        (
            json!({"method": "io.smss.Manager.QueueFileRename", "parameters": {"source": "relative"}}),
            "io.smss.Manager.InvalidParameter",
            Some("source"),
        ),
        (
            json!({"method": "io.smss.Manager.TerminateSession", "parameters": {"id": 77}}),
            "io.smss.Manager.NoSuchSession",
            None,
        ),
    ];
    for (call, error, param) in cases {
        send(&mut c, call.clone());
        let reply = read_msg(&mut c).expect("a reply");
        assert_eq!(error_of(&reply), error, "{call} -> {reply}");
        if let Some(p) = param {
            assert_eq!(reply["parameters"]["parameter"], p, "{call} -> {reply}");
        }
    }
    // Still the same connection: a oneway call gets no reply, the next call does, and
    // pipelined calls are answered in order.
    let mut two = Vec::new();
    for m in [
        json!({"method": "io.smss.Manager.GetStatus", "oneway": true}),
        json!({"method": "org.varlink.service.GetInfo"}),
        json!({"method": "io.smss.Manager.ListSessions"}),
    ] {
        two.extend(serde_json::to_vec(&m).unwrap());
        two.push(0);
    }
    c.write_all(&two).unwrap();
    let info = read_msg(&mut c).unwrap();
    assert_eq!(info["parameters"]["product"], "smss", "{info}");
    let list = read_msg(&mut c).unwrap();
    assert!(list["parameters"]["sessions"].is_array(), "{list}");
    s.assert_serving();
}

#[test]
fn clients_that_never_read_or_never_write_do_not_block_others() {
    require_unshare!();
    let s = start("slow", CONFIG, Opts::default());
    // Connected, silent, forever.
    let _idle = raw(&s);
    // A partial message, then silence.
    let mut partial = raw(&s);
    partial.write_all(b"{\"method\": \"io.smss.Man").unwrap();
    s.assert_serving();
    // Floods calls and never reads a reply: once a reply waits to be written smss reads no
    // more from it (back-pressure), so the flood stalls in its own socket buffer instead of
    // piling up in PID 1.
    let mut flood = raw(&s);
    flood
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut msg = serde_json::to_vec(&json!({"method": "io.smss.Manager.GetStatus"})).unwrap();
        msg.push(0);
        let batch: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 100).collect();
        let mut sent = 0u64;
        let result = loop {
            if let Err(e) = flood.write_all(&batch) {
                break e;
            }
            sent += 100;
            if sent > 10_000_000 {
                break std::io::Error::other("never stalled");
            }
        };
        let _ = tx.send((sent, result, flood));
    });
    for _ in 0..20 {
        s.assert_serving();
    }
    let (sent, err, flood) = rx
        .recv_timeout(TIMEOUT)
        .expect("the flooding client neither stalled nor was closed");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "after {sent} calls: {err}"
    );
    s.assert_serving();
    drop(flood);
    drop(partial);
    s.assert_serving();
}

#[test]
fn five_hundred_clients_at_once() {
    require_unshare!();
    let s = start("many", CONFIG, Opts::default());
    let mut conns: Vec<UnixStream> = (0..500).map(|_| raw(&s)).collect();
    let mut call = serde_json::to_vec(&json!({"method": "io.smss.Manager.GetStatus"})).unwrap();
    call.push(0);
    for c in &mut conns {
        // A refused client may already be closed: EPIPE is an answer too.
        let _ = c.write_all(&call);
    }
    let (mut served, mut refused, mut closed) = (0, 0, 0);
    for c in &mut conns {
        match read_msg(c) {
            Some(v) if v["parameters"]["mode"] == "container" => served += 1,
            Some(v) if error_of(&v) == "io.smss.Manager.LimitReached" => refused += 1,
            Some(v) => panic!("unexpected reply {v}"),
            None => closed += 1,
        }
    }
    eprintln!("500 clients: {served} served, {refused} refused with LimitReached, {closed} closed");
    assert_eq!(served + refused + closed, 500);
    assert!((200..=256).contains(&served), "served {served}");
    drop(conns);
    s.assert_serving();
    // And once they are gone, the slots are free again.
    let mut again: Vec<UnixStream> = (0..200).map(|_| raw(&s)).collect();
    for c in &mut again {
        c.write_all(&call).unwrap();
    }
    for c in &mut again {
        let v = read_msg(c).expect("reply");
        assert_eq!(v["parameters"]["mode"], "container", "{v}");
    }
}

/// Issue 12 items 5 and 6: QueueFileRename reads no more than a bounded queue, refuses to grow
/// it past 1 MiB (LimitReached), refuses paths longer than PATH_MAX, and a FIFO put in the
/// queue's place is refused at once instead of blocking PID 1 in open().
#[test]
fn queue_file_rename_is_bounded_and_refuses_a_fifo() {
    require_unshare!();
    let s = start(
        "renamecap",
        "[pending-file-rename-operations]\nqueue = \"@DIR@/queue\"\n",
        Opts::default(),
    );
    let queue = s.dir.join("queue");
    s.ok(
        "QueueFileRename",
        json!({"source": "/a", "destination": "/b"}),
    );
    assert_eq!(std::fs::read(&queue).unwrap(), b"/a\0/b\0");

    // A path of 70,000 bytes was accepted; PATH_MAX is the limit now.
    let long = format!("/{}", "p".repeat(70_000));
    s.err(
        "QueueFileRename",
        json!({"source": long}),
        "io.smss.Manager.InvalidParameter",
    );
    let p = s.err(
        "QueueFileRename",
        json!({"source": "/a", "destination": long}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(p["parameter"], "destination", "{p}");
    let just = format!("/{}", "p".repeat(4094));
    s.ok("QueueFileRename", json!({"source": just}));

    // Fill the queue to a few bytes under 1 MiB: the next pair does not fit.
    let mut big = std::fs::read(&queue).unwrap();
    while big.len() < (1 << 20) - 8 {
        big.extend_from_slice(b"/x\0\0");
    }
    std::fs::write(&queue, &big).unwrap();
    let p = s.err(
        "QueueFileRename",
        json!({"source": "/over/the/limit"}),
        "io.smss.Manager.LimitReached",
    );
    assert_eq!(p["limit"], "rename-queue-bytes", "{p}");
    assert_eq!(p["value"], 1 << 20, "{p}");
    assert_eq!(std::fs::read(&queue).unwrap().len(), big.len());

    // A FIFO in the queue's place: an error now, not a PID 1 stuck in open().
    std::fs::remove_file(&queue).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&queue)
        .status()
        .unwrap()
        .success());
    let p = s.err(
        "QueueFileRename",
        json!({"source": "/a"}),
        "io.smss.Manager.Failed",
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("is not a regular file (a FIFO)"),
        "{p}"
    );
    s.assert_serving();
}

/// `n` connections as `uid`/`gid` with supplementary `groups` (see [`connect_as_nobody`]:
/// one scratch thread drops its own credentials and connects them all).
fn connect_many_as(
    socket: &std::path::Path,
    uid: u32,
    gid: u32,
    groups: &[u32],
    n: usize,
) -> Vec<UnixStream> {
    let socket = socket.to_path_buf();
    let groups = groups.to_vec();
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                0
            );
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        (0..n)
            .map(|_| {
                let c = UnixStream::connect(&socket).unwrap();
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                c
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// The connections of `conns` that smss refused: they hold a `LimitReached` (then EOF); the
/// others hold nothing yet.
fn refusals(conns: &mut [UnixStream]) -> Vec<Value> {
    let mut out = Vec::new();
    for c in conns.iter_mut() {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            c.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1;
        if ready {
            let v = read_msg(c).expect("a refusal");
            out.push(v);
        }
    }
    out
}

/// One local user holding idle connections must not lock the other readers out: a per-uid
/// cap refuses its extra connections, and another uid is still served.
#[test]
fn one_user_cannot_take_every_reader_slot() {
    require_unshare!();
    let s = start("peruid", CONFIG, Opts::default());
    let mut hog = connect_many_as(&s.socket, 65534, 65534, &[], 64);
    // Connections are accepted in order: once root's call is answered, all 64 were seen.
    s.assert_serving();
    let refused = refusals(&mut hog);
    assert!(
        !refused.is_empty(),
        "64 idle connections of one uid all taken"
    );
    for v in &refused {
        assert_eq!(error_of(v), "io.smss.Manager.LimitReached", "{v}");
        assert_eq!(v["parameters"]["limit"], "connections-per-uid", "{v}");
    }
    let mut other = connect_many_as(&s.socket, 65533, 65533, &[], 1).remove(0);
    send(&mut other, json!({"method": "io.smss.Manager.GetStatus"}));
    let v = read_msg(&mut other).expect("a reply to another uid");
    assert_eq!(v["parameters"]["mode"], "container", "{v}");
    drop(hog);
    s.assert_serving();
}

/// A member of `allowed-group` holding every connection it can get must not lock root out:
/// root has slots of its own, and `smctl poweroff` works.
#[test]
fn the_allowed_group_cannot_lock_root_out() {
    require_unshare!();
    let opts = Opts {
        allowed_group: Some("users"),
        ..Default::default()
    };
    let s = start("reserve", CONFIG, opts);
    let users = nix::unistd::Group::from_name("users")
        .unwrap()
        .expect("a group named users")
        .gid
        .as_raw();
    let hog = connect_many_as(&s.socket, 65534, 65534, &[users], 256);
    s.assert_serving();
    let o = s.smctl(&["status"]);
    assert!(o.status.success(), "{o:?}");
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
    drop(hog);
}

/// A connection that sends half a message, or nothing at all, is closed after a deadline;
/// a half message sooner than an idle connection.
#[test]
fn silent_and_half_sent_connections_are_closed_after_a_deadline() {
    require_unshare!();
    let s = start("deadline", CONFIG, Opts::default());
    let (tx, rx) = channel();
    let t0 = std::time::Instant::now();
    for (name, bytes) in [
        ("partial", &b"{\"method\": \"io.smss.Man"[..]),
        ("idle", &b""[..]),
    ] {
        let mut c = raw(&s);
        c.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        c.write_all(bytes).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let r = c.read_to_end(&mut rest);
            let _ = tx.send((
                name,
                r.map(|_| rest.len()).map_err(|e| e.kind()),
                t0.elapsed(),
            ));
        });
    }
    let first = rx.recv_timeout(Duration::from_secs(100)).unwrap();
    let second = rx.recv_timeout(Duration::from_secs(100)).unwrap();
    eprintln!("closed: {first:?} then {second:?}");
    assert_eq!(first.0, "partial", "{first:?}");
    assert_eq!(second.0, "idle", "{second:?}");
    for (name, r, _) in [&first, &second] {
        assert!(r.is_ok(), "{name}: not closed but {r:?}");
    }
    s.assert_serving();
}

/// Denied calls from many connections (one each) are logged a few at a time, then counted:
/// a local user cannot flood PID 1's log.
#[test]
fn denial_logging_is_rate_limited_across_connections() {
    require_unshare!();
    let s = start("denylog", CONFIG, Opts::default());
    let socket = s.socket.clone();
    let calls = 300;
    let denied_replies = std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread's own credentials.
        unsafe {
            let none = std::ptr::null::<libc::gid_t>();
            assert_eq!(libc::syscall(libc::SYS_setgroups, 0, none), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534), 0);
        }
        let mut n = 0;
        for _ in 0..calls {
            let mut c = UnixStream::connect(&socket).unwrap();
            c.set_read_timeout(Some(TIMEOUT)).unwrap();
            send(
                &mut c,
                json!({"method": "io.smss.Manager.TerminateSession", "parameters": {"id": 1}}),
            );
            let v = read_msg(&mut c).expect("a reply");
            if error_of(&v) == "io.smss.Manager.PermissionDenied" {
                n += 1;
            }
        }
        n
    })
    .join()
    .unwrap();
    assert_eq!(denied_replies, calls);
    let (mut lines, mut summary) = (0, None);
    while summary.is_none() {
        let line = s
            .ns()
            .stderr
            .recv_timeout(TIMEOUT)
            .expect("no summary of the denied calls not logged");
        if line.contains("denied to uid 65534") {
            lines += 1;
        }
        if line.contains("not logged") {
            summary = Some(line);
        }
    }
    eprintln!("{lines} lines, then {summary:?}");
    assert!(lines <= 20, "{lines} denial lines for {calls} calls");
    s.assert_serving();
}

/// When smss refuses a connection, smctl says why (the server's `LimitReached`), not
/// "Broken pipe".
#[test]
fn smctl_reports_the_refusal_not_a_broken_pipe() {
    require_unshare!();
    let s = start("refused", CONFIG, Opts::default());
    let hog: Vec<UnixStream> = (0..256).map(|_| raw(&s)).collect();
    let o = s.smctl(&["status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(err.contains("limit reached"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    drop(hog);
    // The slots come free once smss has seen the hang-ups (no event tells us when: ask
    // again, bounded).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match s.call("GetStatus", json!({})) {
            smss::control::wire::Reply::Ok(v) => break assert_eq!(v["mode"], "container"),
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
