//! `smss-session`: the per-session instance (the copy of smss.exe the master starts for each
//! session). It reads its parameters from the descriptor PID 1 passed (`--fd N`), creates the
//! session's runtime directory and cgroup, starts the session subsystems and the login
//! manager on the seat's terminal, reports their pids on the same descriptor (each as soon as
//! it is started, then the whole report) and exits: its children are reparented to PID 1,
//! which supervises them from then on. Without a cgroup it stays instead, as the session's
//! keeper (see `keeper`).
//!
//! ```text
//! smss-session --id ID --fd N [--log LEVEL]        the instance (started by smss only)
//! smss-session exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]
//!                                                  join DIR, drop to USER, exec CMD
//! ```
#![deny(unsafe_code)]
#![cfg_attr(not(test), no_main)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use smss::control::instance::{
    self, InstanceMessage, Member, Report, SessionParams, SubsystemSpec, CGROUP_PARENT, CGROUP_ROOT,
};
use smss::control::users::{self, User};
use smss::logging;
use smss::supervise::notify::NotifySocket;
use smss::sys::process::{self, Detach, SpawnSpec};
use smss_config::Environment;

mod keeper;

const USAGE: &str = "\
usage: smss-session --id ID --fd N [--log LEVEL]     (started by smss for each session)
       smss-session exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]
       smss-session remove DIR                        (an ended session's runtime directory)";

/// The C entry point: like `smss`, skip the Rust runtime's start-up syscalls (a session is
/// created on every login; the instance's own start-up is most of CreateSession's cost).
#[cfg(not(test))]
#[allow(unsafe_code)] // `no_mangle` names the C `main`; argv is the C runtime's own.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // Only the C runtime calls it, with a valid argv.
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime passes argc valid NUL-terminated strings in argv.
    let args = unsafe { smss::sys::c_args(argc, argv) };
    session_main(args);
    0
}

#[cfg_attr(test, allow(dead_code))]
fn session_main(argv: Vec<String>) {
    // Nothing ignored may reach the session's login manager or subsystems (see smss's spawn).
    smss::sys::reset_ignored_signals();
    let code = match argv.first().map(String::as_str) {
        Some("exec") => exec_main(argv.get(1..).unwrap_or_default()),
        Some("remove") => remove_main(argv.get(1..).unwrap_or_default()),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            0
        }
        _ => instance_main(&argv),
    };
    std::process::exit(code);
}

/// `remove DIR`: delete an ended session's runtime directory (renamed aside by smss). Done
/// here, not in PID 1: the directory was the user's, and may hold any number of files.
fn remove_main(argv: &[String]) -> i32 {
    smss::logging::init(
        std::env::var("SMSS_LOG").ok().as_deref(),
        log::LevelFilter::Warn,
    );
    let [dir] = argv else {
        eprintln!("smss-session remove: one directory expected\n{USAGE}");
        return 2;
    };
    // remove_dir_all never follows a symlink inside the tree.
    match fs::remove_dir_all(dir) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            log::warn!("failed to remove {dir}: {e}");
            1
        }
    }
}

