//! Teardown: end and kill a session, notice it is gone, remove its runtime dir and cgroup.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use serde_json::{json, Value};

use super::link::InstanceLink;
use super::table::{Session, SessionState};
use crate::control::instance::KeeperCommand;
use crate::control::manager::{CreateSession, MethodError};
use crate::os::cgroup::{cgroup_procs, populated, read_events, remove_cgroup};
use crate::os::procs;
use crate::supervise::{Child, Role, Supervisor, Timer, Token, KILL_WAIT};
use crate::sys::process::{self, Detach, SpawnSpec};
use crate::sys::{self, ExitStatus};

/// A seat's boot session that ends sooner than this after it started is not re-created (a
/// getty that cannot open its tty would otherwise spin).
const RESPAWN_MIN_LIFETIME: Duration = Duration::from_secs(2);

/// Pidfds watched at once for a terminating session without a cgroup.
const MAX_WATCHED_PIDS: usize = 64;

/// How we learn that a terminating session's last process is gone.
pub(super) enum Watch {
    /// `cgroup.events` (its `populated` line), polled for EPOLLPRI.
    Cgroup(fs::File),
    /// pidfds of the processes left, in an epoll of their own.
    Pids(Epoll, HashMap<u64, OwnedFd>),
}

impl Watch {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Watch::Cgroup(f) => f.as_fd(),
            Watch::Pids(e, _) => e.0.as_fd(),
        }
    }
}

/// Alive: neither a zombie nor being reaped (X).
pub(super) fn alive(pid: i32) -> bool {
    procs::read(pid).is_some_and(|p| p.alive())
}

