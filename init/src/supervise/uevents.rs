//! Hotplug while running: the uevent socket coldplug opened stays in the loop; a device `add`
//! with a MODALIAS gets its modules loaded by a helper process (finit_module runs the driver's
//! init, which may take long), so the loop never waits for a driver. devtmpfs makes the nodes.

use std::collections::BTreeSet;

use super::{Supervisor, Token};
use crate::devices::{self, plan, uevent, Loader};
use crate::sys::uevent::run_in_helper;
use crate::sys::RealSys;

/// At most this many messages are read per wake-up (a flood must not starve the rest of the
/// loop; the socket stays readable and the next wake-up continues).
const BATCH: usize = 256;
/// At most this many modaliases are remembered as handled.
const MAX_SEEN: usize = 65_536;

impl Supervisor {
    /// After the volumes phase: keep listening if coldplug is on (system mode only).
    /// `seen`: the modaliases coldplug and the volume wait handled (their uevents may still
    /// be queued on the socket).
    pub(crate) fn watch_uevents(
        &mut self,
        socket: crate::sys::uevent::UeventSocket,
        seen: BTreeSet<String>,
    ) {
        use std::os::fd::AsFd;
        match self.watch(socket.as_fd(), Token::Uevent) {
            Ok(()) => self.uevents = Some((socket, seen)),
            Err(e) => log::warn!("failed to watch the uevent socket: {e}; no hotplug"),
        }
    }

    /// The uevent socket is readable: collect the new devices' modaliases, then one helper
    /// loads what they need.
    pub(super) fn on_uevents(&mut self) {
        let Some((socket, seen)) = &mut self.uevents else {
            return;
        };
        let mut wanted = Vec::new();
        for _ in 0..BATCH {
            match socket.try_recv() {
                Ok(Some(msg)) => {
                    let Some(ev) = uevent::parse(&msg) else {
                        continue;
                    };
                    if ev.wants_driver()
                        && seen.len() < MAX_SEEN
                        && seen.insert(ev.modalias.clone())
                    {
                        wanted.push((ev.devpath, ev.modalias));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // ENOBUFS: events were lost; the next ones still come.
                    log::debug!("uevent socket: {e}");
                    break;
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        match run_in_helper(move || load_for(&wanted)) {
            Ok(pid) => log::debug!("hotplug helper pid {pid}"),
            Err(e) => log::warn!("hotplug: failed to start a helper: {e}"),
        }
    }
}

/// In the helper: plan and load the modules for `(devpath, modalias)` pairs.
fn load_for(wanted: &[(String, String)]) -> i32 {
    // Its lines carry its own pid, not PID 1's.
    crate::logging::refresh_pid();
    let sys = RealSys;
    let dir = crate::phases::modules::modules_dir(&sys);
    let Some(db) = devices::read_module_db(&sys, &dir) else {
        return 1;
    };
    let mut loader = Loader::default();
    let mut status = 0;
    for (devpath, alias) in wanted {
        let p = plan::plan(&db, &[], std::slice::from_ref(alias), &BTreeSet::new());
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
