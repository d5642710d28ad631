//! Tier 4/5 harness: static builds, podman images and QEMU boots driven over the serial console.
//!
//! Every wait has a deadline. A [`Spawned`] process is read by two threads into one transcript
//! (with arrival times, for boot timing) and killed when dropped, so a hung guest or container
//! fails its test instead of hanging the suite.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// True (with a loud message) when the user asked to skip a tier with `VAR=1`. Nothing else
/// skips: a missing tool is a failure, not a silent pass.
pub fn skip_requested(var: &str, what: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: {what} because {var}=1 is set; this test proved nothing");
        return true;
    }
    false
}

/// Runs `cmd` to completion, killing it after `timeout`. Output is captured.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("failed to spawn {desc}: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{desc} still running after {timeout:?}: killed"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("failed to wait for {desc}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Like [`run_with_timeout`] but a non-zero exit is an error carrying stdout and stderr.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{desc} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            tail(&stdout, 4000),
            tail(&String::from_utf8_lossy(&out.stderr), 4000)
        ));
    }
    Ok(stdout)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The last `max` bytes of `s` (on a char boundary), for error messages.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Builds static smss, smctl and smss-session (scripts/build-static.sh) once per test binary and
/// returns the directory holding them. `SMSS_BIN_DIR=DIR` uses prebuilt binaries instead.
pub fn static_binaries() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SMSS_BIN_DIR") {
            eprintln!("using prebuilt binaries from SMSS_BIN_DIR={dir:?}");
            return Ok(PathBuf::from(dir));
        }
        let root = repo_root();
        let out = run_ok(
            Command::new(root.join("scripts/build-static.sh")).current_dir(&root),
            Duration::from_secs(1800),
        )?;
        let dir = out.lines().last().unwrap_or("").trim().to_string();
        if dir.is_empty() {
            return Err("scripts/build-static.sh printed no directory".into());
        }
        Ok(PathBuf::from(dir))
    })
    .clone()
}

/// What initramfs/build.sh produced (its `build.env`).
#[derive(Clone, Debug)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
}

/// Builds the initramfs and the /var disk (initramfs/build.sh) once per test binary.
pub fn initramfs_image() -> Result<Image, String> {
    static IMAGE: OnceLock<Result<Image, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let bins = static_binaries()?;
            let root = repo_root();
            run_ok(
                Command::new(root.join("initramfs/build.sh"))
                    .current_dir(&root)
                    .env("SMSS_BIN_DIR", &bins)
                    .env_remove("INIT"),
                Duration::from_secs(600),
            )?;
            let env_file = root.join("target/initramfs/build.env");
            let text = fs::read_to_string(&env_file)
                .map_err(|e| format!("failed to read {}: {e}", env_file.display()))?;
            let vars: HashMap<&str, &str> =
                text.lines().filter_map(|l| l.split_once('=')).collect();
            let get = |k: &str| {
                vars.get(k)
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{} has no {k}=", env_file.display()))
            };
            Ok(Image {
                kernel: get("KERNEL")?,
                initrd: get("INITRD")?,
                disk: get("DISK")?,
            })
        })
        .clone()
}

