//! `smss check`: every shipped configuration is accepted, a broken one lists every problem
//! with its position, and usage errors exit 2 (interface.md section 2).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn smss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smss"))
}

#[test]
fn every_shipped_configuration_is_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["examples", "initramfs", "initramfs/configs"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let o = smss().arg("check").arg(&f).output().unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let plan = String::from_utf8_lossy(&o.stdout);
        assert!(
            plan.contains("boot plan (17 phases)"),
            "{}: {plan}",
            f.display()
        );
    }
}

#[test]
fn a_broken_configuration_lists_every_problem_with_its_position() {
    let dir = std::env::temp_dir().join(format!("smss-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[session-manager]\nprotection-mode = 7\nbogus = 1\n[subsystems]\nrequired = [\"windows\"]\n\
         [[seats]]\nname = \"a\"\ntty = \"tty1\"\n",
    )
    .unwrap();
    let o = smss().arg("check").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let p = f.display();
    for needle in [
        format!("{p}:2:19: "),
        format!("{p}:3:1: unknown key `bogus`"),
        format!("{p}:5:13: "),
        format!("{p}:8:7: "),
        format!("\n4 problem(s) in {p}"),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn usage_and_missing_files() {
    assert_eq!(
        smss().args(["check", "a", "b"]).status().unwrap().code(),
        Some(2)
    );
    let o = smss()
        .args(["check", "/no/such/smss.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/smss.toml:1:1:"));
}

/// Issue 12 item 5: `smss check FIFO` hung in open(); now it says what the file is.
#[test]
fn check_refuses_a_fifo_at_once() {
    let dir = std::env::temp_dir().join(format!("smss-check-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("smss.toml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // `timeout` kills a hang: exit 124 would be the old behaviour.
    let o = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_smss"))
        .arg("check")
        .arg(&fifo)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("configuration file is not a regular file (a FIFO)"),
        "{o:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// As PID 1 of a PID namespace other than the machine's first (docker and containerd set no
/// `container=`), the words come from the runtime, not the kernel: `smss check` checks and
/// `--help` helps, as anywhere but the machine's own init.
#[test]
fn check_and_help_work_as_pid_1_of_a_container_without_container_env() {
    if !Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: cannot unshare a PID namespace here");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = root.join("examples/container.toml");
    let ns = |args: &[&std::ffi::OsStr]| {
        Command::new("timeout")
            .args(["60", "unshare", "--pid", "--fork", "--mount-proc"])
            .arg(env!("CARGO_BIN_EXE_smss"))
            .args(args)
            .env_remove("container")
            .output()
            .unwrap()
    };
    let succeeds_saying = |o: std::process::Output, text: &str| {
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(out.contains(text), "{out}");
    };
    succeeds_saying(
        ns(&["check".as_ref(), cfg.as_os_str()]),
        "boot plan (17 phases)",
    );
    succeeds_saying(ns(&["--help".as_ref()]), "smss check");
}

/// `debug` in `required` is never started, defined or not (Windows has no debugging subsystem
/// any more): the plan says so. Before, a `debug = "..."` definition was accepted and left out
/// of the plan without a word, while examples/full.toml said it was skipped only "without a
/// definition".
#[test]
fn the_plan_shows_that_debug_is_skipped() {
    let dir = std::env::temp_dir().join(format!("smss-check-debug-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("debug.toml");
    std::fs::write(
        &f,
        "[subsystems]\nrequired = [\"Debug\", \"w\"]\nw = \"/bin/true\"\ndebug = \"/bin/false\"\n",
    )
    .unwrap();
    let o = smss().arg("check").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let plan = String::from_utf8_lossy(&o.stdout);
    let phase: Vec<&str> = plan
        .lines()
        .skip_while(|l| !l.contains("required-subsystems:"))
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(str::trim)
        .collect();
    assert_eq!(
        phase,
        [
            "Debug: skipped (no debugging subsystem, as on Windows; never started)",
            "w: /bin/true"
        ],
        "{plan}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The plan says which phases a container or subreaper skips (the machine-only ones), so that
/// `smss check examples/container.toml` does not promise coldplug and swap. Before, only
/// early-mounts said "(system mode only)".
#[test]
fn the_plan_marks_the_machine_only_phases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = smss()
        .arg("check")
        .arg(root.join("examples/container.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let plan = String::from_utf8_lossy(&o.stdout);
    let marked: Vec<&str> = plan
        .lines()
        .filter(|l| l.ends_with(" (system mode only)"))
        .filter_map(|l| l.trim().split_once(". "))
        .filter_map(|(_, rest)| rest.split_once(':'))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        marked,
        [
            "early-mounts",
            "boot-drivers",
            "volumes",
            "volumes-read-write",
            "paging-files",
            "kmode"
        ],
        "{plan}"
    );
}
