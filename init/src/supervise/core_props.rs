//! Property tests of [`super`]: random interleavings of signals, exits, forks (also while a
//! scan is being signalled, and from a SIGTERM handler), control requests and time, run
//! against a simulated process table that plays the executor.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;

const GRACE: Duration = Duration::from_secs(10);
/// The initial command's pid in the simulation.
const INITIAL: i32 = 100;
/// A process that is not ours (as a subreaper): never to be signalled.
const STRANGER: i32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnTerm {
    Exit(i32),
    Ignore,
    /// Forks a child (which exits on SIGTERM) from its handler, then exits.
    ForkThenExit,
    /// An interactive shell: has a terminal, ignores SIGTERM, ends on SIGHUP.
    ShellOnTty,
    /// A shell's child between fork and exec: the SIGTERM lands in the shell's inherited
    /// handler and is lost at the exec; the new program then ends on SIGTERM.
    LoseThenExec,
}

#[derive(Debug, Clone)]
struct P {
    ppid: i32,
    pgid: i32,
    on_term: OnTerm,
    zombie: Option<ExitStatus>,
    got_term: bool,
    /// SIGTERMs this program had.
    terms: u32,
    /// Had a stop signal forwarded (SIGTERM or SIGINT) while it ran.
    got_forwarded: bool,
    /// When it was forked, or last exec'd.
    born: Duration,
    /// When it was forked, in clock ticks (its start time in /proc; an exec keeps it).
    start: u64,
    /// Which program it runs (its name changes at exec).
    comm: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Signal(i32),
    Control,
    /// Fork from the n-th live process (modulo).
    Fork(usize, OnTerm),
    /// The same, right after the next scan read /proc (before its signals go out).
    ForkDuringScan(usize, OnTerm),
    Exit(usize, i32),
    Advance(u64),
}

fn on_term() -> impl Strategy<Value = OnTerm> {
    prop_oneof![
        (0..3i32).prop_map(OnTerm::Exit),
        Just(OnTerm::Ignore),
        Just(OnTerm::ForkThenExit),
        Just(OnTerm::ShellOnTty),
        Just(OnTerm::LoseThenExec),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop_oneof![
            Just(libc::SIGTERM),
            Just(libc::SIGINT),
            Just(libc::SIGUSR1),
            Just(libc::SIGHUP),
            Just(libc::SIGUSR2)
        ]
        .prop_map(Op::Signal),
        Just(Op::Control),
        (0..8usize, on_term()).prop_map(|(i, t)| Op::Fork(i, t)),
        (0..8usize, on_term()).prop_map(|(i, t)| Op::ForkDuringScan(i, t)),
        (0..8usize, 0..4i32).prop_map(|(i, c)| Op::Exit(i, c)),
        (1..3000u64).prop_map(Op::Advance),
    ]
}

struct Sim {
    e: Engine,
    procs: BTreeMap<i32, P>,
    next_pid: i32,
    now: Duration,
    timers: BTreeMap<u8, Duration>,
    fork_on_scan: Vec<(usize, OnTerm)>,
    /// The initial command's own end, as the process table saw it.
    initial_status: Option<ExitStatus>,
    /// The end the engine chose.
    ended: Option<Action>,
    /// A repeated control request (the explicit force) was made.
    forced: bool,
    grace_ran_out: bool,
    /// The (pid, program) the engine saw in its last scan.
    last_scan: Vec<(i32, u8)>,
    /// /proc/sys/kernel/ns_last_pid cannot be read.
    no_cursor: bool,
    /// The initial command's process group.
    initial_pgid: Option<i32>,
    /// When kill(-1, SIGTERM) went out.
    swept_at: Option<Duration>,
}

