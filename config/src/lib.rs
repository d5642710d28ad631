//! The Session Manager configuration: TOML -> typed, validated [`Config`] -> [`plan::BootPlan`].
//!
//! This crate is pure: the only system call it makes is reading the configuration file in
//! [`load_file`] / [`load_optional`]. It is linked into PID 1, so it never panics on any input
//! (there is a fuzz target for that in `fuzz/`).
//!
//! # Parsing and diagnostics
//!
//! [`parse_str`] parses TOML with `toml_edit` (which keeps the position of every key and value)
//! and then walks the tree itself, so that **every** problem of a file is reported at once as
//! `PATH:LINE:COL: message` ([`Diagnostic`]; line and column are 1-based, the column counts
//! characters). A TOML syntax error stops parsing, so it is the only diagnostic for that file.
//! Unknown keys are errors. Values of the wrong type are reported and the default is used for the
//! rest of the check.
//!
//! # Reference
//!
//! The commented reference of every key is `examples/full.toml`. Built-in defaults (also what
//! [`Config::default`] returns, used when no file exists; chosen to be inert in a container):
//!
//! | key | default |
//! |---|---|
//! | `session-manager.object-directories` | `[]` |
//! | `session-manager.protection-mode` | `1` (strict: 0755/0644, umask 022); `0` = liberal |
//! | `session-manager.boot-execute`, `setup-execute`, `execute` | `[]` |
//! | `session-manager.dos-devices-directory` (extension) | `/run/smss/dosdevices` |
//! | `boot-drivers.modules` | `[]` |
//! | `boot-drivers.coldplug` | `true` (system mode only, like the whole phase) |
//! | `[[volumes]]` | none (`device`, `mountpoint`, `fstype` required; `options` defaults to `""`, `device-timeout` to `"10s"`, `required` to `false`) |
//! | `memory-management.paging-files` | `[]` (no swap) |
//! | `memory-management.paging-file-volumes` | `["/"]` |
//! | `[environment]` | `PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"` |
//! | `[dos-devices]` | none |
//! | `pending-file-rename-operations.queue` | `/var/lib/smss/pending-renames` |
//! | `subsystems.required`, `optional`, `kmode` | `[]` |
//! | `sessions.initial-command`, `session0-initial-command` | none |
//! | `sessions.max-sessions` | `64` |
//! | `sessions.parallel-session-creation` | `4` |
//! | `sessions.session-subsystems` | `[]` |
//! | `[[seats]]` | none |
//! | `crash-control.auto-reboot` | `false`; `action` absent: `reboot` if auto-reboot, else `panic` |
//! | `control.socket` | `/run/smss/control`; `allowed-group` none (root only) |
//! | `shutdown.grace-period` (extension) | `"10s"` |
//! | `container.forward-signals-to` (extension) | `"process"` |
//!
//! Choices made where Windows gives no answer:
//! - `[environment]`: the built-in `PATH` is always the first variable unless the file sets
//!   `PATH` itself (then the file's entry is used, at its own position). Values stay raw here;
//!   the executor applies them in file order with [`Environment::apply`], so `%VAR%` sees only
//!   variables defined earlier (a forward reference stays literal, research §4). Names are
//!   case-sensitive.
//! - `%VAR%` expansion follows `RtlExpandEnvironmentStrings_U`; `%%` is not an escape, see
//!   [`expand`]. Expanded, one `NAME=VALUE` may take at most [`MAX_ARG_STRLEN`] bytes with its
//!   NUL and the whole environment [`MAX_ENVIRONMENT_SIZE`] (execve's limits); validation
//!   expands `[environment]` in file order from an empty environment and reports the first
//!   variable past either limit at its key (the boot leaves such a variable out and logs it).
//! - Durations: `"500ms"`, `"10s"`, `"2m"`, `"1h"`, combinations like `"1m30s"`; a bare integer
//!   (TOML integer or a digits-only string) is seconds.
//! - Command values are a string in smss grammar ([`parse_command_line`]) or a table
//!   `{ command = [argv..] | "string", autocheck, async, debug, ready = "exec"|"notify",
//!   ready-timeout, critical, fatal }`. `initial-command` and `session0-initial-command` = `""`
//!   mean "none"; an empty command anywhere else is an error.
//! - Subsystem names are case-insensitive (like registry value names); `debug` may be listed in
//!   `required` without a definition and is always skipped, as on Windows (a definition of it is
//!   never started; the plan says so).
//! - Paging files: `"path [minMB [maxMB]]"`; absent or all-zero sizes = system managed; max absent
//!   or 0 = max equals min (Windows rule); at most 16 entries; a duplicate path is an error.
//! - Relative paths are errors wherever a path is needed; the file is read as UTF-8 and may be at
//!   most 1 MiB.
// Lints: [workspace.lints] in Cargo.toml. Linked into PID 1 and parsing untrusted bytes, this
// crate also refuses indexing that could panic (init and sessiond do not yet).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod command;
mod diag;
mod duration;
mod expand;
mod parse;
pub mod plan;
pub mod reg;