/// Parse `--id ID --fd N [--log LEVEL]`.
fn parse_instance_args(argv: &[String]) -> Result<(u32, i32, Option<String>), String> {
    let (mut id, mut fd, mut log) = (None, None, None);
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--id" => id = Some(value()?.parse::<u32>().map_err(|e| format!("--id: {e}"))?),
            "--fd" => fd = Some(value()?.parse::<i32>().map_err(|e| format!("--fd: {e}"))?),
            "--log" => log = Some(value()?.clone()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    match (id, fd) {
        (Some(id), Some(fd)) => Ok((id, fd, log)),
        _ => Err("--id and --fd are required".into()),
    }
}

fn instance_main(argv: &[String]) -> i32 {
    let (id, fd, level) = match parse_instance_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("smss-session: {e}\n{USAGE}");
            return 2;
        }
    };
    let level = level.or_else(|| std::env::var("SMSS_LOG").ok());
    logging::init(level.as_deref(), log::LevelFilter::Warn);
    let fd = match smss::sys::fd::take_inherited(fd) {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("session {id}: failed to take report descriptor {fd}: {e}");
            return 1;
        }
    };
    let link = UnixStream::from(fd);
    // SIGCHLD and SIGTERM are read from a signalfd by the keeper; blocked before anything is
    // started (children start with an empty mask: see smss's spawn).
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGCHLD);
    mask.add(nix::sys::signal::Signal::SIGTERM);
    let signals = mask
        .thread_block()
        .map_err(std::io::Error::from)
        .and_then(|()| {
            nix::sys::signalfd::SignalFd::with_flags(
                &mask,
                nix::sys::signalfd::SfdFlags::SFD_NONBLOCK
                    | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        });
    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            log::error!("session {id}: failed to create a signalfd: {e}");
            return 1;
        }
    };
    let (doc, pending) = match read_line(&link, instance::MAX_PARAMS) {
        Ok(d) => d,
        Err(e) => {
            log::error!("session {id}: failed to read its parameters: {e}");
            return 1;
        }
    };
    let mut report = match serde_json::from_slice::<SessionParams>(&doc) {
        Ok(p) if p.id == id => set_up(&p, &link),
        Ok(p) => failure(id, format!("parameters are for session {}", p.id)),
        Err(e) => failure(id, format!("unreadable parameters: {e}")),
    };
    if report.keeper && report.error.is_some() {
        // A failed session without a cgroup: end what was started before reporting, so
        // nothing is left for PID 1 to find.
        report.keeper = false;
        keeper::sweep(&mut keeper::Keeper::new(Vec::new()), &link, &signals);
    }
    let members: Vec<i32> = report.members.iter().map(|m| m.pid).collect();
    let keep = report.keeper;
    let failed = report.error.is_some();
    let mut line = serde_json::to_vec(&InstanceMessage::Report(report)).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = (&link).write_all(&line) {
        log::error!("session {id}: failed to report to smss: {e}");
        if keep {
            keeper::sweep(&mut keeper::Keeper::new(Vec::new()), &link, &signals);
        }
        return 1;
    }
    if keep {
        return keeper::keep(link, pending, &members, signals);
    }
    i32::from(failed)
}

/// Read one line (at most `max` bytes) from PID 1: the line, and whatever came after it.
fn read_line(link: &UnixStream, max: usize) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let rest = buf.split_off(i + 1);
            buf.pop();
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err(std::io::Error::other("the parameters are too long"));
        }
        match (&*link).read(&mut chunk) {
            // EOF ends the document too (an smss that shut its side down).
            Ok(0) => return Ok((buf, Vec::new())),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A session process to start.
pub(crate) struct Held {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub detach: Detach,
    pub stdio: Option<std::os::fd::RawFd>,
    pub cwd: Option<PathBuf>,
    /// Drop to this user before exec.
    pub user: Option<String>,
}

/// Start a session process held back until PID 1 knows of it: it starts as `smss-session
/// exec --hold FD`, which waits for a byte on a socket before it execs the command; the byte
/// is written once the `started` line is. An instance killed in between closes the socket,
/// and the process exits without having run anything (so nothing can start unknown to PID 1).
/// The same socket brings back why the exec failed (it is closed on a successful exec), so a
/// command that cannot run fails its request, as SmStartCsr does, instead of exiting later.
pub(crate) fn spawn_held(
    h: Held,
    link: &UnixStream,
    name: String,
    critical: bool,
) -> Result<Member, SpawnFailure> {
    let me = std::env::current_exe().map_err(|e| format!("failed to find myself: {e}"))?;
    let (hold, go) = {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("failed to create a socket pair: {e}"))?
    };
    let mut argv = vec![
        me.display().to_string(),
        "exec".into(),
        "--hold".into(),
        hold.as_raw_fd().to_string(),
    ];
    if let Some(u) = h.user {
        argv.extend(["--user".into(), u]);
    }
    argv.push("--".into());
    argv.extend(h.argv);
    let spec = SpawnSpec {
        program: me,
        argv,
        env: h.env,
        detach: h.detach,
        stdio: h.stdio,
        pass_fd: Some(hold.as_raw_fd()),
        cwd: h.cwd,
    };
    let pid = process::spawn(&spec).map_err(|e| e.to_string())?.as_raw();
    drop(hold);
    let member = started(link, pid, name, critical);
    if let Err(e) = nix::unistd::write(&go, b"g") {
        log::warn!("failed to release pid {pid}: {e}");
        return Ok(member);
    }
    match exec_outcome(&go, EXEC_OUTCOME_TIMEOUT) {
        Some(why) => Err(SpawnFailure {
            started: Some(pid),
            why,
        }),
        None => Ok(member),
    }
}

