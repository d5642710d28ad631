//! Tier 3: a session whose command needs a terminal (`%TTY%`) is refused when the request
//! gives none (no `tty`, no seat with one), with InvalidParameter naming the tty, and smctl
//! says why; before, the session got an id and its getty ran with a literal `%TTY%`. And the
//! examples' getty lines work with util-linux agetty (`%TTYNAME%`).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use common::TIMEOUT;
use ns_control_common::{start, Opts};
use serde_json::json;

#[test]
fn a_session_whose_command_needs_a_tty_is_refused_without_one() {
    require_unshare!();
    let p = nix::pty::openpty(None, None).unwrap();
    let tty = nix::unistd::ttyname(&p.slave)
        .unwrap()
        .display()
        .to_string();
    let config = "[sessions]\n\
                  initial-command = { command = [\"sh\", \"-c\", \"echo login $0; exec sleep 600\", \"%TTY%\"] }\n\
                  [shutdown]\ngrace-period = \"2s\"\n";
    let s = start("tty", config, Opts::default());

    // The configured command uses %TTY%, and nothing gives one: refused, nothing created.
    let err = s.err(
        "CreateSession",
        json!({}),
        "io.smss.Manager.InvalidParameter",
    );
    assert_eq!(err["parameter"], "tty", "{err}");
    let reason = err["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("%TTY%"), "{reason}");
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());

    // smctl prints why, and exits 1.
    let o = s.smctl(&["session", "create"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("smctl: invalid tty: ") && stderr.contains("%TTY%"),
        "{stderr}"
    );
    assert!(s.sessions().is_empty(), "{:?}", s.sessions());

    // A command of the request's own without %TTY% needs no terminal.
    let v = s.ok("CreateSession", json!({"command": ["sleep", "600"]}));
    assert!(v["id"].as_u64().is_some(), "{v}");
    // With a tty the configured command runs, %TTY% expanded.
    let v = s.ok("CreateSession", json!({"tty": tty}));
    let id = v["id"].as_u64().unwrap();
    s.expect_log(&format!("session {id} created:"), TIMEOUT);
    // A TTY the request sets in the session's environment counts too.
    let v = s.ok("CreateSession", json!({"environment": ["TTY=/dev/null"]}));
    assert!(v["id"].as_u64().is_some(), "{v}");
    assert_eq!(s.sessions().len(), 3, "{:?}", s.sessions());
    drop(p);
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
}

/// The examples' login managers, run as they are written with the system's own getty
/// (util-linux agetty on Debian, `/sbin/getty`), on a session's terminal: each shows its login
/// prompt there. agetty takes its port relative to /dev and opened `/dev//dev/pts/N` for a
/// `%TTY%` (a full path) and exited, so the example sessions died at once on a stock Debian.
#[test]
fn the_examples_getty_lines_show_a_login_prompt_with_util_linux_agetty() {
    require_unshare!();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for example in ["examples/full.toml", "examples/multiseat.toml"] {
        let path = root.join(example);
        let cfg = smss_config::parse_str(&std::fs::read_to_string(&path).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{example}: {e:?}"));
        let argv = cfg
            .sessions
            .initial_command
            .expect("an initial-command")
            .argv;
        assert!(argv[0].ends_with("getty"), "{example}: {argv:?}");
        let command: Vec<String> = argv
            .iter()
            .map(|a| format!("\"{}\"", a.replace('"', "\\\"")))
            .collect();
        let config = format!(
            "[sessions]\ninitial-command = {{ command = [{}] }}\n[shutdown]\ngrace-period = \"2s\"\n",
            command.join(", ")
        );
        let p = nix::pty::openpty(None, None).unwrap();
        let tty = nix::unistd::ttyname(&p.slave)
            .unwrap()
            .display()
            .to_string();
        let master = std::fs::File::from(p.master);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n @ 1..) = std::io::Read::read(&mut reader, &mut b) {
                if tx.send(b[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        let s = start("getty", &config, Opts::default());
        let v = s.ok("CreateSession", json!({ "tty": tty }));
        let id = v["id"].as_u64().unwrap();
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("login: ") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.extend(b),
                Err(_) => panic!(
                    "{example}: no login prompt on {tty} from {argv:?}; it wrote {:?}; sessions {:?}",
                    String::from_utf8_lossy(&seen),
                    s.sessions()
                ),
            }
        }
        assert!(
            s.sessions().iter().any(|x| x["id"] == id),
            "{example}: the session ended: {:?}",
            s.sessions()
        );
        let o = s.poweroff();
        assert_eq!(o.code, 0, "{example}: {o:?}");
        drop(p.slave);
    }
}