impl Sim {
    fn new(mode: Mode, forward_to: ForwardTo, initial: OnTerm, no_cursor: bool) -> Sim {
        let me = if mode == Mode::Subreaper { 50 } else { 1 };
        let mut s = Sim {
            e: Engine::new(mode, me, GRACE, forward_to, mode != Mode::System),
            procs: BTreeMap::new(),
            next_pid: INITIAL,
            now: Duration::ZERO,
            timers: BTreeMap::new(),
            fork_on_scan: Vec::new(),
            initial_status: None,
            ended: None,
            forced: false,
            grace_ran_out: false,
            last_scan: Vec::new(),
            no_cursor,
            initial_pgid: None,
            swept_at: None,
        };
        if mode == Mode::Subreaper {
            s.add_stranger();
        }
        let pid = s.spawn(me, initial, None);
        s.initial_pgid = Some(pid);
        s.e.initial_started(pid);
        s
    }

    /// As a subreaper, a process of the host that is not ours.
    fn add_stranger(&mut self) {
        self.procs.insert(
            STRANGER,
            P {
                ppid: 0,
                pgid: STRANGER,
                on_term: OnTerm::Exit(0),
                zombie: None,
                got_term: false,
                terms: 0,
                got_forwarded: false,
                born: self.now,
                start: ticks(self.now),
                comm: 0,
            },
        );
    }

    fn me(&self) -> i32 {
        self.e.me
    }

    fn spawn(&mut self, ppid: i32, on_term: OnTerm, pgid: Option<i32>) -> i32 {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.procs.insert(
            pid,
            P {
                ppid,
                pgid: pgid.unwrap_or(pid),
                on_term,
                zombie: None,
                got_term: false,
                terms: 0,
                got_forwarded: false,
                born: self.now,
                start: ticks(self.now),
                comm: 0,
            },
        );
        pid
    }

