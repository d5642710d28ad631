//! Hotplug while running: the uevent socket coldplug opened stays in the loop; a device `add`
//! with a MODALIAS gets its modules loaded by a helper process (finit_module runs the driver's
//! init, which may take long), so the loop never waits for a driver. devtmpfs makes the nodes.

use std::collections::BTreeSet;

use super::{Supervisor, Token};
use crate::devices::hotplug::{Action, Batch, Wanted};
use crate::devices::{self, plan, uevent, Loader};
use crate::sys::uevent::{run_in_helper, UeventSocket};
use crate::sys::{self, RealSys};

/// At most this many messages are read per wake-up (a flood must not starve the rest of the
/// loop; the socket stays readable and the next wake-up continues).
const BATCH: usize = 256;
/// At most this many modaliases are remembered as handled.
const MAX_SEEN: usize = 65_536;

/// Hotplug's part of the supervisor: the socket, what was handled, the helper.
#[derive(Debug)]
pub(crate) struct Hotplug {
    socket: UeventSocket,
    listener: Listener,
    /// The running helper's pid.
    helper: Option<i32>,
}

/// The decisions of a wake-up (pure): which uevents want a driver, and whether a helper
/// starts now.
#[derive(Debug, Default)]
struct Listener {
    seen: BTreeSet<String>,
    machine: devices::hotplug::Hotplug,
}

impl Listener {
    /// One message: a new device's modalias goes to `wanted` (once each).
    fn accept(&mut self, msg: &[u8], wanted: &mut Vec<Wanted>) {
        let Some(ev) = uevent::parse(msg) else {
            return;
        };
        if ev.wants_driver() && self.seen.len() < MAX_SEEN && self.seen.insert(ev.modalias.clone())
        {
            wanted.push(Wanted {
                devpath: ev.devpath,
                modalias: ev.modalias,
            });
        }
    }

    /// The wake-up's new modaliases: a helper starts now if none runs, else they queue.
    /// What the queue refuses is forgotten, so a later uevent for it is tried again (and
    /// the next helper rescans sysfs for it).
    fn offer(&mut self, wanted: Vec<Wanted>) -> Action {
        let (action, refused) = self.machine.wanted(wanted);
        self.forget(refused);
        action
    }

    fn helper_exited(&mut self) -> Action {
        self.machine.helper_exited()
    }

    fn start_failed(&mut self, batch: Batch) {
        let refused = self.machine.start_failed(batch);
        self.forget(refused);
    }

    fn stop(&mut self) {
        self.machine.stop();
    }

    fn forget(&mut self, refused: Vec<Wanted>) {
        for r in refused {
            self.seen.remove(&r.modalias);
        }
    }
}

impl Supervisor {
    /// After the volumes phase: keep listening if coldplug is on (system mode only).
    /// `seen`: the modaliases coldplug and the volume wait handled (their uevents may still
    /// be queued on the socket).
    pub(crate) fn watch_uevents(&mut self, socket: UeventSocket, seen: BTreeSet<String>) {
        use std::os::fd::AsFd;
        match self.watch(socket.as_fd(), Token::Uevent) {
            Ok(()) => {
                self.uevents = Some(Hotplug {
                    socket,
                    listener: Listener {
                        seen,
                        ..Listener::default()
                    },
                    helper: None,
                })
            }
            Err(e) => log::warn!("failed to watch the uevent socket: {e}; no hotplug"),
        }
    }

    /// The uevent socket is readable: collect the new devices' modaliases; a helper loads
    /// what they need (one at a time: the rest waits for the running one's exit).
    pub(super) fn on_uevents(&mut self) {
        let stopping = self.stopping();
        let Some(h) = &mut self.uevents else {
            return;
        };
        if stopping {
            h.listener.stop();
        }
        let mut wanted = Vec::new();
        for _ in 0..BATCH {
            match h.socket.try_recv() {
                Ok(Some(msg)) => h.listener.accept(&msg, &mut wanted),
                Ok(None) => break,
                Err(e) => {
                    // ENOBUFS: events were lost; the next ones still come.
                    log::debug!("uevent socket: {e}");
                    break;
                }
            }
        }
        let action = h.listener.offer(wanted);
        self.hotplug_act(action);
    }

    /// A reaped child that no one adopted: the hotplug helper's exit starts the next one.
    /// Returns whether it was the helper.
    pub(super) fn on_hotplug_helper_exit(&mut self, pid: i32, status: sys::ExitStatus) -> bool {
        let stopping = self.stopping();
        let Some(h) = &mut self.uevents else {
            return false;
        };
        if h.helper != Some(pid) {
            return false;
        }
        log::debug!("hotplug helper pid {pid} {status}");
        h.helper = None;
        if stopping {
            h.listener.stop();
        }
        let action = h.listener.helper_exited();
        self.hotplug_act(action);
        true
    }

    fn hotplug_act(&mut self, action: Action) {
        let Some(h) = &mut self.uevents else {
            return;
        };
        let Action::Start(batch) = action else {
            return;
        };
        if batch.rescan() {
            log::warn!(
                "hotplug: {} new devices did not fit in the queue while a helper ran; this one rescans /sys",
                batch.dropped
            );
        }
        // The helper gets its own copy (fork); PID 1 keeps this one if the fork fails.
        match run_in_helper(|| load_for(&batch)) {
            Ok(pid) => {
                log::debug!("hotplug helper pid {pid}: {} devices", batch.wanted.len());
                h.helper = Some(pid);
            }
            Err(e) => {
                log::warn!("hotplug: failed to start a helper: {e}; retried with the next uevent");
                h.listener.start_failed(batch);
            }
        }
    }
}