use std::path::PathBuf;
use std::time::Duration;

pub use command::{parse_command_line, CommandSpec, Ready};
pub use diag::{Diagnostic, Diagnostics};
pub use duration::{format_duration, parse_duration};
pub use expand::{
    expand, expand_within, variable_cost, EnvError, Environment, TooLong, MAX_ARG_STRLEN,
    MAX_ENVIRONMENT_SIZE,
};
pub use parse::{file_kind, load_file, load_optional, parse_str, MAX_CONFIG_SIZE};

/// The default configuration path.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/smss/smss.toml";
/// The built-in `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub const DEFAULT_DOS_DEVICES_DIRECTORY: &str = "/run/smss/dosdevices";
pub const DEFAULT_RENAME_QUEUE: &str = "/var/lib/smss/pending-renames";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/smss/control";
pub const DEFAULT_MAX_SESSIONS: u32 = 64;
pub const DEFAULT_PARALLEL_SESSION_CREATION: u32 = 4;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// At most this many paging files (Windows `STATUS_TOO_MANY_PAGING_FILES`).
pub const MAX_PAGING_FILES: usize = 16;

/// The whole configuration file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[session-manager]`
    pub session_manager: SessionManager,
    /// `[boot-drivers]`
    pub boot_drivers: BootDrivers,
    /// `[[volumes]]`, file order
    pub volumes: Vec<Volume>,
    /// `[memory-management]`
    pub memory_management: MemoryManagement,
    /// `[environment]`, file order, raw (unexpanded) values; see the crate docs for `PATH`.
    pub environment: Vec<(String, String)>,
    /// `[dos-devices]`, file order: (link name, target); an empty target deletes the link.
    pub dos_devices: Vec<(String, String)>,
    /// `[pending-file-rename-operations]`
    pub pending_file_rename_operations: PendingRenames,
    /// `[subsystems]`
    pub subsystems: Subsystems,
    /// `[sessions]`
    pub sessions: Sessions,
    /// `[[seats]]`, file order
    pub seats: Vec<Seat>,
    /// `[crash-control]`
    pub crash_control: CrashControl,
    /// `[control]`
    pub control: Control,
    /// `[shutdown]` (extension)
    pub shutdown: Shutdown,
    /// `[container]` (extension)
    pub container: Container,
}

/// `[session-manager]`: the values of the Session Manager key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionManager {
    /// `object-directories`: absolute directories created first (ObjectDirectories).
    pub object_directories: Vec<PathBuf>,
    /// `protection-mode`: 1 = strict, 0 = liberal.
    pub protection_mode: u32,
    /// `boot-execute` (BootExecute)
    pub boot_execute: Vec<CommandSpec>,
    /// `setup-execute` (SetupExecute)
    pub setup_execute: Vec<CommandSpec>,
    /// `execute` (Execute)
    pub execute: Vec<CommandSpec>,
    /// `dos-devices-directory` (extension): where `[dos-devices]` links with relative names go.
    pub dos_devices_directory: PathBuf,
}

