//! The boot runner: walks the BootPlan inside the event loop, so signals, reaping and the
//! control socket keep working while a BootExecute command or a subsystem's readiness is
//! awaited. Each phase logs `phase <name> done in <N> us` (or `failed: <why>`).

use std::time::{Duration, Instant};

use smss_config::plan::{BootPlan, Phase};
use smss_config::CommandSpec;

use super::{PhaseRecord, Role, Supervisor, Timer};
use crate::mode::Mode;
use crate::os::notify::{self, Notification};
use crate::os::procs;
use crate::phases;
use crate::sys::process::Detach;
use crate::sys::{ExitStatus, RealSys, Sys};

/// How long a notify subsystem may take when its entry gives no `ready-timeout`.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the runner waits for before it may take the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    Nothing,
    /// A synchronous command (BootExecute, SetupExecute, Execute) must exit.
    Exit {
        pid: i32,
        line: String,
        fatal: bool,
    },
    /// A required subsystem must say READY=1.
    Ready {
        pid: i32,
        name: String,
    },
}

/// Where the walk through the plan is.
#[derive(Debug)]
pub struct BootState {
    phases: Vec<Phase>,
    index: usize,
    /// Position inside the current phase's list (commands, subsystems).
    pub(super) step: usize,
    wait: Wait,
    phase_start: Instant,
    /// Non-fatal problems of the current phase, for its summary line.
    pub(super) problems: Vec<String>,
    pub done: bool,
    /// From boot-drivers to volumes: module tables, what is loaded, the uevent socket.
    devices: Option<crate::devices::DeviceBoot>,
    /// Mount points of volumes whose device never appeared: not remounted read-write.
    missing_volumes: Vec<std::path::PathBuf>,
}

impl BootState {
    pub fn new(plan: BootPlan) -> BootState {
        BootState {
            phases: plan.phases,
            index: 0,
            step: 0,
            wait: Wait::Nothing,
            phase_start: Instant::now(),
            problems: Vec::new(),
            done: false,
            devices: None,
            missing_volumes: Vec::new(),
        }
    }
}

/// The outcome of running (part of) one phase.
pub(super) enum Step {
    /// The phase is over; its problems (if any) are in `BootState::problems`.
    Done,
    Skipped(&'static str),
    /// Run and logged before the loop existed (early mounts, in `main`): just move on.
    AlreadyDone,
    /// Come back when the wait is satisfied.
    Wait(Wait),
    /// A fatal failure: bugcheck with this process name.
    Fatal(String),
}

/// Phases that write under /run or /var; a minimal container init leaves those alone.
fn writes_state(p: &Phase) -> bool {
    matches!(
        p,
        Phase::ObjectDirectories { .. }
            | Phase::DosDevices { .. }
            | Phase::SessionsDirectory { .. }
            | Phase::PendingRenames { .. }
            | Phase::GeneratedEnvironment { .. }
    )
}

impl Supervisor {
    /// Run phases until one has to wait, the plan ends, or a bugcheck stops the boot.
    pub(crate) fn boot_continue(&mut self) {
        while !self.boot.done && self.boot.wait == Wait::Nothing && !self.stopping() {
            let Some(phase) = self.boot.phases.get(self.boot.index).cloned() else {
                self.boot.done = true;
                log::info!("boot complete in {} us", self.uptime_us());
                // Short-lived containers exit before this fires and pay nothing for it.
                self.add_timer(
                    Self::deadline_after(std::time::Duration::from_millis(50)),
                    Timer::TrimWorkingSet,
                );
                self.on_boot_complete();
                return;
            };
            if self.boot.step == 0 && self.boot.problems.is_empty() {
                self.boot.phase_start = Instant::now();
            }
            let step = if self.mode != Mode::System && phase.machine_only() {
                Step::Skipped("skipped: not the machine's init")
            } else if self.minimal && writes_state(&phase) {
                Step::Skipped("skipped: no configuration file")
            } else {
                self.run_phase(&phase)
            };
            match step {
                Step::Done => self.end_phase(phase.name(), None),
                Step::Skipped(why) => self.end_phase(phase.name(), Some(why)),
                Step::AlreadyDone => {
                    self.boot.index += 1;
                    self.boot.step = 0;
                }
                Step::Wait(w) => self.boot.wait = w,
                Step::Fatal(who) => {
                    let why = self.boot.problems.join("; ");
                    self.record_phase(phase.name(), format!("failed: {why}"));
                    log::error!("phase {} failed: {why}", phase.name());
                    self.bugcheck(&who, crate::sys::getpid(), ExitStatus::Exited(1));
                    return;
                }
            }
        }
    }

