//! The rename queue (PendingFileRenameOperations): renames and deletes queued for the next
//! boot (MoveFileEx with MOVEFILE_DELAY_UNTIL_REBOOT). This module is its format, its reader
//! and its writer, shared by the boot phase that applies it ([`crate::phases::pending_renames`]),
//! the control API's `QueueRename` ([`crate::supervise::api`]) and `smctl rename`.
//!
//! The queue file mirrors the REG_MULTI_SZ: NUL-terminated strings in pairs `SRC\0DST\0`.
//! An empty DST deletes SRC (rmdir for an empty directory); a DST starting with `!` may replace
//! an existing file, otherwise nothing is overwritten (renameat2 RENAME_NOREPLACE). A SRC
//! starting with `@` whose DST is empty loses the `@`, and a DST starting with `@` means
//! replace like `!` (SmpProcessFileRenames strips either prefix and sets ReplaceIfExists).
//!
//! Choices beyond Windows: relative paths are dropped (a writer only queues absolute ones).
//! The queue is streamed, never read whole into PID 1's memory: at most [`MAX_QUEUE_SIZE`]
//! bytes of it are read, a path is at most [`MAX_PATH_LEN`] bytes (longer ones are dropped
//! unread), and writers refuse to grow it past the limit. A queue that is not a regular file
//! (a FIFO) is refused, never waited on.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// The longest path the queue holds: PATH_MAX (4096) with its NUL, as the kernel counts.
pub const MAX_PATH_LEN: usize = 4095;
/// The largest queue applied or grown (1 MiB): thousands of entries, read in bounded time.
pub const MAX_QUEUE_SIZE: u64 = 1 << 20;
/// A queue string: a path and its `!`/`@` prefix.
const MAX_STRING: usize = MAX_PATH_LEN + 1;
/// Bytes of an over-long string kept to show in the report.
const SHOWN: usize = 64;
/// Failure and drop lines logged and kept in the report at most; the rest are counted.
pub const MAX_REPORTED: usize = 100;

/// Something in the queue that is not an operation, dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The last string had no NUL terminator: a write cut short by a crash.
    TornWrite(Vec<u8>),
    /// A source without a destination string (Windows' "canary" drops it silently).
    OddSource(Vec<u8>),
    /// A pair with an empty source, or a path that is not absolute.
    Invalid(Vec<u8>, Vec<u8>),
    /// A pair with a path longer than [`MAX_PATH_LEN`]: its first bytes.
    TooLong(Vec<u8>),
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
            Dropped::TooLong(b) => write!(
                f,
                "pair with a path longer than {MAX_PATH_LEN} bytes ({:?}...)",
                s(b)
            ),
        }
    }
}

/// A parsed queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    pub entries: Vec<Entry>,
    pub dropped: Vec<Dropped>,
}

/// Where whole pairs end, fed a stream in pieces (the writer's torn-tail repair).
#[derive(Debug, Clone, Copy, Default)]
pub struct PairScanner {
    in_pair: bool,
    end: u64,
    pos: u64,
}

impl PairScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        for (i, &b) in chunk.iter().enumerate() {
            if b == 0 {
                if self.in_pair {
                    self.end = self.pos + i as u64 + 1;
                }
                self.in_pair = !self.in_pair;
            }
        }
        self.pos += chunk.len() as u64;
    }

    /// Length of the longest prefix fed so far made of whole pairs.
    pub fn valid_len(&self) -> u64 {
        self.end
    }
}

/// Length of the longest prefix of `bytes` made of whole pairs (what a reader would apply).
pub fn valid_prefix_len(bytes: &[u8]) -> usize {
    let mut s = PairScanner::default();
    s.feed(bytes);
    s.valid_len() as usize
}

/// One string of the queue as read: whole, or only its first bytes when it is too long.
#[derive(Debug)]
struct QString {
    bytes: Vec<u8>,
    too_long: bool,
    /// Ended by a NUL (false: the torn tail).
    terminated: bool,
}

/// One thing read from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Entry(Entry),
    Dropped(Dropped),
}

/// Reads a queue as a stream: at most one pair (two strings of at most [`MAX_STRING`] bytes)
/// is held at a time, whatever the queue's size. Total: any bytes give items, never a panic.
pub struct QueueReader<R> {
    r: io::BufReader<R>,
    /// An item found while reading the previous one (a torn tail after an odd source).
    pending: Option<Item>,
    done: bool,
}

impl<R: Read> QueueReader<R> {
    pub fn new(r: R) -> Self {
        QueueReader {
            r: io::BufReader::with_capacity(8192, r),
            pending: None,
            done: false,
        }
    }