impl Default for SessionManager {
    fn default() -> Self {
        SessionManager {
            object_directories: Vec::new(),
            protection_mode: 1,
            boot_execute: Vec::new(),
            setup_execute: Vec::new(),
            execute: Vec::new(),
            dos_devices_directory: PathBuf::from(DEFAULT_DOS_DEVICES_DIRECTORY),
        }
    }
}

/// `[boot-drivers]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDrivers {
    /// Kernel module names, loaded in order.
    pub modules: Vec<String>,
    /// `coldplug`: after `modules`, load the modules that modules.alias names for the devices
    /// present (their sysfs `modalias`). Machine-only, like the whole phase.
    pub coldplug: bool,
}

impl Default for BootDrivers {
    fn default() -> Self {
        BootDrivers {
            modules: Vec::new(),
            coldplug: true,
        }
    }
}

/// How long a `[[volumes]]` entry waits for its device by default.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[volumes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// A device path, `LABEL=...`, `UUID=...`, `PARTUUID=...` or `PARTLABEL=...`.
    pub device: String,
    pub mountpoint: PathBuf,
    pub fstype: String,
    /// mount(8)-style comma-separated options; `""` when absent.
    pub options: String,
    /// `device-timeout`: how long to wait for the device to appear.
    pub device_timeout: Duration,
    /// `required`: a device that never appears is a bugcheck instead of a warning.
    pub required: bool,
}

impl Volume {
    /// True when the options contain `ro`: the volume stays read-only after boot-execute.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o.trim() == "ro")
    }
}

/// `[memory-management]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryManagement {
    pub paging_files: Vec<PagingFile>,
    /// Filesystems a `?:` paging file may go to, in order.
    pub paging_file_volumes: Vec<PathBuf>,
}

impl Default for MemoryManagement {
    fn default() -> Self {
        MemoryManagement {
            paging_files: Vec::new(),
            paging_file_volumes: vec![PathBuf::from("/")],
        }
    }
}

/// One `paging-files` entry: `"[?:]path [minMB [maxMB]]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingFile {
    /// Absolute path, without the `?:` prefix. With `any_volume` it is relative to the root of
    /// the chosen paging-file volume.
    pub path: PathBuf,
    /// `?:` was given: use the first volume of `paging-file-volumes` with room.
    pub any_volume: bool,
    pub min_mb: u64,
    /// Equal to `min_mb` when absent or 0.
    pub max_mb: u64,
}

impl PagingFile {
    /// Sizes absent or `0 0`: sized from RAM by the executor.
    pub fn system_managed(&self) -> bool {
        self.min_mb == 0 && self.max_mb == 0
    }
}

impl std::fmt::Display for PagingFile {
    /// The config grammar: `?:/swapfile 64 128`, or just the path when system managed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.any_volume {
            write!(f, "?:")?;
        }
        write!(f, "{}", self.path.display())?;
        if !self.system_managed() {
            write!(f, " {} {}", self.min_mb, self.max_mb)?;
        }
        Ok(())
    }
}

/// `[pending-file-rename-operations]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRenames {
    pub queue: PathBuf,
}

impl Default for PendingRenames {
    fn default() -> Self {
        PendingRenames {
            queue: PathBuf::from(DEFAULT_RENAME_QUEUE),
        }
    }
}

/// `[subsystems]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subsystems {
    /// Started in order at boot, each ready before the next; may contain `debug` (skipped).
    pub required: Vec<String>,
    /// Started on request (`LoadDeferredSubsystem`).
    pub optional: Vec<String>,
    /// Kernel modules loaded before the required subsystems.
    pub kmode: Vec<String>,
    /// Every other key of `[subsystems]`, file order.
    pub definitions: Vec<(String, CommandSpec)>,
}

impl Subsystems {
    /// The definition of `name`, compared case-insensitively like Windows value names.
    pub fn get(&self, name: &str) -> Option<&CommandSpec> {
        self.get_entry(name).map(|(_, c)| c)
    }