impl Supervisor {
    /// A process belonging to a session (its instance, subsystem or login manager) exited.
    pub(crate) fn on_session_process_exit(&mut self, pid: i32, child: &Child, status: ExitStatus) {
        match child.role {
            Role::SessionInstance(id) => {
                self.release_slot(id);
                if status == ExitStatus::Exited(0) {
                    log::debug!("session {id}: smss-session (pid {pid}) {status}");
                } else {
                    log::warn!("session {id}: smss-session (pid {pid}) {status}");
                }
                // What it wrote before the exit (its report, its members' exits): read it
                // now, whatever the order in which epoll and the reaper saw the two.
                self.read_instance(id, true);
                if self
                    .sessions
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.state == SessionState::Starting)
                {
                    self.instance_failed(id, format!("smss-session {status} without a report"));
                }
                self.adopt_members(id, status);
                self.start_queued_sessions();
            }
            Role::SessionMember { session, .. } => {
                self.member_exited(session, pid, &child.name, &status.to_string());
            }
            _ => log::info!("{} (pid {pid}) {status}", child.name),
        }
        self.resume_clients();
    }

    /// A member of session `id` exited (reaped by us, or by its keeper).
    pub(super) fn member_exited(&mut self, id: u32, pid: i32, name: &str, status: &str) {
        let line = format!("session {id}: {name} (pid {pid}) {status}");
        match self.sessions.exits_later.as_mut() {
            Some(later) => later.push(line),
            None => log::info!("{line}"),
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let member = s.members.remove(&pid);
        if s.state == SessionState::Active {
            if s.leader == Some(pid) {
                self.end_session(id, format!("its login manager {status}"));
            } else if let Some(m) = member.filter(|m| m.critical) {
                self.end_session(id, format!("session subsystem {} {status}", m.name));
            }
        }
        self.check_session_gone(id);
    }

    /// The session's instance exited: its children are ours now. Members still alive (the
    /// same processes: start times are compared) become our children; the others are gone.
    /// A keeper that exits while its session is active was killed: the session ends.
    fn adopt_members(&mut self, id: u32, status: ExitStatus) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let was_keeper = std::mem::take(&mut s.keeper);
        let spawning: Vec<u32> = std::mem::take(&mut s.spawning)
            .into_iter()
            .filter_map(|(_, w)| w)
            .collect();
        for w in spawning {
            self.reply_deferred(w, Err(MethodError::failed("the session's keeper exited")));
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let mut adopted = Vec::new();
        for (pid, m) in std::mem::take(&mut s.members) {
            if self.children.contains_key(&pid) {
                s.members.insert(pid, m);
                continue;
            }
            let same = m.start_time != 0
                && procs::read(pid).is_some_and(|p| p.alive() && p.start_time == m.start_time);
            if same {
                self.children.insert(
                    pid,
                    Child {
                        name: m.name.clone(),
                        role: Role::SessionMember {
                            session: id,
                            leader: s.leader == Some(pid),
                        },
                        critical: false,
                    },
                );
                adopted.push(pid);
                s.members.insert(pid, m);
            }
        }
        let (state, killed) = (s.state, s.killed);
        if state == SessionState::Active && was_keeper {
            log::warn!("session {id}: its keeper smss-session {status}");
            self.end_session(id, format!("its keeper {status}"));
        } else if state == SessionState::Terminating {
            // Signalled through the keeper so far: now directly.
            let sig = if killed { libc::SIGKILL } else { libc::SIGTERM };
            for pid in adopted {
                let _ = sys::kill(pid, sig);
                let _ = sys::kill(pid, libc::SIGCONT);
            }
            self.check_session_gone(id);
        }
    }

    /// Every process of the session PID 1 itself must signal, found now: with a cgroup, its
    /// members and the cgroup's processes (by pid); without, the members that are our
    /// children (by pid: unreaped, so theirs), the members of a session whose keeper is gone
    /// and the strays (by pid and start time), and every process below those.
    fn session_processes(&self, id: u32) -> Vec<(i32, Option<u64>)> {
        let Some(s) = self.sessions.sessions.get(&id) else {
            return Vec::new();
        };
        let me = sys::getpid();
        let ours = |pid: &i32| {
            self.children.get(pid).is_some_and(
                |c| matches!(c.role, Role::SessionMember { session, .. } if session == id),
            )
        };
        let mut out: Vec<(i32, Option<u64>)> = Vec::new();
        if let Some(cg) = &s.cgroup {
            let mut pids: Vec<i32> = s.members.keys().copied().collect();
            cgroup_procs(cg, &mut pids, 8);
            pids.sort_unstable();
            pids.dedup();
            out.extend(pids.into_iter().map(|p| (p, None)));
        } else {
            let unverified: Vec<(i32, u64)> = s
                .members
                .values()
                .filter(|m| !ours(&m.pid) && !s.keeper && m.start_time != 0)
                .map(|m| (m.pid, m.start_time))
                .chain(s.strays.iter().copied())
                .collect();
            let mut roots: Vec<i32> = s.members.keys().copied().filter(|p| ours(p)).collect();
            out.extend(roots.iter().map(|p| (*p, None)));
            if roots.is_empty() && unverified.is_empty() {
                return out;
            }
            let Some(all) = procs::snapshot() else {
                return out;
            };
            // A zombie is gone already (it only waits for its reaper): it holds nothing up.
            let started: HashMap<i32, u64> = all
                .iter()
                .filter(|p| p.alive())
                .map(|p| (p.pid, p.start_time))
                .collect();
            for (pid, start) in unverified {
                if started.get(&pid) == Some(&start) {
                    roots.push(pid);
                    out.push((pid, Some(start)));
                }
            }
            out.extend(
                procs::descendants(&all, &roots)
                    .iter()
                    .filter(|p| !p.kernel_thread && p.alive())
                    .map(|p| (p.pid, Some(p.start_time))),
            );
        }
        out.retain(|(p, _)| *p != me && *p > 0);
        out
    }

    /// Signal what [`Supervisor::session_processes`] found, and remember the processes found
    /// below the members (they are looked for again even once their parents are gone).
    fn signal_session(&mut self, id: u32, targets: &[(i32, Option<u64>)], sigs: &[i32]) {
        for (pid, start) in targets {
            for sig in sigs {
                send_to_member(*pid, *start, *sig);
                // A login shell ignores SIGTERM; its terminal hanging up is what ends it.
                if *sig == libc::SIGTERM && procs::read(*pid).is_some_and(|p| p.tty_nr != 0) {
                    send_to_member(*pid, *start, libc::SIGHUP);
                }
            }
        }
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            for (pid, start) in targets {
                if let (Some(t), false) = (start, s.members.contains_key(pid)) {
                    s.strays.insert((*pid, *t));
                }
            }
        }
    }

    /// TerminateSession. `waiter` (if any) is answered when the session is gone.
    pub(crate) fn terminate_session(
        &mut self,
        id: u32,
        waiter: Option<u32>,
    ) -> Result<(), MethodError> {
        let s = self
            .sessions
            .sessions
            .get_mut(&id)
            .ok_or_else(|| MethodError::no_such_session(id))?;
        s.by_request = true;
        s.terminate_waiters.extend(waiter);
        match s.state {
            SessionState::Queued => {
                self.sessions.queue.retain(|q| *q != id);
                let now = self.uptime_us();
                self.timeline
                    .session_done(id, now, "failed: terminated before it started");
                if let Some(s) = self.sessions.sessions.remove(&id) {
                    log::info!("session {id}: terminated before it started");
                    self.answer_session_waiters(
                        s,
                        Err(MethodError::failed("terminated before it started")),
                    );
                }
            }
            // The instance is killed rather than awaited: a hung one would otherwise hold the
            // terminator (and a creation slot) until its deadline.
            SessionState::Starting => {
                s.terminate_requested = true;
                self.abort_instance(id, "terminated by request while starting".into());
            }
            SessionState::Active => self.end_session(id, "terminated by request".into()),
            SessionState::Terminating => {}
        }
        Ok(())
    }

    /// Stop every process of the session: SIGTERM now, SIGKILL after the grace period.
    pub(super) fn end_session(&mut self, id: u32, reason: String) {
        let grace = self.cfg.shutdown.grace_period;
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Active {
            return;
        }
        s.state = SessionState::Terminating;
        // The keeper first: its signals are the ones on a TerminateSession's path.
        self.tell_keeper(id, &KeeperCommand::Term);
        let targets = self.session_processes(id);
        self.signal_session(id, &targets, &[libc::SIGTERM, libc::SIGCONT]);
        log::info!("session {id} ending: {reason}");
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        s.reason = reason;
        self.add_timer(Instant::now() + grace, Timer::SessionKill(id));
        self.check_session_gone(id);
    }

    /// The keeper has reaped its last child (each member's `exited` came first): nothing of
    /// the session is left. The keeper holds nothing now (it waits for `remove`), so the
    /// session ends here, without waiting for the keeper's own exit.
    pub(super) fn keeper_empty(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        s.keeper = false;
        // Its members were its children, all reaped.
        s.members.clear();
        self.sessions.emptied.insert(id);
        let active = s.state == SessionState::Active;
        if active {
            self.end_session(id, "no process is left in it".into());
        }
        self.check_session_gone(id);
    }

    /// Finish the session if nothing of it is left; otherwise make sure we hear when that
    /// changes.
    fn check_session_gone(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        // A keeper says `empty` once nothing of the session is left (or its exit tells).
        if s.state != SessionState::Terminating || s.keeper || !s.members.is_empty() {
            return;
        }
        if let Some(cg) = &s.cgroup {
            // Its watch reports the change to unpopulated.
            let events = fs::read_to_string(cg.join("cgroup.events")).unwrap_or_default();
            if populated(&events) != Some(false) {
                return;
            }
            return self.finalize_session(id);
        }
        if matches!(s.watch, Some(Watch::Pids(..))) {
            return;
        }
        let left: Vec<i32> = self.session_processes(id).iter().map(|t| t.0).collect();
        if left.is_empty() {
            return self.finalize_session(id);
        }
        // Orphans are reaped without telling us: watch their pidfds.
        let Ok(inner) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
            return;
        };
        // At most MAX_WATCHED_PIDS descriptors: when those are gone, the next look finds
        // the rest (a session of thousands must not use up PID 1's descriptors).
        let mut fds = HashMap::new();
        for pid in left.into_iter().take(MAX_WATCHED_PIDS) {
            if let Ok(fd) = sys::fd::pidfd_open(pid) {
                if inner
                    .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, pid as u64))
                    .is_ok()
                {
                    fds.insert(pid as u64, fd);
                }
            }
        }
        if fds.is_empty() {
            // No pidfds (Linux < 5.3): the kill timer finishes the session.
            return;
        }
        let watch = Watch::Pids(inner, fds);
        if self.watch(watch.fd(), Token::SessionWatch(id)).is_ok() {
            if let Some(s) = self.sessions.sessions.get_mut(&id) {
                s.watch = Some(watch);
            }
        }
    }

    /// Watch the session cgroup's `cgroup.events` for `populated 0`.
    pub(super) fn watch_cgroup(&mut self, id: u32, cg: &Path) {
        let Ok(file) = fs::File::open(cg.join("cgroup.events")) else {
            return;
        };
        let _ = read_events(&file);
        // kernfs files are always readable: only EPOLLPRI says the content changed.
        let ev = EpollEvent::new(EpollFlags::EPOLLPRI, Token::SessionWatch(id).encode());
        if let Err(e) = self.epoll.add(file.as_fd(), ev) {
            log::warn!("session {id}: failed to watch {}: {e}", cg.display());
            return;
        }
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            s.watch = Some(Watch::Cgroup(file));
        }
    }

    /// The session cgroup's events changed, or one of the watched pidfds became readable.
    pub(crate) fn on_session_watch(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let mut empty = false;
        match s.watch.as_mut() {
            Some(Watch::Cgroup(f)) => empty = read_events(f) == Some(false),
            Some(Watch::Pids(inner, fds)) => {
                let mut events = [EpollEvent::empty(); 32];
                if let Ok(n) = inner.wait(&mut events, EpollTimeout::ZERO) {
                    for ev in events.iter().take(n) {
                        if let Some(fd) = fds.remove(&ev.data()) {
                            let _ = inner.delete(&fd);
                        }
                    }
                }
                if fds.is_empty() {
                    if let Some(w) = s.watch.take() {
                        self.unwatch(w.fd());
                    }
                }
            }
            None => {}
        }
        if empty
            && self
                .sessions
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Active)
        {
            self.end_session(id, "no process is left in it".into());
        }
        self.check_session_gone(id);
        self.resume_clients();
    }

    /// A terminating session's grace period ran out: SIGKILL what is left; after a further
    /// KILL_WAIT, give up on processes stuck in the kernel and finish anyway.
    pub(crate) fn on_session_kill_timer(&mut self, id: u32) {
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        if s.state != SessionState::Terminating {
            return;
        }
        if s.killed {
            log::error!("session {id}: processes survived SIGKILL; removing the session anyway");
            if let (true, Some(link)) = (s.keeper, s.instance.as_ref()) {
                // A keeper that did not act on `kill` (stopped, stuck) left its processes
                // running: killed here first, by pid and start time (they are below it,
                // unreaped), or they would outlive the session once it dies.
                if let Some(all) = procs::snapshot() {
                    for p in procs::descendants(&all, &[link.pid]) {
                        procs::signal_exact(p.pid, p.start_time, libc::SIGKILL);
                    }
                }
                let _ = sys::kill(link.pid, libc::SIGKILL);
            }
            self.finalize_session(id);
            return self.resume_clients();
        }
        s.killed = true;
        let keeper = s.keeper;
        if let Some(cg) = &s.cgroup {
            // cgroup.kill (Linux 5.14) also catches processes forking right now.
            let _ = fs::write(cg.join("cgroup.kill"), "1");
        }
        let left = self.session_processes(id);
        if keeper {
            log::warn!("session {id}: still running after SIGTERM: its keeper sends SIGKILL");
        } else {
            log::warn!(
                "session {id}: {} process(es) still running after SIGTERM: sending SIGKILL",
                left.len()
            );
        }
        self.signal_session(id, &left, &[libc::SIGKILL]);
        self.tell_keeper(id, &KeeperCommand::Kill);
        self.add_timer(Instant::now() + KILL_WAIT, Timer::SessionKill(id));
        self.check_session_gone(id);
        self.resume_clients();
    }

    /// The stop found no process left: every session still in the table went with them, even
    /// when its last exits were not looked at yet (a pidfd watched, reaped as an orphan just
    /// before). Each ends here, before PID 1 exits or takes the machine down, so none goes
    /// without its `ended` line and its waiters' answers; nothing is started for their runtime
    /// directories (none could run now).
    pub(crate) fn end_sessions_at_stop(&mut self) {
        self.sessions.all_gone = true;
        let ids: Vec<u32> = self.sessions.sessions.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.sessions.sessions.get_mut(&id) {
                if s.reason.is_empty() {
                    s.reason = "the stop ended every process".into();
                }
            }
            self.finalize_session(id);
        }
    }

    /// Everything of the session is gone: remove its cgroup, rename its runtime directory
    /// aside, answer whoever waits, then have the directory deleted (by the emptied keeper, or
    /// an `smss-session remove`), re-create a seat's boot session.
    fn finalize_session(&mut self, id: u32) {
        self.cancel_timer(&Timer::SessionKill(id));
        self.cancel_timer(&Timer::SessionStart(id));
        let Some(mut s) = self.sessions.sessions.remove(&id) else {
            return;
        };
        if let Some(w) = s.watch.take() {
            self.unwatch(w.fd());
        }
        let link = s.instance.take();
        // A keeper that said `empty` waits for the directory; any other instance left
        // (killed, or about to exit) just sees its link close.
        let emptied = self.sessions.emptied.remove(&id);
        if let Some(cg) = &s.cgroup {
            if let Err(e) = remove_cgroup(cg, 8) {
                log::warn!(
                    "session {id}: failed to remove cgroup {}: {e}",
                    cg.display()
                );
            }
        }
        // Renamed now, deleted after the answer: the name is free once the session is gone.
        let aside = match self.sessions.all_gone {
            // Left where it is: nothing could delete it now.
            true => None,
            false => self.rename_runtime_dir(id, Path::new(&s.params.runtime_dir)),
        };
        let now = self.uptime_us();
        let respawn = s.respawn && !s.by_request && !self.stopping();
        let lived = s.created.elapsed();
        let seat = s.params.seat.clone();
        let reason = s.reason.clone();
        // Answered before the log line and the timeline: they are not on the caller's path.
        self.answer_session_waiters(s, Err(MethodError::failed(reason.clone())));
        if let Some(link) = &link {
            self.unwatch(link.sock.as_fd());
        }
        let keeper = link.filter(|_| emptied);
        // The members' exits read with the `empty` come first, as they happened.
        let exits = self
            .sessions
            .exits_later
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for l in exits {
            log::info!("{l}");
        }
        // Members stuck in the kernel stay our children; their exit finds no session.
        log::info!("session {id} ended ({reason})");
        // A creation that never reported ends here (instance failed, killed, terminated).
        self.timeline
            .session_done(id, now, &format!("failed: {reason}"));
        if let Some(aside) = aside {
            self.remove_aside(id, aside, keeper);
        }
        if let (true, Some(seat)) = (respawn, seat) {
            if lived < RESPAWN_MIN_LIFETIME {
                log::warn!(
                    "seat {seat}: its session ended {} ms after it started; not re-creating it",
                    lived.as_millis()
                );
            } else {
                let req = CreateSession {
                    seat: Some(seat.clone()),
                    ..Default::default()
                };
                match self.create_session(req, None, true) {
                    Ok(new) => log::info!("seat {seat}: new session {new}"),
                    Err(e) => log::error!(
                        "seat {seat}: failed to re-create its session: {}",
                        e.parameters
                    ),
                }
                self.start_queued_sessions();
            }
        }
    }

    /// An ended session's runtime directory, renamed aside at once so the name can be used
    /// again; [`Supervisor::remove_aside`] then has it deleted (never by PID 1 itself: it was
    /// the user's and may hold any number of files). None when there is nothing to delete.
    fn rename_runtime_dir(&mut self, id: u32, dir: &Path) -> Option<PathBuf> {
        // Unique across restarts of smss on a /run that persists (the clock) and within one
        // tick (the counter).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = dir.with_file_name(format!(".ended-{id}-{now}-{}", self.sessions.removals));
        self.sessions.removals = self.sessions.removals.wrapping_add(1);
        match fs::rename(dir, &aside) {
            Ok(()) => Some(aside),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("session {id}: failed to remove {}: {e}", dir.display());
                None
            }
        }
    }

    /// Delete a runtime directory renamed aside: the session's emptied keeper does it (told
    /// `remove`, it deletes it and exits), else `smss-session remove` (a process PID 1 starts).
    fn remove_aside(&mut self, id: u32, aside: PathBuf, keeper: Option<InstanceLink>) {
        if let Some(link) = keeper {
            let dir = aside.display().to_string();
            let mut line = serde_json::to_vec(&KeeperCommand::Remove { dir }).unwrap_or_default();
            line.push(b'\n');
            match (&link.sock).write_all(&line) {
                Ok(()) => {
                    // Its exit now tells that the directory is gone, like a remover's.
                    if let Some(c) = self.children.get_mut(&link.pid) {
                        c.name = format!("smss-session remove (session {id}, its keeper)");
                        c.role = Role::Command("remove");
                    }
                    return;
                }
                Err(e) => log::warn!("session {id}: failed to write to its keeper: {e}"),
            }
        }
        let program = self.session_binary.clone();
        let spec = SpawnSpec {
            argv: vec![
                program.display().to_string(),
                "remove".into(),
                aside.display().to_string(),
            ],
            program,
            env: self.env.vars().to_vec(),
            detach: Detach::Session,
            stdio: None,
            pass_fd: None,
            cwd: None,
        };
        match process::spawn(&spec) {
            Ok(pid) => {
                self.children.insert(
                    pid.as_raw(),
                    Child {
                        name: format!("smss-session remove (session {id})"),
                        role: Role::Command("remove"),
                        critical: false,
                    },
                );
            }
            Err(e) => log::warn!(
                "session {id}: failed to start smss-session remove for {}: {e}",
                aside.display()
            ),
        }
    }

    /// A session left the table: the creator (if still waiting) gets `create`, terminators
    /// learn it is gone.
    pub(super) fn answer_session_waiters(
        &mut self,
        s: Session,
        create: Result<Value, MethodError>,
    ) {
        if let Some(w) = s.create_waiter {
            self.reply_deferred(w, create);
        }
        for w in s.spawning.into_iter().filter_map(|(_, w)| w) {
            self.reply_deferred(w, Err(MethodError::failed("the session ended")));
        }
        for w in s.terminate_waiters {
            self.reply_deferred(w, Ok(json!({"state": "gone"})));
        }
    }
}

/// `sig` to a session member: to exactly the process that started at `start` when it is known
/// (pids are reused), else to the pid (our own child, whose pid cannot be reused before we
/// reap it).
fn send_to_member(pid: i32, start: Option<u64>, sig: i32) {
    match start {
        None => {
            let _ = sys::kill(pid, sig);
        }
        Some(t) => {
            procs::signal_exact(pid, t, sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_of_self() {
        let st = procs::read(std::process::id() as i32).unwrap();
        assert!(st.alive());
        // Compare with the kernel's own answer: under some CI runners the session leader
        // lives outside our pid namespace and the id reads as 0.
        assert_eq!(st.session, nix::unistd::getsid(None).unwrap().as_raw());
        assert_eq!(st.pgid, nix::unistd::getpgrp().as_raw());
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