/// In the helper: plan and load the modules for the batch's devices (and, when some were left
/// out, for every device present).
fn load_for(batch: &Batch) -> i32 {
    // Its lines carry its own pid, not PID 1's.
    crate::logging::refresh_pid();
    let sys = RealSys;
    let dir = crate::phases::modules::modules_dir(&sys);
    let Some(db) = devices::read_module_db(&sys, &dir) else {
        return 1;
    };
    let mut loader = Loader::default();
    let mut status = 0;
    let rescan = if batch.rescan() {
        devices::scan_modaliases(&sys).1
    } else {
        Vec::new()
    };
    let items = batch
        .wanted
        .iter()
        .map(|w| (w.devpath.as_str(), std::slice::from_ref(&w.modalias)));
    let items = items.chain((!rescan.is_empty()).then_some(("rescan", rescan.as_slice())));
    for (devpath, aliases) in items {
        let p = plan::plan(&db, &[], aliases, loader.done());
        let out = loader.run(&sys, &dir, &p);
        if !out.loaded.is_empty() {
            log::info!("hotplug: {devpath}: loaded {}", out.loaded.join(" "));
        }
        for e in out.errors {
            log::warn!("hotplug: {devpath}: {e}");
            status = 1;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(devpath: &str, modalias: &str) -> Vec<u8> {
        format!(
            "add@{devpath}\0ACTION=add\0DEVPATH={devpath}\0SUBSYSTEM=pci\0MODALIAS={modalias}\0"
        )
        .into_bytes()
    }

    fn wake_up(l: &mut Listener, msgs: &[Vec<u8>]) -> Action {
        let mut wanted = Vec::new();
        for m in msgs {
            l.accept(m, &mut wanted);
        }
        l.offer(wanted)
    }

    /// The defect: PID 1 forked a helper on every wake-up with new modaliases, however many
    /// still ran. A storm spread over wake-ups must start one helper, the rest waiting for it.
    #[test]
    fn a_storm_over_many_wake_ups_starts_one_helper_at_a_time() {
        let mut l = Listener::default();
        let mut starts = 0;
        let mut handed = Vec::new();
        for i in 0..20 {
            let msgs = [add(&format!("/devices/d{i}"), &format!("pci:v{i}"))];
            if let Action::Start(b) = wake_up(&mut l, &msgs) {
                starts += 1;
                handed.extend(b.wanted);
            }
        }
        assert_eq!(starts, 1, "helpers started while one ran");
        // The helper exits: the next takes the other 19 in one go, then nothing is left.
        match l.helper_exited() {
            Action::Start(b) => handed.extend(b.wanted),
            Action::Nothing => panic!("nothing started after the helper's exit"),
        }
        assert_eq!(l.helper_exited(), Action::Nothing);
        assert_eq!(handed.len(), 20);
    }

    /// What the full queue refused is forgotten: a later uevent for it is taken again, and
    /// the next helper is told to rescan.
    #[test]
    fn an_overflowing_storm_forgets_what_did_not_fit() {
        use crate::devices::hotplug::MAX_QUEUED;
        let mut l = Listener::default();
        assert!(matches!(
            wake_up(&mut l, &[add("/devices/first", "first")]),
            Action::Start(_)
        ));
        for i in 0..MAX_QUEUED + 5 {
            let m = add(&format!("/devices/d{i}"), &format!("pci:v{i}"));
            assert_eq!(wake_up(&mut l, &[m]), Action::Nothing);
        }
        let first_refused = (0..MAX_QUEUED + 5).find(|i| !l.seen.contains(&format!("pci:v{i}")));
        assert_eq!(first_refused, Some(MAX_QUEUED));
        assert_eq!(l.seen.len(), MAX_QUEUED + 1);
        let Action::Start(b) = l.helper_exited() else {
            panic!("no helper after the exit");
        };
        assert_eq!((b.wanted.len(), b.dropped), (MAX_QUEUED, 5));
        // A later uevent for a refused modalias is handed over again.
        let m = add("/devices/again", &format!("pci:v{}", MAX_QUEUED + 1));
        assert_eq!(wake_up(&mut l, &[m]), Action::Nothing);
        assert!(
            matches!(l.helper_exited(), Action::Start(b) if b.wanted.len() == 1 && !b.rescan())
        );
    }

    /// A helper that could not be forked: its batch goes with the next wake-up, any uevent.
    #[test]
    fn a_failed_fork_is_retried_at_the_next_wake_up() {
        let mut l = Listener::default();
        let Action::Start(b) = wake_up(&mut l, &[add("/devices/a", "a")]) else {
            panic!("no helper");
        };
        l.start_failed(b);
        let other = b"remove@/devices/x\0ACTION=remove\0DEVPATH=/devices/x\0".to_vec();
        assert!(matches!(wake_up(&mut l, &[other]), Action::Start(b) if b.wanted.len() == 1));
    }

    #[test]
    fn a_modalias_is_handed_over_once() {
        let mut l = Listener::default();
        let m = add("/devices/a", "pci:vA");
        assert!(
            matches!(wake_up(&mut l, &[m.clone(), m.clone()]), Action::Start(b) if b.wanted.len() == 1)
        );
        let _ = l.helper_exited();
        assert_eq!(wake_up(&mut l, &[m]), Action::Nothing);
    }
}
