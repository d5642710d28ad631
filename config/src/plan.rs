//! The boot planner: a validated [`Config`] -> the ordered list of boot phases the executor runs.
//!
//! Pure and deterministic. Every phase is always present, even when it has nothing to do, so the
//! executor logs each one (`phase <name> done in <N> us`). The order is interface.md's
//! "Semantics that must hold" (research §1, §15). Values are raw: `%VAR%` references in commands
//! and links are expanded by the executor, against the environment built in the `environment`
//! phase (an extension of Windows, where BootExecute and DOS Devices are read before Environment).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::{CommandSpec, Config, PagingFile, Subsystems, Volume};

/// Per-session runtime directories live here (research §6).
pub const SESSIONS_DIRECTORY: &str = "/run/smss/sessions";
/// Generated environment facts (NUMBER_OF_PROCESSORS, ...) are written here (research §4).
pub const GENERATED_ENVIRONMENT: &str = "/run/smss/environment";

/// The whole boot, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    pub phases: Vec<Phase>,
}

/// One boot phase, with everything it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// `/proc`, `/sys`, `/dev`, `/run`, cgroup2 (system mode only).
    EarlyMounts,
    BootDrivers {
        modules: Vec<String>,
        /// Also load the modules for the devices present (modules.alias).
        coldplug: bool,
    },
    /// Every volume, mounted read-only.
    Volumes {
        volumes: Vec<Volume>,
    },
    ObjectDirectories {
        dirs: Vec<PathBuf>,
        protection_mode: u32,
    },
    /// Raw values, applied in order with [`crate::Environment::apply`].
    Environment {
        vars: Vec<(String, String)>,
    },
    /// Fatal on failure.
    DosDevices {
        directory: PathBuf,
        links: Vec<(String, String)>,
    },
    SessionsDirectory {
        path: PathBuf,
    },
    BootExecute {
        commands: Vec<CommandSpec>,
    },
    /// The volumes whose options do not say `ro`, remounted read-write; with `root` (no
    /// volume names `/`), `/` too when the kernel mounted it read-only.
    VolumesReadWrite {
        volumes: Vec<Volume>,
        root: bool,
    },
    PendingRenames {
        queue: PathBuf,
    },
    /// Never fatal.
    PagingFiles {
        files: Vec<PagingFile>,
        volumes: Vec<PathBuf>,
    },
    GeneratedEnvironment {
        path: PathBuf,
    },
    Kmode {
        modules: Vec<String>,
    },
    /// In order, each ready before the next; `debug` already dropped. Names as defined in
    /// `[subsystems]`.
    RequiredSubsystems {
        subsystems: Vec<(String, CommandSpec)>,
        /// The `debug` entries of `required`, as written: never started, defined or not.
        skipped: Vec<String>,
    },
    SetupExecute {
        commands: Vec<CommandSpec>,
    },
    /// Session 0's initial command (`session0-initial-command`).
    InitialCommand {
        command: Option<CommandSpec>,
    },
    Execute {
        commands: Vec<CommandSpec>,
    },
}

/// Every phase's name, in boot order (interface.md section 3 "Boot order"): what
/// [`Phase::name`] returns for the phases of a [`plan`], for the tests of every tier.
pub const PHASE_NAMES: &[&str] = &[
    "early-mounts",
    "boot-drivers",
    "volumes",
    "object-directories",
    "environment",
    "dos-devices",
    "sessions-directory",
    "boot-execute",
    "volumes-read-write",
    "pending-renames",
    "paging-files",
    "generated-environment",
    "kmode",
    "required-subsystems",
    "setup-execute",
    "initial-command",
    "execute",
];

