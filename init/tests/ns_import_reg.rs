//! Tier 3 round trip for `smss import-reg`: the TOML imported from a `.reg` fixture (UTF-16LE,
//! as regedit writes it) boots the real smss as PID 1 of a PID namespace, and every imported
//! value has its effect: BootExecute ran, the environment and the DOS device are there, the
//! object directory was made, the Required subsystem runs.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Ns, TIMEOUT};

#[test]
fn imported_configuration_boots() {
    require_unshare!();
    let d = std::env::temp_dir().join(format!("smss-import-boot-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    let d = d.canonicalize().unwrap();
    let cfg = d.join("smss.toml");
    let fixture: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/fixtures/reg/roundtrip.reg");
    let o = Command::new(common::smss())
        .args(["import-reg", "--drive"])
        .arg(format!("S:={}", d.display()))
        .arg("-o")
        .arg(&cfg)
        .arg(&fixture)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let toml = fs::read_to_string(&cfg).unwrap();

    // The initial command (container use) reports what the imported configuration did.
    let probe = "echo \"IMPORTED=$SMSS_IMPORTED TEMP=$TEMP\"; \
                 echo \"X=$(readlink /run/smss/dosdevices/X:)\"; \
                 [ -d /run/smss/objects/Windows ] && echo OBJECTS-OK; \
                 [ -e \"$1/boot-execute\" ] && echo BOOT-EXECUTE-OK; \
                 for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = sleep ] && echo TICK-RUNNING; done; \
                 echo PROBE-DONE";
    let ns = Ns::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            probe,
            "probe",
            d.to_str().unwrap(),
        ],
        &[("container", "test"), ("SMSS_LOG", "info")],
    );
    let out = ns.wait(TIMEOUT);
    assert_eq!(out.code, 0, "{out:?}\n{toml}");
    let want = [
        format!("IMPORTED={}/data TEMP=/Windows/TEMP", d.display()),
        format!("X={}/target", d.display()),
        "OBJECTS-OK".into(),
        "BOOT-EXECUTE-OK".into(),
        "TICK-RUNNING".into(),
        "PROBE-DONE".into(),
    ];
    for w in want {
        assert!(out.stdout.contains(&w), "no {w:?} in {out:?}\n{toml}");
    }
    for phase in [
        "environment",
        "dos-devices",
        "boot-execute",
        "required-subsystems",
    ] {
        assert!(
            out.stderr.contains(&format!("phase {phase} done")),
            "{phase}: {}",
            out.stderr
        );
    }
    let _ = fs::remove_dir_all(&d);
}
