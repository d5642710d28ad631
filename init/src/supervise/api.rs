//! The control socket's methods (`io.smss.Manager`, `org.varlink.service`) served from PID
//! 1's loop: connections are read and written without blocking (`control::server`), each call
//! is decoded (`control::manager`), authorised by SO_PEERCRED and answered at once, except
//! `CreateSession` and `TerminateSession` whose replies wait for the session (deferred: the
//! connection takes no further call until then, so replies keep their order).

use nix::sys::epoll::{EpollEvent, EpollFlags};
use serde_json::{json, Value};

use super::{stop, Role, Supervisor, Timer, Token};
use crate::control::manager::{self, Action, Method, MethodError};
use crate::control::server::{Interest, LogLimiter, Server, DENIAL_LOG_INTERVAL, MAX_DENIED_CALLS};
use crate::control::wire;
use crate::mode::Mode;
use crate::sys;

/// The control socket's state inside the supervisor.
#[derive(Default)]
pub struct Control {
    server: Option<Server>,
    /// Connections whose deferred call was answered: serve their buffered calls.
    resume: Vec<u32>,
    /// Log lines about refused calls, all connections together.
    denials: LogLimiter,
}

/// What a method call produced.
pub(crate) enum Outcome {
    Now(Result<Value, MethodError>),
    /// The reply comes later through [`Supervisor::reply_deferred`].
    Later,
}

