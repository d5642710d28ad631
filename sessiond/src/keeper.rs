//! The session keeper: what an instance becomes, once it has reported, when the session has
//! no cgroup. It was made a child subreaper before it started anything, so every process of
//! the session stays below it whatever it does (setsid, double fork): orphans come back to
//! the keeper, not to PID 1. It reaps them, tells PID 1 when a member exits, and ends the
//! session on PID 1's word:
//!
//! - `term` (or SIGTERM to the keeper): SIGTERM (and SIGHUP to a process with a terminal)
//!   then SIGCONT to every process below it: its members first, by pid (its children,
//!   unreaped, so theirs). Then the rest: when a member is reaped and a child is left, or
//!   1 ms after the signals at the latest, and only when the kernel's child lists show
//!   something else below it (or cannot be read), one look at /proc, each process pinned
//!   by a pidfd and checked by its start time once, so a pid reused meanwhile is left
//!   alone. When the last child is reaped first there is nothing to look for: with no
//!   child left nothing is below the keeper (every orphan comes back to it);
//! - `kill` (or PID 1's end of the link closing): SIGKILL to its children, over and over as
//!   their orphans come back to it, until it has none. Only unreaped children are killed by
//!   pid, and a child's pid cannot be reused before its parent reaps it, so the sweep never
//!   hits a stranger;
//! - `spawn`: start a subsystem in the session (LoadDeferredSubsystem), below the keeper like
//!   the rest, and report it as `started` (or `spawn_failed`).
//!
//! When it has no child left the session is empty, with nothing escaped: it tells PID 1
//! (`empty`, after every member's `exited`), which answers TerminateSession then, without
//! waiting for the keeper's own exit, and hands it the runtime directory it renamed aside
//! (`remove`): the keeper deletes it and exits, so PID 1 starts no `smss-session remove`
//! for a session with a keeper. It exits without deleting anything when PID 1's end of the
//! link closes instead.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use smss::control::instance::{InstanceMessage, KeeperCommand, MAX_PARAMS};
use smss::os::procs;
use smss::sys::process::Detach;
use smss::sys::{self, Reaped};

/// After `term` signalled the members, how long the look for the rest of the session waits
/// for the members' exits (which make it needless when they leave no child): about ten
/// times a small process's exit here, and off TerminateSession's path.
const LOOK_AFTER: Duration = Duration::from_millis(1);

/// What happens to a keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A child was reaped (`status` as smss logs it).
    Exited(i32, String),
    /// No child is left.
    NoChildren,
    /// `term` from PID 1, or SIGTERM.
    Term,
    /// `kill` from PID 1.
    Kill,
    /// PID 1's end of the link is gone.
    LinkClosed,
    /// `spawn` from PID 1.
    Spawn {
        name: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        user: Option<String>,
    },
    /// `remove` from PID 1: the session's runtime directory, renamed aside.
    Remove(String),
}

/// What a keeper does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell PID 1 that a member exited.
    Report(i32, String),
    /// Tell PID 1 that nothing of the session is left.
    Empty,
    /// Signal every process below the keeper with these signals, in order (see
    /// [`signals_for`]).
    Signal(Vec<i32>),
    /// SIGKILL everything below until nothing is left.
    Sweep,
    /// Delete the ended session's runtime directory.
    Remove(String),
    /// Tell PID 1 that a subsystem could not be started.
    SpawnFailed {
        name: String,
        error: String,
    },
    Exit,
    /// Start a subsystem (then [`Keeper::started`]).
    Spawn {
        name: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        user: Option<String>,
    },
}

/// The keeper's decisions, apart from its I/O.
#[derive(Debug)]
pub struct Keeper {
    members: BTreeSet<i32>,
    /// It has had no child since it told PID 1 `empty`.
    empty: bool,
}

impl Keeper {
    pub fn new(members: impl IntoIterator<Item = i32>) -> Keeper {
        Keeper {
            members: members.into_iter().collect(),
            empty: false,
        }
    }

