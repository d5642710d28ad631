//! Tier-3 helpers for the control socket and sessions: a real smss as PID 1 of a fresh PID +
//! mount namespace (tmpfs on /run), its control socket in a host-visible temp directory, and
//! optionally its own cgroup2 hierarchy (a cgroup namespace rooted at a fresh cgroup of the
//! host's cgroup2 mount, mounted on /sys/fs/cgroup inside).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use smss::control::client::Client;
use smss::control::wire::Reply;

use crate::common::{self, Ns, TIMEOUT};

/// The host's cgroup2 mount (hybrid hosts mount it below the v1 controllers).
pub fn host_cgroup2() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
}

pub struct Smss {
    ns: Option<Ns>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub init: i32,
    host_cgroup: Option<PathBuf>,
}

/// Options for [`start`].
#[derive(Default)]
pub struct Opts<'a> {
    /// Give the namespace its own cgroup2 hierarchy.
    pub cgroup2: bool,
    /// Extra environment for smss.
    pub env: &'a [(&'a str, &'a str)],
    /// `[control] allowed-group`.
    pub allowed_group: Option<&'a str>,
}

/// A temp directory every uid can enter (the socket is reached through it by `nobody`).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smss-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Start smss with `config` (a `[control] socket` in the temp dir is prepended; the config
/// may use `@DIR@` for that directory and `@SMCTL@` for the smctl binary).
pub fn start(name: &str, config: &str, opts: Opts) -> Smss {
    let instance = Path::new(common::smss()).with_file_name("smss-session");
    assert!(
        instance.exists(),
        "{} is not built: `cargo build --workspace --bins` first (scripts/test does)",
        instance.display()
    );
    let dir = temp_dir(name);
    let socket = dir.join("control");
    let group = opts
        .allowed_group
        .map(|g| format!("allowed-group = \"{g}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[control]\nsocket = \"{}\"\n{group}{}",
        socket.display(),
        config
            .replace("@DIR@", &dir.display().to_string())
            .replace("@SMCTL@", common::smctl())
    );
    let cfg = dir.join("smss.toml");
    std::fs::write(&cfg, text).unwrap();

    let mut inner = String::from("mount -t tmpfs -o mode=0755 tmpfs /run");
    let mut host_cgroup = None;
    let mut c = if opts.cgroup2 {
        let root = host_cgroup2().expect("the host has no cgroup2 mount");
        let cg = root.join(format!("smss-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&cg);
        std::fs::create_dir(&cg).unwrap();
        host_cgroup = Some(cg.clone());
        inner.push_str(" && mount -t cgroup2 none /sys/fs/cgroup");
        // Join the fresh cgroup first, so the cgroup namespace is rooted there.
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$@\"",
            cg.display()
        ));
        c.arg("sh");
        c.args(["unshare", "--cgroup"]);
        c
    } else {
        // No cgroup2 for this namespace, whatever the host has: on a cgroup2 host, parallel
        // tests would otherwise share (and kill) each other's /sys/fs/cgroup/smss/session-N.
        inner.push_str(" && mount -t tmpfs -o ro,mode=0755 none /sys/fs/cgroup");
        Command::new("unshare")
    };
    inner.push_str(" && exec \"$0\" \"$@\"");
    c.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        &inner,
    ]);
    c.arg(common::smss());
    c.args(["--config", cfg.to_str().unwrap()]);
    c.env("container", "smss-test").env("SMSS_LOG", "info");
    for (k, v) in opts.env {
        c.env(k, v);
    }
    let ns = Ns::spawn(c);
    let mut s = Smss {
        init: 0,
        ns: Some(ns),
        dir,
        socket,
        host_cgroup,
    };
    s.expect_log("boot complete", TIMEOUT);
    s.init = s.ns().init_pid();
    s
}

impl Smss {
    pub fn ns(&self) -> &Ns {
        self.ns.as_ref().expect("namespace")
    }

