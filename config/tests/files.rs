//! Opening the configuration file: a FIFO, a device or a directory named as the configuration
//! must give a clear error at once, never block (PID 1 opens it with every signal blocked).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smss-config-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `load` on a thread with a hard timeout: a hang is a test failure, not a hung test.
fn load_within(path: &Path, optional: bool) -> Result<bool, Vec<String>> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let r = if optional {
            smss_config::load_optional(&p).map(|c| c.is_some())
        } else {
            smss_config::load_file(&p).map(|_| true)
        };
        let _ = tx.send(r.map_err(|d| d.0.iter().map(|d| d.to_string()).collect::<Vec<_>>()));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("loading {} blocked", path.display()))
}

#[test]
fn fifo_is_refused_not_waited_on() {
    let d = tempdir("fifo");
    let fifo = d.join("smss.toml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for optional in [false, true] {
        let e = load_within(&fifo, optional).unwrap_err();
        assert_eq!(
            e,
            [format!(
                "{}:1:1: configuration file is not a regular file (a FIFO)",
                fifo.display()
            )]
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn devices_and_directories_are_refused() {
    let e = load_within(Path::new("/dev/zero"), true).unwrap_err();
    assert_eq!(
        e,
        ["/dev/zero:1:1: configuration file is not a regular file (a character device)"]
    );
    let d = tempdir("dir");
    let e = load_within(&d, false).unwrap_err();
    assert_eq!(
        e,
        [format!(
            "{}:1:1: configuration file is not a regular file (a directory)",
            d.display()
        )]
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn regular_file_and_missing_file_still_work() {
    let d = tempdir("regular");
    let f = d.join("smss.toml");
    std::fs::write(&f, "[environment]\nA = \"1\"\n").unwrap();
    assert_eq!(load_within(&f, false), Ok(true));
    assert_eq!(load_within(&d.join("missing.toml"), true), Ok(false));
    // Larger than the limit: refused without reading it all.
    std::fs::write(&f, vec![b'#'; smss_config::MAX_CONFIG_SIZE as usize + 1]).unwrap();
    let e = load_within(&f, false).unwrap_err();
    assert_eq!(
        e,
        [format!(
            "{}:1:1: configuration file is larger than 1048576 bytes",
            f.display()
        )]
    );
    let _ = std::fs::remove_dir_all(&d);
}
