//! Hotplug helpers, one at a time (pure). Each helper reads the whole module database and
//! loads modules; several at once would each pay for the database and race on the same
//! modules. So while one runs, the new devices' modaliases queue here (bounded), and the next
//! helper takes everything queued in one go when the running one has exited.
//!
//! Events in: modaliases wanted ([`Hotplug::wanted`]), the helper exited
//! ([`Hotplug::helper_exited`]), it could not be started ([`Hotplug::start_failed`]), the stop
//! began ([`Hotplug::stop`]). Actions out: start a helper with a [`Batch`], or nothing. What
//! does not fit in the queue is handed back (the caller forgets it, so a later uevent for it is
//! tried again) and counted: the next batch says how many were left out and asks its helper to
//! rescan sysfs for the devices present, so none of them stays without its driver.

/// At most this many modaliases wait for the next helper.
pub const MAX_QUEUED: usize = 4096;
/// At most this many bytes (devpaths and modaliases) wait for the next helper.
pub const MAX_QUEUED_BYTES: usize = 512 * 1024;

/// A new device that wants its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub devpath: String,
    pub modalias: String,
}

impl Wanted {
    fn bytes(&self) -> usize {
        self.devpath.len().saturating_add(self.modalias.len())
    }
}

/// What one helper is to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub wanted: Vec<Wanted>,
    /// Modaliases left out (the queue was full) since the last batch: the helper rescans the
    /// devices present instead of relying on their uevents.
    pub dropped: usize,
}

impl Batch {
    pub fn rescan(&self) -> bool {
        self.dropped > 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Start the (only) helper with this batch.
    Start(Batch),
}

/// The hotplug helper's state: whether one runs, and what waits for the next.
#[derive(Debug, Default)]
pub struct Hotplug {
    running: bool,
    stopped: bool,
    queue: Vec<Wanted>,
    bytes: usize,
    dropped: usize,
}

impl Hotplug {
    /// New devices' modaliases (already deduplicated by the caller). Returns the action and
    /// those refused because the queue is full (the caller forgets them as handled).
    pub fn wanted(&mut self, list: Vec<Wanted>) -> (Action, Vec<Wanted>) {
        if self.stopped {
            return (Action::Nothing, Vec::new());
        }
        let refused = self.enqueue(list);
        (self.next(), refused)
    }

    /// The helper exited: the next one takes what queued meanwhile.
    pub fn helper_exited(&mut self) -> Action {
        self.running = false;
        self.next()
    }

    /// The helper of `batch` could not be started (fork failed): its work queues again and
    /// goes with the next start (the next wanted modalias). Returns what no longer fits.
    pub fn start_failed(&mut self, batch: Batch) -> Vec<Wanted> {
        self.running = false;
        if self.stopped {
            return Vec::new();
        }
        let mut list = batch.wanted;
        list.append(&mut self.queue);
        self.bytes = 0;
        self.dropped = self.dropped.saturating_add(batch.dropped);
        self.enqueue(list)
    }

    /// The stop began: no helper starts any more; the queue is dropped.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.queue = Vec::new();
        self.bytes = 0;
    }

