//! Tier 4: smss as a container's PID 1, in the image the Dockerfile builds (target `local`,
//! offline) plus busybox and a payload (initramfs/Containerfile.test), run by podman with runc.
//! `SMSS_SKIP_PODMAN=1` skips (loudly); nothing else does.
//!
//! Run: `cargo test -p smss-blackbox --test podman`.

use smss_blackbox::vm::{self, Spawned};
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

#[test]
fn orphans_are_reaped() {
    let Some(image) = image() else { return };
    let (code, out) = run(&image, &["/bin/sh", "/payload.sh", "orphans"]);
    assert_eq!(code, 0, "orphans payload failed ({code}):\n{out}");
    assert!(
        out.contains("payload: orphans=6 left=0"),
        "orphans not reaped within 10 s:\n{out}"
    );
    assert!(
        out.contains("payload: zombies=0"),
        "zombies left in the container (smss did not reap orphans):\n{out}"
    );
}