    /// The next string, or None at the end.
    fn string(&mut self) -> io::Result<Option<QString>> {
        let mut s = QString {
            bytes: Vec::new(),
            too_long: false,
            terminated: false,
        };
        let mut any = false;
        loop {
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any.then_some(s));
            }
            any = true;
            let piece = buf.split(|&b| b == 0).next().unwrap_or_default();
            let end = piece.len() < buf.len();
            let used = if end { piece.len() + 1 } else { buf.len() };
            let room = MAX_STRING.saturating_sub(s.bytes.len());
            if piece.len() > room {
                s.too_long = true;
            }
            let keep = if s.too_long {
                SHOWN.saturating_sub(s.bytes.len())
            } else {
                room
            };
            s.bytes
                .extend_from_slice(piece.get(..keep).unwrap_or(piece));
            if s.too_long {
                s.bytes.truncate(SHOWN);
            }
            self.r.consume(used);
            if end {
                s.terminated = true;
                return Ok(Some(s));
            }
        }
    }

    /// The next entry or dropped item; None at the end of the queue.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if self.done {
            return Ok(None);
        }
        let Some(src) = self.string()? else {
            self.done = true;
            return Ok(None);
        };
        if !src.terminated {
            self.done = true;
            return Ok(Some(Item::Dropped(Dropped::TornWrite(src.bytes))));
        }
        let Some(dst) = self.string()? else {
            self.done = true;
            return Ok(Some(Item::Dropped(Dropped::OddSource(src.bytes))));
        };
        if !dst.terminated {
            self.done = true;
            self.pending = Some(Item::Dropped(Dropped::TornWrite(dst.bytes)));
            return Ok(Some(Item::Dropped(Dropped::OddSource(src.bytes))));
        }
        Ok(Some(match entry(&src, &dst) {
            Ok(e) => Item::Entry(e),
            Err(d) => Item::Dropped(d),
        }))
    }
}

/// Parse a queue held in memory (tests, the fuzz target). Total: any bytes give a [`Queue`].
pub fn parse_queue(bytes: &[u8]) -> Queue {
    let mut q = Queue::default();
    let mut r = QueueReader::new(bytes);
    // Reading a slice cannot fail.
    while let Ok(Some(item)) = r.next_item() {
        match item {
            Item::Entry(e) => q.entries.push(e),
            Item::Dropped(d) => q.dropped.push(d),
        }
    }
    q
}

fn entry(src: &QString, dst: &QString) -> Result<Entry, Dropped> {
    for s in [src, dst] {
        if s.too_long {
            return Err(Dropped::TooLong(s.bytes.clone()));
        }
    }
    let invalid = || Dropped::Invalid(src.bytes.clone(), dst.bytes.clone());
    let path = |b: &[u8]| -> Result<PathBuf, Dropped> {
        if b.len() > MAX_PATH_LEN {
            return Err(Dropped::TooLong(b.get(..SHOWN).unwrap_or(b).to_vec()));
        }
        let p = PathBuf::from(OsStr::from_bytes(b));
        if p.is_absolute() {
            Ok(p)
        } else {
            Err(invalid())
        }
    };
    let (s, d) = (src.bytes.as_slice(), dst.bytes.as_slice());
    if d.is_empty() {
        let s = s.strip_prefix(b"@").unwrap_or(s);
        return Ok(Entry {
            source: path(s)?,
            action: Action::Delete,
        });
    }
    let (d, replace) = match d.split_first() {
        Some((b'!' | b'@', rest)) => (rest, true),
        _ => (d, false),
    };
    Ok(Entry {
        source: path(s)?,
        action: Action::Rename {
            destination: path(d)?,
            replace,
        },
    })
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A writer would grow the queue past [`MAX_QUEUE_SIZE`] (in an `io::Error` of kind Other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    pub size: u64,
}

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the rename queue holds {} bytes; it may not grow past {MAX_QUEUE_SIZE}",
            self.size
        )
    }
}

impl std::error::Error for QueueFull {}

