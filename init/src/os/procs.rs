//! A snapshot of the processes we are responsible for, read from /proc (for shutdown sweeps
//! and sessions without a cgroup).

use std::fs;

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
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // fields[0] = state, [1] = ppid, [2] = pgrp, [3] = session, [4] = tty_nr, ...
    // [6] = flags, ... [19] = starttime
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgid = fields.get(2)?.parse().ok()?;
    let session = fields.get(3)?.parse().ok()?;
    let tty_nr = fields.get(4)?.parse().ok()?;
    let flags: u64 = fields.get(6)?.parse().ok()?;
    // Absent only in a truncated line (the tests' short samples): 0, which keys by pid alone.
    let start_time = fields.get(19).and_then(|f| f.parse().ok()).unwrap_or(0);
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
    parse_stat(read_stat(&format!("/proc/{pid}/stat"), &mut buf)?)
}

/// Room for any /proc/PID/stat line: 52 numeric fields of at most 20 digits and a name of at
/// most 64 bytes as the kernel escapes it come to well under 2 KiB.
const STAT_BUF: usize = 2048;

/// /proc/PID/stat into `buf`: open, one read, close. `fs::read` sees the size 0 /proc reports
/// and reads in growing steps (32, 32, 64, 128, 256 bytes...), about a dozen syscalls a
/// process, which the stop pays for every process on every rescan.
fn read_stat<'a>(path: &str, buf: &'a mut [u8; STAT_BUF]) -> Option<&'a [u8]> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut len = 0;
    while len < buf.len() {
        match f.read(buf.get_mut(len..)?) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                // The kernel hands the whole line to the first read of a fresh open.
                if buf.get(len.checked_sub(1)?) == Some(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    buf.get(..len)
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
    let dir = fs::read_dir("/proc").ok()?;
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut buf = [0u8; STAT_BUF];
        if let Some(p) = read_stat(&format!("/proc/{name}/stat"), &mut buf).and_then(parse_stat) {
            out.push(p);
        }
    }
    Some(out)
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
        let p = |pid, ppid| ProcInfo {
            pid,
            state: 'S',
            ppid,
            pgid: pid,
            session: pid,
            tty_nr: 0,
            start_time: 0,
            comm: [0; 16],
            kernel_thread: false,
        };
        let all = [p(30, 20), p(10, 1), p(20, 10), p(40, 5), p(5, 1)];
        let mut t = stop_targets(&all, 10, false);
        t.sort();
        assert_eq!(t, vec![20, 30]);
        let mut t = stop_targets(&all, 1, true);
        t.sort();
        assert_eq!(t, vec![5, 10, 20, 30, 40]);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

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

    fn p(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo {
            pid,
            state: 'S',
            ppid,
            pgid: pid,
            session: pid,
            tty_nr: 0,
            start_time: pid as u64,
            comm: [0; 16],
            kernel_thread: false,
        }
    }

    #[test]
    fn descendants_in_any_order() {
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
