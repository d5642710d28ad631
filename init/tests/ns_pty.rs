//! Tier 3 on a pseudo-terminal: smss hands the terminal's foreground to the initial command,
//! so Ctrl-C reaches it (status 130) and an interactive shell gets job control.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::{ns_command, TIMEOUT};

struct PtyRun {
    master: std::fs::File,
    output: Receiver<u8>,
    child: std::process::Child,
    seen: String,
}

fn start(args: &[&str]) -> PtyRun {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    let slave_fd = slave.as_raw_fd();
    let mut c = ns_command(args);
    c.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; this runs between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            let _ = slave_fd;
            Ok(())
        });
    }
    let child = c.spawn().expect("spawn");
    let master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 256];
        while let Ok(n) = reader.read(&mut b) {
            if n == 0 {
                break;
            }
            for x in &b[..n] {
                if tx.send(*x).is_err() {
                    return;
                }
            }
        }
    });
    PtyRun {
        master,
        output: rx,
        child,
        seen: String::new(),
    }
}

impl PtyRun {
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => self.seen.push(b as char),
                Err(_) => panic!("no {needle:?} on the terminal; saw {:?}", self.seen),
            }
        }
    }

    fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Everything written before the exit: the reader ends (EIO) once the last
                // slave descriptor is closed, which is when the namespace is gone.
                while let Ok(b) = self
                    .output
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    self.seen.push(b as char);
                }
                return (common::code(st), self.seen);
            }
            assert!(
                Instant::now() < deadline,
                "still running; saw {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn ctrl_c_reaches_the_initial_command() {
    require_unshare!();
    let mut r = start(&["--", "sh", "-c", "echo READY; exec sleep 100"]);
    // READY comes from the child, which runs only after it took the terminal's foreground;
    // whether ^C then hits sh or the exec'd sleep, both die of SIGINT.
    r.expect("READY");
    r.master.write_all(&[0x03]).unwrap();
    let (code, seen) = r.wait();
    assert_eq!(code, 130, "terminal: {seen:?}");
}

#[test]
fn interactive_shell_gets_job_control() {
    require_unshare!();
    let r = start(&[
        "--",
        "bash",
        "--norc",
        "--noprofile",
        "-i",
        "-c",
        // The job runs until it is killed, so `jobs` always lists it as Running.
        "echo FLAGS=$-; sleep 1000 & jobs; kill %1; wait; true",
    ]);
    let (code, seen) = r.wait();
    assert_eq!(code, 0, "terminal: {seen:?}");
    let flags = seen
        .split("FLAGS=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    assert!(flags.contains('m'), "no monitor mode: {seen:?}");
    assert!(!seen.contains("no job control"), "{seen:?}");
    assert!(
        seen.contains("Running"),
        "jobs did not list the job: {seen:?}"
    );
}