    fn end_phase(&mut self, name: &str, skipped: Option<&str>) {
        let problems = std::mem::take(&mut self.boot.problems);
        let result = match (skipped, problems.is_empty()) {
            (Some(why), _) => why.to_string(),
            (None, true) => "ok".to_string(),
            (None, false) => format!("done with errors: {}", problems.join("; ")),
        };
        let us = self.boot.phase_start.elapsed().as_micros();
        match skipped {
            Some(why) => log::info!("phase {name} {why}"),
            None if problems.is_empty() => log::info!("phase {name} done in {us} us"),
            None => log::info!("phase {name} done in {us} us ({} problems)", problems.len()),
        }
        self.record_phase(name, result);
        self.boot.index += 1;
        self.boot.step = 0;
    }

    fn record_phase(&mut self, name: &str, result: String) {
        let start = self
            .boot
            .phase_start
            .saturating_duration_since(self.started)
            .as_micros() as u64;
        self.phases.push(PhaseRecord {
            name: name.to_string(),
            start_us: start,
            duration_us: self.boot.phase_start.elapsed().as_micros() as u64,
            result,
        });
    }

    pub(super) fn problem(&mut self, p: impl std::fmt::Display) {
        let text = p.to_string();
        log::warn!("{text}");
        self.boot.problems.push(text);
    }

    fn run_phase(&mut self, phase: &Phase) -> Step {
        let sys = RealSys;
        match phase {
            // Done, logged and recorded by `main` before the configuration could be read.
            Phase::EarlyMounts => Step::AlreadyDone,
            Phase::BootDrivers { modules, coldplug } => {
                let (devices, errors) = crate::devices::boot_drivers(&sys, modules, *coldplug);
                for e in errors {
                    self.problem(e);
                }
                self.boot.devices = Some(devices);
                Step::Done
            }
            Phase::Volumes { volumes } => self.mount_volumes(volumes),
            Phase::ObjectDirectories {
                dirs,
                protection_mode,
            } => {
                for e in phases::object_directories::run(&sys, dirs, *protection_mode) {
                    self.problem(e);
                }
                Step::Done
            }
            Phase::Environment { vars } => {
                let inherited_path = self.env.get("PATH").is_some();
                for (name, value) in vars {
                    if is_builtin_default(name, value, inherited_path) {
                        continue;
                    }
                    // Past execve's limits: left out and logged, never a huge allocation.
                    if let Err(e) = self.env.apply(name, value) {
                        self.problem(format!("environment variable {name} left out: {e}"));
                    }
                }
                Step::Done
            }
            Phase::DosDevices { directory, links } => {
                let mut expanded: Vec<(String, String)> = Vec::new();
                for (n, t) in links {
                    match self.env.expand(t) {
                        Ok(t) => expanded.push((n.clone(), t)),
                        Err(e) => self.problem(format!("dos device {n} left out: its target {e}")),
                    }
                }
                match phases::dos_devices::run(&sys, directory, &expanded) {
                    Ok(()) => Step::Done,
                    Err(e) => self.fatal_or_problem("dos-devices", e),
                }
            }
            Phase::SessionsDirectory { path } => match sys.create_dir_all(path, 0o755) {
                Ok(()) => Step::Done,
                Err(e) => self.fatal_or_problem(
                    "sessions-directory",
                    format!("failed to create {}: {e}", path.display()),
                ),
            },
            Phase::BootExecute { commands } => self.run_commands("boot-execute", commands),
            Phase::VolumesReadWrite { volumes, root } => {
                let volumes: Vec<_> = volumes
                    .iter()
                    .filter(|v| !self.boot.missing_volumes.contains(&v.mountpoint))
                    .cloned()
                    .collect();
                // Machine-only (a container's read-only root is its user's choice).
                for e in phases::volumes::remount_read_write(&sys, &volume_tuples(&volumes), *root)
                {
                    self.problem(e);
                }
                Step::Done
            }
            Phase::PendingRenames { queue } => {
                if let Err(e) = phases::pending_renames::apply(&sys, queue) {
                    self.problem(e);
                }
                Step::Done
            }
            Phase::PagingFiles { files, volumes } => {
                let mut expanded = Vec::new();
                for f in files {
                    let mut f = f.clone();
                    match self.env.expand(&f.path.to_string_lossy()) {
                        Ok(p) => f.path = p.into(),
                        Err(e) => {
                            self.problem(format!("paging file {f} left out: its path {e}"));
                            continue;
                        }
                    }
                    expanded.push(f);
                }
                let files = expanded;
                for outcome in phases::paging_files::run(&sys, &files, volumes) {
                    if let Err(e) = outcome.result {
                        self.problem(e);
                    }
                }
                Step::Done
            }
            Phase::GeneratedEnvironment { path } => {
                // Like Windows' registry key: the configured variables (expanded) and the
                // generated facts, not whatever else smss inherited (a container runtime's
                // secrets must not land in a world-readable file).
                let mut vars: Vec<(String, String)> = self
                    .cfg
                    .environment
                    .iter()
                    .filter_map(|(k, _)| self.env.get(k).map(|v| (k.clone(), v.to_string())))
                    .collect();
                for (k, v) in phases::environment::generated_facts(&sys) {
                    self.env.set(&k, v.clone());
                    vars.push((k, v));
                }
                if let Err(e) = phases::environment::write_environment_file(&sys, path, &vars) {
                    self.problem(e);
                }
                Step::Done
            }
            Phase::Kmode { modules } => {
                let dir = phases::modules::modules_dir(&sys);
                let errors = phases::modules::load_modules(&sys, &dir, modules);
                if errors.is_empty() {
                    Step::Done
                } else {
                    for e in errors {
                        self.boot.problems.push(e.to_string());
                    }
                    Step::Fatal("smss:kmode".to_string())
                }
            }
            Phase::RequiredSubsystems { subsystems, .. } => self.start_required(subsystems),
            Phase::SetupExecute { commands } => self.run_commands("setup-execute", commands),
            Phase::InitialCommand { command } => self.start_initial(command.as_ref()),
            Phase::Execute { commands } => self.run_commands("execute", commands),
        }
    }