    pub fn on(&mut self, ev: Event) -> Vec<Action> {
        match ev {
            Event::Exited(pid, status) => {
                if self.members.remove(&pid) {
                    vec![Action::Report(pid, status)]
                } else {
                    // An orphan of the session: reaped, nothing to tell.
                    Vec::new()
                }
            }
            // Once: PID 1 ends the session on it, and answers with `remove` (or closes).
            Event::NoChildren if self.empty => Vec::new(),
            Event::NoChildren => {
                self.empty = true;
                vec![Action::Empty]
            }
            Event::Term if self.empty => Vec::new(),
            Event::Term => vec![Action::Signal(vec![libc::SIGTERM, libc::SIGCONT])],
            Event::Kill if self.empty => Vec::new(),
            Event::Kill => vec![Action::Sweep],
            // Nobody is left to tell: end whatever is left, and go.
            Event::LinkClosed if self.empty => vec![Action::Exit],
            Event::LinkClosed => vec![Action::Sweep, Action::Exit],
            Event::Remove(dir) => vec![Action::Remove(dir), Action::Exit],
            // The session is over: a subsystem started now would outlive it.
            Event::Spawn { name, .. } if self.empty => vec![Action::SpawnFailed {
                name,
                error: "the session has ended".into(),
            }],
            Event::Spawn {
                name,
                argv,
                env,
                user,
            } => vec![Action::Spawn {
                name,
                argv,
                env,
                user,
            }],
        }
    }

    /// The members not reaped yet (our children: their pids are theirs).
    pub fn members(&self) -> &BTreeSet<i32> {
        &self.members
    }

    /// A process started on request is a member too.
    pub fn started(&mut self, pid: i32) {
        self.members.insert(pid);
    }
}

/// What a process below the keeper gets for `sigs`: each in order, and SIGHUP right after
/// SIGTERM when it has a controlling terminal (a login shell ignores SIGTERM; its terminal
/// hanging up is what ends it).
pub fn signals_for(sigs: &[i32], has_tty: bool) -> Vec<i32> {
    let mut out = Vec::with_capacity(sigs.len() + 1);
    for &sig in sigs {
        out.push(sig);
        if sig == libc::SIGTERM && has_tty {
            out.push(libc::SIGHUP);
        }
    }
    out
}

/// A command line from PID 1.
fn command(line: &[u8]) -> Option<Event> {
    Some(match serde_json::from_slice::<KeeperCommand>(line).ok()? {
        KeeperCommand::Term => Event::Term,
        KeeperCommand::Kill => Event::Kill,
        KeeperCommand::Spawn {
            name,
            argv,
            env,
            user,
        } => Event::Spawn {
            name,
            argv,
            env,
            user,
        },
        KeeperCommand::Remove { dir } => Event::Remove(dir),
    })
}

fn tell(link: &UnixStream, msg: &InstanceMessage) {
    let mut out = Vec::new();
    queue(&mut out, msg);
    flush(link, &mut out);
}

/// Add a line for PID 1 to `out`: what one wake-up produced goes in one write (a member's
/// `exited` and the `empty` after it reach PID 1 together).
fn queue(out: &mut Vec<u8>, msg: &InstanceMessage) {
    if let Ok(line) = serde_json::to_vec(msg) {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
}

fn flush(link: &UnixStream, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    if let Err(e) = (&*link).write_all(out) {
        log::debug!("keeper: failed to write to smss: {e}");
    }
    out.clear();
}

/// `term`'s first step: the members, by pid (they are our children, unreaped, so their pids
/// are still theirs), in `signals_for`'s order. The rest, if any, is [`look_if_needed`]'s.
fn signal_members(sigs: &[i32], members: &BTreeSet<i32>) {
    for &pid in members {
        // The terminal is looked up after the SIGTERM: the signal is on TerminateSession's
        // path, the read is not.
        for &sig in sigs {
            let _ = sys::kill(pid, sig);
            if sig == libc::SIGTERM && procs::read(pid).is_some_and(|p| p.tty_nr != 0) {
                let _ = sys::kill(pid, libc::SIGHUP);
            }
        }
    }
}

/// `term`'s second step: only when something other than the `members` may be below us (a
/// child that is not one, or a member with children of its own, as the kernel's child lists
/// show), one look at /proc for the rest, each pinned by a pidfd and checked by its start
/// time, once for all of `sigs`; the `signalled` are skipped.
fn look_if_needed(sigs: &[i32], signalled: &BTreeSet<i32>, members: &BTreeSet<i32>) {
    // Members' children are read before ours: one re-parented to us meanwhile (its parent
    // died) is then in our list.
    let member_children: Vec<Option<usize>> = members.iter().map(|&m| child_count(m)).collect();
    let ours = own_children();
    if needs_look(members, ours.as_deref(), &member_children) {
        signal_rest(sigs, signalled);
    }
}

/// Whether processes other than `members` may be below us: `ours` our children (None:
/// unknown), `member_children` how many children each member has (None: unknown).
pub fn needs_look(
    members: &BTreeSet<i32>,
    ours: Option<&[i32]>,
    member_children: &[Option<usize>],
) -> bool {
    let Some(ours) = ours else {
        return true;
    };
    ours.iter().any(|p| !members.contains(p)) || member_children.iter().any(|c| *c != Some(0))
}

/// The look at /proc: every process below us but the `skip`ped (already signalled).
fn signal_rest(sigs: &[i32], skip: &BTreeSet<i32>) {
    let me = sys::getpid();
    let Some(all) = procs::snapshot() else {
        return;
    };
    for p in procs::descendants(&all, &[me]) {
        if skip.contains(&p.pid) {
            continue;
        }
        let sigs = signals_for(sigs, p.tty_nr != 0);
        if p.ppid == me {
            for sig in sigs {
                let _ = sys::kill(p.pid, sig);
            }
        } else {
            procs::signal_exact_each(p.pid, p.start_time, &sigs);
        }
    }
}

/// How many children `pid` has, all its threads' (a child's parent is the thread that forked
/// it); None when that cannot be read.
fn child_count(pid: i32) -> Option<usize> {
    let mut n = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let t = t.ok()?.file_name();
        let text =
            std::fs::read_to_string(format!("/proc/{pid}/task/{}/children", t.to_str()?)).ok()?;
        n += text.split_whitespace().count();
    }
    Some(n)
}

