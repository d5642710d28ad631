//! Creating a session: validate a CreateSession request, start its `smss-session` instance.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use smss_config::Ready;

use super::link::InstanceLink;
use super::table::{instance_deadline, Session, SessionState};
use crate::control::instance::{self, SessionParams, SubsystemSpec, MAX_PARAMS};
use crate::control::manager::{CreateSession, MethodError};
use crate::os::cgroup::{self, CGROUP_ROOT};
use crate::os::users;
use crate::supervise::boot::DEFAULT_READY_TIMEOUT;
use crate::supervise::{Child, Role, Supervisor, Timer, Token};
use crate::sys::process::{self, Detach, SpawnSpec};

/// `KEY=VALUE` strings of a request.
fn parse_environment(list: &[String]) -> Result<Vec<(String, String)>, MethodError> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(MethodError::invalid(
                "environment",
                format!("{kv:?} is not KEY=VALUE"),
            )),
        })
        .collect()
}

impl Supervisor {
    /// The plan is done: one interactive session per `[[seats]]` entry when `[sessions]
    /// initial-command` is set (the NumberOfInitialSessions analogue), then whatever
    /// CreateSession queued during the boot.
    pub(crate) fn on_boot_complete(&mut self) {
        if self.cfg.sessions.initial_command.is_some() {
            let seats: Vec<String> = self.cfg.seats.iter().map(|s| s.name.clone()).collect();
            for seat in seats {
                let req = CreateSession {
                    seat: Some(seat.clone()),
                    ..Default::default()
                };
                if let Err(e) = self.create_session(req, None, true) {
                    log::error!(
                        "failed to create the session of seat {seat}: {}",
                        e.parameters
                    );
                }
            }
        } else if !self.cfg.seats.is_empty() {
            log::info!("no [sessions] initial-command: the seats get no session at boot");
        }
        self.start_queued_sessions();
        self.resume_clients();
    }