    /// Ours and alive (not strangers).
    fn live(&self) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|(pid, p)| p.zombie.is_none() && **pid != STRANGER)
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn fork_from(&mut self, n: usize, t: OnTerm) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let parent = live[n % live.len()];
        let pgid = self.procs[&parent].pgid;
        self.spawn(parent, t, Some(pgid));
    }

    fn exit(&mut self, pid: i32, status: ExitStatus) {
        let me = self.me();
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.zombie.is_some() {
            return;
        }
        p.zombie = Some(status);
        if pid == INITIAL {
            self.initial_status = Some(status);
        }
        // Orphans go to us (PID 1, or the subreaper).
        for q in self.procs.values_mut() {
            if q.ppid == pid {
                q.ppid = me;
            }
        }
    }

    fn deliver(&mut self, pid: i32, sig: i32, forwarded: bool) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.zombie.is_some() {
            return;
        }
        assert_ne!(pid, STRANGER, "a stranger was signalled");
        let t = p.on_term;
        match sig {
            libc::SIGKILL => self.exit(pid, ExitStatus::Killed(libc::SIGKILL)),
            libc::SIGTERM | libc::SIGINT => {
                if sig == libc::SIGTERM {
                    p.got_term = true;
                    p.terms += 1;
                    // Once per program: to many programs a second SIGTERM means "force
                    // quit". (The initial command's group also has every repeated stop
                    // signal forwarded.)
                    // The one documented exception: a process forked within a tick of the
                    // kill(-1) may have lost that SIGTERM at an exec, and gets its own.
                    let initial_pgid = self.initial_pgid;
                    let young = self.swept_at.is_some_and(|at| p.start + 1 >= ticks(at));
                    assert!(
                        p.terms <= 1 || pid == INITIAL || Some(p.pgid) == initial_pgid || young,
                        "pid {pid} had SIGTERM {} times",
                        p.terms
                    );
                }
                if forwarded {
                    p.got_forwarded = true;
                }
                match t {
                    OnTerm::Exit(c) => self.exit(pid, ExitStatus::Exited(c)),
                    OnTerm::ForkThenExit => {
                        let pgid = p.pgid;
                        self.spawn(pid, OnTerm::Exit(0), Some(pgid));
                        self.exit(pid, ExitStatus::Exited(0));
                    }
                    // Only between fork and exec is a SIGTERM lost (in the parent's
                    // inherited handler): a process forked a tick or more earlier has long
                    // since exec'd, and its program ends on it.
                    OnTerm::LoseThenExec if ticks(self.now) > p.start => {
                        self.exit(pid, ExitStatus::Exited(0))
                    }
                    OnTerm::LoseThenExec => {
                        p.on_term = OnTerm::Exit(0);
                        p.comm += 1;
                        p.got_term = false;
                        p.terms = 0;
                        p.got_forwarded = false;
                        p.born = self.now;
                    }
                    OnTerm::Ignore | OnTerm::ShellOnTty => {}
                }
            }
            libc::SIGHUP if t == OnTerm::ShellOnTty => {
                self.exit(pid, ExitStatus::Killed(libc::SIGHUP))
            }
            _ => {}
        }
    }

    fn snapshot(&self) -> Vec<ProcInfo> {
        let me = self.me();
        self.procs
            .iter()
            .map(|(&pid, p)| ProcInfo {
                pid,
                state: if p.zombie.is_some() { 'Z' } else { 'S' },
                ppid: p.ppid,
                pgid: p.pgid,
                session: p.pgid,
                tty_nr: if p.on_term == OnTerm::ShellOnTty {
                    34816
                } else {
                    0
                },
                start_time: p.start,
                comm: [p.comm; 16],
                kernel_thread: false,
            })
            .chain(std::iter::once(ProcInfo {
                pid: me,
                state: 'S',
                ppid: if me == 1 { 0 } else { 1 },
                pgid: me,
                session: me,
                tty_nr: 0,
                start_time: 1,
                comm: [0; 16],
                kernel_thread: false,
            }))
            .collect()
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            assert!(self.ended.is_none(), "{a:?} after the end");
            match a {
                Action::Signal { pid, sig } => {
                    if sig == libc::SIGKILL && !self.forced {
                        let began = self.e.stop.as_ref().map(|s| s.began);
                        assert!(
                            began.is_some_and(|b| self.now >= b + GRACE),
                            "SIGKILL before the grace period ran out"
                        );
                    }
                    if pid < 0 {
                        let members: Vec<i32> = self
                            .procs
                            .iter()
                            .filter(|(_, p)| p.pgid == -pid)
                            .map(|(q, _)| *q)
                            .collect();
                        for q in members {
                            self.deliver(q, sig, true);
                        }
                    } else {
                        self.deliver(pid, sig, pid == INITIAL);
                    }
                }
                Action::ReadPidCursor => {
                    assert!(self.e.mode.is_pid1(), "a pid cursor as a subreaper");
                    let cursor = (!self.no_cursor).then_some(PidCursor {
                        last_pid: self.next_pid - 1,
                        ticks: ticks(self.now),
                    });
                    queue.extend(self.e.on_pid_cursor(cursor, self.now));
                }
                Action::SignalAll(sig) => {
                    assert!(self.e.mode.is_pid1(), "kill(-1) as a subreaper");
                    assert!(
                        sig == libc::SIGKILL || sig == libc::SIGTERM,
                        "kill(-1, {sig})"
                    );
                    if sig == libc::SIGTERM {
                        assert!(self.swept_at.is_none(), "a second kill(-1, SIGTERM)");
                        self.swept_at = Some(self.now);
                    }
                    let all: Vec<i32> = self
                        .procs
                        .keys()
                        .copied()
                        .filter(|p| *p != STRANGER)
                        .collect();
                    for q in all {
                        self.deliver(q, sig, false);
                    }
                }
                Action::Scan => {
                    let snap = self.snapshot();
                    self.last_scan = snap.iter().map(|p| (p.pid, p.comm[0])).collect();
                    for (n, t) in std::mem::take(&mut self.fork_on_scan) {
                        self.fork_from(n, t);
                    }
                    // As the executor does: each process's early signals as it is read.
                    for p in &snap {
                        let early = self.e.on_scan_early(p);
                        self.execute(early);
                    }
                    queue.extend(self.e.on_scan(Some(&snap)));
                }
                Action::ScanNew => {
                    // What /proc lists now; only the pids the engine has not listed are read.
                    // The engine then knows the unread ones as its last read saw them.
                    let snap = self.snapshot();
                    let listed: Vec<i32> = snap.iter().map(|p| p.pid).collect();
                    let new: Vec<ProcInfo> =
                        snap.into_iter().filter(|p| !self.e.listed(p.pid)).collect();
                    self.last_scan.retain(|(pid, _)| listed.contains(pid));
                    self.last_scan
                        .extend(new.iter().map(|p| (p.pid, p.comm[0])));
                    for (n, t) in std::mem::take(&mut self.fork_on_scan) {
                        self.fork_from(n, t);
                    }
                    queue.extend(self.e.on_scan_new(Some((&listed, &new))));
                }
                Action::ArmTimer(t, d) => {
                    self.timers.insert(t as u8, self.now + d);
                }
                Action::CancelTimer(t) => {
                    self.timers.remove(&(t as u8));
                }
                Action::Survivors(_) | Action::Log(..) => {}
                Action::Exit(_) | Action::Machine(_) => {
                    assert!(
                        !(self.e.mode == Mode::System && matches!(a, Action::Exit(_))),
                        "PID 1 of a machine exited"
                    );
                    self.ended = Some(a);
                }
            }
        }
    }

    fn has_children(&self) -> bool {
        let me = self.me();
        self.procs.values().any(|p| p.ppid == me)
    }

    /// The loop's tail after any event: reap, then look for newcomers.
    fn settle(&mut self) {
        let me = self.me();
        while self.ended.is_none() {
            let z = self
                .procs
                .iter()
                .find(|(_, p)| p.ppid == me && p.zombie.is_some())
                .map(|(pid, p)| (*pid, p.zombie));
            let Some((pid, Some(status))) = z else { break };
            self.procs.remove(&pid);
            let a = self.e.on_exit(pid, status, self.now, self.has_children());
            self.execute(a);
        }
        if self.ended.is_none() && !self.has_children() {
            let a = self.e.on_no_children(self.now);
            self.execute(a);
        }
        if self.ended.is_none() {
            let a = self.e.on_wake(self.now);
            self.execute(a);
        }
        self.check_everyone_told();
    }

    /// Once a stop began, after each wake-up nobody alive of ours that the last scan saw is
    /// without SIGTERM (who had the forwarded stop signal counts as told). A fork while that
    /// scan was being signalled is seen by the next one: `check_told_before_kill`.
    fn check_everyone_told(&self) {
        let Some(stop) = &self.e.stop else { return };
        if stop.stage != Stage::Term || self.ended.is_some() {
            return;
        }
        for pid in self.live() {
            let p = &self.procs[&pid];
            if !self.last_scan.contains(&(pid, p.comm)) {
                continue;
            }
            assert!(
                p.got_term || p.got_forwarded,
                "pid {pid} alive without SIGTERM at {:?}: {:?}",
                self.now,
                self.procs
            );
        }
    }

    /// When the grace period runs out, everyone alive that was born at least a re-sweep
    /// interval earlier has had SIGTERM (or the forwarded stop signal).
    fn check_told_before_kill(&self) {
        for pid in self.live() {
            let p = &self.procs[&pid];
            if p.born + RESWEEP_MAX < self.now {
                assert!(
                    p.got_term || p.got_forwarded,
                    "pid {pid} (born {:?}) never had SIGTERM by {:?}: {:?}",
                    p.born,
                    self.now,
                    self.procs
                );
            }
        }
    }

    fn op(&mut self, op: &Op) {
        if self.ended.is_some() {
            return;
        }
        // Time passes between events, so each wake-up may rescan.
        self.advance(RESCAN_MIN);
        if self.ended.is_some() {
            return;
        }
        match *op {
            Op::Signal(sig) => {
                // The machine's init takes a repeated stop signal as the explicit force.
                if self.e.mode == Mode::System && self.e.stopping() && machine_signal(sig).is_some()
                {
                    self.forced = true;
                }
                let a = self.e.on_signal(sig, false, self.now, self.has_children());
                self.execute(a);
            }
            Op::Control => {
                let goal = match self.e.mode {
                    Mode::System => Goal::Machine(RebootCmd::Poweroff),
                    _ => Goal::Exit,
                };
                if self.e.stopping() {
                    self.forced = true;
                }
                let a = self
                    .e
                    .request_stop(goal, Source::Control, self.now, self.has_children());
                self.execute(a);
            }
            Op::Fork(n, t) => self.fork_from(n, t),
            Op::ForkDuringScan(n, t) => self.fork_on_scan.push((n, t)),
            Op::Exit(n, c) => {
                let live = self.live();
                if !live.is_empty() {
                    self.exit(live[n % live.len()], ExitStatus::Exited(c));
                }
            }
            Op::Advance(ms) => self.advance(Duration::from_millis(ms)),
        }
        if self.ended.is_none() {
            self.settle();
        }
    }

    /// Move the clock, firing due timers in order.
    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while self.ended.is_none() {
            let next = self
                .timers
                .iter()
                .filter(|(_, at)| **at <= until)
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            let Some((t, at)) = next else { break };
            self.timers.remove(&t);
            self.now = self.now.max(at);
            let timer = if t == StopTimer::Deadline as u8 {
                if self.e.stop.as_ref().is_some_and(|s| s.stage == Stage::Term) {
                    self.grace_ran_out = true;
                    self.check_told_before_kill();
                }
                StopTimer::Deadline
            } else if t == StopTimer::Resweep as u8 {
                StopTimer::Resweep
            } else {
                StopTimer::Rescan
            };
            let a = self.e.on_timer(timer, self.now);
            self.execute(a);
            if self.ended.is_none() {
                self.settle();
            }
        }
        self.now = self.now.max(until);
    }
}

