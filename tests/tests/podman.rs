//! Tier 4: smss as a container's PID 1, in the image the Dockerfile builds (target `local`,
//! offline) plus busybox and a payload (initramfs/Containerfile.test), run by podman with runc;
//! then the two other ways README's "Install" names: the host's static smss as podman's own
//! init (`podman run --init --init-path=smss`, which runs `smss -- CMD`), and smss as a
//! subreaper in a Kubernetes pod with `shareProcessNamespace: true` (`podman kube play`).
//! `SMSS_SKIP_PODMAN=1` skips (loudly); nothing else does.
//!
//! Run: `cargo test -p smss-blackbox --test podman`.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use smss_blackbox::vm::{self, Spawned};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const RUN_DEADLINE: Duration = Duration::from_secs(120);
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn image() -> Option<String> {
    if vm::skip_requested("SMSS_SKIP_PODMAN", "the podman test") {
        return None;
    }
    Some(must(vm::podman_test_image()))
}

/// A unique container name, removed (forcefully) when dropped, whatever happened.
struct Container(String);

impl Container {
    fn new(what: &str) -> Container {
        static N: AtomicUsize = AtomicUsize::new(0);
        Container(format!(
            "smss-test-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = vm::run_with_timeout(
            Command::new("podman").args(["rm", "-f", "-t", "0", &self.0]),
            Duration::from_secs(60),
        );
    }
}

/// `podman run` of the test image with `args` after the image (the container's command);
/// returns (exit code, stdout+stderr).
fn run(image: &str, args: &[&str]) -> (i32, String) {
    let c = Container::new("run");
    let out = must(vm::run_with_timeout(
        Command::new("podman")
            .args(vm::podman_run_args())
            .args(["--name", &c.0, image])
            .args(args),
        RUN_DEADLINE,
    ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn exit_status_passes_through() {
    let Some(image) = image() else { return };
    let (code, out) = run(&image, &["/bin/sh", "-c", "exit 42"]);
    assert_eq!(code, 42, "sh -c 'exit 42' under smss gave {code}:\n{out}");
    let (code, out) = run(&image, &["/bin/sh", "/payload.sh", "exit", "0"]);
    assert_eq!(code, 0, "payload exit 0 under smss gave {code}:\n{out}");
}

#[test]
fn death_by_signal_exits_128_plus_signal() {
    let Some(image) = image() else { return };
    let (code, out) = run(&image, &["/bin/sh", "-c", "kill -KILL $$"]);
    assert_eq!(
        code, 137,
        "a payload killed by SIGKILL should give 128+9:\n{out}"
    );
}

#[test]
fn signals_are_forwarded_to_the_payload() {
    let Some(image) = image() else { return };
    let c = Container::new("signals");
    let mut run = must(Spawned::spawn(
        "podman run (signals)",
        Command::new("podman").args(vm::podman_run_args()).args([
            "--name",
            &c.0,
            &image,
            "/bin/sh",
            "/payload.sh",
            "signals",
        ]),
        None,
    ));
    must(run.expect("payload: ready", RUN_DEADLINE));

    let kill = must(vm::run_with_timeout(
        Command::new("podman").args(["kill", "-s", "USR1", &c.0]),
        EVENT_DEADLINE,
    ));
    assert!(
        kill.status.success(),
        "podman kill -s USR1 failed: {kill:?}"
    );
    must(run.expect("payload: got USR1", EVENT_DEADLINE));

    // podman stop sends SIGTERM to PID 1 (smss); only the payload's trap exits with 7.
    // A SIGKILL after the 20 s grace time would give 137 instead.
    let stop = must(vm::run_with_timeout(
        Command::new("podman").args(["stop", "-t", "20", &c.0]),
        Duration::from_secs(60),
    ));
    assert!(stop.status.success(), "podman stop failed: {stop:?}");
    must(run.expect("payload: got TERM", EVENT_DEADLINE));
    let status = must(run.wait_exit(EVENT_DEADLINE));
    assert_eq!(
        status.code(),
        Some(7),
        "container should exit with the payload's status 7 after SIGTERM:\n{}",
        run.transcript()
    );
}

/// docker and containerd (a Kubernetes pod) set no `container=`, and an image may run smss
/// with a configuration rather than `--` (a session host): smss must still know it is a
/// container's init, not the machine's, and end on the runtime's SIGTERM with status 0, not sit
/// in system mode until the SIGKILL.
#[test]
fn without_container_env_or_dashes_smss_is_still_a_containers_init() {
    let Some(image) = image() else { return };
    let c = Container::new("nocontainerenv");
    let mut run = must(Spawned::spawn(
        "podman run --unsetenv container",
        Command::new("podman").args(vm::podman_run_args()).args([
            "--unsetenv",
            "container",
            "--env",
            "SMSS_LOG=info",
            "--entrypoint",
            "/smss",
            "--name",
            &c.0,
            &image,
        ]),
        None,
    ));
    must(run.expect("boot complete", RUN_DEADLINE));
    let stop = must(vm::run_with_timeout(
        Command::new("podman").args(["stop", "-t", "10", &c.0]),
        Duration::from_secs(60),
    ));
    assert!(stop.status.success(), "podman stop failed: {stop:?}");
    let status = must(run.wait_exit(EVENT_DEADLINE));
    let t = run.transcript();
    assert!(t.contains("starting in container mode"), "{t}");
    assert_eq!(
        status.code(),
        Some(0),
        "smss should end on podman stop's SIGTERM (137: it took the SIGKILL):\n{t}"
    );
}

#[test]
fn orphans_are_reaped() {
    let Some(image) = image() else { return };
    let (code, out) = run(&image, &["/bin/sh", "/payload.sh", "orphans"]);
    assert_eq!(code, 0, "orphans payload failed ({code}):\n{out}");
    assert!(
        out.contains("payload: orphans=7 left=0"),
        "orphans not reaped within 10 s:\n{out}"
    );
    assert!(
        out.contains("payload: adopter=1 parent=1"),
        "orphans were not adopted by smss as PID 1:\n{out}"
    );
    assert!(
        out.contains("payload: zombies=0"),
        "zombies left in the container (smss did not reap orphans):\n{out}"
    );
}

// ---- `podman run --init --init-path=/path/to/smss` -------------------------------------------

/// The `podman run` arguments that make the host's static smss the container's init: podman
/// bind-mounts it as /run/podman-init and runs `/run/podman-init -- ENTRYPOINT CMD`. The image's
/// own /smss entrypoint is replaced by the payload's shell, so the init is the host's binary.
fn init_args(name: &str) -> Vec<String> {
    let smss = must(vm::static_binaries()).join("smss");
    let mut a = vm::podman_run_args();
    a.extend([
        "--init".to_string(),
        format!("--init-path={}", smss.display()),
        "--entrypoint".into(),
        "/bin/sh".into(),
        "--name".into(),
        name.into(),
    ]);
    a
}

fn run_with_init(image: &str, args: &[&str]) -> (i32, String) {
    let c = Container::new("init");
    let out = must(vm::run_with_timeout(
        Command::new("podman")
            .args(init_args(&c.0))
            .arg(image)
            .args(args),
        RUN_DEADLINE,
    ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn init_path_smss_is_pid_1_passes_the_exit_status_and_reaps() {
    let Some(image) = image() else { return };
    let (code, out) = run_with_init(
        &image,
        &["-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; exit 42"],
    );
    assert_eq!(code, 42, "exit 42 under --init smss gave {code}:\n{out}");
    assert!(
        out.contains("/run/podman-init -- /bin/sh -c"),
        "PID 1 is not podman's init called as `INIT -- CMD`:\n{out}"
    );
    let (code, out) = run_with_init(&image, &["-c", "kill -KILL $$"]);
    assert_eq!(code, 137, "SIGKILL under --init smss gave {code}:\n{out}");
    let (code, out) = run_with_init(&image, &["/payload.sh", "orphans"]);
    assert_eq!(
        code, 0,
        "orphans payload under --init failed ({code}):\n{out}"
    );
    for want in [
        "payload: adopter=1 parent=1",
        "payload: orphans=7 left=0",
        "payload: zombies=0",
    ] {
        assert!(out.contains(want), "{want:?} missing under --init:\n{out}");
    }
}

#[test]
fn init_path_smss_forwards_signals() {
    let Some(image) = image() else { return };
    let c = Container::new("init-signals");
    let mut run = must(Spawned::spawn(
        "podman run --init (signals)",
        Command::new("podman")
            .args(init_args(&c.0))
            .args([&image, "/payload.sh", "signals"]),
        None,
    ));
    must(run.expect("payload: ready", RUN_DEADLINE));
    let kill = must(vm::run_with_timeout(
        Command::new("podman").args(["kill", "-s", "USR1", &c.0]),
        EVENT_DEADLINE,
    ));
    assert!(
        kill.status.success(),
        "podman kill -s USR1 failed: {kill:?}"
    );
    must(run.expect("payload: got USR1", EVENT_DEADLINE));
    let stop = must(vm::run_with_timeout(
        Command::new("podman").args(["stop", "-t", "20", &c.0]),
        Duration::from_secs(60),
    ));
    assert!(stop.status.success(), "podman stop failed: {stop:?}");
    must(run.expect("payload: got TERM", EVENT_DEADLINE));
    let status = must(run.wait_exit(EVENT_DEADLINE));
    assert_eq!(
        status.code(),
        Some(7),
        "--init smss should exit with the payload's 7 after SIGTERM:\n{}",
        run.transcript()
    );
}

// ---- `podman kube play`: a pod with shareProcessNamespace, smss a subreaper ------------------

/// A pod played from YAML, removed (forcefully) when dropped. Its app container runs the
/// image's entrypoint (`/smss --`) with the payload as arguments, in the pod's shared PID
/// namespace, whose PID 1 is the infra container's catatonit: smss is a subreaper there.
struct Pod {
    name: String,
    conf: PathBuf,
}

impl Pod {
    /// `podman kube play` of a one-container pod running `args` after the entrypoint.
    fn play(image: &str, what: &str, args: &[&str]) -> Pod {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "smss-test-pod-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = vm::repo_root().join("target/blackbox").join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // kube play takes no --runtime or --ulimit: what this host needs comes from a
        // containers.conf (architecture.md, "Facts about these machines").
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        let yaml = dir.join("pod.yaml");
        let args: Vec<String> = args
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect();
        std::fs::write(
            &yaml,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  \
                 shareProcessNamespace: true\n  restartPolicy: Never\n  containers:\n  \
                 - name: app\n    image: {image}\n    imagePullPolicy: Never\n    \
                 args: [{}]\n",
                args.join(", ")
            ),
        )
        .unwrap();
        let pod = Pod { name, conf };
        let out = must(vm::run_with_timeout(
            pod.podman().args(["kube", "play"]).arg(&yaml),
            RUN_DEADLINE,
        ));
        assert!(out.status.success(), "podman kube play failed: {out:?}");
        pod
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf);
        c
    }

    fn container(&self) -> String {
        format!("{}-app", self.name)
    }

    /// `podman wait`: the app container's exit code.
    fn wait(&self) -> i32 {
        let out = must(vm::run_with_timeout(
            self.podman().args(["wait", &self.container()]),
            RUN_DEADLINE,
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman wait printed {text:?}: {out:?}"))
    }

    fn logs(&self) -> String {
        let out = must(vm::run_with_timeout(
            self.podman().args(["logs", &self.container()]),
            EVENT_DEADLINE,
        ));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = vm::run_with_timeout(
            self.podman()
                .args(["pod", "rm", "-f", "-t", "0", &self.name]),
            Duration::from_secs(60),
        );
        if let Some(dir) = self.conf.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn kube_pod_with_shared_pid_namespace_smss_is_a_reaping_subreaper() {
    let Some(image) = image() else { return };
    let pod = Pod::play(
        &image,
        "exit",
        &[
            "/bin/sh",
            "-c",
            "echo pid1=$(cat /proc/1/comm) parent=$PPID; exit 42",
        ],
    );
    let code = pod.wait();
    let out = pod.logs();
    assert_eq!(code, 42, "exit 42 in the pod gave {code}:\n{out}");
    // PID 1 of the shared namespace is the infra container's, not smss.
    assert!(
        out.contains("pid1=catatonit") && !out.contains("parent=1\n"),
        "smss should not be PID 1 in a shareProcessNamespace pod:\n{out}"
    );

    let pod = Pod::play(&image, "orphans", &["/bin/sh", "/payload.sh", "orphans"]);
    let code = pod.wait();
    let out = pod.logs();
    assert_eq!(
        code, 0,
        "orphans payload in the pod failed ({code}):\n{out}"
    );
    // The orphans went to smss (their subreaper), not to the pod's PID 1, and were reaped.
    let line = out
        .lines()
        .find(|l| l.starts_with("payload: adopter="))
        .unwrap_or_else(|| panic!("no adopter line:\n{out}"));
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        field("adopter=") == field("parent=") && field("parent=") != "1",
        "orphans not adopted by smss as a subreaper: {line}\n{out}"
    );
    for want in ["payload: orphans=7 left=0", "payload: zombies=0"] {
        assert!(out.contains(want), "{want:?} missing in the pod:\n{out}");
    }
}

#[test]
fn kube_pod_with_shared_pid_namespace_forwards_signals() {
    let Some(image) = image() else { return };
    let pod = Pod::play(&image, "signals", &["/bin/sh", "/payload.sh", "signals"]);
    let mut logs = must(Spawned::spawn(
        "podman logs -f (pod)",
        pod.podman().args(["logs", "-f", &pod.container()]),
        None,
    ));
    must(logs.expect("payload: ready", RUN_DEADLINE));
    let kill = must(vm::run_with_timeout(
        pod.podman().args(["kill", "-s", "USR1", &pod.container()]),
        EVENT_DEADLINE,
    ));
    assert!(
        kill.status.success(),
        "podman kill -s USR1 failed: {kill:?}"
    );
    must(logs.expect("payload: got USR1", EVENT_DEADLINE));
    // SIGTERM to the container's main process (smss), forwarded; the payload exits 7.
    let stop = must(vm::run_with_timeout(
        pod.podman().args(["stop", "-t", "20", &pod.container()]),
        Duration::from_secs(60),
    ));
    assert!(stop.status.success(), "podman stop failed: {stop:?}");
    must(logs.expect("payload: got TERM", EVENT_DEADLINE));
    let code = pod.wait();
    assert_eq!(
        code,
        7,
        "smss in the pod should exit with the payload's 7 after SIGTERM:\n{}",
        pod.logs()
    );
}
