//! Tier 3: the boot sequence of a real `smss` (container mode, PID 1 of a PID + mount namespace)
//! over a scratch directory: environment, DOS devices, BootExecute, the rename queue, Required
//! subsystems with readiness, SetupExecute, the initial command, Execute — and the bugchecks.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{bounded, Ns, TIMEOUT};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smss-boot-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Python one-liner that says READY=1 on $NOTIFY_SOCKET (abstract when it starts with '@').
const NOTIFY: &str = "python3 -c \"import os,socket; a=os.environ['NOTIFY_SOCKET']; a='\\0'+a[1:] if a[0]=='@' else a; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'READY=1', a)\"";

fn start(cfg: &Path) -> Ns {
    Ns::start(
        &["--config", cfg.to_str().unwrap()],
        &[("container", "test"), ("SMSS_LOG", "info")],
    )
}

/// Read stderr until `needle` (the log is on stderr in container mode).
fn expect_log(ns: &Ns, needle: &str) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match ns.stderr.recv_timeout(left) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
                if l.contains(needle) {
                    return seen;
                }
            }
            Err(e) => panic!(
                "no log line containing {needle:?} ({e:?} after {:?}); saw:\n{seen}\nstdout: {:?}",
                ns.started.elapsed(),
                ns.lines.try_iter().collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn boot_runs_every_phase_in_order_with_its_effects() {
    require_unshare!();
    let d = scratch("full");
    let p = |s: &str| d.join(s).display().to_string();
    // The rename queue: rename, delete, replace-existing, no-replace onto an existing file
    // (skipped), a missing source (skipped), an empty directory delete, and an odd trailing
    // source that Windows' parser drops.
    for f in ["src1", "src2", "src3", "dst3", "src4", "dst4"] {
        fs::write(d.join(f), f).unwrap();
    }
    fs::create_dir(d.join("emptydir")).unwrap();
    let mut q = Vec::new();
    for (s, t) in [
        (p("src1"), p("dst1")),
        (p("src2"), String::new()),
        (p("src3"), format!("!{}", p("dst3"))),
        (p("src4"), p("dst4")),
        (p("missing"), p("whatever")),
        (p("emptydir"), String::new()),
    ] {
        q.extend_from_slice(s.as_bytes());
        q.push(0);
        q.extend_from_slice(t.as_bytes());
        q.push(0);
    }
    q.extend_from_slice(p("odd").as_bytes());
    q.push(0);
    fs::write(d.join("queue"), &q).unwrap();

    let order = p("order");
    let cfg = format!(
        r#"
[session-manager]
object-directories = ["{objects}/a", "{objects}/b"]
dos-devices-directory = "{dos}"
boot-execute = [
  "autocheck no-such-fsck-anywhere -p",
  {{ command = ["sh", "-c", "echo boot-execute %SMSS_T% >> {order}"] }},
]
setup-execute = [{{ command = ["sh", "-c", "echo setup >> {order}"] }}]
execute = [{{ command = ["sh", "-c", "echo execute >> {order}"] }}]

[environment]
SMSS_T = "t1"
SMSS_U = "%SMSS_T%-u"
SMSS_FWD = "%SMSS_LATER%"
SMSS_LATER = "x"

[dos-devices]
"C:" = "/"
"NUL" = "/dev/null"
"{abs}" = "%SMSS_T%"

[pending-file-rename-operations]
queue = "{queue}"

[subsystems]
required = ["debug", "alpha", "beta"]
alpha = {{ command = ["sh", "-c", "echo alpha >> {order}; sleep 0.3; echo alpha-ready >> {order}; {notify}; exec sleep 1000"], ready = "notify", ready-timeout = "10s" }}
beta = {{ command = ["sh", "-c", "echo beta >> {order}; {notify}; exec sleep 1000"], ready = "notify" }}

[sessions]
session0-initial-command = {{ command = ["sh", "-c", "env > {env}; echo initial-done; exec sleep 1000"] }}
"#,
        objects = p("objects"),
        dos = p("dosdevices"),
        order = order,
        abs = p("abs-link"),
        queue = p("queue"),
        env = p("env"),
        notify = NOTIFY.replace('\\', "\\\\").replace('"', "\\\""),
    );
    let cfg_path = d.join("smss.toml");
    fs::write(&cfg_path, cfg).unwrap();
    let check = std::process::Command::new(common::smss())
        .args(["check", cfg_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "smss check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let ns = start(&cfg_path);
    let log = expect_log(&ns, "boot complete");
    // Every phase, in the order of the plan.
    let phases = smss_config::plan::PHASE_NAMES;
    let mut at = 0;
    for ph in phases {
        let needle = format!("phase {ph} ");
        let found = log[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no {needle:?} after byte {at} in:\n{log}"));
        at += found + needle.len();
    }
    assert!(
        log.contains("no-such-fsck-anywhere program not found - skipping AUTOCHECK"),
        "{log}"
    );

    // The initial command runs alongside Execute (it is started, not awaited): its own word
    // on stdout says when its environment dump is complete.
    ns.expect_line("initial-done", TIMEOUT);
    // Order: boot-execute, then alpha fully ready before beta starts, then the rest.
    let text = fs::read_to_string(&order).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "boot-execute t1",
            "alpha",
            "alpha-ready",
            "beta",
            "setup",
            "execute"
        ],
        "{log}"
    );
    // Environment: expansion in file order, forward references stay literal, generated facts.
    let env = fs::read_to_string(d.join("env")).unwrap();
    assert!(env.contains("SMSS_U=t1-u\n"), "{env}");
    assert!(env.contains("SMSS_FWD=%SMSS_LATER%\n"), "{env}");
    assert!(env.contains("NUMBER_OF_PROCESSORS="), "{env}");
    // Object directories and DOS devices.
    assert!(d.join("objects/a").is_dir() && d.join("objects/b").is_dir());
    assert_eq!(
        fs::read_link(d.join("dosdevices/C:")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        fs::read_link(d.join("dosdevices/NUL")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(fs::read_link(d.join("abs-link")).unwrap(), Path::new("t1"));
    // Renames: applied once, in order, per Windows' rules; the queue is consumed.
    assert_eq!(fs::read_to_string(d.join("dst1")).unwrap(), "src1");
    assert!(!d.join("src1").exists() && !d.join("src2").exists());
    assert_eq!(fs::read_to_string(d.join("dst3")).unwrap(), "src3");
    assert_eq!(
        fs::read_to_string(d.join("dst4")).unwrap(),
        "dst4",
        "no-replace overwrote"
    );
    assert!(d.join("src4").exists(), "the skipped source must stay");
    assert!(!d.join("emptydir").exists());
    assert!(!d.join("queue").exists(), "queue not consumed");

    // The container ends with its initial command's status: killed by the forwarded SIGTERM.
    ns.signal(libc::SIGTERM);
    let o = ns.wait(TIMEOUT);
    assert_eq!(o.code, 128 + libc::SIGTERM, "{o:?}");
}

fn bugcheck_case(name: &str, cfg: &str) -> (i32, String) {
    let d = scratch(name);
    let cfg_path = d.join("smss.toml");
    fs::write(&cfg_path, cfg).unwrap();
    let o = start(&cfg_path).wait(TIMEOUT);
    (o.code, o.stderr)
}

#[test]
fn subsystem_not_ready_in_time_is_a_bugcheck() {
    require_unshare!();
    let (code, err) = bugcheck_case(
        "ready-timeout",
        "[subsystems]\nrequired = [\"slow\"]\nslow = { command = [\"sleep\", \"1000\"], ready = \"notify\", ready-timeout = \"300ms\" }\n",
    );
    assert!(
        err.contains("subsystem slow did not become ready in time"),
        "{err}"
    );
    assert!(
        err.contains("*** STOP: 0xC000021A (STATUS_SYSTEM_PROCESS_TERMINATED) process=slow"),
        "{err}"
    );
    assert_eq!(code, 128 + libc::SIGKILL, "{err}");
}

/// The one readiness trust rule (os::notify::from_service) for PID 1's subsystems: a root
/// helper that is neither the subsystem nor its child (a subshell's child here) counts unless
/// it names another process as MAINPID.
fn grandchild_notify(payload: &str) -> String {
    let notify = NOTIFY.replace("b'READY=1'", &format!("b'{payload}'"));
    let cmd = format!("({notify}; true); exec sleep 1000");
    format!(
        "[subsystems]\nrequired = [\"slow\"]\nslow = {{ command = [\"sh\", \"-c\", \"{}\"], ready = \"notify\", ready-timeout = \"2s\" }}\n",
        cmd.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[test]
fn root_naming_another_mainpid_is_not_the_subsystems_readiness() {
    require_unshare!();
    let (code, err) = bugcheck_case("other-mainpid", &grandchild_notify("READY=1\\nMAINPID=1"));
    assert!(
        err.contains("subsystem slow did not become ready in time"),
        "{err}"
    );
    assert_eq!(code, 128 + libc::SIGKILL, "{err}");
}

#[test]
fn a_root_helpers_readiness_counts() {
    require_unshare!();
    let d = scratch("root-helper");
    let cfg_path = d.join("smss.toml");
    fs::write(&cfg_path, grandchild_notify("READY=1")).unwrap();
    let ns = start(&cfg_path);
    let log = expect_log(&ns, "boot complete");
    assert!(log.contains("subsystem slow is ready"), "{log}");
}

#[test]
fn fatal_boot_execute_failure_is_a_bugcheck() {
    require_unshare!();
    let (code, err) = bugcheck_case(
        "fatal-be",
        "[session-manager]\nboot-execute = [{ command = [\"sh\", \"-c\", \"exit 4\"], fatal = true }]\n\
         [sessions]\nsession0-initial-command = \"sleep 1000\"\n",
    );
    assert!(err.contains("process=smss:boot-execute"), "{err}");
    assert!(err.contains("status=exited:4"), "{err}");
    assert_eq!(code, 4, "{err}");
    assert!(
        !err.contains("initial command"),
        "boot went on after a fatal step: {err}"
    );
}

#[test]
fn non_fatal_boot_execute_failure_is_logged_and_boot_goes_on() {
    require_unshare!();
    let d = scratch("nonfatal");
    let cfg = "[session-manager]\nboot-execute = [\"sh -c false\"]\n\
               [sessions]\nsession0-initial-command = { command = [\"sleep\", \"1000\"], critical = false }\n";
    let cfg_path = d.join("smss.toml");
    fs::write(&cfg_path, cfg).unwrap();
    let ns = start(&cfg_path);
    let log = expect_log(&ns, "boot complete");
    assert!(log.contains("exited:1"), "{log}");
    ns.signal(libc::SIGTERM);
    assert_eq!(ns.wait(TIMEOUT).code, 128 + libc::SIGTERM);
}

#[test]
fn missing_required_subsystem_program_is_a_bugcheck() {
    require_unshare!();
    let (code, err) = bugcheck_case(
        "missing-sub",
        "[subsystems]\nrequired = [\"windows\"]\nwindows = \"/no/such/csrss\"\n",
    );
    assert!(err.contains("process=windows"), "{err}");
    assert_ne!(code, 0, "{err}");
}

#[test]
fn sigterm_during_a_readiness_wait_stops_promptly() {
    require_unshare!();
    let d = scratch("term-during-boot");
    let cfg_path = d.join("smss.toml");
    fs::write(
        &cfg_path,
        "[subsystems]\nrequired = [\"slow\"]\nslow = { command = [\"sleep\", \"1000\"], ready = \"notify\", ready-timeout = \"60s\" }\n",
    )
    .unwrap();
    let ns = start(&cfg_path);
    expect_log(&ns, "subsystem slow started");
    ns.signal(libc::SIGTERM);
    let o = ns.wait(Duration::from_secs(10));
    assert!(o.elapsed < Duration::from_secs(10));
    assert!(
        !o.stderr.contains("STOP"),
        "a requested stop is not a bugcheck: {o:?}"
    );
}

/// The readiness socket that exists while the boot waits for a Required subsystem is that
/// subsystem's alone: an optional one started on request meanwhile (it runs as root, whose
/// READY=1 would be trusted) must not get it.
#[test]
fn a_subsystem_started_during_a_readiness_wait_gets_no_notify_socket() {
    require_unshare!();
    let d = scratch("deferred-notify");
    let (release, report) = (d.join("release"), d.join("report"));
    for f in [&release, &report] {
        nix::unistd::mkfifo(f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let socket = d.join("control");
    let cfg = d.join("smss.toml");
    fs::write(
        &cfg,
        format!(
            r#"[control]
socket = "{socket}"
[subsystems]
required = ["slow"]
optional = ["extra"]
slow = {{ command = ["sh", "-c", "read x < {release}; {notify}; exec sleep 1000"], ready = "notify", ready-timeout = "60s" }}
extra = {{ command = ["sh", "-c", "echo notify=${{NOTIFY_SOCKET:-none}} > {report}"], ready = "notify", critical = false }}
"#,
            socket = socket.display(),
            release = release.display(),
            report = report.display(),
            notify = NOTIFY.replace('\\', "\\\\").replace('"', "\\\""),
        ),
    )
    .unwrap();
    let ns = start(&cfg);
    expect_log(&ns, "subsystem slow started");
    let o = std::process::Command::new("timeout")
        .args(["20", common::smctl(), "--socket"])
        .arg(&socket)
        .args(["subsystem", "start", "extra"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The fifo's open waits for the writer: extra's report, whenever it comes.
    let said = bounded(move || fs::read_to_string(&report).unwrap());
    assert_eq!(said.trim(), "notify=none");
    // Release slow: it says READY=1 itself and the boot completes.
    bounded(move || fs::write(&release, "go\n").unwrap());
    expect_log(&ns, "subsystem slow is ready");
    expect_log(&ns, "boot complete");
    ns.signal(libc::SIGTERM);
    ns.wait(TIMEOUT);
}

/// Issue 12 item 1: forty variables that each double the previous one made PID 1 allocate
/// gigabytes (a crash, a kernel panic on a machine); a 1 MiB variable made every exec fail
/// with E2BIG. Such a configuration is now invalid (each offending key named, nothing
/// allocated), and what only the boot can see (an inherited variable doubled) is logged and
/// left out while the commands still run.
#[test]
fn oversize_environment_variables_are_refused_or_left_out() {
    require_unshare!();
    let d = scratch("bigenv");
    let mut cfg = format!("[environment]\nV0 = \"{}\"\n", "x".repeat(1024));
    for i in 1..40 {
        cfg.push_str(&format!("V{i} = \"%V{p}%%V{p}%\"\n", p = i - 1));
    }
    cfg.push_str(&format!("BIG = \"{}\"\n", "y".repeat(900 * 1024)));
    let cfg_path = d.join("smss.toml");
    fs::write(&cfg_path, cfg).unwrap();
    let o = common::run(
        &["--config", cfg_path.to_str().unwrap(), "--", "true"],
        &[("container", "test"), ("SMSS_LOG", "info")],
    );
    assert_eq!(o.code, 1, "{o:?}");
    for (line, name) in [(9, "V7"), (24, "V22"), (39, "V37"), (42, "BIG")] {
        assert!(
            o.stderr.contains(&format!(
                "smss.toml:{line}:1: `environment.{name}`: expanded, `{name}=VALUE` would be longer than 131071 bytes"
            )),
            "{name}: {}",
            o.stderr
        );
    }

    // Valid for `check` (BASE is not known there), too large at boot.
    fs::write(
        &cfg_path,
        "[environment]\nDOUBLE = \"%BASE%%BASE%\"\nAFTER = \"ok-%BASE%\"\n",
    )
    .unwrap();
    let base = "b".repeat(100 * 1024);
    let o = common::run(
        &[
            "--config",
            cfg_path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo DOUBLE=${DOUBLE-unset} BASE=${#BASE} AFTER=${#AFTER}",
        ],
        &[("container", "test"), ("SMSS_LOG", "info"), ("BASE", &base)],
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stdout.trim(),
        "DOUBLE=unset BASE=102400 AFTER=102403",
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(
            "environment variable DOUBLE left out: expanded, `DOUBLE=VALUE` would be longer than 131071 bytes"
        ),
        "{}",
        o.stderr
    );
    let _ = fs::remove_dir_all(&d);
}

/// Issue 12 item 5: a FIFO as the rename queue blocked PID 1 in open() with every signal
/// blocked. Now the phase reports it and the boot goes on.
#[test]
fn a_fifo_as_the_rename_queue_does_not_hang_the_boot() {
    require_unshare!();
    let d = scratch("fifoqueue");
    let queue = d.join("queue");
    assert!(std::process::Command::new("mkfifo")
        .arg(&queue)
        .status()
        .unwrap()
        .success());
    let cfg_path = d.join("smss.toml");
    fs::write(
        &cfg_path,
        format!(
            "[pending-file-rename-operations]\nqueue = \"{}\"\n",
            queue.display()
        ),
    )
    .unwrap();
    let o = common::run(
        &["--config", cfg_path.to_str().unwrap(), "--", "echo", "ran"],
        &[("container", "test"), ("SMSS_LOG", "info")],
    );
    assert_eq!((o.code, o.stdout.trim()), (0, "ran"), "{o:?}");
    assert!(
        o.stderr.contains(&format!(
            "{} is not a regular file (a FIFO)",
            queue.display()
        )),
        "{}",
        o.stderr
    );
    let _ = fs::remove_dir_all(&d);
}

/// A container whose configuration is unusable (invalid, missing, a directory) does not start
/// its command and exits 1, and says so on stderr in smss's own log lines (interface.md
/// section 7: every line starts `smss[PID]: `), each problem with its position, then why
/// nothing ran. Before, the problems came bare (`smss.toml:2:1: unknown key ...`, a missing
/// file as `smss: PATH:1:1: no such file`), among the lines of whatever else writes to the
/// container's stderr, and nothing said that the container ended because of them.
#[test]
fn an_unusable_configuration_in_a_container_is_reported_in_log_lines() {
    require_unshare!();
    let d = scratch("unusable");
    let bad = d.join("bad.toml");
    fs::write(&bad, "[session-manager]\nboot-excute = [\"x\"]\n").unwrap();
    let missing = d.join("missing.toml");
    for (cfg, problem) in [
        (
            bad.clone(),
            format!("{}:2:1: unknown key `boot-excute`", bad.display()),
        ),
        (
            missing.clone(),
            format!("{}:1:1: no such file", missing.display()),
        ),
        (
            d.clone(),
            format!(
                "{}:1:1: configuration file is not a regular file",
                d.display()
            ),
        ),
    ] {
        let o = common::run(
            &["--config", cfg.to_str().unwrap(), "--", "echo", "ran"],
            &[("container", "test")],
        );
        assert_eq!((o.code, o.stdout.trim()), (1, ""), "{o:?}");
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert!(
            lines.iter().all(|l| l.starts_with("smss[1]: ")),
            "{}",
            o.stderr
        );
        assert!(
            lines.iter().any(|l| l.contains(&problem)),
            "{problem}: {}",
            o.stderr
        );
        assert!(
            lines.last().is_some_and(|l| l.contains(&format!(
                "configuration {} unusable: not starting",
                cfg.display()
            ))),
            "{}",
            o.stderr
        );
    }
    let _ = fs::remove_dir_all(&d);
}
