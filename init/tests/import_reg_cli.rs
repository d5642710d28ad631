//! `smss import-reg` as users run it (interface.md section 8): exit 0 with TOML that
//! `smss check` accepts, 1 with `FILE:LINE: message` per problem and nothing written to `-o`,
//! 2 on usage errors.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn smss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smss"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/tests/fixtures/reg")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smss-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    smss().args(["import-reg"]).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_export_fixture_converts_and_passes_smss_check() {
    let d = scratch("check");
    let mut n = 0;
    for e in std::fs::read_dir(fixture("")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".reg") || name.starts_with("err-") {
            continue;
        }
        let out = d.join(format!("{name}.toml"));
        let o = run(&[
            "--drive",
            "D:=/srv/d",
            "-o",
            out.to_str().unwrap(),
            e.path().to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o.stderr));
        assert!(o.stdout.is_empty());
        assert!(
            text(&o.stderr).contains("written to"),
            "{}",
            text(&o.stderr)
        );
        let c = smss().arg("check").arg(&out).output().unwrap();
        assert_eq!(c.status.code(), Some(0), "{name}: {}", text(&c.stderr));
        n += 1;
    }
    assert!(n >= 7);
}

#[test]
fn stdout_and_stdin() {
    let o = run(&[fixture("utf8-bom.reg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("EDITOR = \"vi\""));
    let mut c = smss()
        .args(["import-reg", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(fixture("regedit-v5-utf16.reg")).unwrap())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("from <stdin> (Windows Registry Editor Version 5.00, UTF-16LE)"));
    assert!(out.contains("boot-execute = [\"autocheck fsck -p -A\"]"));
}

#[test]
fn no_session_manager_values_exit_0_with_a_comment() {
    let o = run(&[fixture("no-session-manager.reg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains("no Session Manager values"));
}

#[test]
fn broken_files_exit_1_list_every_problem_and_write_nothing() {
    let d = scratch("broken");
    let out = d.join("out.toml");
    for (name, lines) in [
        ("err-not-a-registry-export.reg", &[1][..]),
        ("err-several.reg", &[4, 5, 6, 7][..]),
        ("err-odd-utf16.reg", &[4][..]),
    ] {
        let f = fixture(name);
        let f = f.to_str().unwrap();
        let o = run(&["-o", out.to_str().unwrap(), f]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = text(&o.stderr);
        for l in lines {
            assert!(err.contains(&format!("{f}:{l}: ")), "{name}: {err}");
        }
        assert!(err.contains("nothing written"), "{err}");
        assert!(!out.exists(), "{name}: -o was written");
        assert!(
            std::fs::read_dir(&d).unwrap().next().is_none(),
            "a temporary file was left"
        );
    }
    // An existing -o file is left as it was.
    std::fs::write(&out, "keep").unwrap();
    let o = run(&[
        "-o",
        out.to_str().unwrap(),
        fixture("err-several.reg").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep");
    let o = run(&["/nonexistent/sm.reg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).starts_with("/nonexistent/sm.reg:1: cannot read it"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["a.reg", "b.reg"][..],
        &["--drive", "D:relative", "a.reg"][..],
        &["--nope", "a.reg"][..],
        &["-o"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            text(&o.stderr).contains("usage: smss import-reg"),
            "{args:?}"
        );
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).starts_with("usage: smss import-reg"));
}

#[test]
fn output_through_a_symlink_writes_its_target_and_leaves_devices_alone() {
    // `-o /etc/smss/smss.toml` where that is a symlink into a managed tree, and `-o /dev/stdout`
    // (a symlink to a descriptor) or a link to /dev/null: the atomic rename used to replace
    // the link itself with a regular file (as root, `-o /dev/stdout` replaced /dev/stdout).
    let d = scratch("symlink");
    let real = d.join("real.toml");
    std::fs::write(&real, "old").unwrap();
    let link = d.join("smss.toml");
    std::os::unix::fs::symlink("real.toml", &link).unwrap();
    let o = run(&[
        "-o",
        link.to_str().unwrap(),
        fixture("utf8-bom.reg").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced"
    );
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("EDITOR = \"vi\""));

    // A link to a character device: written into, never replaced.
    let null = d.join("null.toml");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    let o = run(&[
        "-o",
        null.to_str().unwrap(),
        fixture("utf8-bom.reg").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        std::fs::symlink_metadata(&null)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link to /dev/null was replaced"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // Nothing else was left in the directory (no temporary file).
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["null.toml", "real.toml", "smss.toml"]);
}

#[test]
fn a_file_over_the_limit_is_not_given_a_made_up_size() {
    // Only the limit and one byte more are read; the message used to give that as the file's
    // size ("the file is 16777217 bytes") whatever it really was.
    let d = scratch("huge");
    let f = d.join("system.reg");
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(40 << 20).unwrap();
    drop(file);
    let o = run(&[f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(":1: the file is larger than the 16 MiB limit"),
        "{err}"
    );
    assert!(!err.contains("16777217"), "{err}");
}

#[test]
fn a_replaced_output_keeps_its_permissions() {
    // `-o /etc/smss/smss.toml` on a file kept 0640: the new file used to get the default
    // 0644 (umask), which a rename then put in its place.
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("mode");
    let out = d.join("smss.toml");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    let o = run(&[
        "-o",
        out.to_str().unwrap(),
        fixture("utf8-bom.reg").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::read_to_string(&out).unwrap().contains("EDITOR"));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "{mode:o}");
}