    /// Wait for the next log line containing `needle`.
    pub fn expect_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ns().stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => continue,
                Err(_) => panic!("no log line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// Wait for a log line containing each of `needles`, in any order (lines of several
    /// sessions interleave); the lines, in the order of `needles`.
    pub fn expect_logs(&self, needles: &[String], timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ns().stderr.recv_timeout(left) {
                Ok(l) => {
                    if let Some(i) = (0..needles.len())
                        .find(|&i| found[i].is_none() && l.contains(needles[i].as_str()))
                    {
                        found[i] = Some(l);
                    }
                }
                Err(_) => panic!("no log lines for all of {needles:?} within {timeout:?}"),
            }
        }
        found.into_iter().flatten().collect()
    }

    pub fn client(&self) -> Client {
        let c = Client::connect(&self.socket).expect("connect to the control socket");
        c.set_timeout(Some(TIMEOUT)).unwrap();
        c
    }

    /// One call on a fresh connection.
    pub fn call(&self, method: &str, params: Value) -> Reply {
        self.client()
            .call(&format!("io.smss.Manager.{method}"), params)
            .expect("call")
    }

    /// A call that must succeed.
    pub fn ok(&self, method: &str, params: Value) -> Value {
        match self.call(method, params) {
            Reply::Ok(v) => v,
            Reply::Error { error, parameters } => panic!("{method}: {error} {parameters}"),
        }
    }

    /// A call that must fail with `error`; its parameters.
    pub fn err(&self, method: &str, params: Value, error: &str) -> Value {
        match self.call(method, params) {
            Reply::Error {
                error: e,
                parameters,
            } if e == error => parameters,
            other => panic!("{method}: expected {error}, got {other:?}"),
        }
    }

    /// GetStatus works: smss is alive and serving.
    pub fn assert_serving(&self) {
        let v = self.ok("GetStatus", json!({}));
        assert_eq!(v["mode"], "container", "{v}");
    }

    pub fn sessions(&self) -> Vec<Value> {
        self.ok("ListSessions", json!({}))["sessions"]
            .as_array()
            .cloned()
            .unwrap()
    }

    /// A path as seen inside the namespace (its /run, its /proc).
    pub fn ns_path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.init, p))
    }

    /// Is namespace pid `pid` a live (neither zombie nor dead) process?
    pub fn ns_alive(&self, pid: i64) -> bool {
        // Bytes: a process may name itself with anything but NUL.
        match std::fs::read(self.ns_path(&format!("/proc/{pid}/stat"))) {
            Ok(b) => String::from_utf8_lossy(&b)
                .rsplit_once(')')
                // Z: a zombie; X: being reaped this instant.
                .is_some_and(|(_, t)| !t.trim_start().starts_with(['Z', 'X'])),
            Err(_) => false,
        }
    }

    /// Run smctl against this smss, with a hard timeout.
    pub fn smctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new("timeout");
        c.args([
            "20",
            common::smctl(),
            "--socket",
            self.socket.to_str().unwrap(),
        ]);
        c.args(args);
        c.output().unwrap()
    }

    /// Stop smss through the socket and wait for the namespace to end.
    pub fn poweroff(mut self) -> common::Outcome {
        let o = self.smctl(&["poweroff"]);
        assert!(o.status.success(), "{o:?}");
        self.wait_exit()
    }

    /// Wait for the namespace to end by itself.
    pub fn wait_exit(&mut self) -> common::Outcome {
        let out = self.ns.take().expect("namespace").wait(TIMEOUT);
        remove_host_cgroup(self.host_cgroup.as_deref());
        out
    }
}

impl Drop for Smss {
    fn drop(&mut self) {
        if let Some(mut ns) = self.ns.take() {
            ns.kill();
        }
        remove_host_cgroup(self.host_cgroup.as_deref());
    }
}

/// Remove the test's cgroup tree once its processes are gone (they die with the namespace;
/// rmdir says EBUSY until then, so this retries for a bounded time).
fn remove_host_cgroup(cg: Option<&Path>) {
    let Some(cg) = cg else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    while cg.exists() && Instant::now() < deadline {
        let _ = rm_tree(cg);
        if cg.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn rm_tree(cg: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(cg)?.flatten() {
        if e.file_type()?.is_dir() {
            rm_tree(&e.path())?;
        }
    }
    std::fs::remove_dir(cg)
}
