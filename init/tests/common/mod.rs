//! Tier-3 harness: run the real `smss` as PID 1 of a fresh PID + mount namespace
//! (`unshare --pid --fork --mount-proc`), with a hard timeout on everything.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Run `f` (say, a fifo open, which waits for the other side) under [`TIMEOUT`].
pub fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(TIMEOUT)
        .expect("still waiting after TIMEOUT (the other side of a fifo never came?)")
}

pub fn smss() -> &'static str {
    env!("CARGO_BIN_EXE_smss")
}

pub fn smctl() -> &'static str {
    env!("CARGO_BIN_EXE_smctl")
}

/// Are we able to make PID namespaces here (root, unshare present)?
pub fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Skip loudly (never silently pass) when the machine cannot run tier 3.
#[macro_export]
macro_rules! require_unshare {
    () => {
        if !common::can_unshare() {
            if std::env::var_os("SMSS_ALLOW_SKIP").is_some() {
                eprintln!("SKIPPED: unshare --pid needs root here");
                return;
            }
            panic!("tier-3 tests need root and unshare(1); set SMSS_ALLOW_SKIP=1 to skip");
        }
    };
}

/// Decode a status the shell way: code, or 128 + signal.
pub fn code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A running namespace with smss as its PID 1.
pub struct Ns {
    child: Child,
    pub lines: Receiver<String>,
    pub stderr: Receiver<String>,
    pub started: Instant,
}

/// The command line that makes `smss ARGS` PID 1 of a new PID + mount namespace, with a
/// private tmpfs on /run so parallel tests never share /run/smss.
pub fn ns_command(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
    ]);
    // A host's own /etc/smss/smss.toml (an installed demo) must not reach tests that run
    // smss without --config: they test the built-in defaults.
    c.arg(
        "mount -t tmpfs -o mode=0755 tmpfs /run && \
         { [ ! -d /etc/smss ] || mount -t tmpfs -o ro tmpfs /etc/smss; } && \
         exec \"$0\" \"$@\"",
    );
    c.arg(smss());
    c.args(args);
    c.env_remove("SMSS_LOG");
    c
}

impl Ns {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Ns {
        let mut c = ns_command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Self::spawn(c)
    }

    pub fn spawn(mut c: Command) -> Ns {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Our own process group, so a hung test can kill everything it started.
        c.process_group(0);
        let mut child = c.spawn().expect("spawn unshare");
        let lines = reader(child.stdout.take().expect("stdout"));
        let stderr = reader(child.stderr.take().expect("stderr"));
        Ns {
            child,
            lines,
            stderr,
            started: Instant::now(),
        }
    }

    /// The pid of the process this harness started (smss itself when it runs as a subreaper).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `sig` to the process this harness started.
    pub fn signal_direct(&self, sig: i32) {
        assert_eq!(
            unsafe_kill(self.pid(), sig),
            0,
            "kill({}, {sig})",
            self.pid()
        );
    }

    /// The host pid of the namespace's PID 1 (unshare's only child).
    pub fn init_pid(&self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        let path = format!("/proc/{0}/task/{0}/children", self.child.id());
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Some(p) = text.split_whitespace().next() {
                    return p.parse().expect("pid");
                }
            }
            assert!(Instant::now() < deadline, "namespace init never appeared");
            std::thread::yield_now();
        }
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.init_pid();
        assert_eq!(unsafe_kill(pid, sig), 0, "kill({pid}, {sig})");
    }

    /// Wait for the next stdout line containing `needle`.
    pub fn expect_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("no line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Wait for the namespace to end; returns its shell-style status and what is left of
    /// stdout and stderr.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("namespace still running after {timeout:?}");
            }
            // std has no fd for a child's exit; a short park keeps this bounded.
            std::thread::sleep(Duration::from_millis(2));
        };
        Outcome {
            code: code(st),
            stdout: drain(&self.lines),
            stderr: drain(&self.stderr),
            elapsed: self.started.elapsed(),
        }
    }

    pub fn kill(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    // The libc crate is a dev-dependency; kill has no memory arguments.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig)
    }
}

fn reader<R: Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// How a namespace ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Everything a reader thread still has, until its pipe closes (bounded).
fn drain(rx: &Receiver<String>) -> String {
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Run `smss ARGS` in a namespace to completion.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    Ns::start(args, env).wait(TIMEOUT)
}

/// Write a config file into a fresh temp dir and return its path.
pub fn config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smss-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = dir.join("smss.toml");
    std::fs::write(&p, text).expect("write config");
    p
}