impl Supervisor {
    /// Create the control socket (`[control] socket`) and watch it. A failure is logged:
    /// smss runs without it (a read-only /run in a container, a second smss as subreaper).
    pub(crate) fn open_control(&mut self) {
        if self.minimal {
            // A tini-like container init (no configuration file) serves no socket.
            return;
        }
        let path = self.cfg.control.socket.clone();
        let server = match Server::bind(&path, self.cfg.control.allowed_group.clone()) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "failed to create the control socket {}: {e}; smctl will not work",
                    path.display()
                );
                return;
            }
        };
        if let Err(e) = self.watch(server.listener_fd(), Token::ControlListener) {
            log::warn!("failed to watch the control socket: {e}");
            return;
        }
        log::debug!("control socket {}", path.display());
        self.control.server = Some(server);
    }

    /// Input on the control listener or a client connection.
    pub(crate) fn on_control_event(&mut self, token: Token) {
        match token {
            Token::ControlListener => self.accept_clients(),
            Token::ControlClient(n) => self.serve_client(n as u32),
            _ => {}
        }
        self.resume_clients();
    }

    fn accept_clients(&mut self) {
        let Some(server) = self.control.server.as_mut() else {
            return;
        };
        let ids = server.accept();
        let mut watched = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(conn) = server.conns.get_mut(&id) else {
                continue;
            };
            let ev = EpollEvent::new(
                EpollFlags::EPOLLIN,
                Token::ControlClient(id as u64).encode(),
            );
            if let Err(e) = self.epoll.add(conn.fd(), ev) {
                log::warn!("failed to watch a control connection: {e}");
                server.conns.remove(&id);
                continue;
            }
            conn.registered = Interest {
                read: true,
                write: false,
            };
            watched.push(id);
        }
        // A client writes its call right after connecting, most often before we get here:
        // read it now rather than on the next wake-up (one epoll round trip off every call).
        for id in watched {
            self.serve_client(id);
        }
    }

    fn serve_client(&mut self, id: u32) {
        let Some(conn) = self.conn(id) else {
            return;
        };
        conn.flush();
        if conn.busy {
            if conn.hung_up() {
                conn.send_and_close(&[]);
                conn.busy = false;
            }
        } else {
            conn.fill();
        }
        self.process_calls(id);
        self.update_client(id);
    }

    fn conn(&mut self, id: u32) -> Option<&mut crate::control::server::Connection> {
        self.control.server.as_mut()?.conns.get_mut(&id)
    }

    /// Handle every complete call buffered on connection `id` until one is deferred.
    fn process_calls(&mut self, id: u32) {
        while let Some(msg) = self.conn(id).and_then(|c| c.next_message()) {
            match msg {
                Ok(bytes) => self.handle_call(id, &bytes),
                Err(e) => {
                    log::debug!("control client: {e}");
                    let reply = wire::encode_error(
                        "org.varlink.service.InvalidParameter",
                        json!({"parameter": "message", "reason": e.to_string()}),
                    );
                    if let Some(c) = self.conn(id) {
                        c.send_and_close(&reply);
                    }
                }
            }
        }
    }

    /// Watch what the connection needs now, or close it.
    fn update_client(&mut self, id: u32) {
        let Some(server) = self.control.server.as_mut() else {
            return;
        };
        let Some(conn) = server.conns.get_mut(&id) else {
            return;
        };
        if conn.finished() {
            let _ = self.epoll.delete(conn.fd());
            server.conns.remove(&id);
            // A deferred reply for it is dropped when it comes.
            return;
        }
        let want = conn.interest();
        if want != conn.registered {
            let mut flags = EpollFlags::empty();
            if want.read {
                flags |= EpollFlags::EPOLLIN;
            }
            if want.write {
                flags |= EpollFlags::EPOLLOUT;
            }
            let mut ev = EpollEvent::new(flags, Token::ControlClient(id as u64).encode());
            if self.epoll.modify(conn.fd(), &mut ev).is_ok() {
                conn.registered = want;
            }
        }
    }

    fn handle_call(&mut self, id: u32, bytes: &[u8]) {
        let call = match wire::parse_call(bytes) {
            Ok(c) => c,
            Err(e) => {
                // Not a call at all: answer once and close, the stream cannot be trusted.
                let reply = wire::encode_error(
                    "org.varlink.service.InvalidParameter",
                    json!({"parameter": "message", "reason": e.to_string()}),
                );
                if let Some(c) = self.conn(id) {
                    c.send_and_close(&reply);
                }
                return;
            }
        };
        let oneway = call.oneway;
        let Some(conn) = self.conn(id) else {
            return;
        };
        let (peer, privileged) = (conn.peer.clone(), conn.privileged);
        let result = if call.upgrade {
            Err(MethodError::bad_parameter("upgrade"))
        } else {
            manager::decode(&call)
        };
        let method = match result {
            Ok(m) if m.privileged() && !privileged => {
                // Anyone may connect: one line per connection, not per call (oneway calls get
                // no reply to slow a flood down), and a connection that keeps trying is closed.
                // Every connection together: the first few per interval, then a count.
                let denied = conn.denied_call();
                let close = denied >= MAX_DENIED_CALLS;
                if close {
                    conn.close();
                }
                if denied == 1 || close {
                    let (log_it, summary) = self.control.denials.admit(std::time::Instant::now());
                    log_unlogged_denials(summary);
                    if log_it && close {
                        log::info!(
                            "control: closing uid {} (pid {})'s connection after {denied} denied calls",
                            peer.uid,
                            peer.pid
                        );
                    } else if log_it {
                        log::info!(
                            "control: {} denied to uid {} (pid {})",
                            call.method,
                            peer.uid,
                            peer.pid
                        );
                    }
                } else {
                    log::debug!(
                        "control: {} denied to uid {} (pid {})",
                        call.method,
                        peer.uid,
                        peer.pid
                    );
                }
                Err(MethodError::permission_denied(&call.method, peer.uid))
            }
            other => other,
        };
        let outcome = match method {
            Err(e) => Outcome::Now(Err(e)),
            Ok(Method::Shutdown(action)) => {
                // Reply first: the stop may take the machine down.
                self.send_reply(id, oneway, Ok(json!({})));
                self.shutdown_requested(action, peer.uid);
                return;
            }
            Ok(m) => self.call_method(id, m, oneway),
        };
        if let Outcome::Now(r) = outcome {
            self.send_reply(id, oneway, r);
        }
    }

    fn send_reply(&mut self, id: u32, oneway: bool, result: Result<Value, MethodError>) {
        if oneway {
            return;
        }
        let bytes = match result {
            Ok(v) => wire::encode_reply(v),
            Err(e) => wire::encode_error(&e.error, e.parameters),
        };
        if let Some(c) = self.conn(id) {
            c.send(&bytes);
        }
    }

    /// Answer a deferred call on connection `id` (gone connections are skipped).
    pub(crate) fn reply_deferred(&mut self, id: u32, result: Result<Value, MethodError>) {
        let Some(c) = self.conn(id) else {
            return;
        };
        c.busy = false;
        self.send_reply(id, false, result);
        self.control.resume.push(id);
    }

    /// Serve the calls that waited behind a deferred one. Every entry point of `api` and
    /// `sessions` ends here, so no buffered call is forgotten.
    pub(crate) fn resume_clients(&mut self) {
        while let Some(id) = self.control.resume.pop() {
            if self.conn(id).is_some_and(|c| !c.busy) {
                self.process_calls(id);
            }
            self.update_client(id);
        }
        self.arm_control_timer();
    }

    /// Keep one timer at the earliest control deadline: a connection's (see
    /// `control::server::Clock`) or the count of denials not logged.
    fn arm_control_timer(&mut self) {
        let conns = self.control.server.as_ref().and_then(Server::next_deadline);
        let next = [conns, self.control.denials.deadline()]
            .into_iter()
            .flatten()
            .min();
        let current = self
            .timers
            .iter()
            .find(|(_, t)| *t == Timer::ControlDeadline)
            .map(|(at, _)| *at);
        if next != current {
            self.cancel_timer(&Timer::ControlDeadline);
            if let Some(at) = next {
                self.add_timer(at, Timer::ControlDeadline);
            }
        }
    }

    /// A control deadline passed: close the connections that missed theirs, log the count
    /// of denials not logged.
    pub(crate) fn on_control_deadline(&mut self) {
        let now = std::time::Instant::now();
        log_unlogged_denials(self.control.denials.flush(now));
        let expired = self
            .control
            .server
            .as_mut()
            .map(|s| s.expire(now))
            .unwrap_or_default();
        for id in expired {
            self.update_client(id);
        }
        self.arm_control_timer();
    }

    fn call_method(&mut self, id: u32, method: Method, oneway: bool) -> Outcome {
        match method {
            Method::GetInfo => Outcome::Now(Ok(json!({
                "vendor": "smss",
                "product": "smss",
                "version": env!("CARGO_PKG_VERSION"),
                "url": "https://github.com/smss/smss",
                "interfaces": [manager::SERVICE, manager::INTERFACE],
            }))),
            Method::GetInterfaceDescription { interface } => {
                Outcome::Now(match interface.as_str() {
                    manager::INTERFACE => Ok(json!({ "description": manager::DESCRIPTION })),
                    manager::SERVICE => Ok(json!({ "description": manager::SERVICE_DESCRIPTION })),
                    other => Err(MethodError::interface_not_found(other)),
                })
            }
            Method::GetStatus => Outcome::Now(Ok(self.status_json())),
            Method::ListSessions => Outcome::Now(Ok(json!({ "sessions": self.sessions_json() }))),
            Method::CreateSession(req) => {
                let waiter = (!oneway).then_some(id);
                match self.create_session(req, waiter, false) {
                    Err(e) => Outcome::Now(Err(e)),
                    Ok(_) => {
                        if let (Some(c), false) = (self.conn(id), oneway) {
                            c.busy = true;
                        }
                        self.start_queued_sessions();
                        if oneway {
                            Outcome::Now(Ok(json!({})))
                        } else {
                            Outcome::Later
                        }
                    }
                }
            }
            Method::TerminateSession { id: sid, wait } => {
                let waiter = (wait && !oneway).then_some(id);
                if let Some(c) = self.conn(id).filter(|_| waiter.is_some()) {
                    c.busy = true;
                }
                match self.terminate_session(sid, waiter) {
                    Err(e) => {
                        if let Some(c) = self.conn(id) {
                            c.busy = false;
                        }
                        Outcome::Now(Err(e))
                    }
                    Ok(()) if waiter.is_some() => Outcome::Later,
                    Ok(()) => Outcome::Now(Ok(json!({"state": "terminating"}))),
                }
            }
            Method::LoadDeferredSubsystem { name, session } => {
                match self.load_deferred_subsystem(&name, session, (!oneway).then_some(id)) {
                    Ok(Some(pid)) => Outcome::Now(Ok(json!({ "pid": pid }))),
                    // A session's keeper starts it; the reply comes with its pid.
                    Ok(None) if oneway => Outcome::Now(Ok(json!({}))),
                    Ok(None) => {
                        if let Some(c) = self.conn(id) {
                            c.busy = true;
                        }
                        Outcome::Later
                    }
                    Err(e) => Outcome::Now(Err(e)),
                }
            }
            Method::QueueFileRename {
                source,
                destination,
                replace_existing,
            } => Outcome::Now(self.queue_file_rename(
                &source,
                destination.as_deref(),
                replace_existing,
            )),
            // Handled before dispatch (the reply precedes the action).
            Method::Shutdown(_) => Outcome::Now(Ok(json!({}))),
        }
    }

    fn shutdown_requested(&mut self, action: Action, uid: u32) {
        let cmd = match action {
            Action::Reboot => sys::RebootCmd::Reboot,
            Action::Poweroff => sys::RebootCmd::Poweroff,
            Action::Halt => sys::RebootCmd::Halt,
        };
        log::info!("shutdown ({action:?}) requested over the control socket by uid {uid}");
        // Flush now: the stop may not come back to the loop in system mode.
        if let Some(server) = self.control.server.as_mut() {
            for c in server.conns.values_mut() {
                c.flush();
            }
        }
        match self.mode {
            Mode::System => self.request_stop(stop::Goal::Machine(cmd)),
            Mode::Container | Mode::Subreaper => self.request_stop(stop::Goal::Exit),
        }
    }

    /// MoveFileEx(MOVEFILE_DELAY_UNTIL_REBOOT): append to the rename queue under its lock.
    fn queue_file_rename(
        &mut self,
        source: &str,
        destination: Option<&str>,
        replace: bool,
    ) -> Result<Value, MethodError> {
        let queue = self.cfg.pending_file_rename_operations.queue.clone();
        // An empty destination means delete, as in the queue file itself.
        let dst = destination
            .filter(|d| !d.is_empty())
            .map(std::path::Path::new);
        match crate::rename_queue::append_nowait(&queue, std::path::Path::new(source), dst, replace)
        {
            Ok(()) => {
                log::info!(
                    "queued for the next boot: {source} -> {}",
                    destination.unwrap_or("(delete)")
                );
                Ok(json!({}))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let ok = |p: &str| {
                    p.starts_with('/')
                        && !p.contains('\0')
                        && p.len() <= crate::rename_queue::MAX_PATH_LEN
                };
                let which = if ok(source) { "destination" } else { "source" };
                Err(MethodError::invalid(which, e.to_string()))
            }
            // Full (issue 12): the queue may not grow past its limit.
            Err(e) if crate::rename_queue::queue_full(&e).is_some() => {
                Err(MethodError::limit_reached(
                    "rename-queue-bytes",
                    crate::rename_queue::MAX_QUEUE_SIZE,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(MethodError::failed(
                format!("{} is locked by another writer; try again", queue.display()),
            )),
            Err(e) => Err(MethodError::failed(format!(
                "failed to append to {}: {e}",
                queue.display()
            ))),
        }
    }

    fn status_json(&self) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "start_us": p.start_us,
                    "duration_us": p.duration_us,
                    "result": p.result,
                })
            })
            .collect();
        let subs = &self.cfg.subsystems;
        let running = |name: &str| {
            self.children.iter().find_map(|(pid, c)| match &c.role {
                Role::Subsystem(n) if n.eq_ignore_ascii_case(name) => Some(*pid),
                _ => None,
            })
        };
        let mut subsystems = Vec::new();
        let required = subs
            .required
            .iter()
            .filter(|n| !smss_config::Subsystems::is_debug(n));
        for (kind, name) in required
            .map(|n| ("required", n))
            .chain(subs.optional.iter().map(|n| ("optional", n)))
        {
            let pid = running(name);
            let state = match (pid, kind) {
                (Some(_), _) => "running",
                (None, "optional") => "deferred",
                (None, _) => "stopped",
            };
            let mut entry = json!({
                "name": name, "session": 0, "kind": kind, "pid": pid, "state": state,
            });
            // Extension: when it started, became ready and ended (`supervise::timeline`).
            if let (Some(obj), Some(Value::Object(times))) =
                (entry.as_object_mut(), self.timeline.subsystem_fields(name))
            {
                obj.extend(times);
            }
            subsystems.push(entry);
        }
        for s in self.sessions.sessions.values() {
            for (pid, m) in &s.members {
                if Some(*pid) != s.leader {
                    subsystems.push(json!({
                        "name": m.name, "session": s.id, "kind": "session", "pid": pid,
                        "state": "running",
                    }));
                }
            }
        }
        json!({
            "mode": self.mode.as_str(),
            "uptime_us": self.uptime_us(),
            "phases": phases,
            "subsystems": subsystems,
            "sessions": self.sessions_json(),
            // Extensions for `smctl analyze`, on the phases' clock.
            "kernel_us": (self.mode == Mode::System)
                .then(super::timeline::kernel_us)
                .flatten(),
            "commands": self.timeline.commands_json(),
            "session_creations": self.timeline.sessions_json(),
            "bugcheck": self.timeline.bugcheck_json(),
        })
    }
}

/// The count of denied calls not logged in the last interval, if any.
fn log_unlogged_denials(count: Option<u64>) {
    if let Some(n) = count.filter(|n| *n > 0) {
        log::info!(
            "control: {n} more denied calls not logged in {} s",
            DENIAL_LOG_INTERVAL.as_secs()
        );
    }
}
