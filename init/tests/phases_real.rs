//! Boot phases against the real kernel: the rename queue on a real filesystem (renameat2,
//! rmdir, EXDEV, flock between threads and processes), swap headers read by blkid/swaplabel,
//! and a real swapon. Run as root; each external process has a timeout.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smss::phases::paging_files::{self, swap_header};
use smss::phases::pending_renames::apply;
use smss::rename_queue::{append, append_nowait, parse_queue, Action};
use smss::sys::{RealSys, Sys};

/// A directory under /tmp removed on drop (no tempfile crate in the workspace).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = PathBuf::from(format!(
            "/tmp/smss-phases-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run a command, killing it after `limit`. Returns (exit code, stdout).
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_string(&mut out).unwrap();
            }
            return (status.code(), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---- pending renames ----

#[test]
fn renames_apply_for_real() {
    let t = TempDir::new("apply");
    let d = t.path();
    let q = d.join("state/pending-renames");
    let p = |n: &str| d.join(n);
    for f in [
        "a",
        "b",
        "taken",
        "replace-src",
        "replace-dst",
        "gone",
        "full/child",
    ] {
        fs::create_dir_all(p(f).parent().unwrap()).unwrap();
        fs::write(p(f), f).unwrap();
    }
    fs::create_dir(p("emptydir")).unwrap();

    append(&q, &p("a"), Some(&p("a2")), false).unwrap(); // plain rename
    append(&q, &p("b"), Some(&p("taken")), false).unwrap(); // EEXIST without '!': skipped
    append(&q, &p("replace-src"), Some(&p("replace-dst")), true).unwrap(); // '!' replaces
    append(&q, &p("gone"), None, false).unwrap(); // delete a file
    append(&q, &p("emptydir"), None, false).unwrap(); // rmdir an empty directory
    append(&q, &p("full"), None, false).unwrap(); // ENOTEMPTY: skipped
    append(&q, &p("missing"), Some(&p("m")), false).unwrap(); // ENOENT: skipped
                                                              // EXDEV: /dev/shm is a tmpfs, /tmp is not (checked; otherwise this entry just renames).
    let cross = Path::new("/dev/shm").join(format!("smss-xdev-{}", std::process::id()));
    let xdev = fs::metadata("/dev/shm").is_ok_and(|m| m.dev() != fs::metadata(d).unwrap().dev());
    fs::write(p("x"), "x").unwrap();
    append(&q, &p("x"), Some(&cross), false).unwrap();
    append(&q, &p("taken"), Some(&p("taken2")), false).unwrap(); // still applied after failures

    assert_eq!(
        fs::metadata(&q).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = apply(&RealSys, &q).unwrap();
    let _ = fs::remove_file(&cross);

    assert_eq!(fs::read_to_string(p("a2")).unwrap(), "a");
    assert_eq!(
        fs::read_to_string(p("b")).unwrap(),
        "b",
        "b must not have moved"
    );
    assert_eq!(fs::read_to_string(p("replace-dst")).unwrap(), "replace-src");
    assert!(!p("gone").exists() && !p("emptydir").exists());
    assert!(p("full/child").exists());
    assert_eq!(fs::read_to_string(p("taken2")).unwrap(), "taken");
    let mut expect_fail = vec![
        "taken' failed: File exists",
        "full' => '' failed: Directory not empty",
        "missing' => ",
    ];
    if xdev {
        expect_fail.push("Invalid cross-device link");
        assert!(p("x").exists());
    }
    assert_eq!(r.failures.len(), expect_fail.len(), "{r:?}");
    for (f, e) in r.failures.iter().zip(&expect_fail) {
        assert!(f.contains(e), "{f} !~ {e}");
    }
    assert_eq!(r.applied, 9 - expect_fail.len());
    // The queue is consumed: neither it nor the claimed copy is left.
    assert!(!q.exists());
    assert!(!d.join("state/pending-renames.processing").exists());
    // Applying again is a no-op.
    assert_eq!(apply(&RealSys, &q).unwrap().applied, 0);
}

/// Issue 12 item 3: queue `dir/f -> out/f` and a delete of `dir/g`, then replace `dir` with
/// a symlink that an ordinary user owns, pointing to a root-only directory. Root must not
/// move or delete the secret files through it. A root-owned link (the `/var -> /data/var`
/// kind, absolute or relative with `..`) is still followed.
#[test]
fn renames_do_not_follow_a_users_symlink() {
    if !is_root() {
        eprintln!("SKIP renames_do_not_follow_a_users_symlink: needs root (lchown)");
        return;
    }
    let t = TempDir::new("symlink");
    let d = t.path();
    let q = d.join("state/pending-renames");
    let nobody = nix::unistd::Uid::from_raw(65534);
    let user_gid = nix::unistd::Gid::from_raw(65534);
    let p = |n: &str| d.join(n);
    // The user's tree.
    for dir in ["home", "home/dir", "home/out"] {
        fs::create_dir(p(dir)).unwrap();
        nix::unistd::chown(&p(dir), Some(nobody), Some(user_gid)).unwrap();
    }
    fs::write(p("home/dir/f"), "user f").unwrap();
    fs::write(p("home/dir/g"), "user g").unwrap();
    // Root's secrets.
    fs::create_dir(p("secret")).unwrap();
    fs::set_permissions(p("secret"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(p("secret/f"), "secret f").unwrap();
    fs::write(p("secret/g"), "secret g").unwrap();
    append(&q, &p("home/dir/f"), Some(&p("home/out/f")), false).unwrap();
    append(&q, &p("home/dir/g"), None, false).unwrap();
    // Deeper: the link in the middle of a longer path, and as the destination's parent.
    append(&q, &p("home/out/mine"), Some(&p("home/dir/stolen")), false).unwrap();
    fs::write(p("home/out/mine"), "mine").unwrap();

    // Root-owned links are followed: absolute, and relative with `..`.
    fs::create_dir_all(p("data/var")).unwrap();
    fs::write(p("data/var/a"), "a").unwrap();
    fs::write(p("data/var/c"), "c").unwrap();
    std::os::unix::fs::symlink(p("data/var"), p("var")).unwrap();
    fs::create_dir(p("links")).unwrap();
    std::os::unix::fs::symlink("../data/var", p("links/rel")).unwrap();
    fs::write(p("data/var/r"), "r").unwrap();
    append(&q, &p("var/a"), Some(&p("var/b")), false).unwrap();
    append(&q, &p("var/c"), None, false).unwrap();
    append(&q, &p("links/rel/r"), Some(&p("var/r2")), false).unwrap();
    // But root's link inside the user's directory is not: the user may have renamed it there.
    std::os::unix::fs::symlink(p("secret"), p("home/rootlink")).unwrap();
    append(&q, &p("home/rootlink/f"), Some(&p("home/out/f2")), false).unwrap();
    // A user's symlink as the last component is renamed or deleted itself, never its target.
    std::os::unix::fs::symlink(p("secret/f"), p("home/lastlink")).unwrap();
    nix::unistd::fchownat(
        None,
        &p("home/lastlink"),
        Some(nobody),
        Some(user_gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    append(&q, &p("home/lastlink"), None, false).unwrap();

    // The attack: dir becomes the user's symlink to the root-only directory.
    fs::rename(p("home/dir"), p("home/old-dir")).unwrap();
    std::os::unix::fs::symlink(p("secret"), p("home/dir")).unwrap();
    nix::unistd::fchownat(
        None,
        &p("home/dir"),
        Some(nobody),
        Some(user_gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();

    let r = apply(&RealSys, &q).unwrap();
    assert_eq!(
        fs::read_to_string(p("secret/f")).unwrap(),
        "secret f",
        "{r:?}"
    );
    assert_eq!(
        fs::read_to_string(p("secret/g")).unwrap(),
        "secret g",
        "{r:?}"
    );
    assert!(!p("home/out/f").exists(), "{r:?}");
    assert!(!p("secret/stolen").exists(), "{r:?}");
    assert_eq!(fs::read_to_string(p("home/out/mine")).unwrap(), "mine");
    assert!(!p("home/out/f2").exists(), "{r:?}");
    assert_eq!(r.failures.len(), 4, "{r:?}");
    for f in &r.failures[..3] {
        assert!(
            f.contains("refused to follow symlink \"dir\" owned by uid 65534"),
            "{f}"
        );
    }
    assert!(
        r.failures[3]
            .contains("refused to follow symlink \"rootlink\" in a directory owned by uid 65534"),
        "{r:?}"
    );
    // Root's links worked.
    assert_eq!(fs::read_to_string(p("data/var/b")).unwrap(), "a");
    assert!(!p("data/var/c").exists());
    assert_eq!(fs::read_to_string(p("data/var/r2")).unwrap(), "r");
    // The last-component link itself went; its target stayed.
    assert!(fs::symlink_metadata(p("home/lastlink")).is_err());
    assert_eq!(r.applied, 4, "{r:?}");
}

#[test]
fn crash_after_claim_is_not_replayed() {
    let t = TempDir::new("crash");
    let q = t.path().join("pending-renames");
    let f = t.path().join("victim");
    fs::write(&f, "keep").unwrap();
    append(&q, &f, None, false).unwrap();
    // A boot claimed the queue and died before (or while) applying it.
    fs::rename(&q, t.path().join("pending-renames.processing")).unwrap();
    // Something queued after that boot is applied; the claimed one is not.
    let g = t.path().join("new");
    fs::write(&g, "").unwrap();
    append(&q, &g, None, false).unwrap();
    let r = apply(&RealSys, &q).unwrap();
    assert_eq!(r.applied, 1);
    assert!(f.exists(), "the crashed boot's queue was replayed");
    assert!(!g.exists());
    let stale = t.path().join("pending-renames.stale");
    assert_eq!(r.stale.as_deref(), Some(stale.as_path()));
    assert_eq!(parse_queue(&fs::read(stale).unwrap()).entries.len(), 1);
}

#[test]
fn torn_tail_is_cut_before_appending() {
    let t = TempDir::new("torn");
    let q = t.path().join("q");
    fs::write(&q, b"/ok\0\0/half-written-sour").unwrap();
    append(&q, Path::new("/s"), Some(Path::new("/d")), false).unwrap();
    let parsed = parse_queue(&fs::read(&q).unwrap());
    assert!(parsed.dropped.is_empty(), "{parsed:?}");
    assert_eq!(parsed.entries.len(), 2);
    assert_eq!(parsed.entries[1].source, Path::new("/s"));
}

#[test]
fn pid_1s_append_does_not_wait_for_a_held_lock() {
    let t = TempDir::new("held");
    let q = t.path().join("q");
    append(&q, Path::new("/a"), None, false).unwrap();
    let holder = smss::sys::lock_exclusive(fs::File::open(&q).unwrap()).unwrap();
    let e = append_nowait(&q, Path::new("/b"), None, false).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    drop(holder);
    append_nowait(&q, Path::new("/b"), None, false).unwrap();
    assert_eq!(parse_queue(&fs::read(&q).unwrap()).entries.len(), 2);
}

/// A writer stopped while it holds the queue's lock (an `smctl rename` suspended with
/// Ctrl-Z) must not stop the boot: the claim gives up after a bounded wait and the queue is
/// left, whole, for the next boot.
#[test]
fn boot_claim_does_not_wait_forever_for_a_held_lock() {
    let t = TempDir::new("heldboot");
    let q = t.path().join("q");
    let f = t.path().join("f");
    fs::write(&f, "").unwrap();
    append(&q, &f, None, false).unwrap();
    let holder = smss::sys::lock_exclusive(fs::File::open(&q).unwrap()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let q2 = q.clone();
    std::thread::spawn(move || {
        let _ = tx.send(apply(&RealSys, &q2).map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the claim waited for the lock for 30 s");
    let e = r.unwrap_err();
    assert!(e.contains("locked by another writer"), "{e}");
    assert!(f.exists() && q.exists());
    drop(holder);
    assert_eq!(apply(&RealSys, &q).unwrap().applied, 1);
}

const WRITERS: usize = 4;
const PER_WRITER: usize = 150;

/// One writer: PER_WRITER pairs with long paths (so a torn or interleaved write would show).
fn write_pairs(q: &Path, tag: &str) {
    let long = "p".repeat(300);
    for i in 0..PER_WRITER {
        let src = PathBuf::from(format!("/src/{tag}/{i}/{long}"));
        let dst = PathBuf::from(format!("/dst/{tag}/{i}/{long}"));
        append(q, &src, Some(&dst), i & 1 == 0).unwrap();
    }
}

fn check_pairs(bytes: &[u8], tags: &[String]) {
    let parsed = parse_queue(bytes);
    assert!(parsed.dropped.is_empty(), "{:?}", parsed.dropped);
    assert_eq!(parsed.entries.len(), tags.len() * PER_WRITER);
    for e in &parsed.entries {
        let src = e.source.to_str().unwrap();
        let Action::Rename {
            destination,
            replace,
        } = &e.action
        else {
            panic!("{e:?}");
        };
        let i: usize = src.split('/').nth(3).unwrap().parse().unwrap();
        assert_eq!(
            destination.to_str().unwrap(),
            src.replacen("/src/", "/dst/", 1)
        );
        assert_eq!(*replace, i & 1 == 0);
    }
    for tag in tags {
        let n = parsed
            .entries
            .iter()
            .filter(|e| e.source.starts_with(format!("/src/{tag}")))
            .count();
        assert_eq!(n, PER_WRITER, "{tag}");
    }
}

#[test]
fn concurrent_thread_appenders_write_whole_pairs() {
    let t = TempDir::new("threads");
    let q = t.path().join("q");
    let tags: Vec<String> = (0..WRITERS).map(|w| format!("t{w}")).collect();
    std::thread::scope(|s| {
        for tag in &tags {
            let q = &q;
            s.spawn(move || write_pairs(q, tag));
        }
    });
    check_pairs(&fs::read(&q).unwrap(), &tags);
}

/// Child side of the process test: the test binary re-runs itself with these variables set.
#[test]
fn concurrent_process_appender_child() {
    if let (Ok(q), Ok(tag)) = (
        std::env::var("SMSS_TEST_QUEUE"),
        std::env::var("SMSS_TEST_TAG"),
    ) {
        write_pairs(Path::new(&q), &tag);
    }
}

#[test]
fn concurrent_process_appenders_write_whole_pairs() {
    let t = TempDir::new("procs");
    let q = t.path().join("q");
    let exe = std::env::current_exe().unwrap();
    let tags: Vec<String> = (0..WRITERS).map(|w| format!("p{w}")).collect();
    let mut children: Vec<_> = tags
        .iter()
        .map(|tag| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_process_appender_child",
                    "--test-threads=1",
                ])
                .env("SMSS_TEST_QUEUE", &q)
                .env("SMSS_TEST_TAG", tag)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in &mut children {
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "writer failed: {st}");
                break;
            }
            if Instant::now() > deadline {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!("writers did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    check_pairs(&fs::read(&q).unwrap(), &tags);
}

#[test]
fn appends_racing_a_claim_are_never_lost() {
    // Writers append while boots claim and apply the queue over and over: every pair ends up
    // applied exactly once (here: reported as failed, the sources do not exist) or still queued.
    let t = TempDir::new("race");
    let q = t.path().join("q");
    let tags: Vec<String> = (0..2).map(|w| format!("r{w}")).collect();
    let mut seen = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = tags
            .iter()
            .map(|tag| {
                let q = &q;
                s.spawn(move || write_pairs(q, tag))
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            let r = apply(&RealSys, &q).unwrap();
            assert!(r.dropped.is_empty(), "{r:?}");
            seen += r.applied + r.failed;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let r = apply(&RealSys, &q).unwrap();
    seen += r.applied + r.failed;
    assert_eq!(seen, tags.len() * PER_WRITER);
}

// ---- swap ----

fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[test]
fn swap_header_is_read_by_blkid_and_swaplabel() {
    let t = TempDir::new("hdr");
    let f = t.path().join("swapfile");
    let size = 16u64 << 20;
    let uuid = [
        0x3e, 0x1f, 0x64, 0x2a, 0x5b, 0x7c, 0x4d, 0x9e, 0x8f, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65,
        0x76,
    ];
    RealSys.allocate_file(&f, size, 0o600).unwrap();
    RealSys
        .write_at(
            &f,
            0,
            &swap_header(RealSys.page_size(), size, uuid, "smss-test"),
        )
        .unwrap();

    let (code, out) = run_with_timeout(
        Command::new("blkid").args(["-p", "-o", "export"]).arg(&f),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "blkid: {out}");
    assert!(out.lines().any(|l| l == "TYPE=swap"), "{out}");
    assert!(
        out.lines()
            .any(|l| l == format!("UUID={}", uuid_string(&uuid))),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "LABEL=smss-test"), "{out}");
    assert!(out.lines().any(|l| l == "VERSION=1"), "{out}");

    let (code, out) = run_with_timeout(Command::new("swaplabel").arg(&f), Duration::from_secs(30));
    assert_eq!(code, Some(0), "swaplabel: {out}");
    assert!(out.contains("LABEL: smss-test"), "{out}");
    assert!(
        out.contains(&format!("UUID:  {}", uuid_string(&uuid))),
        "{out}"
    );

    // smss's own probe agrees.
    let id = smss::phases::volumes::probe(&|off, len| RealSys.read_at(&f, off, len).ok()).unwrap();
    assert_eq!((id.fstype, id.label.as_str()), ("swap", "smss-test"));
    assert_eq!(id.uuid, uuid_string(&uuid));
}

/// swapoff on drop, so a failing assertion does not leave the test file in use.
struct SwapGuard(PathBuf);
impl Drop for SwapGuard {
    fn drop(&mut self) {
        let _ = smss::sys::swapoff(&self.0);
    }
}

fn active_priority(f: &Path) -> Option<i32> {
    let swaps = fs::read_to_string("/proc/swaps").ok()?;
    swaps.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (Path::new(cols.first()?) == f).then(|| cols.get(4)?.parse().ok())?
    })
}

#[test]
fn real_swapon_then_swapoff() {
    if !is_root() {
        println!("skipped: not root");
        return;
    }
    let t = TempDir::new("swapon");
    let f = t.path().join("probe.swap");
    let size = 16u64 << 20;
    RealSys.allocate_file(&f, size, 0o600).unwrap();
    RealSys
        .write_at(&f, 0, &swap_header(RealSys.page_size(), size, [1; 16], ""))
        .unwrap();
    match RealSys.swapon(&f, 3) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EINVAL)) => {
            println!("skipped: swapon on {} refused: {e}", t.path().display());
            return;
        }
        Err(e) => panic!("swapon: {e}"),
    }
    {
        let _g = SwapGuard(f.clone());
        assert_eq!(active_priority(&f), Some(3));
    }
    assert_eq!(active_priority(&f), None);
    fs::remove_file(&f).unwrap();

    // The whole phase: two entries, the first with the higher priority, mode 0600.
    let files = [
        smss_config::PagingFile {
            path: t.path().join("one.swap"),
            any_volume: false,
            min_mb: 16,
            max_mb: 0,
        },
        smss_config::PagingFile {
            path: t.path().join("two.swap"),
            any_volume: false,
            min_mb: 32,
            max_mb: 64,
        },
    ];
    let _g1 = SwapGuard(files[0].path.clone());
    let _g2 = SwapGuard(files[1].path.clone());
    let out = paging_files::run(&RealSys, &files, &[t.path().to_path_buf()]);
    assert_eq!(out.len(), 2, "{out:?}");
    for o in &out {
        assert!(o.result.is_ok(), "{o:?}");
    }
    assert_eq!(active_priority(&files[0].path), Some(16));
    assert_eq!(active_priority(&files[1].path), Some(15));
    let m = fs::metadata(&files[1].path).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(m.len(), 32 << 20);
    // A second boot finds them active and leaves them alone.
    let again = paging_files::run(&RealSys, &files, &[t.path().to_path_buf()]);
    assert!(again
        .iter()
        .all(|o| o.result.as_ref().is_ok_and(|s| s.reused)));
}