/// Why [`spawn_held`] failed, and the pid PID 1 was already told of when the process was
/// started but could not exec (it exits at once; its exit is still to be reported).
#[derive(Debug)]
pub(crate) struct SpawnFailure {
    pub started: Option<i32>,
    pub why: String,
}

impl From<String> for SpawnFailure {
    fn from(why: String) -> SpawnFailure {
        SpawnFailure { started: None, why }
    }
}

impl std::fmt::Display for SpawnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// How long a released process may take to exec (or say why it could not) before it is taken
/// as started: a user lookup and a cgroup write, normally milliseconds.
const EXEC_OUTCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// What a released `exec --hold` process wrote before its socket closed: nothing when it
/// exec'd (close-on-exec), the reason when it could not. Bounded in size and time.
fn exec_outcome(go: &OwnedFd, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut why = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "a session process did not exec within {} s",
                timeout.as_secs()
            );
            break;
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(go.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        match nix::unistd::read(go.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                why.extend_from_slice(buf.get(..n).unwrap_or_default());
                if why.len() >= 4096 {
                    break;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => break,
        }
    }
    (!why.is_empty()).then(|| String::from_utf8_lossy(&why).into_owned())
}

/// A process was started: into the report, and at once to PID 1 (so that an instance killed
/// before its report leaves nothing PID 1 does not know of).
fn started(link: &UnixStream, pid: i32, name: String, critical: bool) -> Member {
    let member = Member {
        pid,
        name,
        critical,
        // Our child, not reaped: the pid is still this process's.
        start_time: smss::supervise::procs::read(pid).map_or(0, |p| p.start_time),
    };
    let mut line =
        serde_json::to_vec(&InstanceMessage::Started(member.clone())).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = (&*link).write_all(&line) {
        log::warn!("failed to tell smss about pid {pid}: {e}");
    }
    member
}

fn failure(id: u32, error: String) -> Report {
    Report {
        id,
        error: Some(error),
        ..Default::default()
    }
}

/// Build the session; every failure ends up in the report (with what was started so far,
/// which PID 1 stops and cleans up).
fn set_up(p: &SessionParams, link: &UnixStream) -> Report {
    let mut report = Report {
        id: p.id,
        ..Default::default()
    };
    if let Err(e) = build(p, link, &mut report) {
        report.error = Some(e);
    }
    report
}

fn build(p: &SessionParams, link: &UnixStream, report: &mut Report) -> Result<(), String> {
    let user = match &p.user {
        Some(name) => Some(users::find_user(name).ok_or(format!("no user {name}"))?),
        None => None,
    };
    let dir = Path::new(&p.runtime_dir);
    let dirfd = make_runtime_dir(dir, user.as_ref())
        .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    let (cgroup, limited) = set_up_cgroup(p.id, p.pids_max);
    report.cgroup = cgroup.map(|c| c.display().to_string());
    if report.cgroup.is_none() {
        // No cgroup to hold the session: this process will, as its keeper. A subreaper
        // before anything is started, so nothing started can get out from below it.
        match smss::sys::set_child_subreaper() {
            Ok(()) => report.keeper = true,
            Err(e) => log::warn!("session {}: failed to become a subreaper: {e}", p.id),
        }
    }
    if p.pids_max.is_some() && !limited {
        // Asked for, not enforceable: fail rather than run without the limit.
        return Err("pids_max: failed to set the session cgroup's pids.max".into());
    }
    let env = instance::session_environment(std::env::vars().collect(), p, user.as_ref());
    write_file(&dirfd, dir, "environment", &env_file(&env))?;
    write_file(
        &dirfd,
        dir,
        "seat",
        &p.seat
            .as_ref()
            .map(|s| format!("{s}\n"))
            .unwrap_or_default(),
    )?;
    write_file(
        &dirfd,
        dir,
        "tty",
        &p.tty.as_ref().map(|s| format!("{s}\n")).unwrap_or_default(),
    )?;

    let mut notify = None;
    for sub in &p.subsystems {
        start_subsystem(p.id, sub, &env, &mut notify, link, report)?;
    }
    let leader = start_login_manager(p, &env, user.as_ref(), link, report)?;
    report.leader = Some(leader);
    let pids: String = report.pids.iter().map(|p| format!("{p}\n")).collect();
    write_file(&dirfd, dir, "pids", &pids)?;
    Ok(())
}