    /// Validate a CreateSession request and queue it. The reply (to `waiter`) comes when
    /// the instance has reported.
    pub(crate) fn create_session(
        &mut self,
        req: CreateSession,
        waiter: Option<u32>,
        respawn: bool,
    ) -> Result<u32, MethodError> {
        if self.stopping() {
            return Err(MethodError::failed("smss is stopping"));
        }
        let max = self.cfg.sessions.max_sessions;
        if self.sessions.sessions.len() >= max as usize {
            return Err(MethodError::limit_reached("max-sessions", max.into()));
        }
        let seat = match &req.seat {
            Some(name) => Some(
                self.cfg
                    .seats
                    .iter()
                    .find(|s| s.name == *name)
                    .cloned()
                    .ok_or_else(|| {
                        MethodError::invalid("seat", format!("no seat {name} in [[seats]]"))
                    })?,
            ),
            None => None,
        };
        if let Some(seat) = &seat {
            let taken = self
                .sessions
                .sessions
                .values()
                .any(|s| s.params.seat.as_deref() == Some(seat.name.as_str()));
            if taken && !req.allow_shared_seat {
                return Err(MethodError::limit_reached("seat", 1));
            }
        }
        let tty = req
            .tty
            .clone()
            .or_else(|| seat.as_ref().map(|s| s.tty.display().to_string()));
        if let Some(t) = &tty {
            if !Path::new(t).is_absolute() {
                return Err(MethodError::invalid("tty", "must be an absolute path"));
            }
            use std::os::unix::fs::FileTypeExt;
            match fs::metadata(t) {
                Ok(m) if m.file_type().is_char_device() => {}
                Ok(_) => {
                    return Err(MethodError::invalid(
                        "tty",
                        format!("{t} is not a character device"),
                    ))
                }
                Err(e) => return Err(MethodError::invalid("tty", format!("{t}: {e}"))),
            }
        }
        let user = match &req.user {
            Some(u) => Some(
                users::find_user(u)
                    .ok_or_else(|| {
                        MethodError::invalid("user", format!("no user {u} in /etc/passwd"))
                    })?
                    .name,
            ),
            None => None,
        };
        let command = match (&req.command, &self.cfg.sessions.initial_command) {
            (Some(c), _) if !c.is_empty() && c.iter().all(|a| !a.contains('\0')) => c.clone(),
            (Some(_), _) => {
                return Err(MethodError::invalid(
                    "command",
                    "must be a non-empty list of arguments without NUL",
                ))
            }
            (None, Some(spec)) => spec.argv.clone(),
            (None, None) => {
                return Err(MethodError::invalid(
                    "command",
                    "no command given and [sessions] initial-command is not set",
                ))
            }
        };
        let environment = parse_environment(&req.environment)?;
        if req.pids_max.is_some() && !cgroup::pids_controller_available() {
            // A limit that would not be enforced is refused, not accepted silently.
            return Err(MethodError::invalid(
                "pids_max",
                format!(
                    "no cgroup2 pids controller at {CGROUP_ROOT}: the limit cannot be enforced"
                ),
            ));
        }
        let mut subsystems = Vec::new();
        for name in &self.cfg.sessions.session_subsystems {
            let Some((name, spec)) = self.cfg.subsystems.get_entry(name) else {
                log::warn!("session subsystem {name} has no definition in [subsystems]");
                continue;
            };
            subsystems.push(SubsystemSpec {
                name: name.to_string(),
                argv: spec.argv.clone(),
                notify: spec.ready == Ready::Notify,
                ready_timeout_ms: spec
                    .ready_timeout
                    .unwrap_or(DEFAULT_READY_TIMEOUT)
                    .as_millis() as u64,
                critical: spec.is_critical(true),
            });
        }
        let label = match req.command {
            Some(_) => "the session's command",
            None => "[sessions] initial-command",
        };
        if let Some(what) =
            instance::missing_tty_user(tty.as_deref(), &environment, label, &command, &subsystems)
        {
            return Err(MethodError::invalid(
                "tty",
                format!("{what} uses %TTY% but the session has no terminal: give a tty or a seat"),
            ));
        }
        let id = loop {
            self.sessions.last_id = self.sessions.last_id.checked_add(1).unwrap_or(1);
            if !self.sessions.sessions.contains_key(&self.sessions.last_id) {
                break self.sessions.last_id;
            }
        };
        let runtime_dir = Path::new(smss_config::plan::SESSIONS_DIRECTORY).join(id.to_string());
        let params = SessionParams {
            id,
            seat: seat.map(|s| s.name),
            tty,
            user,
            command,
            environment,
            subsystems,
            runtime_dir: runtime_dir.display().to_string(),
            pids_max: req.pids_max,
        };
        self.sessions.sessions.insert(
            id,
            Session {
                id,
                params,
                state: SessionState::Queued,
                created_us: self.uptime_us(),
                created: Instant::now(),
                leader: None,
                members: BTreeMap::new(),
                strays: Default::default(),
                keeper: false,
                slot: false,
                spawning: Vec::new(),
                cgroup: None,
                instance: None,
                watch: None,
                create_waiter: waiter,
                terminate_waiters: Vec::new(),
                terminate_requested: false,
                by_request: false,
                killed: false,
                respawn,
                reason: String::new(),
            },
        );
        self.sessions.queue.push_back(id);
        if let Some(s) = self.sessions.sessions.get(&id) {
            self.timeline
                .session_created(id, s.params.seat.as_deref(), s.created_us);
        }
        Ok(id)
    }

    /// Start instances for queued sessions while slots are free (not before the boot is
    /// done, never during a stop).
    pub(crate) fn start_queued_sessions(&mut self) {
        if !self.boot.done || self.stopping() {
            return;
        }
        let limit = self.cfg.sessions.parallel_session_creation.max(1) as usize;
        while self.sessions.instances < limit {
            let Some(id) = self.sessions.queue.pop_front() else {
                return;
            };
            match self.spawn_instance(id) {
                Ok(()) => self.sessions.instances += 1,
                Err(why) => {
                    log::error!("session {id}: {why}");
                    let now = self.uptime_us();
                    self.timeline
                        .session_done(id, now, &format!("failed: {why}"));
                    if let Some(s) = self.sessions.sessions.remove(&id) {
                        self.answer_session_waiters(s, Err(MethodError::failed(why)));
                    }
                }
            }
        }
    }

