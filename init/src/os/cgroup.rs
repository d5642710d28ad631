//! Session cgroups (cgroup2): where they live and how PID 1 reads and removes them
//! (supervise/sessions/ uses these); the session instance creates and joins them
//! (smss-session's cgroup module).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where a cgroup2 hierarchy must be mounted for sessions to get cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The parent of every session cgroup, below [`CGROUP_ROOT`].
pub const CGROUP_PARENT: &str = "smss";

/// Does the cgroup2 hierarchy sessions use offer the pids controller (`pids_max`)?
pub fn pids_controller_available() -> bool {
    fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
}

/// `populated` of a cgroup's `cgroup.events`; None when unreadable.
pub fn populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

/// `populated` of an open `cgroup.events`.
pub fn read_events(f: &fs::File) -> Option<bool> {
    let mut buf = [0u8; 256];
    // Reading from offset 0 also re-arms kernfs' poll notification.
    let n = f.read_at(&mut buf, 0).ok()?;
    populated(std::str::from_utf8(buf.get(..n)?).ok()?)
}

/// Every pid in `cg` and its descendants' `cgroup.procs`.
pub fn cgroup_procs(cg: &Path, out: &mut Vec<i32>, depth: u32) {
    if let Ok(text) = fs::read_to_string(cg.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if depth == 0 {
        return;
    }
    if let Ok(dir) = fs::read_dir(cg) {
        for e in dir.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_procs(&e.path(), out, depth - 1);
            }
        }
    }
}

/// rmdir a cgroup and its descendants, deepest first.
pub fn remove_cgroup(cg: &Path, depth: u32) -> std::io::Result<()> {
    if depth > 0 {
        if let Ok(dir) = fs::read_dir(cg) {
            for e in dir.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = remove_cgroup(&e.path(), depth - 1);
                }
            }
        }
    }
    fs::remove_dir(cg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_events() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated(""), None);
    }
}