/// Create the session's runtime directory afresh (mode 0700, the user's) and return it open:
/// every later write goes through this descriptor, so nothing the user renames or links in
/// the directory (theirs once chowned) can redirect a write made as root.
fn make_runtime_dir(dir: &Path, user: Option<&User>) -> std::io::Result<OwnedFd> {
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    // Left over from an earlier smss with the same /run: start clean.
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(dir)?,
        Ok(_) => fs::remove_file(dir)?,
        Err(_) => {}
    }
    fs::DirBuilder::new().mode(0o700).create(dir)?;
    let fd: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?
        .into();
    nix::sys::stat::fchmod(
        fd.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o700),
    )?;
    if let Some(u) = user {
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        )?;
    }
    Ok(fd)
}

/// Write `name` in the runtime directory `dirfd` as root without following anything the
/// user may have put there: whatever is at the name is removed, and the file is created
/// anew, refusing a symlink (O_NOFOLLOW) or anything that reappears (O_EXCL).
fn write_file(dirfd: &OwnedFd, dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let _ = nix::unistd::unlinkat(
        Some(dirfd.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    smss::sys::fd::create_new_in(dirfd, name, 0o644)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("failed to write {}: {e}", dir.join(name).display()))
}

fn env_file(env: &Environment) -> String {
    env.vars()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

/// logind's default for a user's tasks: a third of kernel.pid_max.
fn default_pids_max() -> u64 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(4096, |m| (m / 3).max(64))
}

/// `/sys/fs/cgroup/smss/session-ID` with pids.max, joined by this process so everything it
/// starts (and everything they fork) is inside. None, with a log line, when there is no
/// cgroup2 hierarchy there (a cgroup v1 or hybrid host): the session is then tracked by the
/// session ids of its processes. The flag: pids.max was set.
fn set_up_cgroup(id: u32, pids_max: Option<u64>) -> (Option<PathBuf>, bool) {
    let mut limited = false;
    let cg = cgroup_with_limit(id, pids_max, &mut limited);
    let limited = limited && cg.is_some();
    (cg, limited)
}

fn cgroup_with_limit(id: u32, pids_max: Option<u64>, limited: &mut bool) -> Option<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.controllers").exists() {
        log::info!(
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

/// Start one session subsystem; wait for READY=1 when it is a notify one.
fn start_subsystem(
    id: u32,
    sub: &SubsystemSpec,
    env: &Environment,
    notify: &mut Option<NotifySocket>,
    link: &UnixStream,
    report: &mut Report,
) -> Result<(), String> {
    let mut vars = env.vars().to_vec();
    if sub.notify {
        if notify.is_none() {
            *notify = Some(
                NotifySocket::bind()
                    .map_err(|e| format!("failed to create a readiness socket: {e}"))?,
            );
        }
        if let Some(n) = notify.as_ref() {
            vars.push(("NOTIFY_SOCKET".into(), n.address.clone()));
        }
    }
    let argv = instance::expand_argv(&sub.argv, env)?;
    resolve(&argv, env)?;
    let held = Held {
        argv,
        env: vars,
        detach: Detach::Session,
        stdio: None,
        cwd: None,
        user: None,
    };
    let member = spawn_held(held, link, sub.name.clone(), sub.critical)
        .map_err(|e| format!("subsystem {}: {e}", sub.name))?;
    let pid = member.pid;
    report.pids.push(pid);
    report.members.push(member);
    log::info!("session {id}: subsystem {} started (pid {pid})", sub.name);
    if let (true, Some(n)) = (sub.notify, notify.as_ref()) {
        wait_ready(pid, n, Duration::from_millis(sub.ready_timeout_ms))
            .map_err(|e| format!("subsystem {}: {e}", sub.name))?;
        log::info!("session {id}: subsystem {} is ready", sub.name);
    }
    Ok(())
}

fn resolve(argv: &[String], env: &Environment) -> Result<PathBuf, String> {
    let first = argv.first().ok_or("empty command")?;
    process::resolve_program(first, env.get("PATH"))
        .ok_or(format!("failed to find program {first}: not found in PATH"))
}

/// Wait for READY=1 from `pid` (or a child of it, or one naming it as MAINPID), its exit,
/// or the timeout. A pidfd tells us about the exit without polling.
fn wait_ready(pid: i32, n: &NotifySocket, timeout: Duration) -> Result<(), String> {
    let pidfd: Option<OwnedFd> = smss::sys::fd::pidfd_open(pid).ok();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("not ready after {} ms", timeout.as_millis()));
        }
        let mut fds = vec![PollFd::new(n.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        let exited = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        // The socket is abstract, so anyone may write to it: a sender counts when the kernel
        // vouches for its pid (it or its child), and MAINPID only when root sent it. A flood
        // of datagrams cannot hold us past the deadline.
        while let Some(msg) = n.recv() {
            let main_pid = msg.get("MAINPID").and_then(|p| p.parse::<i32>().ok());
            let from_it = msg.sender == pid
                || (msg.sender_uid == 0 && main_pid == Some(pid))
                || parent_of(msg.sender) == Some(pid);
            if from_it && msg.ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if exited {
            return Err("exited before it was ready".into());
        }
    }
}

fn parent_of(pid: i32) -> Option<i32> {
    smss::supervise::procs::read(pid).map(|p| p.ppid)
}

/// The login manager: on the seat's terminal (its controlling terminal, in the foreground)
/// when there is one, as the session's user when one is given.
fn start_login_manager(
    p: &SessionParams,
    env: &Environment,
    user: Option<&User>,
    link: &UnixStream,
    report: &mut Report,
) -> Result<i32, String> {
    let argv = instance::expand_argv(&p.command, env)?;
    // `smss-session exec --user` drops privileges, then execs the command (the pid we
    // report stays the login manager's); as root the program is looked up here first.
    let as_user = user.filter(|u| u.uid != 0);
    if as_user.is_none() {
        resolve(&argv, env)?;
    }
    let tty = match &p.tty {
        Some(t) => Some(open_seat_tty(t).map_err(|e| format!("failed to open {t}: {e}"))?),
        None => None,
    };
    let held = Held {
        argv,
        env: env.vars().to_vec(),
        detach: if tty.is_some() {
            Detach::SessionWithTerminal
        } else {
            Detach::Session
        },
        stdio: tty.as_ref().map(|t| t.as_raw_fd()),
        cwd: user.map(|u| PathBuf::from(&u.home)).filter(|h| h.is_dir()),
        user: as_user.map(|u| u.name.clone()),
    };
    let name = p.command.first().cloned().unwrap_or_default();
    let member = spawn_held(held, link, name, false).map_err(|e| format!("login manager: {e}"))?;
    let pid = member.pid;
    report.pids.push(pid);
    report.members.push(member);
    log::info!(
        "session {}: login manager {} started (pid {pid})",
        p.id,
        p.command.first().map_or("", String::as_str)
    );
    Ok(pid)
}

/// Open a seat's terminal for the login manager: O_NOCTTY (it must not become *our*
/// controlling terminal) and O_NONBLOCK (a serial line without carrier would otherwise block
/// the open forever, as agetty knows), then back to blocking for the login manager. It must
/// be a terminal: it becomes the login manager's controlling terminal (TIOCSCTTY), which
/// /dev/null, say, cannot be.
fn open_seat_tty(path: &str) -> std::io::Result<fs::File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)?;
    if !nix::unistd::isatty(f.as_raw_fd()).unwrap_or(false) {
        return Err(std::io::Error::other("not a terminal"));
    }
    let flags = OFlag::from_bits_truncate(fcntl(f.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(f)
}

/// `exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]`: wait for a byte on FD
/// (a session process held until PID 1 knows of it), join the cgroup, drop to the user,
/// exec. Used for every process an instance starts and for subsystems started later inside
/// a session (LoadDeferredSubsystem).
fn exec_main(argv: &[String]) -> i32 {
    logging::init(
        std::env::var("SMSS_LOG").ok().as_deref(),
        log::LevelFilter::Warn,
    );
    let (mut cgroup, mut user, mut cmd, mut hold) = (None, None, None, None);
    let mut i = 0;
    while let Some(a) = argv.get(i) {
        match a.as_str() {
            "--hold" => {
                hold = argv.get(i + 1).cloned();
                i += 1;
            }
            "--cgroup" => {
                cgroup = argv.get(i + 1).cloned();
                i += 1;
            }
            "--user" => {
                user = argv.get(i + 1).cloned();
                i += 1;
            }
            "--" => {
                cmd = argv.get(i + 1..).map(<[String]>::to_vec);
                break;
            }
            other => {
                eprintln!("smss-session exec: unknown argument {other}\n{USAGE}");
                return 2;
            }
        }
        i += 1;
    }
    let Some(cmd) = cmd.filter(|c| !c.is_empty()) else {
        eprintln!("smss-session exec: no command\n{USAGE}");
        return 2;
    };
    // Held until the instance has told PID 1 about us; its going away first means the
    // session is being torn down: run nothing. The socket stays open (close-on-exec) to tell
    // the instance why the exec failed, if it does.
    let mut held = None;
    if let Some(fd) = hold {
        let released = fd
            .parse::<i32>()
            .ok()
            .and_then(|fd| smss::sys::fd::take_inherited(fd).ok())
            .filter(|fd| {
                let mut b = [0u8; 1];
                loop {
                    match nix::unistd::read(fd.as_raw_fd(), &mut b) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        r => break r == Ok(1),
                    }
                }
            });
        let Some(fd) = released else {
            return 126;
        };
        held = Some(fd);
    }
    // Log why we could not run the command, and tell the instance holding us.
    let fail = |code: i32, why: String| -> i32 {
        log::error!("{why}");
        if let Some(fd) = &held {
            let _ = nix::sys::socket::send(
                fd.as_raw_fd(),
                why.as_bytes(),
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            );
        }
        code
    };
    if let Some(cg) = cgroup {
        let procs = Path::new(&cg).join("cgroup.procs");
        if let Err(e) = fs::write(&procs, std::process::id().to_string()) {
            log::warn!("failed to join cgroup {cg}: {e}");
        }
    }
    if let Some(name) = user {
        let Some(u) = users::find_user(&name) else {
            return fail(126, format!("no user {name}"));
        };
        if let Err(e) = drop_privileges(&u) {
            return fail(126, format!("failed to become {name}: {e}"));
        }
    }
    let args: Vec<std::ffi::CString> = match cmd
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect()
    {
        Ok(a) => a,
        Err(_) => return fail(126, "argument contains NUL".into()),
    };
    let Some(prog) = args.first() else {
        return 126;
    };
    let err = nix::unistd::execvp(prog, &args).err();
    let code = if err == Some(nix::errno::Errno::ENOENT) {
        127
    } else {
        126
    };
    fail(
        code,
        format!(
            "failed to execute {}: {}",
            cmd.first().map_or("", String::as_str),
            err.map_or("unknown error".to_string(), |e| e.to_string())
        ),
    )
}

/// initgroups + setgid + setuid, in that order (after setuid we could do neither).
fn drop_privileges(u: &User) -> nix::Result<()> {
    let gids: Vec<nix::unistd::Gid> = users::supplementary_groups(u)
        .into_iter()
        .map(nix::unistd::Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&gids)?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(u.gid))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(u.uid))?;
    if std::env::set_current_dir(&u.home).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn instance_arguments() {
        assert_eq!(
            parse_instance_args(&v(&["--id", "3", "--fd", "5"])),
            Ok((3, 5, None))
        );
        assert_eq!(
            parse_instance_args(&v(&["--fd", "5", "--id", "3", "--log", "debug"])),
            Ok((3, 5, Some("debug".into())))
        );
        assert!(parse_instance_args(&v(&["--id", "x", "--fd", "5"])).is_err());
        assert!(parse_instance_args(&v(&["--id", "3"])).is_err());
        assert!(parse_instance_args(&v(&["--bogus"])).is_err());
    }

    #[test]
    fn pids_max_default_is_sane() {
        assert!(default_pids_max() >= 64);
    }

    #[test]
    fn runtime_files_never_follow_what_is_in_the_directory() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("smss-session-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let victim = base.join("victim");
        fs::write(&victim, "untouched").unwrap();
        // A runtime directory left over as a symlink is replaced, not followed.
        let dir = base.join("run");
        std::os::unix::fs::symlink(&base, &dir).unwrap();
        let fd = make_runtime_dir(&dir, None).unwrap();
        assert!(fs::symlink_metadata(&dir).unwrap().is_dir());
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // A link planted where a file goes is removed, never written through.
        std::os::unix::fs::symlink(&victim, dir.join("environment")).unwrap();
        write_file(&fd, &dir, "environment", "A=1\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(
            fs::read_to_string(dir.join("environment")).unwrap(),
            "A=1\n"
        );
        assert!(fs::symlink_metadata(dir.join("environment"))
            .unwrap()
            .is_file());
        // The directory renamed away and a link put in its place: writes still land in the
        // directory we created.
        let moved = base.join("moved");
        fs::rename(&dir, &moved).unwrap();
        std::os::unix::fs::symlink(&base, &dir).unwrap();
        write_file(&fd, &dir, "pids", "7\n").unwrap();
        assert_eq!(fs::read_to_string(moved.join("pids")).unwrap(), "7\n");
        assert!(!base.join("pids").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
