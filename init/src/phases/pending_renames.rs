//! PendingFileRenameOperations at boot: the queue ([`crate::rename_queue`], its format,
//! reader and writer) applied once, after the volumes are writable.
//!
//! At most once, as on Windows (which deletes the value as it reads it): the queue is claimed
//! by renaming it to `QUEUE.processing` and fsyncing the directory before anything is applied.
//! A `.processing` file found at boot is from a boot that crashed mid-way: it is not replayed
//! (some of its entries ran, and replaying e.g. a delete after a later rename is unsafe); it is
//! moved to `QUEUE.stale` (replacing an older one) for an administrator to inspect.
//!
//! RENAME_NOREPLACE unsupported by a filesystem (EINVAL) fails the entry rather than risk an
//! overwrite; nothing is ever copied (EXDEV fails the entry, as on Windows).
//!
//! Hardening (issue 12): the paths are walked without following any symlink that root does
//! not own ([`crate::sys::chase`]), and the change is made relative to the opened parent
//! directories. At most [`MAX_QUEUE_SIZE`] bytes of the queue are applied.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{errno, PhaseError};
use crate::rename_queue::{
    parent_dir, with_suffix, Action, Entry, Item, QueueReader, MAX_QUEUE_SIZE, MAX_REPORTED,
};
use crate::sys::Sys;

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenameReport {
    /// Entries applied successfully.
    pub applied: usize,
    /// Entries that failed, all of them (`failures` shows the first few).
    pub failed: usize,
    /// One `'src' => 'dst' failed: cause` line per failed entry (the first [`MAX_REPORTED`]).
    pub failures: Vec<String>,
    /// Queue contents that were not operations (torn, odd, invalid, too long, past the size
    /// limit; the first [`MAX_REPORTED`]).
    pub dropped: Vec<String>,
    /// Failure and drop lines beyond [`MAX_REPORTED`], counted but not logged one by one.
    pub omitted: usize,
    /// Where a leftover `.processing` file from a crashed boot was moved.
    pub stale: Option<PathBuf>,
}

impl RenameReport {
    fn note(&mut self, failure: bool, line: String) {
        if failure {
            self.failed += 1;
        }
        if self.failures.len() + self.dropped.len() >= MAX_REPORTED {
            self.omitted += 1;
            return;
        }
        log::warn!("{line}");
        if failure {
            self.failures.push(line);
        } else {
            self.dropped.push(line);
        }
    }
}

