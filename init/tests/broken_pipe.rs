//! A closed pipe on stdout (`smctl session list --json | head -c0`, `smss check | grep -q x`)
//! ends smctl, `smss check` and smss-session quietly, as it ends coreutils: killed by SIGPIPE
//! (a shell reports 141), nothing on stderr, whether SIGPIPE was inherited at its default or
//! ignored (a parent's `trap '' PIPE`, Python's subprocess before 3.2...).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::TIMEOUT;
use ns_control_common::{start, Opts};

/// The write end of a pipe whose read end is already closed: every write gets EPIPE.
fn closed_pipe() -> OwnedFd {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    w
}

fn session_binary() -> PathBuf {
    let p = Path::new(common::smss()).with_file_name("smss-session");
    assert!(
        p.exists(),
        "{} is not built: `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Run `prog ARGS` with stdout on a closed pipe, SIGPIPE at `ignore`d or default disposition,
/// under a hard timeout; its shell-style status and its stderr.
fn run_into_closed_pipe(prog: &Path, args: &[&str], ignore: bool) -> (i32, String) {
    let trap = if ignore { "trap '' PIPE; " } else { "" };
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", &TIMEOUT.as_secs().to_string(), "sh", "-c"])
        .arg(format!("{trap}exec \"$0\" \"$@\""))
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped());
    let out = c.output().unwrap();
    // `timeout` reports a child killed by a signal as 128 + signal, like a shell.
    (
        common::code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SIGPIPE_STATUS: i32 = 128 + libc::SIGPIPE;

fn assert_quiet_sigpipe(what: &str, prog: &Path, args: &[&str]) {
    for ignore in [false, true] {
        let (code, err) = run_into_closed_pipe(prog, args, ignore);
        assert_eq!(
            code, SIGPIPE_STATUS,
            "{what} (SIGPIPE ignored: {ignore}): status {code}, stderr {err:?}"
        );
        assert_eq!(err, "", "{what} (SIGPIPE ignored: {ignore})");
    }
}

#[test]
fn smctl_help_into_a_closed_pipe_is_a_quiet_sigpipe() {
    assert_quiet_sigpipe("smctl --help", Path::new(common::smctl()), &["--help"]);
}

#[test]
fn smss_check_into_a_closed_pipe_is_a_quiet_sigpipe() {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/full.toml");
    assert_quiet_sigpipe(
        "smss check",
        Path::new(common::smss()),
        &["check", full.to_str().unwrap()],
    );
    assert_quiet_sigpipe("smss --help", Path::new(common::smss()), &["--help"]);
}

#[test]
fn smss_session_help_into_a_closed_pipe_is_a_quiet_sigpipe() {
    assert_quiet_sigpipe("smss-session --help", &session_binary(), &["--help"]);
}

#[test]
fn smctl_session_list_json_into_a_closed_pipe_is_a_quiet_sigpipe() {
    require_unshare!();
    let s = start("epipe", "", Opts::default());
    let socket = s.socket.to_str().unwrap().to_string();
    assert_quiet_sigpipe(
        "smctl session list --json",
        Path::new(common::smctl()),
        &["--socket", &socket, "session", "list", "--json"],
    );
    // The connection smctl dropped did not hurt the server.
    s.assert_serving();
    let o = s.poweroff();
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn the_client_reports_a_closed_connection_instead_of_dying_by_sigpipe() {
    // As in smctl: SIGPIPE at its default. std's UnixStream sends with MSG_NOSIGNAL; were it
    // not so, this test binary would die by SIGPIPE here.
    smss::sys::default_sigpipe();
    let dir = ns_control_common::temp_dir("epipe-client");
    let path = dir.join("control");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut client = smss::control::client::Client::connect(&path).unwrap();
    // The server takes the connection and closes it before the call is written.
    drop(listener.accept().unwrap());
    let r = client.call("io.smss.Manager.GetStatus", serde_json::json!({}));
    match r {
        Err(smss::control::client::ClientError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::BrokenPipe, "{source}")
        }
        Err(smss::control::client::ClientError::Closed) => {}
        other => panic!("expected an error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
