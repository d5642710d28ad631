//! The control socket (the SM API port, `\SmApiPort`): the varlink wire format, the
//! `io.smss.Manager` methods, the non-blocking server's connections, a blocking client for
//! `smctl`, and the hand-off between PID 1 and a session instance. The methods themselves run
//! in PID 1's loop (`supervise::api`, `supervise::sessions`).
//!
//! # The socket
//! `[control] socket` (default `/run/smss/control`), created by PID 1 before the boot plan
//! runs (so `smctl status` works during a long BootExecute): parent directories made, a stale
//! socket file replaced, a live one (another smss answers) left alone. Mode **0666**:
//! GetStatus, ListSessions and `org.varlink.service.*` are for every local user (interface.md
//! section 4); every other method checks the caller per call with SO_PEERCRED — uid 0, or
//! `allowed-group` as primary group, as a supplementary group (SO_PEERGROUPS, so peers in
//! another PID namespace count too) or as a member listed in /etc/group. Users and groups are
//! read from /etc/passwd and /etc/group directly (no NSS in a static PID 1). Membership of
//! `allowed-group` is root-equivalent: CreateSession runs commands as root. A container
//! without a configuration file (the minimal, tini-like mode) serves no socket.
//!
//! Limits (PID 1 must not be held up by a client): at most 256 connections, of which 16 only
//! root may take and at most 64 from unprivileged peers; a uid other than root holds at most
//! 32 (8 when it may only read). Extra ones get `LimitReached {limit: "connections"}` (or
//! `"connections-per-uid"`) and are closed. A begun message must be complete, and a reply
//! read, within 10 s; a connection with no call for 30 s is closed (not while it waits for a
//! deferred reply). Denied calls are logged 10 per 10 s from all connections together, then
//! counted. A message may be 1 MiB; more without a NUL gets an
//! `org.varlink.service.InvalidParameter {parameter: "message"}` reply and the connection is
//! closed, as for anything that is not a JSON object with a string `method`. Replies waiting
//! to be read are capped at 2 MiB; a client that does not read is dropped. Reads are
//! budgeted per wake-up. Calls on one connection are answered in order; a deferred call
//! (CreateSession, TerminateSession) holds the calls behind it until it is answered.
//!
//! # Methods, beyond interface.md section 4
//! - `CreateSession(seat?, tty?, user?, command?, environment?, allow_shared_seat?, pids_max?)
//!   -> (id, pids)`. `tty` defaults to the seat's; it must be a character device. A seat
//!   used by any session (in any state) is `LimitReached {limit: "seat"}` unless
//!   `allow_shared_seat`. `command` defaults to `[sessions] initial-command`; neither is
//!   `InvalidParameter {parameter: "command"}`. `user` runs the login manager as that user
//!   (initgroups, setgid, setuid; USER/LOGNAME/HOME/SHELL set; the runtime directory is
//!   theirs); session subsystems stay root, like csrss. `pids_max` sets the cgroup's
//!   pids.max (default: a third of kernel.pid_max, logind's per-user default); without a
//!   cgroup2 pids controller it is refused (`InvalidParameter {parameter: "pids_max"}`), never
//!   accepted without the limit. More than
//!   `max-sessions` sessions (counting queued and terminating ones) is `LimitReached {limit:
//!   "max-sessions"}`. The reply comes when the instance has reported; a failed set-up is
//!   `io.smss.Manager.Failed {reason}` (an extension), and what it started is stopped.
//! - `TerminateSession(id, wait?) -> (state)`: with `wait` (default true) the reply comes
//!   once the session is gone (`state: "gone"`); `wait: false` replies at once with
//!   `"terminating"`.
//! - `LoadDeferredSubsystem(name, session?) -> (pid)`: only names in `[subsystems] optional`
//!   (case-insensitive); an already running one returns its pid. Replies when it has been
//!   exec'd (a `notify` subsystem's readiness is not awaited). Inside a session it is started
//!   through `smss-session exec`, which joins the session's cgroup (and user) before exec;
//!   without a cgroup the session's keeper starts it, so that it stays below the keeper.
//! - `QueueFileRename(source, destination?, replace_existing?)`: an empty or absent
//!   destination deletes. `smctl rename --offline` (or with no smss serving the socket)
//!   appends to the configured queue file itself, under the same lock.
//! - `Shutdown(action)`: replies, then stops; in a container any action means exit.
//! - `GetStatus.subsystems`: `{name, session, kind: required|optional|session, pid?,
//!   state: running|stopped|deferred}`; `ListSessions` entries also carry `pids`,
//!   `runtime_dir` and `cgroup`.
//! - `GetStatus` also reports times for `smctl analyze` (`supervise::timeline`, on the phases'
//!   clock): `kernel_us` (system mode), `commands`, session-0 subsystems' `ready`,
//!   `start_us`, `ready_us`, `end_us`, `result`, `session_creations` and `bugcheck`.
//!
//! # Sessions (SmStartCsr / SmStopCsr)
//! Ids count from 1 and are not reused while smss runs. At most `parallel-session-creation`
//! `smss-session` instances run at once; further requests queue (state `queued`), as do
//! requests made before the boot plan is done. At the end of the boot, when `[sessions]
//! initial-command` is set, every `[[seats]]` entry gets a session (NumberOfInitialSessions).
//! Such a seat session is created again when its login manager exits (a user logged out), as
//! Windows gives the console a new session after logoff — unless it was ended by
//! TerminateSession, smss is stopping, or it lived less than 2 s (a getty that cannot start
//! would spin).
//!
//! PID 1 writes the session's [`instance::SessionParams`] as JSON into a socketpair and
//! starts `smss-session --id ID --fd N`; the instance makes `/run/smss/sessions/ID` (0700,
//! files `environment`, `seat`, `tty`, `pids`) and, when a cgroup2 hierarchy is mounted on
//! /sys/fs/cgroup, `/sys/fs/cgroup/smss/session-ID` (+pids enabled on the way, pids.max set,
//! joined before anything is started; otherwise a log line and no cgroup). It starts the
//! session subsystems in order (a `notify` one must say READY=1 within its ready-timeout),
//! then the login manager with the seat's tty as stdio and controlling terminal. It writes a
//! `started` line (pid, start time) for each process as soon as it has started it, then the
//! [`instance::Report`] (`{id, pids, leader, members, cgroup, keeper, error}`). With a cgroup
//! it exits and PID 1 adopts the reported processes. Without one it stays as the session's
//! keeper: a child subreaper since before it started anything, so every process of the
//! session (setsid, double fork) stays below it; it reaps them and tells PID 1 of its
//! members' exits.
//!
//! A session ends when its login manager exits, a critical session subsystem exits, or
//! TerminateSession: SIGTERM to every process in its cgroup (double-forked daemons included),
//! or, without a cgroup, the keeper sends it to every process below it; SIGKILL
//! (`cgroup.kill`, or the keeper's sweep of its children until none is left) after
//! `[shutdown] grace-period`. It is gone when its cgroup is unpopulated (cgroup.events,
//! watched with epoll) or its keeper has exited; then the cgroup and the runtime directory
//! are removed. A keeper that dies first hands its members to PID 1, which ends the session
//! and finds what is left through them (pid and start time, pidfds).

pub mod analyze;
pub mod client;
pub mod instance;
pub mod manager;
pub mod server;
pub mod wire;
