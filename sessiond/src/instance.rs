//! The per-session instance proper: parameters in, session built, report out, then exit or keep.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use smss::control::instance::{self, InstanceMessage, SessionParams};
use smss::logging;

use crate::{args, keeper, setup};

/// The instance: read the parameters, build the session, report; then exit, or stay as the
/// session's keeper. The exit status: 0 reported a session (or, a spare, was ended before
/// it got one), 1 otherwise.
pub fn main(a: args::Instance) -> i32 {
    let (fd, level) = (a.fd, a.log);
    // A spare (no --id) is named by what it is until its parameters say which session.
    let name = a.id.map_or_else(
        || "spare smss-session".to_string(),
        |id| format!("session {id}"),
    );
    let level = level.or_else(|| std::env::var("SMSS_LOG").ok());
    logging::init(level.as_deref(), log::LevelFilter::Warn);
    let fd = match smss::sys::fd::take_inherited(fd) {
        Ok(fd) => fd,
        Err(e) => {
            log::error!("{name}: failed to take report descriptor {fd}: {e}");
            return 1;
        }
    };
    let link = UnixStream::from(fd);
    // The parameters first: a spare waits here, with SIGTERM still deadly (a stop's SIGTERM
    // ends it at once), until PID 1 hands it a session or closes its end (EOF: exit 0).
    let (doc, pending) = match read_line(&link, instance::MAX_PARAMS) {
        Ok((d, _)) if d.is_empty() && a.id.is_none() => return 0,
        Ok(d) => d,
        Err(e) => {
            log::error!("{name}: failed to read its parameters: {e}");
            return 1;
        }
    };
    let parsed = serde_json::from_slice::<SessionParams>(&doc);
    let id = match (&parsed, a.id) {
        (_, Some(id)) => id,
        (Ok(p), None) => p.id,
        // Unreadable parameters of a spare: reported under no id PID 1 waits for.
        (Err(_), None) => 0,
    };
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
    let (mut report, after) = match parsed {
        Ok(p) if p.id == id => setup::set_up(&p, &link),
        Ok(p) => (
            setup::failure(id, format!("parameters are for session {}", p.id)),
            None,
        ),
        Err(e) => (
            setup::failure(id, format!("unreadable parameters: {e}")),
            None,
        ),
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
    if let Some(l) = after {
        log::info!("{l}");
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