    pub fn running(&self) -> bool {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    fn enqueue(&mut self, list: Vec<Wanted>) -> Vec<Wanted> {
        let mut refused = Vec::new();
        for w in list {
            let b = w.bytes();
            if self.queue.len() < MAX_QUEUED && self.bytes.saturating_add(b) <= MAX_QUEUED_BYTES {
                self.bytes += b;
                self.queue.push(w);
            } else {
                self.dropped = self.dropped.saturating_add(1);
                refused.push(w);
            }
        }
        refused
    }

    fn next(&mut self) -> Action {
        if self.running || self.stopped || (self.queue.is_empty() && self.dropped == 0) {
            return Action::Nothing;
        }
        self.running = true;
        self.bytes = 0;
        Action::Start(Batch {
            wanted: std::mem::take(&mut self.queue),
            dropped: std::mem::take(&mut self.dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn w(alias: &str) -> Wanted {
        Wanted {
            devpath: format!("/devices/{alias}"),
            modalias: alias.to_string(),
        }
    }

    fn started(a: Action) -> Batch {
        match a {
            Action::Start(b) => b,
            Action::Nothing => panic!("expected a start"),
        }
    }

    #[test]
    fn the_first_wanted_starts_a_helper_at_once() {
        let mut h = Hotplug::default();
        let (a, refused) = h.wanted(vec![w("a"), w("b")]);
        assert_eq!(started(a).wanted, vec![w("a"), w("b")]);
        assert!(refused.is_empty());
        assert!(h.running());
    }

    /// The defect: each wake-up with new modaliases started its own helper, any number at once.
    #[test]
    fn while_a_helper_runs_the_next_wake_ups_queue_and_one_helper_takes_them_all() {
        let mut h = Hotplug::default();
        let _ = started(h.wanted(vec![w("a")]).0);
        for alias in ["b", "c", "d"] {
            assert_eq!(h.wanted(vec![w(alias)]).0, Action::Nothing);
        }
        assert_eq!(h.queued(), 3);
        let b = started(h.helper_exited());
        assert_eq!(b.wanted, vec![w("b"), w("c"), w("d")]);
        assert!(!b.rescan());
        assert_eq!(h.queued(), 0);
        assert_eq!(h.helper_exited(), Action::Nothing);
        assert!(!h.running());
    }

    #[test]
    fn an_empty_wake_up_starts_nothing() {
        let mut h = Hotplug::default();
        assert_eq!(h.wanted(Vec::new()), (Action::Nothing, Vec::new()));
        assert_eq!(h.helper_exited(), Action::Nothing);
    }

    #[test]
    fn a_full_queue_refuses_the_rest_and_the_next_helper_rescans() {
        let mut h = Hotplug::default();
        let _ = started(h.wanted(vec![w("first")]).0);
        let many: Vec<Wanted> = (0..MAX_QUEUED + 10).map(|i| w(&i.to_string())).collect();
        let (a, refused) = h.wanted(many);
        assert_eq!(a, Action::Nothing);
        assert_eq!(refused.len(), 10);
        assert_eq!(refused.first(), Some(&w(&MAX_QUEUED.to_string())));
        assert_eq!(h.queued(), MAX_QUEUED);
        // Later arrivals of the same storm are refused too, and counted.
        assert_eq!(h.wanted(vec![w("late")]).1, vec![w("late")]);
        let b = started(h.helper_exited());
        assert_eq!(b.wanted.len(), MAX_QUEUED);
        assert_eq!(b.dropped, 11);
        assert!(b.rescan());
        // The count is per storm: the one after starts from zero.
        let _ = h.helper_exited();
        let b = started(h.wanted(vec![w("x")]).0);
        assert_eq!(b.dropped, 0);
    }

    #[test]
    fn the_byte_cap_bounds_the_queue_too() {
        let mut h = Hotplug::default();
        let _ = started(h.wanted(vec![w("first")]).0);
        let big = Wanted {
            devpath: "/devices/big".into(),
            modalias: "m".repeat(8000),
        };
        let (_, refused) = h.wanted(vec![big; 100]);
        assert!(h.queued_bytes() <= MAX_QUEUED_BYTES);
        assert_eq!(h.queued() + refused.len(), 100);
        assert!(!refused.is_empty());
    }

    #[test]
    fn refused_modaliases_alone_still_get_a_rescan() {
        let mut h = Hotplug::default();
        let _ = started(h.wanted(vec![w("first")]).0);
        let huge = Wanted {
            devpath: String::new(),
            modalias: "m".repeat(MAX_QUEUED_BYTES + 1),
        };
        assert_eq!(h.wanted(vec![huge]).1.len(), 1);
        assert_eq!(h.queued(), 0);
        let b = started(h.helper_exited());
        assert!(b.wanted.is_empty() && b.rescan());
    }

    #[test]
    fn after_the_stop_no_helper_starts() {
        let mut h = Hotplug::default();
        let _ = started(h.wanted(vec![w("a")]).0);
        let _ = h.wanted(vec![w("b")]);
        h.stop();
        assert_eq!(h.queued(), 0);
        assert_eq!(h.helper_exited(), Action::Nothing);
        assert_eq!(h.wanted(vec![w("c")]), (Action::Nothing, Vec::new()));
        assert!(!h.running());
    }

    #[test]
    fn a_failed_start_requeues_its_batch_for_the_next_start() {
        let mut h = Hotplug::default();
        let b = started(h.wanted(vec![w("a")]).0);
        assert!(h.start_failed(b).is_empty());
        assert!(!h.running());
        assert_eq!(h.queued(), 1);
        let b = started(h.wanted(vec![w("b")]).0);
        assert_eq!(b.wanted, vec![w("a"), w("b")]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Modaliases (index into a small alphabet, size) arriving in one wake-up; whether a
        /// start this causes fails.
        Wanted(Vec<(u16, usize)>, bool),
        Exited(bool),
        Stop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (
                prop::collection::vec(
                    (0u16..20_000, prop_oneof![9 => 0usize..8, 1 => 0usize..1500]),
                    0..700
                ),
                prop::bool::weighted(0.1)
            )
                .prop_map(|(l, f)| Op::Wanted(l, f)),
            2 => prop::bool::weighted(0.1).prop_map(Op::Exited),
            1 => Just(Op::Stop),
        ]
    }

    /// Applies an action to the model: a start while one runs breaks the invariant.
    struct Model {
        h: Hotplug,
        running: bool,
        stopped: bool,
        accepted: BTreeSet<String>,
        handed: BTreeSet<String>,
        rescans: usize,
        dropped_total: usize,
        refused_total: usize,
    }

    impl Model {
        fn act(&mut self, a: Action, fail: bool) -> Result<(), TestCaseError> {
            if let Action::Start(b) = a {
                prop_assert!(!self.running, "a second helper while one runs");
                prop_assert!(!self.stopped, "a helper started after the stop");
                prop_assert!(b.wanted.len() <= MAX_QUEUED);
                if fail {
                    let refused = self.h.start_failed(b);
                    self.refuse(refused);
                    prop_assert!(!self.h.running());
                } else {
                    self.running = true;
                    self.dropped_total += b.dropped;
                    if b.rescan() {
                        self.rescans += 1;
                    }
                    for x in b.wanted {
                        self.handed.insert(x.modalias);
                    }
                }
            }
            prop_assert_eq!(self.h.running(), self.running);
            prop_assert!(self.h.queued() <= MAX_QUEUED);
            prop_assert!(self.h.queued_bytes() <= MAX_QUEUED_BYTES);
            Ok(())
        }

        fn refuse(&mut self, refused: Vec<Wanted>) {
            self.refused_total += refused.len();
            for r in refused {
                self.accepted.remove(&r.modalias);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn one_helper_at_a_time_and_every_accepted_modalias_is_handed_over(
            ops in prop::collection::vec(op(), 0..40)
        ) {
            let mut m = Model {
                h: Hotplug::default(),
                running: false,
                stopped: false,
                accepted: BTreeSet::new(),
                handed: BTreeSet::new(),
                rescans: 0,
                dropped_total: 0,
                refused_total: 0,
            };
            // As the caller's `seen` set: each modalias is offered once until refused.
            let mut seen = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Wanted(list, fail) => {
                        let list: Vec<Wanted> = list
                            .into_iter()
                            .map(|(i, size)| Wanted {
                                devpath: "d".repeat(size),
                                modalias: format!("alias{i}"),
                            })
                            .filter(|x| seen.insert(x.modalias.clone()))
                            .collect();
                        let offered: Vec<String> =
                            list.iter().map(|x| x.modalias.clone()).collect();
                        let (a, refused) = m.h.wanted(list);
                        if !m.stopped {
                            m.accepted.extend(offered);
                        }
                        for r in &refused {
                            seen.remove(&r.modalias);
                        }
                        m.refuse(refused);
                        m.act(a, fail)?;
                    }
                    Op::Exited(fail) => {
                        if m.running {
                            m.running = false;
                            let a = m.h.helper_exited();
                            m.act(a, fail)?;
                        }
                    }
                    Op::Stop => {
                        m.h.stop();
                        m.stopped = true;
                    }
                }
            }
            if !m.stopped {
                // Let the machine run dry: helpers exit, an empty wake-up retries a failed
                // start; every accepted modalias was handed to a helper by then.
                for _ in 0..100 {
                    let a = if m.running {
                        m.running = false;
                        m.h.helper_exited()
                    } else {
                        m.h.wanted(Vec::new()).0
                    };
                    m.act(a, false)?;
                    if !m.running && m.h.queued() == 0 {
                        break;
                    }
                }
                prop_assert_eq!(m.h.queued(), 0);
                let missing: Vec<&String> = m.accepted.difference(&m.handed).collect();
                prop_assert!(missing.is_empty(), "never handed over: {:?}", missing);
                // Every refusal was reported to a helper, which rescanned.
                prop_assert_eq!(m.dropped_total, m.refused_total);
                prop_assert_eq!(m.rescans > 0, m.refused_total > 0);
            }
        }
    }
}