    /// `[[volumes]]`: wait for every device (each up to its device-timeout), then mount the
    /// ones found read-only, in file order. A missing device is a warning, or a bugcheck for a
    /// `required` volume (Windows: INACCESSIBLE_BOOT_DEVICE).
    fn mount_volumes(&mut self, volumes: &[smss_config::Volume]) -> Step {
        use crate::devices::VolumeDevice;
        let sys = RealSys;
        let mut devices = self.boot.devices.take().unwrap_or_default();
        let found = crate::devices::wait_for_volumes(&sys, &mut devices, volumes);
        let fstypes: Vec<String> = volumes.iter().map(|v| v.fstype.clone()).collect();
        devices.load_filesystems(&sys, &fstypes);
        // The module tables are large and only the boot needs them; hotplug helpers read their
        // own. The socket stays for hotplug when coldplug is on.
        devices.db = None;
        if let (true, Some(socket)) = (devices.coldplug, devices.socket.take()) {
            self.watch_uevents(socket, std::mem::take(&mut devices.seen));
        }
        let mut ready = Vec::new();
        let mut fatal = false;
        for (v, dev) in volumes.iter().zip(found) {
            match dev {
                VolumeDevice::Found(path) => {
                    log::info!(
                        "volume {}: {} is {}",
                        v.mountpoint.display(),
                        v.device,
                        path.display()
                    );
                    let mut v = v.clone();
                    v.device = path.to_string_lossy().into_owned();
                    ready.push(v);
                }
                VolumeDevice::Invalid(why) => {
                    self.boot.missing_volumes.push(v.mountpoint.clone());
                    self.problem(format!("failed to resolve device {}: {why}", v.device));
                }
                VolumeDevice::Missing => {
                    self.boot.missing_volumes.push(v.mountpoint.clone());
                    let msg = format!(
                        "volume {}: device {} did not appear within {}",
                        v.mountpoint.display(),
                        v.device,
                        smss_config::format_duration(v.device_timeout)
                    );
                    if v.required {
                        log::error!("{msg} (required)");
                        self.boot.problems.push(format!("{msg} (required)"));
                        fatal = true;
                    } else {
                        self.problem(msg);
                    }
                }
            }
        }
        if fatal {
            return Step::Fatal("smss:volumes".to_string());
        }
        for e in phases::volumes::mount_read_only(&sys, &volume_tuples(&ready)) {
            self.problem(e);
        }
        Step::Done
    }

    /// A failure Windows treats as fatal: a bugcheck on the machine, a logged problem in a
    /// container (where /run may be read-only and smss is not the machine's keeper).
    fn fatal_or_problem(&mut self, phase: &str, e: impl std::fmt::Display) -> Step {
        if self.mode == Mode::System {
            self.boot.problems.push(e.to_string());
            Step::Fatal(format!("smss:{phase}"))
        } else {
            self.problem(e);
            Step::Done
        }
    }