/// Claim and apply the queue at `queue` (see the module docs). A missing queue is nothing to
/// do. Entry failures are logged and reported, never returned; Err only when the queue could
/// not be claimed or read.
pub fn apply(sys: &dyn Sys, queue: &Path) -> Result<RenameReport, PhaseError> {
    let dir = parent_dir(queue);
    let processing = with_suffix(queue, ".processing");
    let mut report = RenameReport::default();

    if sys.exists(&processing) {
        let stale = with_suffix(queue, ".stale");
        log::warn!(
            "{} is left from a boot that crashed while applying it; not replayed, moved to {}",
            processing.display(),
            stale.display()
        );
        match sys.rename(&processing, &stale) {
            Ok(()) => {
                let _ = sys.fsync_dir(dir);
                report.stale = Some(stale);
            }
            Err(e) => log::warn!(
                "failed to move {} to {}: {e}",
                processing.display(),
                stale.display()
            ),
        }
    }

    // Claim under the writers' lock: a writer that opened the old file before the rename sees,
    // once it gets the lock, that the path no longer names its file and opens the new one.
    let claim_err = |source| PhaseError::ClaimQueue {
        path: queue.to_path_buf(),
        source,
    };
    let lock = match sys.lock_file(queue) {
        Ok(l) => l,
        Err(e) if errno(&e) == libc::ENOENT => return Ok(report),
        Err(e) => return Err(claim_err(e)),
    };
    match sys.rename(queue, &processing) {
        Ok(()) => {}
        Err(e) if errno(&e) == libc::ENOENT => return Ok(report),
        Err(e) => return Err(claim_err(e)),
    }
    sys.fsync_dir(dir).map_err(claim_err)?;
    drop(lock);

    let read_err = |source| PhaseError::Read {
        path: processing.clone(),
        source,
    };
    let (file, size) = sys.open_regular(&processing).map_err(read_err)?;
    if size > MAX_QUEUE_SIZE {
        report.note(
            false,
            format!(
                "{}: the queue is {size} bytes, more than {MAX_QUEUE_SIZE}: only the pairs within its first {MAX_QUEUE_SIZE} bytes are applied",
                queue.display()
            ),
        );
    }
    let mut items = QueueReader::new(file.take(MAX_QUEUE_SIZE));
    while let Some(item) = items.next_item().map_err(read_err)? {
        let e = match item {
            Item::Entry(e) => e,
            Item::Dropped(d) => {
                report.note(false, format!("{}: dropped {d}", queue.display()));
                continue;
            }
        };
        match apply_entry(sys, &e) {
            Ok(()) => report.applied += 1,
            Err(err) => {
                let dst = match &e.action {
                    Action::Delete => String::new(),
                    Action::Rename {
                        destination,
                        replace,
                    } => format!(
                        "{}{}",
                        if *replace { "!" } else { "" },
                        destination.display()
                    ),
                };
                report.note(
                    true,
                    format!("'{}' => '{dst}' failed: {err}", e.source.display()),
                );
            }
        }
    }
    if report.omitted > 0 {
        log::warn!(
            "{}: {} more failed or dropped entries not shown",
            queue.display(),
            report.omitted
        );
    }
    if let Err(e) = sys.remove_file(&processing) {
        log::warn!("failed to remove {}: {e}", processing.display());
    }
    if let Err(e) = sys.fsync_dir(dir) {
        log::warn!("failed to fsync {}: {e}", dir.display());
    }
    Ok(report)
}

