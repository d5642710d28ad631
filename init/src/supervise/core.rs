
/// Random interleavings of signals, exits, forks (also while a scan is being signalled, and
/// by a SIGTERM handler) and timers, against a simulated process table.
#[cfg(test)]
mod props {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum OnTerm {
        Exit(i32),
        Ignore,
        /// Forks a child (which exits on SIGTERM) from its handler, then exits.
        ForkThenExit,
        /// An interactive shell: ignores SIGTERM, ends on SIGHUP (has a terminal).
        ShellOnTty,
    }

    #[derive(Debug, Clone)]
    struct P {
        ppid: i32,
        pgid: i32,
        start: u64,
        on_term: OnTerm,
        zombie: Option<ExitStatus>,
        got_term: bool,
        got_forwarded: bool,
        killed_at: Option<Duration>,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Signal(i32),
        Control,
        /// Fork from the n-th live process (modulo).
        Fork(usize, OnTerm),
        /// The same, right after the next scan read /proc.
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
        /// (when, goal) of the end the engine chose.
        ended: Option<Action>,
        /// The stop's start and whether it was forced by a repeated control request.
        forced: bool,
        grace_ran_out: bool,
        /// Every pid alive at some moment after the stop began (and when it was seen).
        stranger: i32,
    }

    impl Sim {
        fn new(mode: Mode, forward_to: ForwardTo, initial: OnTerm) -> Sim {
            let me = if mode == Mode::Subreaper { 50 } else { 1 };
            let e = Engine::new(mode, me, GRACE, forward_to, mode != Mode::System);
            let mut s = Sim {
                e,
                procs: BTreeMap::new(),
                next_pid: 100,
                now: Duration::ZERO,
                timers: BTreeMap::new(),
                fork_on_scan: Vec::new(),
                initial_status: None,
                ended: None,
                forced: false,
                grace_ran_out: false,
                stranger: 7,
            };
            // A process that is not ours (as a subreaper): never to be signalled.
            s.procs.insert(
                7,
                P {
                    ppid: 0,
                    pgid: 7,
                    start: 7,
                    on_term: OnTerm::Exit(0),
                    zombie: None,
                    got_term: false,
                    got_forwarded: false,
                    killed_at: None,
                },
            );
            s.spawn(me, initial, None);
            s.e.initial_started(100);
            s
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
                    start: pid as u64,
                    on_term,
                    zombie: None,
                    got_term: false,
                    got_forwarded: false,
                    killed_at: None,
                },
            );
            pid
        }

        /// Ours and alive, in the engine's sense (not us, not strangers).
        fn live(&self) -> Vec<i32> {
            self.procs
                .iter()
                .filter(|(pid, p)| p.zombie.is_none() && **pid != self.stranger)
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
            if pid == 100 {
                self.initial_status = Some(status);
            }
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
            assert_ne!(pid, self.stranger, "a stranger was signalled");
            let t = p.on_term;
            match sig {
                libc::SIGKILL => {
                    p.killed_at = Some(self.now);
                    self.exit(pid, ExitStatus::Killed(libc::SIGKILL));
                }
                libc::SIGTERM | libc::SIGINT => {
                    if sig == libc::SIGTERM {
                        p.got_term = true;
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
            self.procs
                .iter()
                .map(|(&pid, p)| ProcInfo {
                    pid,
                    state: if p.zombie.is_some() { 'Z' } else { 'S' },
                    ppid: p.ppid,
                    pgid: p.pgid,
                    session: p.pgid,
                    tty_nr: if p.on_term == OnTerm::ShellOnTty { 34816 } else { 0 },
                    start_time: p.start,
                    kernel_thread: false,
                })
                .chain(std::iter::once(ProcInfo {
                    pid: self.me(),
                    state: 'S',
                    ppid: if self.me() == 1 { 0 } else { 1 },
                    pgid: self.me(),
                    session: self.me(),
                    tty_nr: 0,
                    start_time: 1,
                    kernel_thread: false,
                }))
                .collect()
        }

        fn execute(&mut self, actions: Vec<Action>) {
            let mut queue: std::collections::VecDeque<Action> = actions.into();
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
                        let stopping_fwd = pid.abs() == 100 && !self.e.stop.as_ref().is_some_and(|s| s.stage == Stage::Kill);
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
                            self.deliver(pid, sig, stopping_fwd);
                        }
                    }
                    Action::SignalAll(sig) => {
                        assert!(self.e.mode.is_pid1(), "kill(-1) as a subreaper");
                        let all: Vec<i32> = self.procs.keys().copied().collect();
                        for q in all {
                            self.deliver(q, sig, false);
                        }
                    }
                    Action::Scan => {
                        let snap = self.snapshot();
                        for (n, t) in std::mem::take(&mut self.fork_on_scan) {
                            self.fork_from(n, t);
                        }
                        queue.extend(self.e.on_scan(Some(&snap)));
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
            self.procs.values().any(|p| p.ppid == self.me())
        }

        /// The loop's tail after any event: reap, then look for newcomers.
        fn settle(&mut self) {
            loop {
                let me = self.me();
                let z = self
                    .procs
                    .iter()
                    .find(|(_, p)| p.ppid == me && p.zombie.is_some())
                    .map(|(pid, p)| (*pid, p.zombie));
                let Some((pid, Some(status))) = z else { break };
                self.procs.remove(&pid);
                if self.ended.is_some() {
                    continue;
                }
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
            self.check_everyone_signalled();
        }

        /// Once a stop began, after each wake-up nobody alive of ours is without SIGTERM
        /// (who had the forwarded stop signal instead counts as told).
        fn check_everyone_signalled(&self) {
            let Some(stop) = &self.e.stop else { return };
            if stop.stage != Stage::Term || self.ended.is_some() {
                return;
            }
            for pid in self.live() {
                let p = &self.procs[&pid];
                assert!(
                    p.got_term || p.got_forwarded,
                    "pid {pid} alive without SIGTERM at {:?}: {:?}",
                    self.now,
                    self.procs
                );
            }
        }

        fn op(&mut self, op: &Op) {
            if self.ended.is_some() {
                return;
            }
            // Time passes between events: wake-ups rescan.
            self.advance(RESCAN_MIN);
            if self.ended.is_some() {
                return;
            }
            match *op {
                Op::Signal(sig) => {
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
                    }
                    StopTimer::Deadline
                } else {
                    StopTimer::Resweep
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
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn interleavings_keep_the_invariants(
            mode in mode(),
            fwd in forward_to(),
            initial in on_term(),
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let mut sim = Sim::new(mode, fwd, initial);
            for o in &ops {
                sim.op(o);
            }
            // Then someone stops it, and time runs until the end.
            if sim.ended.is_none() && !sim.e.stopping() {
                sim.op(&Op::Signal(libc::SIGTERM));
            }
            if mode != Mode::System && sim.ended.is_none() && !sim.e.stopping() {
                // A configured-less container ends with its command; end the command.
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
            // Every child is reaped, and nothing of ours is left.
            prop_assert!(sim.live().is_empty(), "left: {:?}", sim.procs);
            let me = sim.me();
            prop_assert!(!sim.procs.values().any(|p| p.ppid == me), "unreaped: {:?}", sim.procs);
            match mode {
                Mode::System => prop_assert!(matches!(ended, Some(Action::Machine(_)))),
                _ => {
                    // The initial command's own status, whatever ended it; a SIGKILL only
                    // when the grace period ran out (or on the explicit force).
                    let own = sim.initial_status.map(ExitStatus::code);
                    prop_assert_eq!(ended, Some(Action::Exit(own.unwrap_or(0))));
                    if sim.initial_status == Some(ExitStatus::Killed(libc::SIGKILL)) {
                        prop_assert!(sim.grace_ran_out || sim.forced);
                    }
                }
            }
        }
    }
}