    /// BootExecute / SetupExecute / Execute: one at a time, each awaited unless `async`.
    fn run_commands(&mut self, phase: &'static str, commands: &[CommandSpec]) -> Step {
        while let Some(cmd) = commands.get(self.boot.step) {
            self.boot.step += 1;
            let line = cmd.display_line();
            // Taken before the spawn: the parent may run again well after the child started.
            let now = self.uptime_us();
            let spawned = self.spawn_command(
                cmd,
                &line,
                Role::Command(phase),
                false,
                Detach::Session,
                &[],
            );
            let (pid, result) = match &spawned {
                Ok(pid) => (Some(*pid), "running".to_string()),
                Err(e) if cmd.autocheck && e.exit_code() == 127 => {
                    (None, "skipped: program not found".to_string())
                }
                Err(e) => (None, format!("failed: {e}")),
            };
            self.timeline.command(phase, &line, pid, now, &result);
            match spawned {
                Ok(pid) if cmd.async_ => log::info!("{phase}: started {line} (pid {pid}, async)"),
                Ok(pid) => {
                    return Step::Wait(Wait::Exit {
                        pid,
                        line,
                        fatal: cmd.fatal,
                    })
                }
                Err(e) if cmd.autocheck && e.exit_code() == 127 => {
                    // Windows: "<name> program not found - skipping AUTOCHECK".
                    log::warn!("{} program not found - skipping AUTOCHECK", cmd.program());
                }
                Err(e) if cmd.fatal => {
                    self.boot.problems.push(format!("{line}: {e}"));
                    return Step::Fatal(format!("smss:{phase}"));
                }
                Err(e) => self.problem(format!("{phase}: {e}")),
            }
        }
        Step::Done
    }

    /// The session-0 initial command: `smss -- CMD` wins over the configured one.
    fn start_initial(&mut self, configured: Option<&CommandSpec>) -> Step {
        let (result, name, from_cli) = match (self.command.clone(), configured) {
            // `smss -- CMD`: bytes as given, no %VAR% expansion (tini's interface).
            (Some(argv), _) => {
                let name = argv
                    .first()
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (self.spawn_cli_command(&argv, &name), name, true)
            }
            (None, Some(spec)) => {
                let name = spec.program().to_string();
                let critical = spec.is_critical(true);
                let r = self.spawn_command(
                    spec,
                    &name,
                    Role::InitialCommand,
                    critical,
                    Detach::Session,
                    &[],
                );
                (r, name, false)
            }
            (None, None) => return Step::Skipped("skipped: no initial command"),
        };
        match result {
            Ok(pid) => {
                self.engine.initial_started(pid);
                log::info!("initial command {name} started (pid {pid})");
                Step::Done
            }
            Err(e) if from_cli => {
                // Like a shell: 127 not found, 126 not executable; the container ends here.
                log::error!("{e}");
                let now = self.now();
                let a = self
                    .engine
                    .initial_failed(e.exit_code(), now, crate::sys::has_children());
                self.execute(a);
                Step::Done
            }
            Err(e) => {
                self.boot.problems.push(e.to_string());
                Step::Fatal(name)
            }
        }
    }

    /// `smss -- CMD`: its own process group (the terminal's foreground), critical.
    fn spawn_cli_command(
        &mut self,
        argv: &[std::ffi::OsString],
        name: &str,
    ) -> Result<i32, crate::sys::process::SpawnError> {
        use crate::sys::process::{self, SpawnError};
        let Some(first) = argv.first() else {
            return Err(SpawnError::NotFound(name.to_string()));
        };
        let path = self.env.get("PATH").map(std::ffi::OsStr::new);
        let program = process::resolve_program_os(first, path)
            .ok_or_else(|| SpawnError::NotFound(name.to_string()))?;
        let envp = super::exec_environment(self.env.vars(), &self.raw_env);
        let pid = super::start_os(program, argv, &envp, Detach::ProcessGroup)?;
        self.adopt(pid, name, Role::InitialCommand, true);
        Ok(pid)
    }