    /// Hand the session's parameters to the spare instance, or start `smss-session --id ID
    /// --fd N` with them waiting in its socket.
    fn spawn_instance(&mut self, id: u32) -> Result<(), String> {
        let Some(s) = self.sessions.sessions.get(&id) else {
            return Err("vanished from the queue".into());
        };
        let doc = serde_json::to_vec(&s.params).map_err(|e| e.to_string())?;
        if doc.len() > MAX_PARAMS {
            return Err(format!(
                "session parameters are larger than {MAX_PARAMS} bytes"
            ));
        }
        let mut doc = doc;
        doc.push(b'\n');
        if let Some(spare) = self.take_spare() {
            // Non-blocking: PID 1 never waits on it (the document fits the socket buffer,
            // so this takes it whole). A spare that died meanwhile cannot take it: it is
            // reaped as a spare, and the session gets an instance of its own.
            match (&spare.sock).write_all(&doc) {
                Ok(()) => {
                    log::debug!(
                        "session {id}: handed to the spare smss-session (pid {})",
                        spare.pid
                    );
                    self.link_instance(id, spare.sock, spare.pid);
                    // The next spare starts now, while this one sets the session up: PID 1
                    // has nothing to do for the request until the report, so the exec it
                    // waits for is hidden in the instance's work (after the reply, it
                    // would hold up the client's next call instead).
                    self.ensure_spare();
                    return Ok(());
                }
                Err(e) => log::warn!(
                    "session {id}: failed to hand it to the spare smss-session (pid {}): {e}",
                    spare.pid
                ),
            }
        }
        let io = |e: std::io::Error| format!("failed to create the report socket: {e}");
        let (ours, theirs) = UnixStream::pair().map_err(io)?;
        // Non-blocking before the write: PID 1 must never wait on it (the document fits the
        // socket buffer, so this takes it whole). One line: the link stays open for the
        // keeper's commands.
        ours.set_nonblocking(true).map_err(io)?;
        (&ours).write_all(&doc).map_err(io)?;
        let spec = self.instance_spec(Some(id), theirs.as_raw_fd());
        let pid = process::spawn(&spec).map_err(|e| e.to_string())?.as_raw();
        drop(theirs);
        log::debug!("session {id}: smss-session started (pid {pid})");
        self.link_instance(id, ours, pid);
        Ok(())
    }

    /// Session `id`'s instance (`pid`, with the parameters on `sock`) runs: watch its report.
    fn link_instance(&mut self, id: u32, sock: UnixStream, pid: i32) {
        self.children.insert(
            pid,
            Child {
                name: format!("smss-session {id}"),
                role: Role::SessionInstance(id),
                critical: false,
            },
        );
        if let Err(e) = self.watch(sock.as_fd(), Token::SessionReport(id)) {
            // Its report is still read when it exits.
            log::warn!("session {id}: failed to watch the report socket: {e}");
        }
        let Some(s) = self.sessions.sessions.get_mut(&id) else {
            return;
        };
        let deadline = instance_deadline(&s.params);
        s.state = SessionState::Starting;
        s.slot = true;
        s.instance = Some(InstanceLink {
            sock,
            pid,
            buf: Vec::new(),
        });
        self.add_timer(Instant::now() + deadline, Timer::SessionStart(id));
    }

    /// `smss-session [--id ID] --fd FD --log LEVEL`: an instance for session `id`, or a spare
    /// (no id: it takes the id from its parameters), reading its parameters on `fd`.
    pub(super) fn instance_spec(&self, id: Option<u32>, fd: std::os::fd::RawFd) -> SpawnSpec {
        let program = self.session_binary.clone();
        let mut argv = vec![program.display().to_string()];
        if let Some(id) = id {
            argv.extend(["--id".into(), id.to_string()]);
        }
        argv.extend([
            "--fd".into(),
            fd.to_string(),
            "--log".into(),
            log::max_level().as_str().to_ascii_lowercase(),
        ]);
        SpawnSpec {
            argv,
            program,
            env: self.env.vars().to_vec(),
            detach: Detach::Session,
            stdio: None,
            pass_fd: Some(fd),
            cwd: None,
        }
    }

    /// The session's instance no longer needs its creation slot (it reported or exited).
    pub(super) fn release_slot(&mut self, id: u32) {
        if let Some(s) = self.sessions.sessions.get_mut(&id) {
            if std::mem::take(&mut s.slot) {
                self.sessions.instances = self.sessions.instances.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_strings() {
        assert_eq!(
            parse_environment(&["A=1".into(), "B==x".into(), "C=".into()]).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "=x".into()),
                ("C".into(), "".into())
            ]
        );
        assert!(parse_environment(&["=1".into()]).is_err());
        assert!(parse_environment(&["NOEQUALS".into()]).is_err());
    }
}
