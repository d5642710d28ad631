//! PendingFileRenameOperations: renames and deletes queued for the next boot (MoveFileEx with
//! MOVEFILE_DELAY_UNTIL_REBOOT), applied once after the volumes are writable.
//!
//! The queue file mirrors the REG_MULTI_SZ: NUL-terminated strings in pairs `SRC\0DST\0`.
//! An empty DST deletes SRC (rmdir for an empty directory); a DST starting with `!` may replace
//! an existing file, otherwise nothing is overwritten (renameat2 RENAME_NOREPLACE). A SRC
//! starting with `@` whose DST is empty loses the `@`, and a DST starting with `@` means
//! replace like `!` (SmpProcessFileRenames strips either prefix and sets ReplaceIfExists).
//!
//! At most once, as on Windows (which deletes the value as it reads it): the queue is claimed
//! by renaming it to `QUEUE.processing` and fsyncing the directory before anything is applied.
//! A `.processing` file found at boot is from a boot that crashed mid-way: it is not replayed
//! (some of its entries ran, and replaying e.g. a delete after a later rename is unsafe); it is
//! moved to `QUEUE.stale` (replacing an older one) for an administrator to inspect.
//!
//! Choices beyond Windows: relative paths are dropped (a writer only queues absolute ones);
//! RENAME_NOREPLACE unsupported by a filesystem (EINVAL) fails the entry rather than risk an
//! overwrite; nothing is ever copied (EXDEV fails the entry, as on Windows).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{errno, PhaseError};
use crate::sys::Sys;

/// What to do with one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delete,
    Rename { destination: PathBuf, replace: bool },
}

/// One queued operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub source: PathBuf,
    pub action: Action,
}

/// Something in the queue that is not an operation, dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The last string had no NUL terminator: a write cut short by a crash.
    TornWrite(Vec<u8>),
    /// A source without a destination string (Windows' "canary" drops it silently).
    OddSource(Vec<u8>),
    /// A pair with an empty source, or a path that is not absolute.
    Invalid(Vec<u8>, Vec<u8>),
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Dropped::TornWrite(b) => write!(f, "torn write {:?} (no NUL terminator)", s(b)),
            Dropped::OddSource(b) => write!(f, "source {:?} without a destination", s(b)),
            Dropped::Invalid(a, b) => {
                write!(f, "pair {:?} => {:?} (empty or relative path)", s(a), s(b))
            }
        }
    }
}

/// A parsed queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    pub entries: Vec<Entry>,
    pub dropped: Vec<Dropped>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenameReport {
    /// Entries applied successfully.
    pub applied: usize,
    /// One `'src' => 'dst' failed: cause` line per failed entry.
    pub failures: Vec<String>,
    /// Queue contents that were not operations (torn, odd, invalid).
    pub dropped: Vec<String>,
    /// Where a leftover `.processing` file from a crashed boot was moved.
    pub stale: Option<PathBuf>,
}

/// Length of the longest prefix of `bytes` made of whole pairs (what a reader would apply).
pub fn valid_prefix_len(bytes: &[u8]) -> usize {
    let mut in_pair = false;
    let mut end = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            if in_pair {
                end = i + 1;
            }
            in_pair = !in_pair;
        }
    }
    end
}

/// Parse a queue. Total: any bytes give a [`Queue`], never a panic.
pub fn parse_queue(bytes: &[u8]) -> Queue {
    let mut q = Queue::default();
    let mut strings: Vec<&[u8]> = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                strings.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => {
                q.dropped.push(Dropped::TornWrite(rest.to_vec()));
                rest = &[];
            }
        }
    }
    let mut pairs = strings.chunks_exact(2);
    for pair in pairs.by_ref() {
        let (src, dst) = (pair[0], pair[1]);
        match entry(src, dst) {
            Some(e) => q.entries.push(e),
            None => q.dropped.push(Dropped::Invalid(src.to_vec(), dst.to_vec())),
        }
    }
    if let [odd] = pairs.remainder() {
        q.dropped.push(Dropped::OddSource(odd.to_vec()));
    }
    // Report in queue order: the torn tail (found first) belongs at the end.
    if let Some(pos) = q
        .dropped
        .iter()
        .position(|d| matches!(d, Dropped::TornWrite(_)))
    {
        let torn = q.dropped.remove(pos);
        q.dropped.push(torn);
    }
    q
}

