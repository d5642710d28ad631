//! The session's cgroup, `/sys/fs/cgroup/smss/session-ID`, with its pids.max. Nothing here
//! fails a session: without a cgroup2 hierarchy (or without the right to use it) the session
//! is tracked by its processes' session ids instead, with a log line saying why.

use std::fs;
use std::path::{Path, PathBuf};

use smss::os::cgroup::{CGROUP_PARENT, CGROUP_ROOT};

/// logind's default for a user's tasks: a third of kernel.pid_max.
pub fn default_pids_max() -> u64 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(4096, |m| (m / 3).max(64))
}

/// `/sys/fs/cgroup/smss/session-ID` with pids.max, joined by this process so everything it
/// starts (and everything they fork) is inside. None, with a log line, when there is no
/// cgroup2 hierarchy there (a cgroup v1 or hybrid host): the session is then tracked by the
/// session ids of its processes. The flag: pids.max was set.
pub fn set_up(id: u32, pids_max: Option<u64>) -> (Option<PathBuf>, bool) {
    let mut limited = false;
    let cg = cgroup_with_limit(id, pids_max, &mut limited);
    let limited = limited && cg.is_some();
    (cg, limited)
}

fn cgroup_with_limit(id: u32, pids_max: Option<u64>, limited: &mut bool) -> Option<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.controllers").exists() {
        // PID 1 says so once (its first session kept without a cgroup): a line here would be
        // one per session, and on the creation's path.
        log::debug!(
            "session {id}: no cgroup2 hierarchy at {}: tracking the session by its session ids",
            root.display()
        );
        return None;
    }
    let parent = root.join(CGROUP_PARENT);
    if let Err(e) = fs::create_dir(&parent) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            log::warn!(
                "session {id}: failed to create {}: {e}; no cgroup",
                parent.display()
            );
            return None;
        }
    }
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let mut pids = controllers.split_whitespace().any(|c| c == "pids");
    if pids {
        for dir in [root, parent.as_path()] {
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), "+pids") {
                log::info!(
                    "session {id}: failed to enable the pids controller in {}: {e}; no pids.max",
                    dir.display()
                );
                pids = false;
                break;
            }
        }
    } else {
        log::info!("session {id}: the pids controller is not available: no pids.max");
    }
    let cg = parent.join(format!("session-{id}"));
    if cg.exists() {
        // A stale cgroup of an earlier smss: empty ones can go.
        let _ = fs::remove_dir(&cg);
    }
    if let Err(e) = fs::create_dir(&cg) {
        log::warn!(
            "session {id}: failed to create {}: {e}; no cgroup",
            cg.display()
        );
        return None;
    }
    if pids {
        let max = pids_max.unwrap_or_else(default_pids_max);
        match fs::write(cg.join("pids.max"), max.to_string()) {
            Ok(()) => *limited = true,
            Err(e) => log::warn!("session {id}: failed to set pids.max: {e}"),
        }
    }
    if let Err(e) = fs::write(cg.join("cgroup.procs"), std::process::id().to_string()) {
        log::warn!(
            "session {id}: failed to join {}: {e}; no cgroup",
            cg.display()
        );
        let _ = fs::remove_dir(&cg);
        return None;
    }
    Some(cg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_max_default_is_sane() {
        assert!(default_pids_max() >= 64);
    }
}