/// Serialises QEMU boots inside one test binary: two TCG guests on a shared 2-core machine would
/// only make each other's deadlines and boot times meaningless.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A per-test scratch directory under target/, removed on drop unless the test failed
/// (then it is kept for the post-mortem and its path printed).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch, String> {
        let path = repo_root()
            .join("target/blackbox")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .map_err(|e| format!("failed to create {}: {e}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[derive(Default)]
struct Transcript {
    bytes: Vec<u8>,
    /// (arrival time, transcript length after that chunk)
    chunks: Vec<(Instant, usize)>,
    open_streams: usize,
}

/// A running process whose stdout and stderr are collected into one transcript, with
/// expect-style waits. Killed (and reaped) on drop.
pub struct Spawned {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<(Mutex<Transcript>, Condvar)>,
    cursor: usize,
    pub started: Instant,
    status: Option<ExitStatus>,
    log: Option<PathBuf>,
}

impl Spawned {
    /// Spawns `cmd` with piped stdio. `log`, if given, receives the transcript when dropped.
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<PathBuf>) -> Result<Spawned, String> {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("failed to spawn {name} ({cmd:?}): {e}"))?;
        let shared = Arc::new((
            Mutex::new(Transcript {
                open_streams: 2,
                ..Transcript::default()
            }),
            Condvar::new(),
        ));
        let out = child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>);
        for pipe in [out, err] {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if let Some(mut p) = pipe {
                    loop {
                        match p.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let (lock, cv) = &*shared;
                                let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
                                t.bytes.extend_from_slice(&buf[..n]);
                                let len = t.bytes.len();
                                t.chunks.push((Instant::now(), len));
                                cv.notify_all();
                            }
                        }
                    }
                }
                let (lock, cv) = &*shared;
                let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
                t.open_streams -= 1;
                cv.notify_all();
            });
        }
        Ok(Spawned {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            shared,
            cursor: 0,
            started,
            status: None,
            log,
        })
    }

    /// The whole transcript so far (lossy UTF-8).
    pub fn transcript(&self) -> String {
        let t = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&t.bytes).into_owned()
    }

    fn context(&self, why: &str) -> String {
        format!(
            "{}: {why}\n--- last output of {} ---\n{}\n--- end ---",
            self.name,
            self.name,
            tail(&self.transcript(), 6000)
        )
    }

    /// Waits until `pred(transcript, cursor)` returns Some(end), or the deadline passes, or the
    /// process closes its output.
    fn wait_until<F>(&self, timeout: Duration, what: &str, mut pred: F) -> Result<usize, String>
    where
        F: FnMut(&[u8], usize) -> Option<usize>,
    {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(end) = pred(&t.bytes, self.cursor) {
                return Ok(end);
            }
            let now = Instant::now();
            if t.open_streams == 0 {
                drop(t);
                return Err(self.context(&format!("exited before {what}")));
            }
            if now >= deadline {
                drop(t);
                return Err(self.context(&format!("no {what} within {timeout:?}")));
            }
            t = cv
                .wait_timeout(t, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Waits for `needle` after the cursor and moves the cursor past it. Returns the text
    /// between the old cursor and the end of the match.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let n = needle.as_bytes().to_vec();
        let end = self.wait_until(timeout, &format!("{needle:?}"), |b, c| {
            find(&b[c.min(b.len())..], &n).map(|i| c + i + n.len())
        })?;
        let text = {
            let t = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
            String::from_utf8_lossy(&t.bytes[self.cursor..end]).into_owned()
        };
        self.cursor = end;
        Ok(text)
    }

    /// Waits for the first of `needles` after the cursor; returns its index and moves past it.
    pub fn expect_any(&mut self, needles: &[&str], timeout: Duration) -> Result<usize, String> {
        let mut which = 0;
        let end = self.wait_until(timeout, &format!("any of {needles:?}"), |b, c| {
            let hay = &b[c.min(b.len())..];
            needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| find(hay, n.as_bytes()).map(|p| (p, i, n.len())))
                .min()
                .map(|(p, i, len)| {
                    which = i;
                    c + p + len
                })
        })?;
        self.cursor = end;
        Ok(which)
    }

    /// Waits for `needle` anywhere in the transcript (ignoring the cursor, which is unchanged).
    pub fn wait_anywhere(&self, needle: &str, timeout: Duration) -> Result<usize, String> {
        let n = needle.as_bytes().to_vec();
        self.wait_until(timeout, &format!("{needle:?}"), |b, _| {
            find(b, &n).map(|i| i + n.len())
        })
    }

    /// When the byte at transcript offset `pos` arrived.
    pub fn arrival(&self, pos: usize) -> Option<Instant> {
        let t = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        t.chunks
            .iter()
            .find(|(_, len)| *len >= pos)
            .map(|(at, _)| *at)
    }

    /// Transcript offset just after the first occurrence of `needle`, anywhere.
    pub fn position_of(&self, needle: &str) -> Option<usize> {
        let t = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        find(&t.bytes, needle.as_bytes()).map(|p| p + needle.len())
    }

    /// The current cursor (offset in the transcript).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Types `text` on the process's stdin (the serial console for QEMU).
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin closed", self.name))?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| self.context(&format!("failed to write to stdin: {e}")))
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.status = Some(s);
                    // let the reader threads catch the last bytes
                    let _ = self.wait_until(Duration::from_secs(5), "end of output", |_, _| None);
                    return Ok(s);
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(self.context(&format!("still running after {timeout:?}")));
                }
                Ok(None) => thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(self.context(&format!("failed to wait: {e}"))),
            }
        }
    }

    /// The process id (for `kill`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(log) = &self.log {
            let _ = fs::write(log, self.transcript());
        }
    }
}

/// Byte-string search.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How to boot the demo image.
#[derive(Default, Clone, Debug)]
pub struct Boot {
    /// `smss.config=` inside the guest (None: the embedded default /etc/smss/smss.toml).
    pub config: Option<String>,
    /// Extra kernel command line.
    pub append: Option<String>,
    /// Where ttyS1 goes (QEMU -serial syntax).
    pub serial2: Option<String>,
    /// The disk's bus (run-qemu.sh -b): None = virtio; "scsi", "usb", "nvme".
    pub disk_bus: Option<String>,
}

/// A booted QEMU guest on its own copy of the /var disk.
pub struct Vm {
    pub console: Spawned,
    pub disk: PathBuf,
}