fn entry(src: &[u8], dst: &[u8]) -> Option<Entry> {
    let path = |b: &[u8]| -> Option<PathBuf> {
        let p = PathBuf::from(OsStr::from_bytes(b));
        p.is_absolute().then_some(p)
    };
    if dst.is_empty() {
        let src = src.strip_prefix(b"@").unwrap_or(src);
        return Some(Entry {
            source: path(src)?,
            action: Action::Delete,
        });
    }
    let (dst, replace) = match dst.first() {
        Some(b'!') | Some(b'@') => (&dst[1..], true),
        _ => (dst, false),
    };
    Some(Entry {
        source: path(src)?,
        action: Action::Rename {
            destination: path(dst)?,
            replace,
        },
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
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

    let bytes = sys
        .read_file(&processing)
        .map_err(|source| PhaseError::Read {
            path: processing.clone(),
            source,
        })?;
    let q = parse_queue(&bytes);
    for d in &q.dropped {
        log::warn!("{}: dropped {d}", queue.display());
        report.dropped.push(d.to_string());
    }
    for e in &q.entries {
        match apply_entry(sys, e) {
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
                let line = format!("'{}' => '{dst}' failed: {err}", e.source.display());
                log::warn!("{line}");
                report.failures.push(line);
            }
        }
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
        Action::Delete => match sys.remove_file(&e.source) {
            // unlink(2) on a directory: Windows deletes it only when empty, as rmdir does.
            Err(err) if errno(&err) == libc::EISDIR => sys.remove_dir(&e.source),
            r => r,
        },
        Action::Rename {
            destination,
            replace: true,
        } => sys.rename(&e.source, destination),
        Action::Rename {
            destination,
            replace: false,
        } => sys.rename_noreplace(&e.source, destination),
    }
}

/// The bytes [`append`] writes for one operation.
pub fn encode(src: &Path, dst: Option<&Path>, replace: bool) -> io::Result<Vec<u8>> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    let check = |p: &Path| -> io::Result<()> {
        if !p.is_absolute() {
            return Err(invalid("paths in the rename queue must be absolute"));
        }
        if p.as_os_str().as_bytes().contains(&0) {
            return Err(invalid("paths in the rename queue cannot contain NUL"));
        }
        Ok(())
    };
    check(src)?;
    let mut rec = src.as_os_str().as_bytes().to_vec();
    rec.push(0);
    if let Some(d) = dst {
        check(d)?;
        if replace {
            rec.push(b'!');
        }
        rec.extend_from_slice(d.as_os_str().as_bytes());
    }
    rec.push(0);
    Ok(rec)
}

/// Queue an operation for the next boot (the writer side: `smctl rename`, QueueFileRename).
/// `dst` None = delete `src`; `replace` lets the rename overwrite. The pair is written whole
/// in one write, under flock, and fsynced; a torn tail left by a crashed writer is cut off
/// first so it cannot swallow this pair.
pub fn append(queue: &Path, src: &Path, dst: Option<&Path>, replace: bool) -> io::Result<()> {
    let record = encode(src, dst, replace)?;
    let dir = parent_dir(queue);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    // Bounded: each retry means the reader claimed the file between our open and our lock.
    for _ in 0..100 {
        let (file, created) = match open_queue(queue, true) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (open_queue(queue, false)?, false)
            }
            Err(e) => return Err(e),
        };
        let mut file = crate::sys::lock_exclusive(file)?;
        let ours = file.metadata()?;
        match fs::metadata(queue) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if ours.len() > 0 {
            let mut old = Vec::new();
            (&*file).read_to_end(&mut old)?;
            let keep = valid_prefix_len(&old);
            if keep != old.len() {
                file.set_len(keep as u64)?;
            }
        }
        let n = file.write(&record)?;
        if n != record.len() {
            // Only a full disk does this to a regular file; do not leave half a pair.
            let _ = file.set_len(file.metadata()?.len().saturating_sub(n as u64));
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write to {}", queue.display()),
            ));
        }
        file.sync_all()?;
        if created {
            fs::File::open(dir)?.sync_all()?;
        }
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{} kept being replaced while queueing",
        queue.display()
    )))
}

fn open_queue(queue: &Path, create_new: bool) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC);
    if create_new {
        o.create_new(true);
    }
    o.open(queue)
}
