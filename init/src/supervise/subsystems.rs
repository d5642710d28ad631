//! Subsystems: Required ones at boot, Optional ones on request (SmLoadDeferedSubsystem).

use smss_config::{CommandSpec, Ready};

use super::boot::{Step, Wait, DEFAULT_READY_TIMEOUT};
use super::sessions::SessionState;
use super::{Child, Role, Supervisor, Timer};
use crate::control::instance::{self, KeeperCommand, Member};
use crate::control::manager::MethodError;
use crate::os::{procs, users};
use crate::sys::process::{self, Detach, SpawnSpec};

impl Supervisor {
    /// SubSystems\Required, in order, each ready before the next. "debug" was dropped by the
    /// planner, as Windows skips it.
    pub(super) fn start_required(&mut self, subsystems: &[(String, CommandSpec)]) -> Step {
        while let Some((name, spec)) = subsystems.get(self.boot.step) {
            self.boot.step += 1;
            let critical = spec.is_critical(true);
            let mut extra = Vec::new();
            if spec.ready == Ready::Notify {
                match self.open_notify_socket().ok() {
                    Some(address) => extra.push(("NOTIFY_SOCKET".to_string(), address)),
                    // It could never say READY=1: fail now rather than after the timeout.
                    None if critical => {
                        self.boot
                            .problems
                            .push(format!("subsystem {name}: no readiness socket"));
                        return Step::Fatal(name.clone());
                    }
                    None => {
                        self.problem(format!(
                            "subsystem {name}: no readiness socket; not started"
                        ));
                        continue;
                    }
                }
            }
            let now = self.uptime_us();
            let spawned = self.spawn_command(
                spec,
                name,
                Role::Subsystem(name.clone()),
                critical,
                Detach::Session,
                &extra,
            );
            let notify = spec.ready == Ready::Notify;
            match &spawned {
                Ok(pid) if notify => {
                    self.timeline
                        .subsystem_started(name, Some(*pid), true, now, "waiting")
                }
                Ok(pid) => self
                    .timeline
                    .subsystem_started(name, Some(*pid), false, now, "running"),
                Err(e) => self.timeline.subsystem_started(
                    name,
                    None,
                    notify,
                    now,
                    &format!("failed: {e}"),
                ),
            }
            match spawned {
                Ok(pid) => {
                    log::info!("subsystem {name} started (pid {pid})");
                    if spec.ready == Ready::Notify {
                        let timeout = spec.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT);
                        self.add_timer(Self::deadline_after(timeout), Timer::Readiness { pid });
                        return Step::Wait(Wait::Ready {
                            pid,
                            name: name.clone(),
                        });
                    }
                }
                Err(e) if critical => {
                    self.boot.problems.push(format!("subsystem {name}: {e}"));
                    return Step::Fatal(name.clone());
                }
                Err(e) => self.problem(format!("subsystem {name}: {e}")),
            }
        }
        Step::Done
    }

    /// SmLoadDeferedSubsystem: an Optional subsystem, in session 0 (our child) or inside an
    /// interactive session (its cgroup, its environment). The running one's pid if started;
    /// None when a session's keeper starts it: `waiter` then gets the pid.
    pub(crate) fn load_deferred_subsystem(
        &mut self,
        name: &str,
        session: Option<u32>,
        waiter: Option<u32>,
    ) -> Result<Option<i32>, MethodError> {
        let optional = self
            .cfg
            .subsystems
            .optional
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name));
        let Some((name, spec)) = self
            .cfg
            .subsystems
            .get_entry(name)
            .filter(|_| optional)
            .map(|(n, s)| (n.to_string(), s.clone()))
        else {
            return Err(MethodError::no_such_subsystem(name));
        };
        match session.filter(|s| *s != 0) {
            None => {
                let running = self.children.iter().find_map(|(pid, c)| match &c.role {
                    Role::Subsystem(n) if n.eq_ignore_ascii_case(&name) => Some(*pid),
                    _ => None,
                });
                if let Some(pid) = running {
                    return Ok(Some(pid));
                }
                // No NOTIFY_SOCKET: the reply does not wait for readiness, and the socket that
                // exists during boot belongs to the subsystem the boot waits for (a READY=1
                // from this one, running as root, would count as that one's).
                let extra = Vec::new();
                let critical = spec.is_critical(false);
                let now = self.uptime_us();
                let pid = self
                    .spawn_command(
                        &spec,
                        &name,
                        Role::Subsystem(name.clone()),
                        critical,
                        Detach::Session,
                        &extra,
                    )
                    .map_err(|e| MethodError::failed(e.to_string()))?;
                log::info!("subsystem {name} started on request (pid {pid})");
                self.timeline
                    .subsystem_started(&name, Some(pid), false, now, "running");
                Ok(Some(pid))
            }
            Some(id) => {
                let s = self
                    .sessions
                    .sessions
                    .get(&id)
                    .filter(|s| s.state == SessionState::Active)
                    .ok_or_else(|| MethodError::no_such_session(id))?;
                if let Some((pid, _)) = s
                    .members
                    .iter()
                    .find(|(_, m)| m.name.eq_ignore_ascii_case(&name))
                {
                    return Ok(Some(*pid));
                }
                let user = s.params.user.as_deref().and_then(users::find_user);
                let env = instance::session_environment(
                    self.env.vars().to_vec(),
                    &s.params,
                    user.as_ref(),
                );
                let argv = instance::expand_argv(&spec.argv, &env).map_err(MethodError::failed)?;
                if s.keeper {
                    // Without a cgroup: its keeper starts it, so that it (and whatever it
                    // forks) stays below the keeper like the rest of the session.
                    let asked = s
                        .spawning
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&name));
                    let command = KeeperCommand::Spawn {
                        name: name.clone(),
                        argv,
                        env: env.vars().to_vec(),
                        user: s.params.user.clone(),
                    };
                    if let Some(s) = self.sessions.sessions.get_mut(&id) {
                        s.spawning.push((name, waiter));
                    }
                    if !asked {
                        self.tell_keeper(id, &command);
                    }
                    return Ok(None);
                }
                // Through `smss-session exec`, which joins the cgroup (and drops to the
                // session's user) before exec, so nothing it forks escapes the session. Its
                // exec failing is not seen here: as root, what cannot run is refused first.
                if user.as_ref().map_or(true, |u| u.uid == 0) {
                    let first = argv.first().map_or("", String::as_str);
                    process::check_root_can_execute(first, env.get("PATH"))
                        .map_err(MethodError::failed)?;
                }
                let program = self.session_binary.clone();
                let mut full = vec![program.display().to_string(), "exec".to_string()];
                if let Some(cg) = &s.cgroup {
                    full.extend(["--cgroup".to_string(), cg.display().to_string()]);
                }
                if let Some(u) = &s.params.user {
                    full.extend(["--user".to_string(), u.clone()]);
                }
                full.push("--".into());
                full.extend(argv);
                let spawn = SpawnSpec {
                    program,
                    argv: full,
                    env: env.vars().to_vec(),
                    detach: Detach::Session,
                    stdio: None,
                    pass_fd: None,
                    cwd: None,
                };
                let pid = process::spawn(&spawn)
                    .map_err(|e| MethodError::failed(e.to_string()))?
                    .as_raw();
                log::info!("session {id}: subsystem {name} started on request (pid {pid})");
                self.children.insert(
                    pid,
                    Child {
                        name: name.clone(),
                        role: Role::SessionMember {
                            session: id,
                            leader: false,
                        },
                        critical: false,
                    },
                );
                if let Some(s) = self.sessions.sessions.get_mut(&id) {
                    s.members.insert(
                        pid,
                        Member {
                            pid,
                            name,
                            critical: false,
                            // Our child, not reaped: the pid is this process's.
                            start_time: procs::read(pid).map_or(0, |p| p.start_time),
                        },
                    );
                }
                Ok(Some(pid))
            }
        }
    }
}
