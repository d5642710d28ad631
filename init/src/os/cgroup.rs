//! Session cgroups (cgroup2): where they live, for PID 1 (supervise/sessions/teardown.rs reads and
//! removes them) and the session instance (smss-session's cgroup module creates and joins
//! them) alike.

/// Where a cgroup2 hierarchy must be mounted for sessions to get cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The parent of every session cgroup, below [`CGROUP_ROOT`].
pub const CGROUP_PARENT: &str = "smss";