impl Vm {
    /// Boots the demo image with `-no-reboot` (a reboot or a bugcheck ends QEMU) on a private
    /// copy of the disk in `scratch`.
    pub fn boot(image: &Image, boot: &Boot, scratch: &Scratch, name: &str) -> Result<Vm, String> {
        let disk = scratch.path.join("disk.img");
        run_ok(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(&image.disk)
                .arg(&disk),
            Duration::from_secs(60),
        )?;
        let mut cmd = Command::new(repo_root().join("initramfs/run-qemu.sh"));
        cmd.env("KERNEL", &image.kernel)
            .env("INITRD", &image.initrd)
            .env("BUILD_ENV", "/nonexistent")
            .arg("-n")
            .arg("-d")
            .arg(&disk);
        if let Some(c) = &boot.config {
            cmd.arg("-c").arg(c);
        }
        if let Some(a) = &boot.append {
            cmd.arg("-a").arg(a);
        }
        if let Some(s) = &boot.serial2 {
            cmd.arg("-s").arg(s);
        }
        if let Some(b) = &boot.disk_bus {
            cmd.arg("-b").arg(b);
        }
        let console = Spawned::spawn(name, &mut cmd, Some(scratch.path.join("console.log")))?;
        Ok(Vm { console, disk })
    }

    /// Runs a shell command at the guest's prompt (after login) and returns (exit code, output).
    /// The command is followed by an `echo` of `$?` between markers; the echoed input line shows
    /// `$?` literally, so only the real output matches the digits.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Result<(i32, String), String> {
        self.console.send(&format!("{command}; echo @@rc=$?@@\n"))?;
        // The echo of the typed line shows "@@rc=$?@@": not digits, so the loop skips it.
        let deadline = Instant::now() + timeout;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = self.console.expect("@@rc=", left)?;
            let after = self.console.expect("@@", left)?;
            output.push_str(text.trim_end_matches("@@rc="));
            let digits = after.trim_end_matches("@@");
            if let Ok(code) = digits.trim().parse::<i32>() {
                // drop the echo of the typed line when it came through unwrapped
                let out = match output.rfind("@@rc=$?@@") {
                    Some(i) => &output[i + "@@rc=$?@@".len()..],
                    None => &output[..],
                };
                return Ok((code, out.trim().to_string()));
            }
            output.push_str("@@rc=");
            output.push_str(&after);
        }
    }
}

/// Reads a file from an (unmounted) ext4 image with debugfs; Err if debugfs reports none.
pub fn debugfs_cat(image: &Path, path: &str) -> Result<String, String> {
    let out = run_with_timeout(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(image),
        Duration::from_secs(60),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("File not found") || !out.status.success() {
        return Err(format!("debugfs: {path}: {}", err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `podman run` with the options this host needs (architecture.md: runc, explicit ulimits).
pub fn podman_run_args() -> Vec<String> {
    [
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Builds the product image (`Dockerfile` target `local`, offline) and the tier-4 test image
/// (`initramfs/Containerfile.test`: + busybox and the payload) once per test binary.
/// Returns the test image's name.
pub fn podman_test_image() -> Result<String, String> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            static_binaries()?;
            let root = repo_root();
            run_ok(
                Command::new("podman")
                    .args([
                        "build",
                        "-q",
                        "--target",
                        "local",
                        "-t",
                        "localhost/smss:local",
                    ])
                    .arg(&root),
                Duration::from_secs(600),
            )?;
            let ctx = root.join("target/blackbox/podman-context");
            let _ = fs::remove_dir_all(&ctx);
            fs::create_dir_all(ctx.join("bin")).map_err(|e| format!("mkdir {ctx:?}: {e}"))?;
            fs::copy("/bin/busybox", ctx.join("bin/busybox"))
                .map_err(|e| format!("copy /bin/busybox (install busybox-static): {e}"))?;
            let applets = run_ok(
                Command::new("/bin/busybox").arg("--list"),
                Duration::from_secs(30),
            )?;
            for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
                std::os::unix::fs::symlink("busybox", ctx.join("bin").join(applet))
                    .map_err(|e| format!("symlink {applet}: {e}"))?;
            }
            fs::copy(root.join("initramfs/payload.sh"), ctx.join("payload.sh"))
                .map_err(|e| format!("copy payload.sh: {e}"))?;
            run_ok(
                Command::new("podman")
                    .args(["build", "-q", "-f"])
                    .arg(root.join("initramfs/Containerfile.test"))
                    .args([
                        "--build-arg",
                        "BASE=localhost/smss:local",
                        "-t",
                        "localhost/smss-test:local",
                    ])
                    .arg(&ctx),
                Duration::from_secs(600),
            )?;
            Ok("localhost/smss-test:local".to_string())
        })
        .clone()
}