/// Our children from the kernel's list (the keeper has one thread, whose tid is its pid).
fn own_children() -> Option<Vec<i32>> {
    let me = sys::getpid();
    let text = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// Our children, running or zombie (none reaped: their pids are ours until we reap them).
fn children() -> Vec<i32> {
    if let Some(c) = own_children() {
        return c;
    }
    let me = sys::getpid();
    procs::snapshot()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.ppid == me)
        .map(|p| p.pid)
        .collect()
}

/// Reap every exited child (its `exited` queued in `out`); false once none is left.
fn reap(k: &mut Keeper, out: &mut Vec<u8>) -> bool {
    loop {
        match sys::reap_one() {
            Reaped::Child(pid, status) => {
                for a in k.on(Event::Exited(pid.as_raw(), status.to_string())) {
                    if let Action::Report(pid, status) = a {
                        queue(out, &InstanceMessage::Exited { pid, status });
                    }
                }
            }
            Reaped::Pending => return true,
            Reaped::NoChildren => return false,
        }
    }
}

/// SIGKILL our children until none is left: each round kills the children we have (the
/// orphans of the last round's victims among them), then reaps.
pub fn sweep(k: &mut Keeper, link: &UnixStream, signals: &SignalFd) {
    loop {
        for pid in children() {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        let mut out = Vec::new();
        let more = reap(k, &mut out);
        flush(link, &mut out);
        if !more {
            return;
        }
        // SIGCHLD wakes us; the timeout only bounds a missed one.
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(100u16));
        while let Ok(Some(_)) = signals.read_signal() {}
    }
}

