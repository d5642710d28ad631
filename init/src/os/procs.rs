//! A snapshot of the processes we are responsible for, read from /proc (for shutdown sweeps
//! and sessions without a cgroup).

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

/// One line of /proc/PID/stat, the fields shutdown and sessions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    /// R, S, D, T, Z (zombie), X (being reaped), ...
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
    /// The controlling terminal's device number; 0 without one.
    pub tty_nr: i32,
    /// When it started, in clock ticks after boot (stat field 22): with the pid, names one
    /// process for good (a pid alone may be reused once its process is reaped).
    pub start_time: u64,
    /// The name it runs under (the kernel's 16-byte `comm`, NUL-padded): it changes at exec.
    pub comm: [u8; 16],
    pub kernel_thread: bool,
}

impl ProcInfo {
    /// Alive: neither a zombie nor being reaped.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

#[cfg(test)]
impl ProcInfo {
    /// A sleeping process for tests: its own group and session, no terminal, start time =
    /// pid, named `proc`.
    pub(crate) fn fake(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo {
            pid,
            state: 'S',
            ppid,
            pgid: pid,
            session: pid,
            tty_nr: 0,
            start_time: pid as u64,
            comm: *b"proc\0\0\0\0\0\0\0\0\0\0\0\0",
            kernel_thread: false,
        }
    }
}

/// Parse /proc/PID/stat. The command name is in parentheses and may itself contain spaces,
/// parentheses and any byte but NUL (a process names itself: prctl PR_SET_NAME), so the
/// line is bytes, not UTF-8, and the fields start after the last ')'.
pub fn parse_stat(line: &[u8]) -> Option<ProcInfo> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let open = line.iter().position(|&b| b == b'(')?;
    let pid = std::str::from_utf8(line.get(..open)?)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Everything after the name is the kernel's own ASCII.
    let tail = std::str::from_utf8(line.get(close + 1..)?).ok()?;
    // Field by field, nothing collected: a Vec here was an allocation per process per look,
    // and musl's malloc maps and unmaps a page for it each time.
    // [0] = state, [1] = ppid, [2] = pgrp, [3] = session, [4] = tty_nr, [5] = tpgid,
    // [6] = flags, ... [19] = starttime
    let mut fields = tail.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    let tty_nr = fields.next()?.parse().ok()?;
    let _tpgid = fields.next()?;
    let flags: u64 = fields.next()?.parse().ok()?;
    // Absent only in a truncated line (the tests' short samples): 0, which keys by pid alone.
    let start_time = fields.nth(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    let mut comm = [0u8; 16];
    let name = line.get(open + 1..close).unwrap_or_default();
    for (c, b) in comm.iter_mut().zip(name) {
        *c = *b;
    }
    const PF_KTHREAD: u64 = 0x0020_0000;
    Some(ProcInfo {
        pid,
        state,
        ppid,
        pgid,
        session,
        tty_nr,
        start_time,
        comm,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// The parent of `pid`, from /proc (a shell script's `smctl notify` is its child).
pub fn parent_of(pid: i32) -> Option<i32> {
    read(pid).map(|p| p.ppid)
}

/// /proc/PID/stat of one process; `None` when it is gone (or /proc is not mounted).
pub fn read(pid: i32) -> Option<ProcInfo> {
    let mut buf = [0u8; STAT_BUF];
    parse_stat(read_stat(None, b"/proc/", pid, &mut buf)?)
}

/// Room for any /proc/PID/stat line: 52 numeric fields of at most 20 digits and a name of at
/// most 64 bytes as the kernel escapes it come to well under 2 KiB.
const STAT_BUF: usize = 2048;

/// `{prefix}{pid}/stat` into `buf`: openat, one read, close, and nothing allocated. `fs::read`
/// sees the size 0 /proc reports and reads in growing steps (32, 32, 64, 128, 256 bytes...);
/// `fs::File::open` adds an fcntl (musl's open sets FD_CLOEXEC again), and a `format!`ed path
/// and std's `DirEntry` names are allocations that musl's malloc maps and unmaps again: about
/// a dozen syscalls a process, which the stop pays for every process on every full look.
/// With `dir` (an open /proc) the path is relative to it: no lookup of /proc each time.
fn read_stat<'a>(
    dir: Option<RawFd>,
    prefix: &[u8],
    pid: i32,
    buf: &'a mut [u8; STAT_BUF],
) -> Option<&'a [u8]> {
    use std::io::Write;
    let mut path = [0u8; 32];
    let mut w: &mut [u8] = &mut path;
    w.write_all(prefix).ok()?;
    write!(w, "{pid}/stat\0").ok()?;
    let end = path.iter().position(|&b| b == 0)? + 1;
    let path = CStr::from_bytes_with_nul(path.get(..end)?).ok()?;
    let fd = openat(dir, path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut len = 0;
    let mut failed = false;
    while len < buf.len() {
        let Some(rest) = buf.get_mut(len..) else {
            break;
        };
        match nix::unistd::read(fd, rest) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                // The kernel hands the whole line to the first read of a fresh open.
                if len > 0 && buf.get(len - 1) == Some(&b'\n') {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let _ = nix::unistd::close(fd);
    if failed {
        return None;
    }
    buf.get(..len)
}

/// The last pid the kernel gave out in our pid namespace (`/proc/sys/kernel/ns_last_pid`):
/// every process with a pid at or under it was forked before the read, unless pids wrapped
/// since. `None` when it cannot be read (no /proc, or a kernel without the sysctl).
pub fn ns_last_pid() -> Option<i32> {
    // openat, not open: musl's open sets FD_CLOEXEC again with an fcntl.
    let fd = openat(
        None,
        c"/proc/sys/kernel/ns_last_pid",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 16];
    let n = loop {
        match nix::unistd::read(fd, &mut buf) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    let _ = nix::unistd::close(fd);
    std::str::from_utf8(buf.get(..n.ok()?)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// [`ns_last_pid`] and the boot-time clock in clock ticks (the unit of
/// [`ProcInfo::start_time`]), read in that order.
pub fn pid_cursor() -> Option<(i32, u64)> {
    let last_pid = ns_last_pid()?;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|&hz| hz > 0)?;
    let ns = u64::try_from(now.tv_sec())
        .ok()?
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec()).ok()?);
    Some((last_pid, ns / (1_000_000_000 / hz.min(1_000_000_000))))
}

/// The name a process gave itself (/proc/PID/comm), for the log; lossy.
pub fn name(pid: i32) -> String {
    match fs::read(format!("/proc/{pid}/comm")) {
        Ok(b) => String::from_utf8_lossy(&b)
            .trim_end_matches('\n')
            .to_string(),
        Err(_) => "?".to_string(),
    }
}

/// Every process visible in /proc. `None` when /proc is not mounted.
pub fn snapshot() -> Option<Vec<ProcInfo>> {
    snapshot_each(|_| {})
}

/// [`snapshot`], calling `each` with every process as soon as it is read.
pub fn snapshot_each(mut each: impl FnMut(&ProcInfo)) -> Option<Vec<ProcInfo>> {
    let mut out = Vec::with_capacity(64);
    let mut buf = [0u8; STAT_BUF];
    for_each_pid(|dir, pid| {
        if let Some(p) = read_stat(Some(dir), b"", pid, &mut buf).and_then(parse_stat) {
            each(&p);
            out.push(p);
        }
    })?;
    Some(out)
}

/// A look for newcomers: every pid /proc lists, and the stat of only those `known` says
/// false for (a pid listed by the previous look is not read again). `None` when /proc is not
/// mounted.
pub fn snapshot_new(known: impl Fn(i32) -> bool) -> Option<(Vec<i32>, Vec<ProcInfo>)> {
    let mut listed = Vec::with_capacity(64);
    let mut new = Vec::new();
    let mut buf = [0u8; STAT_BUF];
    for_each_pid(|dir, pid| {
        listed.push(pid);
        if !known(pid) {
            if let Some(p) = read_stat(Some(dir), b"", pid, &mut buf).and_then(parse_stat) {
                new.push(p);
            }
        }
    })?;
    Some((listed, new))
}

/// Call `f(the /proc descriptor, pid)` for every process directory of /proc, in its order.
fn for_each_pid(mut f: impl FnMut(RawFd, i32)) -> Option<()> {
    let dir = Dir::open(
        "/proc",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // The owning iterator closes the directory when done (`Dir::iter` would rewind it).
    let mut entries = dir.into_iter();
    let fd = entries.as_raw_fd();
    for e in &mut entries {
        let Ok(e) = e else { break };
        let name = e.file_name().to_bytes();
        if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Some(pid) = std::str::from_utf8(name).ok().and_then(|n| n.parse().ok()) else {
            continue;
        };
        f(fd, pid);
    }
    Some(())
}

/// Every process below `roots` (their children, theirs, ...), roots excluded, in one pass
/// over a snapshot.
pub fn descendants(all: &[ProcInfo], roots: &[i32]) -> Vec<ProcInfo> {
    let mut children: std::collections::HashMap<i32, Vec<&ProcInfo>> =
        std::collections::HashMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut seen: std::collections::HashSet<i32> = roots.iter().copied().collect();
    let mut queue: Vec<i32> = roots.to_vec();
    while let Some(parent) = queue.pop() {
        for c in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(c.pid) {
                queue.push(c.pid);
                out.push(**c);
            }
        }
    }
    out
}

/// Send `sig` to the process `pid` that started at `start_time`, and to no other: the pid is
/// pinned with a pidfd, then its start time checked, so a pid reused since it was looked up
/// is left alone. False when it is gone (or is another process now).
pub fn signal_exact(pid: i32, start_time: u64, sig: i32) -> bool {
    signal_exact_each(pid, start_time, &[sig])
}

/// [`signal_exact`] with several signals, in order, through one pidfd and one check (the pid
/// cannot be reused while the pidfd pins it). True when every one was sent.
pub fn signal_exact_each(pid: i32, start_time: u64, sigs: &[i32]) -> bool {
    let Ok(fd) = crate::sys::fd::pidfd_open(pid) else {
        return false;
    };
    if read(pid).map_or(true, |p| p.start_time != start_time) {
        return false;
    }
    sigs.iter()
        .all(|&sig| crate::sys::fd::pidfd_send_signal(&fd, sig).is_ok())
}

/// The processes a stop must signal: in PID-1 modes everything but us and kernel threads; as
/// a subreaper only our descendants.
pub fn stop_targets(all: &[ProcInfo], me: i32, pid1: bool) -> Vec<i32> {
    if pid1 {
        return all
            .iter()
            .filter(|p| p.pid != me && !p.kernel_thread)
            .map(|p| p.pid)
            .collect();
    }
    let mut ours = std::collections::HashSet::from([me]);
    let mut out = Vec::new();
    // Parents may appear after their children in /proc order: iterate to a fixed point.
    loop {
        let before = out.len();
        for p in all {
            if ours.contains(&p.ppid) && ours.insert(p.pid) {
                out.push(p.pid);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor is at or past the newest process, and in the same ticks as a start time.
    #[test]
    fn the_pid_cursor_covers_a_process_just_forked() {
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        let me = read(std::process::id() as i32).expect("our own stat");
        let (last, ticks) = pid_cursor().expect("ns_last_pid");
        let mut child = child;
        let _ = child.wait();
        // Pids may have wrapped in between only after 32768 forks by others.
        assert!(last >= pid || last < 300, "cursor {last}, child {pid}");
        assert!(
            ticks >= me.start_time,
            "clock {ticks} before our start {}",
            me.start_time
        );
    }

    #[test]
    fn parses_names_with_parens_and_spaces() {
        let s = b"123 (a (b) c) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 0";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.state, p.ppid, p.pgid, p.session, p.kernel_thread),
            (123, 'S', 1, 123, 123, false)
        );
        assert_eq!(p.start_time, 98765);
        let full = b"9 (bash) S 1 9 9 34816 9 4194560 1 2 3 4 5 6 7 8 20 0 1 0 424242 1000 3";
        let p = parse_stat(full).unwrap();
        assert_eq!((p.tty_nr, p.start_time), (34816, 424242));
        assert_eq!(&p.comm[..5], b"bash\0");
        let k = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(parse_stat(k).unwrap().kernel_thread);
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 ) S 0 0 0 0 -1 0 (").is_none());
        assert!(parse_stat(b"").is_none());
    }

    /// The allocation-free reads give what a plain read of the file gives, and a look for
    /// newcomers lists every pid but reads only the ones it is told are new.
    #[test]
    fn snapshots_match_the_files_and_skip_the_known() {
        let me = std::process::id() as i32;
        let raw = fs::read(format!("/proc/{me}/stat")).unwrap();
        let want = parse_stat(&raw).unwrap();
        let got = read(me).unwrap();
        assert_eq!(
            (got.pid, got.ppid, got.start_time, got.comm),
            (want.pid, want.ppid, want.start_time, want.comm)
        );
        let all = snapshot().unwrap();
        let mine = all.iter().find(|p| p.pid == me).unwrap();
        assert_eq!((mine.ppid, mine.start_time), (want.ppid, want.start_time));
        assert!(all.iter().any(|p| p.pid == want.ppid) || want.ppid == 0);
        let (listed, new) = snapshot_new(|pid| pid != me).unwrap();
        assert!(
            listed.contains(&me) && listed.len() + 64 > all.len(),
            "{listed:?}"
        );
        assert_eq!(new.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![me]);
        let (listed, new) = snapshot_new(|_| true).unwrap();
        assert!(listed.contains(&me) && new.is_empty());
    }

    /// A process may name itself with bytes that are not UTF-8; it must not become invisible
    /// (a session member that did would escape its session's teardown).
    #[test]
    fn names_that_are_not_utf8() {
        let s = b"77 (bad\xff\xfe) R 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 0 0 0 0 5 0";
        assert_eq!(parse_stat(s).unwrap().pid, 77);
    }

    #[test]
    fn a_process_renamed_to_bytes_is_still_seen() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        // The shell renames itself (printf is a builtin: the redirection is the shell's own
        // /proc/self/comm), says so, then waits on stdin.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "printf 'x\\377\\376y' > /proc/self/comm && echo renamed && read x",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "renamed\n");
        let raw = fs::read(format!("/proc/{pid}/stat")).unwrap();
        assert!(raw.windows(2).any(|w| w == b"\xff\xfe"), "{raw:?}");
        assert_eq!(read(pid).map(|p| p.pid), Some(pid));
        assert!(snapshot().unwrap().iter().any(|p| p.pid == pid));
        drop(child.stdin.take());
        // EOF on stdin ends it.
        child.wait().unwrap();
    }

    #[test]
    fn subreaper_targets_are_descendants_only() {
        let p = ProcInfo::fake;
        let all = [p(30, 20), p(10, 1), p(20, 10), p(40, 5), p(5, 1)];
        let mut t = stop_targets(&all, 10, false);
        t.sort();
        assert_eq!(t, vec![20, 30]);
        let mut t = stop_targets(&all, 1, true);
        t.sort();
        assert_eq!(t, vec![5, 10, 20, 30, 40]);
    }

    /// The one-read path gives exactly what a whole read gives, for this process and for
    /// every process a snapshot sees.
    #[test]
    fn one_read_of_stat_equals_a_whole_read() {
        let me = std::process::id() as i32;
        let whole = parse_stat(&std::fs::read(format!("/proc/{me}/stat")).unwrap()).unwrap();
        let one = read(me).unwrap();
        assert_eq!(
            (one.pid, one.ppid, one.start_time),
            (whole.pid, whole.ppid, whole.start_time)
        );
        assert_eq!(one.comm, whole.comm);
        let all = snapshot().unwrap();
        assert!(all
            .iter()
            .any(|p| p.pid == me && p.start_time == whole.start_time));
        assert!(read(i32::MAX).is_none());
    }

    #[test]
    fn descendants_in_any_order() {
        let p = ProcInfo::fake;
        let all = [p(30, 20), p(10, 1), p(20, 10), p(40, 5), p(5, 1), p(50, 30)];
        let mut d: Vec<i32> = descendants(&all, &[10]).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, vec![20, 30, 50]);
        let mut d: Vec<i32> = descendants(&all, &[20, 5]).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, vec![30, 40, 50]);
        assert!(descendants(&all, &[50]).is_empty());
    }

    /// A pid whose start time is not the one recorded is another process: not signalled.
    #[test]
    fn signals_only_the_process_that_was_looked_up() {
        use std::process::Command;
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let pid = child.id() as i32;
        let st = read(pid).unwrap();
        // Signal 0 checks without signalling.
        assert!(signal_exact(pid, st.start_time, 0));
        assert!(!signal_exact(pid, st.start_time + 1, libc::SIGKILL));
        assert!(read(pid).unwrap().alive());
        assert!(signal_exact(pid, st.start_time, libc::SIGKILL));
        child.wait().unwrap();
        assert!(!signal_exact(pid, st.start_time, 0));
    }
}