impl Phase {
    /// The name used in logs and in `GetStatus`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::EarlyMounts => "early-mounts",
            Phase::BootDrivers { .. } => "boot-drivers",
            Phase::Volumes { .. } => "volumes",
            Phase::ObjectDirectories { .. } => "object-directories",
            Phase::Environment { .. } => "environment",
            Phase::DosDevices { .. } => "dos-devices",
            Phase::SessionsDirectory { .. } => "sessions-directory",
            Phase::BootExecute { .. } => "boot-execute",
            Phase::VolumesReadWrite { .. } => "volumes-read-write",
            Phase::PendingRenames { .. } => "pending-renames",
            Phase::PagingFiles { .. } => "paging-files",
            Phase::GeneratedEnvironment { .. } => "generated-environment",
            Phase::Kmode { .. } => "kmode",
            Phase::RequiredSubsystems { .. } => "required-subsystems",
            Phase::SetupExecute { .. } => "setup-execute",
            Phase::InitialCommand { .. } => "initial-command",
            Phase::Execute { .. } => "execute",
        }
    }

    /// Phases that touch the machine itself (mounts, modules, swap): only the machine's PID 1
    /// runs them; a container or subreaper skips them.
    pub fn machine_only(&self) -> bool {
        matches!(
            self,
            Phase::EarlyMounts
                | Phase::BootDrivers { .. }
                | Phase::Volumes { .. }
                | Phase::VolumesReadWrite { .. }
                | Phase::PagingFiles { .. }
                | Phase::Kmode { .. }
        )
    }

    /// What the phase does, in one line (without its items).
    fn summary(&self) -> String {
        match self {
            Phase::EarlyMounts => {
                "mount /proc, /sys, /dev, /run and cgroup2".into()
            }
            Phase::BootDrivers { coldplug: true, .. } => {
                "load kernel modules in order, then those of the devices present (coldplug; failures logged)".into()
            }
            Phase::BootDrivers { .. } => "load kernel modules in order (failures logged)".into(),
            Phase::Volumes { .. } => {
                "wait for each volume's device (device-timeout), mount read-only".into()
            }
            Phase::ObjectDirectories {
                protection_mode, ..
            } => format!(
                "create directories (protection-mode {protection_mode}: {})",
                if *protection_mode == 0 {
                    "liberal"
                } else {
                    "strict, umask 022"
                }
            ),
            Phase::Environment { .. } => {
                "set variables in order, %VAR% expanded against those set so far".into()
            }
            Phase::DosDevices { directory, .. } => {
                format!("create links in {} (fatal on failure)", directory.display())
            }
            Phase::SessionsDirectory { path } => format!("create {}", path.display()),
            Phase::BootExecute { .. } => {
                "run in order, session 0, waiting for each unless async (exit codes logged)".into()
            }
            Phase::VolumesReadWrite { .. } => "remount read-write".into(),
            Phase::PendingRenames { queue } => format!(
                "claim and apply the rename queue {} (never fatal)",
                queue.display()
            ),
            Phase::PagingFiles { volumes, .. } => format!(
                "create and enable swap files (never fatal; `?:` volumes: {})",
                join_paths(volumes)
            ),
            Phase::GeneratedEnvironment { path } => {
                format!("write generated facts to {}", path.display())
            }
            Phase::Kmode { .. } => "load kernel modules (fatal on failure)".into(),
            Phase::RequiredSubsystems { .. } => {
                "start in order, each ready before the next (critical)".into()
            }
            Phase::SetupExecute { .. } => "run in order, session 0".into(),
            Phase::InitialCommand { .. } => {
                "start session 0's initial command (critical unless critical = false)".into()
            }
            Phase::Execute { .. } => "run in order, session 0".into(),
        }
    }

    /// The phase's items, one line each.
    fn items(&self) -> Vec<String> {
        let commands = |c: &[CommandSpec]| c.iter().map(CommandSpec::display_line).collect();
        match self {
            Phase::EarlyMounts
            | Phase::SessionsDirectory { .. }
            | Phase::PendingRenames { .. }
            | Phase::GeneratedEnvironment { .. } => Vec::new(),
            Phase::BootDrivers { modules, coldplug } => {
                let mut items = modules.clone();
                if *coldplug {
                    items.push("coldplug: the modules of the devices present".into());
                }
                items
            }
            Phase::Kmode { modules } => modules.clone(),
            Phase::Volumes { volumes } => volumes
                .iter()
                .map(|v| {
                    let mut line = format!(
                        "{} on {} type {}",
                        v.device,
                        v.mountpoint.display(),
                        v.fstype
                    );
                    if !v.options.is_empty() {
                        line.push_str(&format!(" ({})", v.options));
                    }
                    line.push_str(&format!(
                        ", wait {}",
                        crate::duration::format_duration(v.device_timeout)
                    ));
                    if v.required {
                        line.push_str(", required");
                    }
                    line
                })
                .collect(),
            Phase::VolumesReadWrite { volumes, root } => volumes
                .iter()
                .map(|v| v.mountpoint.display().to_string())
                .chain(root.then(|| "/ (if the kernel mounted it read-only)".to_string()))
                .collect(),
            Phase::ObjectDirectories { dirs, .. } => {
                dirs.iter().map(|d| d.display().to_string()).collect()
            }
            Phase::Environment { vars } => vars.iter().map(|(n, v)| format!("{n}={v}")).collect(),
            Phase::DosDevices { links, .. } => links
                .iter()
                .map(|(n, t)| {
                    if t.is_empty() {
                        format!("{n} (delete)")
                    } else {
                        format!("{n} -> {t}")
                    }
                })
                .collect(),
            Phase::BootExecute { commands: c }
            | Phase::SetupExecute { commands: c }
            | Phase::Execute { commands: c } => commands(c),
            Phase::PagingFiles { files, .. } => files
                .iter()
                .map(|f| {
                    let place = if f.any_volume {
                        format!("?:{}", f.path.display())
                    } else {
                        f.path.display().to_string()
                    };
                    if f.system_managed() {
                        format!("{place}: system managed (sized from RAM)")
                    } else {
                        format!("{place}: {} MB to {} MB", f.min_mb, f.max_mb)
                    }
                })
                .collect(),
            Phase::RequiredSubsystems {
                subsystems,
                skipped,
            } => skipped
                .iter()
                .map(|n| {
                    format!("{n}: skipped (no debugging subsystem, as on Windows; never started)")
                })
                .chain(
                    subsystems
                        .iter()
                        .map(|(n, c)| format!("{n}: {}", c.display_line())),
                )
                .collect(),
            Phase::InitialCommand { command } => command.iter().map(|c| c.display_line()).collect(),
        }
    }

    /// Phases that never have items print none, not "(nothing to do)".
    fn has_items(&self) -> bool {
        !matches!(
            self,
            Phase::EarlyMounts
                | Phase::SessionsDirectory { .. }
                | Phase::PendingRenames { .. }
                | Phase::GeneratedEnvironment { .. }
        )
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "none".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the boot plan. Pure and deterministic; never fails (a required subsystem without a
/// definition, possible only in a hand-built `Config`, is left out).
pub fn plan(cfg: &Config) -> BootPlan {
    let sm = &cfg.session_manager;
    // Lowercased name -> definition; the first definition wins, like `Subsystems::get`.
    let mut defs: HashMap<String, (&str, &CommandSpec)> = HashMap::new();
    for (name, c) in &cfg.subsystems.definitions {
        defs.entry(name.to_ascii_lowercase())
            .or_insert((name.as_str(), c));
    }
    let required = cfg
        .subsystems
        .required
        .iter()
        .filter(|n| !Subsystems::is_debug(n))
        .filter_map(|n| defs.get(&n.to_ascii_lowercase()))
        .map(|(name, c)| ((*name).to_owned(), (*c).clone()))
        .collect();
    let phases = vec![
        Phase::EarlyMounts,
        Phase::BootDrivers {
            modules: cfg.boot_drivers.modules.clone(),
            coldplug: cfg.boot_drivers.coldplug,
        },
        Phase::Volumes {
            volumes: cfg.volumes.clone(),
        },
        Phase::ObjectDirectories {
            dirs: sm.object_directories.clone(),
            protection_mode: sm.protection_mode,
        },
        Phase::Environment {
            vars: cfg.environment.clone(),
        },
        Phase::DosDevices {
            directory: sm.dos_devices_directory.clone(),
            links: cfg.dos_devices.clone(),
        },
        Phase::SessionsDirectory {
            path: PathBuf::from(SESSIONS_DIRECTORY),
        },
        Phase::BootExecute {
            commands: sm.boot_execute.clone(),
        },
        Phase::VolumesReadWrite {
            volumes: cfg
                .volumes
                .iter()
                .filter(|v| !v.read_only())
                .cloned()
                .collect(),
            root: !cfg.volumes.iter().any(|v| v.mountpoint == Path::new("/")),
        },
        Phase::PendingRenames {
            queue: cfg.pending_file_rename_operations.queue.clone(),
        },
        Phase::PagingFiles {
            files: cfg.memory_management.paging_files.clone(),
            volumes: cfg.memory_management.paging_file_volumes.clone(),
        },
        Phase::GeneratedEnvironment {
            path: PathBuf::from(GENERATED_ENVIRONMENT),
        },
        Phase::Kmode {
            modules: cfg.subsystems.kmode.clone(),
        },
        Phase::RequiredSubsystems {
            subsystems: required,
            skipped: cfg
                .subsystems
                .required
                .iter()
                .filter(|n| Subsystems::is_debug(n))
                .cloned()
                .collect(),
        },
        Phase::SetupExecute {
            commands: sm.setup_execute.clone(),
        },
        Phase::InitialCommand {
            command: cfg.sessions.session0_initial_command.clone(),
        },
        Phase::Execute {
            commands: sm.execute.clone(),
        },
    ];
    BootPlan { phases }
}

impl fmt::Display for BootPlan {
    /// The numbered plan `smss check` prints: one block per phase, its summary, then its items.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "boot plan ({} phases):", self.phases.len())?;
        for (i, phase) in self.phases.iter().enumerate() {
            let only = if phase.machine_only() {
                " (system mode only)"
            } else {
                ""
            };
            writeln!(
                f,
                "{:>3}. {}: {}{only}",
                i + 1,
                phase.name(),
                phase.summary()
            )?;
            let items = phase.items();
            if items.is_empty() && phase.has_items() {
                writeln!(f, "       (nothing to do)")?;
            }
            for item in items {
                writeln!(f, "       {item}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names() {
        let names: Vec<&str> = plan(&Config::default())
            .phases
            .iter()
            .map(Phase::name)
            .collect();
        assert_eq!(names, PHASE_NAMES);
    }

    #[test]
    fn deterministic() {
        let cfg = Config::default();
        assert_eq!(plan(&cfg), plan(&cfg));
        assert_eq!(plan(&cfg).to_string(), plan(&cfg).to_string());
    }
}