/// Clock ticks (100 a second) since the simulation's start.
fn ticks(t: Duration) -> u64 {
    (t.as_millis() / 10) as u64
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::System),
        Just(Mode::Container),
        Just(Mode::Subreaper)
    ]
}

fn forward_to() -> impl Strategy<Value = ForwardTo> {
    prop_oneof![Just(ForwardTo::Process), Just(ForwardTo::ProcessGroup)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Invariants: once a stop began, nobody of ours stays alive without SIGTERM (checked
    /// after every wake-up, in `settle`); SIGKILL only after the grace period (or on the
    /// explicit force); a subreaper never signals strangers or everybody; PID 1 of a machine
    /// never exits; every child is reaped; a container exits with the initial command's own
    /// status.
    #[test]
    fn interleavings_keep_the_invariants(
        mode in mode(),
        fwd in forward_to(),
        initial in on_term(),
        no_cursor in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..40),
    ) {
        let mut sim = Sim::new(mode, fwd, initial, no_cursor);
        for o in &ops {
            sim.op(o);
        }
        // Then someone stops it, and time runs until the end.
        if sim.ended.is_none() && !sim.e.stopping() {
            sim.op(&Op::Control);
        }
        for _ in 0..1000 {
            if sim.ended.is_some() {
                break;
            }
            sim.op(&Op::Advance(1000));
        }
        let ended = sim.ended.clone();
        prop_assert!(ended.is_some(), "never ended: {:?}", sim.procs);
        prop_assert!(sim.live().is_empty(), "left: {:?}", sim.procs);
        let me = sim.me();
        prop_assert!(
            !sim.procs.values().any(|p| p.ppid == me),
            "unreaped: {:?}",
            sim.procs
        );
        match mode {
            Mode::System => prop_assert!(matches!(ended, Some(Action::Machine(_)))),
            _ => {
                let own = sim.initial_status.map(ExitStatus::code);
                prop_assert_eq!(ended, Some(Action::Exit(own.unwrap_or(0))));
                if sim.initial_status == Some(ExitStatus::Killed(libc::SIGKILL)) {
                    prop_assert!(sim.grace_ran_out || sim.forced);
                }
            }
        }
    }
}
