//! What PID 1 and the session instance (`smss-session`) both read from the operating system:
//! session cgroups, readiness datagrams, /proc, and the user database. Neutral ground: supervise/, control/ and
//! sessiond import from here, and this module imports none of them.

pub mod cgroup;
pub mod notify;
pub mod procs;
pub mod users;