/// The [`QueueFull`] inside `e`, if that is what it is.
pub fn queue_full(e: &io::Error) -> Option<&QueueFull> {
    e.get_ref().and_then(|i| i.downcast_ref::<QueueFull>())
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
        if p.as_os_str().len() > MAX_PATH_LEN {
            return Err(invalid(
                "paths in the rename queue may be at most 4095 bytes (PATH_MAX with its NUL)",
            ));
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
    append_with(queue, src, dst, replace, true)
}

/// [`append`] for PID 1's QueueFileRename: when another writer holds the queue's lock it
/// fails at once with `WouldBlock` instead of waiting (a stopped `smctl` must not stall the
/// supervisor).
pub fn append_nowait(
    queue: &Path,
    src: &Path,
    dst: Option<&Path>,
    replace: bool,
) -> io::Result<()> {
    append_with(queue, src, dst, replace, false)
}

fn append_with(
    queue: &Path,
    src: &Path,
    dst: Option<&Path>,
    replace: bool,
    wait: bool,
) -> io::Result<()> {
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
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match open_queue(queue, false) {
                Ok(f) => (f, false),
                // A boot claimed (renamed away) the queue between our two opens: start over.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let mut file = if wait {
            crate::sys::lock_exclusive(file)?
        } else {
            crate::sys::try_lock_exclusive(file)?
        };
        let ours = file.metadata()?;
        match fs::metadata(queue) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        let full = |size| Err(io::Error::other(QueueFull { size }));
        if ours.len() > MAX_QUEUE_SIZE {
            return full(ours.len());
        }
        if ours.len() > 0 {
            // Streamed in pieces: never the whole queue in memory (PID 1 runs this).
            let mut scan = PairScanner::default();
            let mut buf = vec![0u8; 64 * 1024];
            let mut seen = 0u64;
            while seen < ours.len() {
                let n = match (&*file).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                scan.feed(buf.get(..n).unwrap_or_default());
                seen += n as u64;
            }
            let keep = scan.valid_len();
            if keep + record.len() as u64 > MAX_QUEUE_SIZE {
                return full(keep);
            }
            if keep != seen {
                file.set_len(keep)?;
            }
        } else if record.len() as u64 > MAX_QUEUE_SIZE {
            return full(0);
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
    if !create_new {
        // O_NONBLOCK and a regular file only: a FIFO in its place must not block PID 1.
        return crate::sys::open_regular_file(queue, true);
    }
    fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename(src: &str, dst: &str, replace: bool) -> Entry {
        Entry {
            source: src.into(),
            action: Action::Rename {
                destination: dst.into(),
                replace,
            },
        }
    }

    fn delete(src: &str) -> Entry {
        Entry {
            source: src.into(),
            action: Action::Delete,
        }
    }

    #[test]
    fn parses_pairs_deletes_and_prefixes() {
        let q = parse_queue(b"/a\0/b\0/c\0\0/d\0!/e\0@/f\0\0/g\0@/h\0");
        assert_eq!(
            q.entries,
            [
                rename("/a", "/b", false),
                delete("/c"),
                rename("/d", "/e", true),
                delete("/f"),
                rename("/g", "/h", true),
            ]
        );
        assert!(q.dropped.is_empty());
        assert_eq!(parse_queue(b""), Queue::default());
    }

    #[test]
    fn odd_source_and_torn_tail_are_dropped_and_reported() {
        let q = parse_queue(b"/a\0/b\0/odd\0");
        assert_eq!(q.entries, [rename("/a", "/b", false)]);
        assert_eq!(q.dropped, [Dropped::OddSource(b"/odd".to_vec())]);

        let q = parse_queue(b"/a\0/b\0/c\0/tor");
        assert_eq!(q.entries, [rename("/a", "/b", false)]);
        assert_eq!(
            q.dropped,
            [
                Dropped::OddSource(b"/c".to_vec()),
                Dropped::TornWrite(b"/tor".to_vec())
            ]
        );
        let q = parse_queue(b"/a\0/b\0/half");
        assert_eq!(q.dropped, [Dropped::TornWrite(b"/half".to_vec())]);
        assert_eq!(
            q.dropped[0].to_string(),
            "torn write \"/half\" (no NUL terminator)"
        );
    }

    #[test]
    fn relative_and_empty_sources_are_dropped() {
        let q = parse_queue(b"rel\0/b\0\0/x\0/a\0rel\0\0\0/ok\0\0");
        assert_eq!(q.entries, [delete("/ok")]);
        assert_eq!(q.dropped.len(), 4);
        // A lone '@' with a non-empty destination is not stripped (Windows strips it only for
        // deletes), so "@/s" is a relative path.
        assert_eq!(parse_queue(b"@/s\0/d\0").entries, []);
    }

    #[test]
    fn valid_prefix_is_whole_pairs() {
        assert_eq!(valid_prefix_len(b""), 0);
        assert_eq!(valid_prefix_len(b"/a\0/b\0"), 6);
        assert_eq!(valid_prefix_len(b"/a\0/b\0/c\0"), 6);
        assert_eq!(valid_prefix_len(b"/a\0/b\0/c\0/d"), 6);
        assert_eq!(valid_prefix_len(b"/a\0\0"), 4);
    }

    #[test]
    fn encode_is_what_parse_reads() {
        let rec = encode(Path::new("/s"), Some(Path::new("/d")), true).unwrap();
        assert_eq!(rec, b"/s\0!/d\0");
        assert_eq!(encode(Path::new("/s"), None, true).unwrap(), b"/s\0\0");
        assert!(encode(Path::new("rel"), None, false).is_err());
        assert!(encode(Path::new("/s"), Some(Path::new("d")), false).is_err());
        let nul = PathBuf::from(OsStr::from_bytes(b"/a\0b"));
        assert!(encode(&nul, None, false).is_err());
    }

    /// A tiny fixed-seed PRNG (xorshift64*), so the test is reproducible without a crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn parse_is_total_on_random_bytes() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let alphabet = b"\0\0\0/!@a.";
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r & 3 == 0 {
                        r as u8 >> 3
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            let q = parse_queue(&bytes);
            // Every string is accounted for: an entry uses two, a drop one or two.
            let strings = bytes.iter().filter(|&&b| b == 0).count();
            let torn = usize::from(bytes.last().is_some_and(|&b| b != 0));
            let accounted: usize = q.entries.len() * 2
                + q.dropped
                    .iter()
                    .map(|d| match d {
                        Dropped::Invalid(..) => 2,
                        _ => 1,
                    })
                    .sum::<usize>();
            assert_eq!(accounted, strings + torn, "{bytes:?}");
            // The writer's repair keeps exactly the pairs a reader sees.
            let keep = valid_prefix_len(&bytes);
            let q2 = parse_queue(&bytes[..keep]);
            assert_eq!(q2.entries, q.entries, "{bytes:?}");
        }
    }

    #[test]
    fn paths_past_path_max_are_dropped_unread_and_refused_when_queued() {
        let ok_path = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        let long = format!("/{}", "b".repeat(70_000));
        let mut bytes = Vec::new();
        for (a, b) in [
            (long.as_str(), "/d"),
            ("/s", long.as_str()),
            (ok_path.as_str(), ""),
            ("/after", "!/x"),
        ] {
            bytes.extend_from_slice(a.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(b.as_bytes());
            bytes.push(0);
        }
        let q = parse_queue(&bytes);
        assert_eq!(q.entries, [delete(&ok_path), rename("/after", "/x", true)]);
        assert_eq!(q.dropped.len(), 2);
        for d in &q.dropped {
            let Dropped::TooLong(shown) = d else {
                panic!("{d:?}")
            };
            assert_eq!(shown.len(), SHOWN);
            assert!(d
                .to_string()
                .starts_with("pair with a path longer than 4095 bytes"));
        }
        // A `!` prefix does not count: 4095 bytes of path after it are fine; 4096 are not.
        let bang = format!("!/{}", "c".repeat(MAX_PATH_LEN - 1));
        let q = parse_queue(format!("/s\0{bang}\0/s\0!{ok_path}c\0").as_bytes());
        assert_eq!(q.entries.len(), 1);
        assert!(matches!(q.dropped[..], [Dropped::TooLong(_)]));

        assert!(encode(Path::new(&ok_path), None, false).is_ok());
        let e = encode(Path::new(&format!("{ok_path}x")), None, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(encode(Path::new("/s"), Some(Path::new(&long)), false).is_err());
    }

    #[test]
    fn streamed_reader_matches_byte_by_byte_reads() {
        // A reader that hands out one byte at a time: string boundaries fall anywhere.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match (self.0.split_first(), buf.is_empty()) {
                    (Some((b, rest)), false) => {
                        buf[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let bytes = b"/a\0/b\0rel\0/x\0/c\0\0/odd\0/tor";
        let mut r = QueueReader::new(OneByte(bytes));
        let mut items = Vec::new();
        while let Some(i) = r.next_item().unwrap() {
            items.push(i);
        }
        let q = parse_queue(bytes);
        assert_eq!(items.len(), q.entries.len() + q.dropped.len());
        assert_eq!(
            q.dropped,
            [
                Dropped::Invalid(b"rel".to_vec(), b"/x".to_vec()),
                Dropped::OddSource(b"/odd".to_vec()),
                Dropped::TornWrite(b"/tor".to_vec())
            ]
        );
    }
}
