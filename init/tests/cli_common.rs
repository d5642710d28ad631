//! The three binaries read their command lines alike (one parser, `smss::cli`): `--help` prints
//! the usage on stdout and exits 0; an unknown option exits 2 with a message naming it and the
//! usage on stderr; `--` ends the options, and `--` with nothing after it is a usage error.
//! Needs `cargo build --workspace --bins` (for smss-session).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::TIMEOUT;

fn session_binary() -> PathBuf {
    let p = Path::new(common::smss()).with_file_name("smss-session");
    assert!(
        p.exists(),
        "{} is not built: `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// `prog ARGS` under a hard timeout, outside any container, with stdin closed.
fn run(prog: &Path, args: &[&str]) -> Output {
    run_in(prog, args, Path::new("."))
}

/// [`run`] in working directory `dir`.
fn run_in(prog: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new("timeout")
        .args(["-s", "KILL", &TIMEOUT.as_secs().to_string()])
        .arg(prog)
        .args(args)
        .current_dir(dir)
        .env_remove("container")
        .env_remove("SMSS_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn binaries() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("smss", PathBuf::from(common::smss())),
        ("smctl", PathBuf::from(common::smctl())),
        ("smss-session", session_binary()),
    ]
}

#[test]
fn help_is_the_usage_on_stdout_and_exit_0() {
    for (name, prog) in binaries() {
        for flag in ["--help", "-h"] {
            let o = run(&prog, &[flag]);
            assert_eq!(o.status.code(), Some(0), "{name} {flag}: {o:?}");
            assert!(
                text(&o.stdout).starts_with("usage: "),
                "{name} {flag}: {o:?}"
            );
            assert!(o.stderr.is_empty(), "{name} {flag}: {o:?}");
        }
    }
    // Subcommands too.
    let smss = PathBuf::from(common::smss());
    for args in [&["check", "--help"][..], &["import-reg", "--help"][..]] {
        let o = run(&smss, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        assert!(text(&o.stdout).starts_with("usage: "), "{args:?}: {o:?}");
    }
    let o = run(&session_binary(), &["exec", "--help"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // smctl's subcommands as well (before, each was "invalid option '--help'", exit 2).
    let smctl = PathBuf::from(common::smctl());
    for args in [
        &["session", "create", "--help"][..],
        &["session", "create", "--seat", "s", "-h"],
        &["session", "list", "-h"],
        &["session", "--help"],
        &["rename", "--help"],
        &["rename", "/a", "/b", "-h"],
        &["status", "--help"],
        &["subsystem", "start", "--help"],
        &["analyze", "blame", "--help"],
        &["notify", "--help"],
        &["call", "--help"],
    ] {
        let mut a = vec!["--socket", "/nonexistent"];
        a.extend_from_slice(args);
        let o = run(&smctl, &a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        assert!(
            text(&o.stdout).starts_with("usage: smctl"),
            "{args:?}: {o:?}"
        );
        assert!(o.stderr.is_empty(), "{args:?}: {o:?}");
    }
    // After `--` it is the command's own word.
    let o = run(
        &smctl,
        &[
            "--socket",
            "/nonexistent",
            "session",
            "create",
            "--",
            "--help",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn an_unknown_option_exits_2_naming_it() {
    let smss = PathBuf::from(common::smss());
    let smctl = PathBuf::from(common::smctl());
    let session = session_binary();
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (&smss, vec!["--bogus"], "smss: "),
        (&smss, vec!["--config", "/x", "--bogus"], "smss: "),
        (&smss, vec!["check", "--bogus"], "smss: "),
        (
            &smss,
            vec!["import-reg", "--bogus", "a.reg"],
            "smss import-reg: ",
        ),
        (&smctl, vec!["--bogus"], "smctl: "),
        (
            &smctl,
            vec!["--socket", "/nonexistent", "status", "--bogus"],
            "smctl: ",
        ),
        (
            &smctl,
            vec!["--socket", "/nonexistent", "session", "create", "--bogus"],
            "smctl: ",
        ),
        (&session, vec!["--bogus"], "smss-session: "),
        (
            &session,
            vec!["exec", "--bogus", "--", "true"],
            "smss-session exec: ",
        ),
    ];
    for (prog, args, prefix) in cases {
        let o = run(prog, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(err.starts_with(prefix), "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap_or("").contains("--bogus"),
            "{args:?}: {err}"
        );
        assert!(err.contains("usage: "), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: {o:?}");
    }
}

/// A word that is not one of a command's subcommands is named in the message too, as an
/// unknown option is: `smctl session bogus` said only "session needs create, list or terminate".
#[test]
fn an_unknown_subcommand_exits_2_naming_it() {
    let smss = PathBuf::from(common::smss());
    let smctl = PathBuf::from(common::smctl());
    let session = session_binary();
    let s = ["--socket", "/nonexistent"];
    let cases: Vec<(&Path, Vec<&str>, &str)> = vec![
        (&smss, vec!["bogus"], "smss: "),
        (&smctl, vec![s[0], s[1], "bogus"], "smctl: "),
        (&smctl, vec![s[0], s[1], "session", "bogus"], "smctl: "),
        (&smctl, vec![s[0], s[1], "subsystem", "bogus"], "smctl: "),
        (&smctl, vec![s[0], s[1], "analyze", "bogus"], "smctl: "),
        (&session, vec!["bogus"], "smss-session: "),
    ];
    for (prog, args, prefix) in cases {
        let o = run(prog, &args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(err.starts_with(prefix), "{args:?}: {err}");
        assert!(
            err.lines().next().unwrap_or("").contains("bogus"),
            "{args:?}: {err}"
        );
        assert!(err.contains("usage: "), "{args:?}: {err}");
    }
}

#[test]
fn double_dash_with_nothing_after_it_is_a_usage_error() {
    let smss = PathBuf::from(common::smss());
    let smctl = PathBuf::from(common::smctl());
    let session = session_binary();
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&smss, vec!["--"]),
        (&smss, vec!["-g", "--config", "/x", "--"]),
        (
            &smctl,
            vec!["--socket", "/nonexistent", "session", "create", "--"],
        ),
        (&session, vec!["exec", "--"]),
        (&session, vec!["exec", "--user", "nobody", "--"]),
    ];
    for (prog, args) in cases {
        let o = run(prog, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(
            text(&o.stderr).contains("-- needs a command"),
            "{args:?}: {o:?}"
        );
    }
}

/// After `--` every word is the command's, options and `--` included.
#[test]
fn double_dash_ends_the_options() {
    let o = run(
        &session_binary(),
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$0 $1\"; exit 7",
            "--help",
            "--",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert_eq!(text(&o.stdout), "--help --\n");
    // smss import-reg: a file named like an option.
    let o = run(Path::new(common::smss()), &["import-reg", "--", "--help"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(text(&o.stderr).contains("--help"), "{o:?}");
    // smctl: `--` before the command ends smctl's options, not the command's words.
    let o = run(
        Path::new(common::smctl()),
        &["--socket", "/nonexistent", "--", "--help"],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// A fresh directory (canonical) with a configuration whose rename queue is in it: the
/// directory, the queue's path and the `--config` argument.
fn rename_config(name: &str) -> (PathBuf, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let queue = dir.join("queue");
    let cfg = dir.join("smss.toml");
    std::fs::write(
        &cfg,
        format!(
            "[pending-file-rename-operations]\nqueue = \"{}\"\n",
            queue.display()
        ),
    )
    .unwrap();
    let cfg_arg = cfg.display().to_string();
    (dir, queue, cfg_arg)
}

/// `smctl rename` with relative paths queues them absolute, against smctl's working directory
/// (as `mv` takes them): the queue is applied at the next boot from `/`, and refused relative
/// paths before.
#[test]
fn smctl_rename_queues_relative_paths_against_its_working_directory() {
    let (dir, queue, cfg_arg) = rename_config("smctl-relative");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let o = run_in(
        Path::new(common::smctl()),
        &[
            "--socket",
            "/nonexistent/socket",
            "rename",
            "./new",
            "sub/../old",
            "--offline",
            "--config",
            &cfg_arg,
        ],
        &dir.join("sub"),
    );
    assert!(o.status.success(), "{o:?}");
    let want = format!("{d}/sub/new\0{d}/sub/sub/../old\0", d = dir.display());
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&queue).unwrap()),
        want
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty path given to `smctl rename` is a usage error, as `mv ''` is, and nothing is
/// queued: taken against the working directory, `rename ''` queued that directory's deletion
/// and `rename SRC ''` (the queue's own spelling of "delete") a rename of SRC onto it.
#[test]
fn smctl_rename_refuses_an_empty_path() {
    let (dir, queue, cfg_arg) = rename_config("smctl-empty");
    for paths in [&[""][..], &["", "/b"], &["/a", ""]] {
        let mut args = vec!["--socket", "/nonexistent/socket", "rename"];
        args.extend_from_slice(paths);
        args.extend_from_slice(&["--offline", "--config", &cfg_arg]);
        let o = run_in(Path::new(common::smctl()), &args, &dir);
        assert_eq!(o.status.code(), Some(2), "{paths:?}: {o:?}");
        let err = text(&o.stderr);
        assert!(
            err.starts_with("smctl: rename: empty path"),
            "{paths:?}: {err}"
        );
        assert!(
            !queue.exists(),
            "{paths:?} queued {:?}",
            String::from_utf8_lossy(&std::fs::read(&queue).unwrap_or_default())
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