    /// The reaper saw `pid` exit: resume the boot if it was waiting for it. True when the
    /// exit was the boot's to report.
    pub(crate) fn boot_on_exit(&mut self, pid: i32, status: ExitStatus, critical: bool) -> bool {
        match self.boot.wait.clone() {
            Wait::Exit {
                pid: waited,
                line,
                fatal,
            } if waited == pid => {
                self.boot.wait = Wait::Nothing;
                let phase = self
                    .boot
                    .phases
                    .get(self.boot.index)
                    .map(|p| p.name())
                    .unwrap_or("boot");
                if status == ExitStatus::Exited(0) {
                    log::info!("{phase}: {line} {status}");
                } else if fatal {
                    self.boot.problems.push(format!("{line} {status}"));
                    self.record_phase(phase, format!("failed: {line} {status}"));
                    log::error!("phase {phase} failed: {line} {status}");
                    self.bugcheck(&format!("smss:{phase}"), pid, status);
                    return true;
                } else {
                    self.problem(format!("{phase}: {line} {status}"));
                }
                self.boot_continue();
                true
            }
            Wait::Ready { pid: waited, name } if waited == pid => {
                self.cancel_timer(&Timer::Readiness { pid });
                self.close_notify_socket();
                self.boot.wait = Wait::Nothing;
                if critical {
                    // `on_exit` bugchecks; the boot must not go on to the next subsystem.
                    self.boot.problems.push(format!(
                        "subsystem {name} exited before it was ready ({status})"
                    ));
                    self.record_phase("required-subsystems", format!("failed: {name} {status}"));
                    return false;
                }
                self.problem(format!(
                    "subsystem {name} exited before it was ready ({status})"
                ));
                self.boot_continue();
                false
            }
            _ => false,
        }
    }

    /// A datagram on the readiness socket.
    pub(crate) fn on_notification(&mut self, n: Notification) {
        let Wait::Ready { pid, name } = self.boot.wait.clone() else {
            log::debug!(
                "notification from pid {} while nothing waits: {:?}",
                n.sender,
                n.fields
            );
            return;
        };
        // The socket is this subsystem's alone, so who sent it matters only for trust: the
        // one rule of os::notify::from_service.
        let from_it = notify::from_service(&n, pid, procs::parent_of);
        if !from_it || !n.ready() {
            log::debug!("notification from pid {}: {:?}", n.sender, n.fields);
            return;
        }
        self.cancel_timer(&Timer::Readiness { pid });
        self.close_notify_socket();
        let now = self.uptime_us();
        self.timeline.subsystem_ready(pid, now);
        log::info!("subsystem {name} is ready");
        self.boot.wait = Wait::Nothing;
        self.boot_continue();
    }

    pub(super) fn on_readiness_timeout(&mut self, pid: i32) {
        let Wait::Ready { pid: waited, name } = self.boot.wait.clone() else {
            return;
        };
        if waited != pid {
            return;
        }
        self.close_notify_socket();
        let now = self.uptime_us();
        let critical = self.children.get(&pid).is_some_and(|c| c.critical);
        // A critical one is killed now; any other runs on, unready.
        self.timeline.subsystem_not_ready(pid, now, critical);
        let msg = format!("subsystem {name} did not become ready in time");
        if critical {
            self.boot.problems.push(msg.clone());
            log::error!("{msg}");
            let _ = crate::sys::kill(pid, libc::SIGKILL);
            self.children.remove(&pid);
            self.record_phase("required-subsystems", format!("failed: {msg}"));
            self.bugcheck(&name, pid, ExitStatus::Killed(libc::SIGKILL));
        } else {
            self.boot.wait = Wait::Nothing;
            self.problem(msg);
            self.boot_continue();
        }
    }
}

fn volume_tuples(v: &[smss_config::Volume]) -> Vec<(String, std::path::PathBuf, String, String)> {
    v.iter()
        .map(|v| {
            (
                v.device.clone(),
                v.mountpoint.clone(),
                v.fstype.clone(),
                v.options.clone(),
            )
        })
        .collect()
}

/// The built-in `PATH` applies only where nothing was inherited (a machine's PID 1 started by
/// the kernel gets none): a container's or a caller's own `PATH` reaches the initial command
/// unchanged. A configuration file's own `PATH` applies, unless it is the built-in value
/// itself (which cannot be told apart from the default).
pub(crate) fn is_builtin_default(name: &str, value: &str, inherited_path: bool) -> bool {
    inherited_path && name == "PATH" && value == smss_config::DEFAULT_PATH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_path_applies_only_where_none_was_inherited() {
        let d = smss_config::DEFAULT_PATH;
        assert!(is_builtin_default("PATH", d, true));
        assert!(!is_builtin_default("PATH", d, false));
        assert!(!is_builtin_default("PATH", "/opt/bin", true));
        assert!(!is_builtin_default("HOME", d, true));
    }
}
