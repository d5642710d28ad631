//! `smss` with no command outside PID 1 (someone trying it in a shell) says what it is doing,
//! a subreaper waiting for orphans, instead of running forever in silence; it ends on SIGTERM.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::TIMEOUT;

#[test]
fn smss_without_a_command_outside_pid_1_says_it_is_a_waiting_subreaper() {
    let dir = std::env::temp_dir().join(format!("smss-subreaper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    let mut child = Command::new(common::smss())
        .args(["--config", cfg.to_str().unwrap()])
        .env_remove("SMSS_LOG")
        .env_remove("container")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx.recv_timeout(TIMEOUT);
    // Stop it whatever the line said, then judge.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("smss did not end on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    let line = line.expect("smss said nothing on stderr");
    assert!(
        line.starts_with(&format!("smss[{}]: ", child.id())),
        "{line}"
    );
    for needle in [
        "subreaper",
        "no command",
        "orphans",
        "SIGTERM",
        "smss -- CMD",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A script whose `#!` interpreter does not exist exits 127, as in a shell, and the message
/// names the interpreter: before, it said only `failed to execute PATH: No such file or
/// directory` of a file that is there.
#[test]
fn a_missing_interpreter_is_named() {
    let dir = std::env::temp_dir().join(format!("smss-interp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("script");
    std::fs::write(&script, "#!  /nonexistent/interp -x\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new("timeout")
        .args(["-s", "KILL", &TIMEOUT.as_secs().to_string()])
        .arg(common::smss())
        .arg("--")
        .arg(&script)
        .env_remove("SMSS_LOG")
        .env_remove("container")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(
        err.contains(&format!(
            "failed to execute {}: its #! interpreter /nonexistent/interp does not exist",
            script.display()
        )),
        "{err}"
    );
}