    /// The definition of `name` with its name as written in `[subsystems]`.
    pub fn get_entry(&self, name: &str) -> Option<(&str, &CommandSpec)> {
        self.definitions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, c)| (n.as_str(), c))
    }

    /// True for `debug` in any case: listed in `required`, it is skipped (research §11).
    pub fn is_debug(name: &str) -> bool {
        name.eq_ignore_ascii_case("debug")
    }
}

/// `[sessions]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    /// The login manager of every interactive session (`%TTY%`, `%SEAT%`, `%SESSION%` defined).
    pub initial_command: Option<CommandSpec>,
    /// S0InitialCommand: session 0's initial command; `""` = none.
    pub session0_initial_command: Option<CommandSpec>,
    pub max_sessions: u32,
    pub parallel_session_creation: u32,
    /// Subsystems started again inside every interactive session.
    pub session_subsystems: Vec<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            initial_command: None,
            session0_initial_command: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            parallel_session_creation: DEFAULT_PARALLEL_SESSION_CREATION,
            session_subsystems: Vec::new(),
        }
    }
}

/// One `[[seats]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub name: String,
    pub tty: PathBuf,
}

/// What a bugcheck does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashAction {
    /// Stop: print the bugcheck and hang (system mode) / exit (container mode).
    #[default]
    Panic,
    Reboot,
    Poweroff,
    Halt,
}

impl CrashAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashAction::Panic => "panic",
            CrashAction::Reboot => "reboot",
            CrashAction::Poweroff => "poweroff",
            CrashAction::Halt => "halt",
        }
    }

    /// Parses the config spelling (lowercase).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "panic" => Some(CrashAction::Panic),
            "reboot" => Some(CrashAction::Reboot),
            "poweroff" => Some(CrashAction::Poweroff),
            "halt" => Some(CrashAction::Halt),
            _ => None,
        }
    }
}

/// `[crash-control]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashControl {
    /// `auto-reboot` (AutoReboot)
    pub auto_reboot: bool,
    /// `action`, when given; overrides `auto_reboot`.
    pub action: Option<CrashAction>,
}

impl CrashControl {
    /// `action` if given, else `Reboot` when `auto_reboot`, else `Panic`.
    pub fn effective_action(&self) -> CrashAction {
        match self.action {
            Some(a) => a,
            None if self.auto_reboot => CrashAction::Reboot,
            None => CrashAction::Panic,
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub socket: PathBuf,
    /// Members of this group may call the privileged methods too.
    pub allowed_group: Option<String>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            allowed_group: None,
        }
    }
}

/// `[shutdown]` (extension)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    /// Time between SIGTERM and SIGKILL.
    pub grace_period: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

/// Where signals sent to smss in container/subreaper mode go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardTo {
    /// To the initial command's process only.
    #[default]
    Process,
    /// To its whole process group (tini `-g`).
    ProcessGroup,
}

impl ForwardTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardTo::Process => "process",
            ForwardTo::ProcessGroup => "process-group",
        }
    }
}

/// `[container]` (extension)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    /// `forward-signals-to`
    pub forward_to: ForwardTo,
}

impl Default for Config {
    /// The built-in defaults, used when no configuration file exists (see the crate docs).
    fn default() -> Self {
        Config {
            session_manager: SessionManager::default(),
            boot_drivers: BootDrivers::default(),
            volumes: Vec::new(),
            memory_management: MemoryManagement::default(),
            environment: vec![("PATH".to_string(), DEFAULT_PATH.to_string())],
            dos_devices: Vec::new(),
            pending_file_rename_operations: PendingRenames::default(),
            subsystems: Subsystems::default(),
            sessions: Sessions::default(),
            seats: Vec::new(),
            crash_control: CrashControl::default(),
            control: Control::default(),
            shutdown: Shutdown::default(),
            container: Container::default(),
        }
    }
}