fn apply_entry(sys: &dyn Sys, e: &Entry) -> io::Result<()> {
    match &e.action {
        // unlink(2), or rmdir for a directory: Windows deletes one only when empty, as rmdir.
        Action::Delete => sys.safe_remove(&e.source),
        Action::Rename {
            destination,
            replace,
        } => sys.safe_rename(&e.source, destination, !replace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, Node};

    const Q: &str = "/var/lib/smss/pending-renames";

    fn fake_with_queue(bytes: &[u8]) -> FakeSys {
        let s = FakeSys::new();
        s.add_file(Q, bytes);
        s
    }

    #[test]
    fn claims_before_applying() {
        let s = fake_with_queue(b"/a\0/b\0");
        s.add_file("/a", b"x");
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.applied, 1);
        let calls: Vec<String> = s
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("stat"))
            .collect();
        assert_eq!(
            calls,
            [
                format!("flock {Q}"),
                format!("rename {Q} {Q}.processing"),
                "fsync /var/lib/smss".to_string(),
                format!("read {Q}.processing"),
                "rename_noreplace /a /b".to_string(),
                format!("unlink {Q}.processing"),
                "fsync /var/lib/smss".to_string(),
            ]
        );
        assert!(s.node("/b").is_some() && s.node("/a").is_none());
        assert!(!s.exists(Path::new(Q)) && !s.exists(&with_suffix(Path::new(Q), ".processing")));
    }

    #[test]
    fn missing_queue_is_nothing_to_do() {
        let s = FakeSys::new();
        assert_eq!(apply(&s, Path::new(Q)).unwrap(), RenameReport::default());
        assert!(s.calls_of("rename").is_empty());
    }

    #[test]
    fn errors_are_logged_and_skipped() {
        // EEXIST without '!', EXDEV, ENOENT, ENOTEMPTY; the entries after each still run.
        let s = fake_with_queue(
            b"/exists\0/taken\0/x\0/other-fs/x\0/missing\0/m\0/full\0\0/a\0!/taken\0/emptydir\0\0",
        );
        for f in ["/exists", "/taken", "/x", "/a", "/full/child"] {
            s.add_file(f, b"");
        }
        s.add_dir("/emptydir");
        s.fail("rename_noreplace", "/x", libc::EXDEV);
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.applied, 2, "{r:?}");
        assert_eq!(
            r.failures,
            [
                "'/exists' => '/taken' failed: File exists (os error 17)",
                "'/x' => '/other-fs/x' failed: Invalid cross-device link (os error 18)",
                "'/missing' => '/m' failed: No such file or directory (os error 2)",
                "'/full' => '' failed: Directory not empty (os error 39)",
            ]
        );
        // '!' replaced /taken; the empty directory went with rmdir after unlink said EISDIR.
        assert!(s.node("/a").is_none() && s.node("/taken").is_some());
        assert!(s.node("/emptydir").is_none());
        let calls = s.calls();
        let unlink = calls.iter().position(|c| c == "unlink /emptydir").unwrap();
        assert_eq!(calls[unlink + 1], "rmdir /emptydir");
    }

    #[test]
    fn leftover_processing_is_not_replayed() {
        let s = fake_with_queue(b"/new\0\0");
        s.add_file(format!("{Q}.processing"), b"/old\0\0");
        s.add_file("/old", b"");
        s.add_file("/new", b"");
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.stale, Some(PathBuf::from(format!("{Q}.stale"))));
        assert_eq!(r.applied, 1);
        assert!(
            s.node("/old").is_some(),
            "the crashed boot's queue was replayed"
        );
        assert!(s.node("/new").is_none());
        assert_eq!(
            s.node(format!("{Q}.stale")),
            Some(Node::File(b"/old\0\0".to_vec(), 0o644))
        );
    }

    #[test]
    fn crash_after_claim_never_replays() {
        // The claim succeeded, then reading failed (stands in for a crash after the claim):
        // the queue is gone from its name, and the next boot moves it aside unapplied.
        let s = fake_with_queue(b"/a\0\0");
        s.add_file("/a", b"");
        s.fail("read", format!("{Q}.processing"), libc::EIO);
        assert!(matches!(
            apply(&s, Path::new(Q)),
            Err(PhaseError::Read { .. })
        ));
        s.errors.borrow_mut().clear();
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.applied, 0);
        assert!(r.stale.is_some());
        assert!(s.node("/a").is_some());
    }

    #[test]
    fn torn_and_odd_queues_apply_the_whole_pairs() {
        let s = fake_with_queue(b"/a\0\0/b\0/c\0/odd\0/tor");
        s.add_file("/a", b"");
        s.add_file("/b", b"");
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.applied, 2);
        assert_eq!(r.dropped.len(), 2, "{r:?}");
        assert!(s.node("/c").is_some());
    }

    #[test]
    fn claim_failure_is_an_error() {
        let s = fake_with_queue(b"/a\0\0");
        s.fail("rename", Q, libc::EROFS);
        let e = apply(&s, Path::new(Q)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("failed to claim rename queue {Q}: Read-only file system (os error 30)")
        );
        assert!(s.calls_of("unlink").is_empty());
    }

    #[test]
    fn only_the_first_mebibyte_is_applied_and_reports_are_capped() {
        // 300,000 deletes of missing files: far past the size limit and the report limit.
        let mut bytes = Vec::new();
        for i in 0..300_000 {
            bytes.extend_from_slice(format!("/missing/{i}\0\0").as_bytes());
        }
        assert!(bytes.len() as u64 > MAX_QUEUE_SIZE);
        let s = fake_with_queue(&bytes);
        s.add_file("/missing/0", b"");
        let r = apply(&s, Path::new(Q)).unwrap();
        assert_eq!(r.applied, 1);
        assert!(
            r.dropped[0].contains("more than 1048576"),
            "{:?}",
            r.dropped
        );
        assert_eq!(r.failures.len() + r.dropped.len(), MAX_REPORTED);
        // Every pair within the first MiB was tried, no more: one applied, the rest counted.
        let within = bytes[..MAX_QUEUE_SIZE as usize].split(|&b| b == 0).count() / 2;
        let tried = s.calls_of("unlink").len() - 1; // the claimed queue's own unlink
        assert_eq!(tried, within, "{r:?}");
        assert_eq!(r.failed, tried - 1);
        assert_eq!(
            r.failures.len() + r.dropped.len() + r.omitted,
            (tried - 1) + 2,
            "the failed deletes, the size line, the pair cut at the limit"
        );
    }
}
