//! Tier 3: a session whose command needs a terminal (`%TTY%`) is refused when the request
//! gives none (no `tty`, no seat with one), with InvalidParameter naming the tty, and smctl
//! says why; before, the session got an id and its getty ran with a literal `%TTY%`.
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