/// Keep the session until it is empty. `pending`: bytes PID 1 sent after the parameters.
pub fn keep(link: UnixStream, mut pending: Vec<u8>, members: &[i32], signals: SignalFd) -> i32 {
    let mut k = Keeper::new(members.iter().copied());
    let mut events = Vec::new();
    // 1 once a runtime directory could not be deleted.
    let mut code = 0;
    // Lines for PID 1, written before the keeper blocks (or acts at length).
    let mut out = Vec::new();
    // After `term`'s signals to the members: the signals, who had them, and when the rest
    // below us (if any) is looked for at the latest. Sooner when a member is reaped and a
    // child is left; not at all when the last child is reaped first (with none left,
    // nothing is below us: every orphan of the session comes back to us).
    let mut unlooked: Option<(Vec<i32>, BTreeSet<i32>, Instant)> = None;
    loop {
        let before = k.members().len();
        if !reap(&mut k, &mut out) {
            events.push(Event::NoChildren);
            unlooked = None;
        }
        let due = unlooked
            .as_ref()
            .is_some_and(|u| k.members().len() < before || Instant::now() >= u.2);
        if due {
            if let Some((sigs, signalled, _)) = unlooked.take() {
                look_if_needed(&sigs, &signalled, k.members());
            }
        }
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            events.extend(command(&line));
        }
        // A sweep reaped every child and took their SIGCHLDs: look again before blocking,
        // or `empty` would wait for a wake-up that never comes.
        let mut swept = false;
        for ev in events.drain(..) {
            for a in k.on(ev) {
                match a {
                    Action::Report(pid, status) => {
                        queue(&mut out, &InstanceMessage::Exited { pid, status })
                    }
                    Action::Empty => queue(&mut out, &InstanceMessage::Empty),
                    Action::Signal(sigs) => {
                        let signalled = k.members().clone();
                        signal_members(&sigs, &signalled);
                        unlooked = Some((sigs, signalled, Instant::now() + LOOK_AFTER));
                    }
                    // Then `empty` (the next look finds no child), unless an exit follows.
                    Action::Sweep => {
                        flush(&link, &mut out);
                        sweep(&mut k, &link, &signals);
                        swept = true;
                    }
                    Action::Remove(dir) => {
                        flush(&link, &mut out);
                        if !crate::remove_dir(std::path::Path::new(&dir)) {
                            code = 1;
                        }
                    }
                    Action::SpawnFailed { name, error } => {
                        queue(&mut out, &InstanceMessage::SpawnFailed { name, error })
                    }
                    Action::Exit => {
                        flush(&link, &mut out);
                        return code;
                    }
                    Action::Spawn {
                        name,
                        argv,
                        env,
                        user,
                    } => {
                        let held = super::Held {
                            argv,
                            env,
                            detach: Detach::Session,
                            stdio: None,
                            cwd: None,
                            user,
                        };
                        // `started` is written by spawn_held (after what is queued); PID 1
                        // replies once it knows whether the command runs (`running`) or
                        // could not (`spawn_failed`).
                        flush(&link, &mut out);
                        match super::spawn_held(held, &link, name.clone(), false) {
                            Ok(m) => {
                                k.started(m.pid);
                                tell(&link, &InstanceMessage::Running { pid: m.pid });
                            }
                            Err(e) => {
                                // Started but not exec'd: its exit is still reported.
                                if let Some(pid) = e.started() {
                                    k.started(pid);
                                }
                                tell(
                                    &link,
                                    &InstanceMessage::SpawnFailed {
                                        name,
                                        error: e.to_string(),
                                    },
                                )
                            }
                        }
                    }
                }
            }
        }
        flush(&link, &mut out);
        if swept {
            continue;
        }
        let mut fds = [
            PollFd::new(link.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        // Until the look is due, if one is pending.
        let timeout = unlooked.as_ref().map_or(PollTimeout::NONE, |u| {
            let ms = u.2.saturating_duration_since(Instant::now()).as_millis();
            PollTimeout::from(u16::try_from(ms.max(1)).unwrap_or(u16::MAX))
        });
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("keeper: poll failed: {e}; ending the session");
                events.push(Event::Kill);
                continue;
            }
        }
        let ready = |f: &PollFd| {
            f.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
        };
        let (link_ready, signal_ready) = (ready(&fds[0]), ready(&fds[1]));
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo == libc::SIGTERM as u32 {
                    events.push(Event::Term);
                }
            }
        }
        if link_ready {
            let mut buf = [0u8; 512];
            match (&link).read(&mut buf) {
                Ok(0) | Err(_) => events.push(Event::LinkClosed),
                Ok(n) => {
                    pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                    // PID 1's longest command (a spawn) is bounded like the parameters.
                    if pending.len() > 2 * MAX_PARAMS {
                        pending.clear();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_exits_are_reported_orphans_are_not() {
        let mut k = Keeper::new([10, 11]);
        assert_eq!(
            k.on(Event::Exited(10, "exited:0".into())),
            vec![Action::Report(10, "exited:0".into())]
        );
        assert_eq!(k.on(Event::Exited(10, "exited:0".into())), vec![]);
        assert_eq!(k.on(Event::Exited(99, "killed:SIGTERM".into())), vec![]);
        assert_eq!(
            k.on(Event::Term),
            vec![Action::Signal(vec![libc::SIGTERM, libc::SIGCONT])]
        );
        assert_eq!(k.on(Event::Kill), vec![Action::Sweep]);
        assert_eq!(k.on(Event::LinkClosed), vec![Action::Sweep, Action::Exit]);
    }

    /// No child left: PID 1 hears `empty` once, and the keeper stays for the runtime
    /// directory (it used to exit at once, and PID 1 then waited for that exit and started
    /// an `smss-session remove` of its own before it answered).
    #[test]
    fn an_empty_keeper_says_so_once_then_removes_what_pid1_hands_it() {
        let mut k = Keeper::new([10]);
        assert_eq!(k.on(Event::NoChildren), vec![Action::Empty]);
        assert_eq!(k.on(Event::NoChildren), vec![]);
        // Nothing is left to signal.
        assert_eq!(k.on(Event::Term), vec![]);
        assert_eq!(k.on(Event::Kill), vec![]);
        assert_eq!(
            k.on(Event::Remove("/run/smss/sessions/.ended-1".into())),
            vec![
                Action::Remove("/run/smss/sessions/.ended-1".into()),
                Action::Exit
            ]
        );
        let mut k = Keeper::new([10]);
        assert_eq!(k.on(Event::NoChildren), vec![Action::Empty]);
        assert_eq!(k.on(Event::LinkClosed), vec![Action::Exit]);
    }

    /// A subsystem asked for once the keeper is empty would outlive its session.
    #[test]
    fn an_empty_keeper_starts_nothing() {
        let mut k = Keeper::new([]);
        let spawn = Event::Spawn {
            name: "x".into(),
            argv: vec!["true".into()],
            env: Vec::new(),
            user: None,
        };
        assert!(matches!(k.on(spawn.clone())[..], [Action::Spawn { .. }]));
        assert_eq!(k.on(Event::NoChildren), vec![Action::Empty]);
        assert_eq!(
            k.on(spawn),
            vec![Action::SpawnFailed {
                name: "x".into(),
                error: "the session has ended".into()
            }]
        );
    }

    /// One wake-up's lines go out in one write, each a line PID 1 reads on its own.
    #[test]
    fn queued_lines_are_whole_messages_in_order() {
        let mut out = Vec::new();
        queue(
            &mut out,
            &InstanceMessage::Exited {
                pid: 7,
                status: "killed:SIGTERM".into(),
            },
        );
        queue(&mut out, &InstanceMessage::Empty);
        let lines: Vec<InstanceMessage> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                InstanceMessage::Exited {
                    pid: 7,
                    status: "killed:SIGTERM".into()
                },
                InstanceMessage::Empty
            ]
        );
        assert_eq!(out.last(), Some(&b'\n'));
    }

    /// `term` looks at /proc only when something other than the members may be below the
    /// keeper: a child that is not a member (an orphan re-parented to it), a member with
    /// children, or a list that could not be read.
    #[test]
    fn term_looks_at_proc_only_when_more_than_the_members_may_be_below() {
        let members: BTreeSet<i32> = [10, 11].into();
        assert!(!needs_look(&members, Some(&[10, 11]), &[Some(0), Some(0)]));
        // A member reaped meanwhile is not a child any more: nothing else is below.
        assert!(!needs_look(&members, Some(&[11]), &[Some(0), Some(0)]));
        assert!(needs_look(
            &members,
            Some(&[10, 11, 12]),
            &[Some(0), Some(0)]
        ));
        assert!(needs_look(&members, Some(&[10, 11]), &[Some(0), Some(2)]));
        assert!(needs_look(&members, Some(&[10, 11]), &[None, Some(0)]));
        assert!(needs_look(&members, None, &[Some(0), Some(0)]));
        assert!(needs_look(&BTreeSet::new(), Some(&[7]), &[]));
        assert!(!needs_look(&BTreeSet::new(), Some(&[]), &[]));
    }

    #[test]
    fn a_process_with_a_terminal_also_gets_sighup_after_sigterm() {
        let term = [libc::SIGTERM, libc::SIGCONT];
        assert_eq!(signals_for(&term, false), term);
        assert_eq!(
            signals_for(&term, true),
            [libc::SIGTERM, libc::SIGHUP, libc::SIGCONT]
        );
        assert_eq!(signals_for(&[libc::SIGKILL], true), [libc::SIGKILL]);
        assert_eq!(signals_for(&[], true), Vec::<i32>::new());
    }

    #[test]
    fn commands() {
        assert_eq!(command(b"\"term\"\n"), Some(Event::Term));
        assert_eq!(command(b"\"kill\""), Some(Event::Kill));
        assert_eq!(command(b"\xff"), None);
        assert_eq!(command(b"\"other\""), None);
        assert_eq!(
            command(br#"{"remove":{"dir":"/run/smss/sessions/.ended-1"}}"#),
            Some(Event::Remove("/run/smss/sessions/.ended-1".into()))
        );
        assert_eq!(
            command(br#"{"spawn":{"name":"x","argv":["true"],"env":[],"user":null}}"#),
            Some(Event::Spawn {
                name: "x".into(),
                argv: vec!["true".into()],
                env: Vec::new(),
                user: None
            })
        );
    }
}
