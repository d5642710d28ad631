//! `smss`: parse the command line, decide the mode once, and hand over to the engine.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use smss::mode::Mode;
use smss::supervise::{Options, PhaseRecord, Supervisor};
use smss::{bugcheck, cli, logging, phases, sys};
use smss_config::{Config, ForwardTo};

const DEFAULT_CONFIG: &str = "/etc/smss/smss.toml";

const USAGE: &str = "\
usage: smss [--config PATH] [--forward-to-group]       run as init
       smss [--config PATH] [--forward-to-group] -- CMD [ARG..]
                                                        run CMD as the initial command
       smss check [PATH]                                validate a configuration, print the boot plan
       smss import-reg [--drive X:=PATH]... [-o FILE] FILE.reg|-
                                                        translate a Session Manager .reg export to TOML
       smss --version | --help

Kernel command line: smss.config=PATH, smss.log=LEVEL. Environment: SMSS_LOG=LEVEL.
Configuration reference: examples/full.toml";

/// What `smss` without `--` outside PID 1 says it is doing (it supervises its configuration's
/// subsystems, if any, and whatever is reparented to it, until told to stop).
const IDLE_SUBREAPER: &str = "not PID 1 and no command: running as a subreaper \
(PR_SET_CHILD_SUBREAPER), reaping orphans until SIGTERM or SIGINT; \
`smss -- CMD` runs CMD, `smss --help` shows the usage";

/// The parsed command line.
#[derive(Debug, Default, PartialEq)]
struct Args {
    config: Option<PathBuf>,
    forward_to_group: bool,
    /// Bytes, exactly as given: a container's command need not be UTF-8.
    command: Option<Vec<OsString>>,
    /// Words we did not understand. The kernel hands init every unknown word of its command
    /// line (`single`, `splash`...), so as the machine's init these are ignored, not fatal.
    unknown: Vec<String>,
}

enum Action {
    Run(Args),
    Check(Option<PathBuf>),
    Print(&'static str),
    Usage(String),
}

fn parse_args(argv: &[OsString]) -> Action {
    if let Some((first, rest)) = argv.split_first() {
        if first == "check" {
            return parse_check(rest).unwrap_or_else(|e| Action::Usage(e.0));
        }
    }
    parse_run(argv).unwrap_or_else(|e| Action::Usage(e.0))
}

/// `check [PATH]`.
fn parse_check(argv: &[OsString]) -> Result<Action, cli::Usage> {
    use cli::Arg::*;
    let mut p = cli::parser(argv.iter().cloned());
    let mut path = None;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Action::Print(USAGE)),
            Value(v) if path.is_none() => path = Some(PathBuf::from(v)),
            Value(_) => return Err("check takes at most one PATH".into()),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Action::Check(path))
}

fn parse_run(argv: &[OsString]) -> Result<Action, cli::Usage> {
    use cli::Arg::*;
    let mut args = Args::default();
    let mut p = cli::parser(argv.iter().cloned());
    loop {
        if let Some(cmd) = cli::command_after_double_dash(&mut p)? {
            args.command = Some(cmd);
            break;
        }
        let Some(arg) = p.next()? else { break };
        match arg {
            Short('h') | Long("help") => return Ok(Action::Print(USAGE)),
            Short('V') | Long("version") => {
                return Ok(Action::Print(concat!("smss ", env!("CARGO_PKG_VERSION"))))
            }
            Short('g') | Long("forward-to-group") => args.forward_to_group = true,
            Short('c') | Long("config") => args.config = Some(PathBuf::from(p.value()?)),
            // The kernel's words (`single`, `splash`...): judged by `run`, which knows the mode.
            Value(v) => args.unknown.push(v.to_string_lossy().into_owned()),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Action::Run(args))
}

/// `--config PATH` / `--config=PATH` out of an argv that otherwise did not parse.
fn machine_config_arg(argv: &[OsString]) -> Option<PathBuf> {
    argv.iter()
        .enumerate()
        .find_map(|(i, a)| match a.as_bytes().strip_prefix(b"--config=") {
            Some(p) => Some(PathBuf::from(OsStr::from_bytes(p))),
            None if a == "--config" || a == "-c" => argv.get(i + 1).map(PathBuf::from),
            None => None,
        })
}

/// `smss.config=` and `smss.log=` from /proc/cmdline (dotted words never reach init's argv
/// or environment: the kernel keeps them as module parameters).
fn kernel_cmdline(key: &str) -> Option<String> {
    // Lossy: a stray non-UTF-8 byte elsewhere on the command line must not hide our keys.
    let bytes = std::fs::read("/proc/cmdline").ok()?;
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::to_string)
}

/// The C entry point. `no_main` skips the Rust runtime's start-up (it reads /proc/self/maps
/// for a stack guard, installs an alternate signal stack and SIGSEGV/SIGBUS handlers, polls fds
/// 0-2 and ignores SIGPIPE): about a dozen syscalls PID 1 does not want on its start-up path,
/// and SIG_IGN for SIGPIPE is exactly what must not reach children. The arguments are taken
/// from `argv` here (std's `args()` is empty under `no_main` with musl).
#[cfg(not(test))]
#[allow(unsafe_code)] // `no_mangle` names the C `main`; argv is the C runtime's own.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // Only the C runtime calls it, with a valid argv.
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime passes argc valid NUL-terminated strings in argv.
    let args = unsafe { smss::sys::c_args_os(argc, argv) };
    smss_main(args);
    0
}

#[cfg_attr(test, allow(dead_code))]
fn smss_main(argv: Vec<OsString>) {
    // Bytes, never a panic: a non-UTF-8 word on the kernel command line must not kill PID 1.
    let pid = sys::getpid();
    // The machine's init gets its words from the kernel; PID 1 of any other PID namespace
    // from its runtime (docker and containerd set no `container=`). Asked only when nothing
    // else tells (one readlink less on a container's start).
    let container = std::env::var_os("container").is_some()
        || (pid == 1 && !argv.iter().any(|a| a == "--") && sys::in_child_pid_namespace());
    let machine_init = pid == 1 && !container;
    if let Some((first, rest)) = argv.split_first() {
        if !machine_init && first == "import-reg" {
            std::process::exit(smss::import_reg::main(rest));
        }
    }
    let action = decide(&argv, pid, container);
    if !matches!(action, Action::Run(_)) {
        // A tool now, not an init: a closed stdout (`smss check | head -1`) ends it quietly.
        sys::default_sigpipe();
    }
    let args = match action {
        Action::Run(a) => a,
        Action::Check(path) => std::process::exit(check(path.as_deref())),
        Action::Print(text) => std::process::exit(cli::help(text)),
        Action::Usage(msg) => std::process::exit(cli::usage_error("smss", &cli::Usage(msg), USAGE)),
    };
    std::process::exit(run(args))
}

/// What to do with `argv`. As the machine's init every word comes from the kernel command
/// line: nothing there may make PID 1 print help and exit (a kernel panic), so a word we do
/// not understand is ignored and only --config is honoured. But `--` never comes from the
/// kernel (it keeps `--` to itself and passes on what follows): it says "a container command
/// follows", so with it every usage error stands, also as PID 1 without `container=` (docker
/// does not set it). `container`: PID 1 is a container's (`container=` set, or its PID
/// namespace is not the machine's first), not the machine's.
fn decide(argv: &[OsString], pid: i32, container: bool) -> Action {
    let machine_init = pid == 1 && !container && !argv.iter().any(|a| a == "--");
    match parse_args(argv) {
        Action::Run(a) => Action::Run(a),
        _ if machine_init => Action::Run(Args {
            config: machine_config_arg(argv),
            unknown: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            ..Args::default()
        }),
        other => other,
    }
}

/// `smss check`: 0 valid, 1 invalid (every problem listed), 2 usage.
fn check(path: Option<&Path>) -> i32 {
    let explicit = path.is_some();
    let path = path.unwrap_or(Path::new(DEFAULT_CONFIG));
    match smss_config::load_optional(path) {
        Ok(Some(cfg)) => {
            print!("{}", smss_config::plan::plan(&cfg));
            0
        }
        Ok(None) if !explicit => {
            println!(
                "no configuration at {}: smss would boot with the built-in defaults:\n",
                path.display()
            );
            print!("{}", smss_config::plan::plan(&Config::default()));
            0
        }
        Ok(None) => {
            eprintln!("{}:1:1: no such file", path.display());
            1
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("{} problem(s) in {}", diags.len(), path.display());
            1
        }
    }
}

fn run(args: Args) -> i32 {
    // The clock of GetStatus's times starts here, with the kernel's uptime read beside it.
    smss::supervise::timeline::mark_start();
    // First thing: signals arrive only through the signalfd from here on.
    if let Err(e) = sys::block_all_signals() {
        eprintln!("smss: failed to block signals: {e}");
    }
    sys::reset_ignored_signals();
    let stdio_was_closed = sys::ensure_stdio();
    let pid = sys::getpid();
    let container_env = std::env::var_os("container").is_some();
    let mode = Mode::detect(
        pid,
        container_env,
        args.command.is_some(),
        // Asked only when nothing else decided it (one readlink less on a container's start).
        pid == 1 && !container_env && args.command.is_none() && sys::in_child_pid_namespace(),
    );
    bugcheck::install_panic_hook(mode, smss_config::CrashAction::Panic);
    // A machine's init narrates its boot; a container's init stays as quiet as tini.
    let default_level = match mode {
        Mode::System => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    logging::init(std::env::var("SMSS_LOG").ok().as_deref(), default_level);
    log::info!(
        "smss {} starting in {} mode",
        env!("CARGO_PKG_VERSION"),
        mode.as_str()
    );

    let mut early = Vec::new();
    match mode {
        Mode::System => {
            let t = Instant::now();
            let result = match phases::early_mounts::run(&sys::RealSys) {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    log::error!("{e}");
                    format!("done with errors: {e}")
                }
            };
            if stdio_was_closed {
                if let Err(e) = sys::stdio_to_console() {
                    log::warn!("failed to open /dev/console: {e}");
                }
            }
            logging::open_console("/dev/console");
            logging::open_kmsg();
            // /dev/kmsg drops all but 10 lines per 5 s per writer by default; the boot log is
            // longer than that and interface.md wants every line there.
            let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
            if let Some(level) = kernel_cmdline("smss.log") {
                log::set_max_level(logging::parse_level(Some(&level), default_level));
            }
            let us = t.elapsed().as_micros() as u64;
            log::info!("phase early-mounts done in {us} us");
            early.push(PhaseRecord {
                name: "early-mounts".into(),
                start_us: smss::supervise::timeline::since_start_us(t),
                duration_us: us,
                result,
            });
            phases::hostname::run();
            if let Err(e) = sys::disable_cad() {
                log::warn!("failed to disable Ctrl-Alt-Del: {e}");
            }
        }
        Mode::Subreaper => {
            if let Err(e) = sys::set_child_subreaper() {
                log::warn!(
                    "failed to become a child subreaper: {e}; orphans will go to the real init"
                );
            }
        }
        Mode::Container => {}
    }
    // A pipe or terminal on stderr gets a non-blocking description of our own (a stalled
    // reader must not stall PID 1). A regular file never blocks, and a description of our own
    // would keep an offset of its own: children writing through the shared fd 2 would
    // overwrite our lines, so a file is written through fd 2 itself.
    let stderr_is_file = std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.is_file());
    if mode != Mode::System && !stderr_is_file {
        logging::open_console("/proc/self/fd/2");
    }
    if let Some(first_unknown) = args.unknown.first() {
        if mode == Mode::System {
            log::info!("ignoring kernel arguments: {}", args.unknown.join(" "));
        } else {
            eprintln!("smss: unknown argument {first_unknown}\n{USAGE}");
            return 2;
        }
    }

    let t = Instant::now();
    let Some((config, config_from_file)) = load_config(mode, &args) else {
        return 1;
    };
    log::info!("configuration read in {} us", t.elapsed().as_micros());

    if mode == Mode::Subreaper && args.command.is_none() {
        // Someone ran `smss` in a shell: say why nothing happens (warn: seen at the default level).
        log::warn!("{IDLE_SUBREAPER}");
    }
    bugcheck::install_panic_hook(mode, config.crash_control.effective_action());
    let forward_to = if args.forward_to_group {
        ForwardTo::ProcessGroup
    } else {
        config.container.forward_to
    };
    let opts = Options {
        mode,
        config,
        command: args.command,
        forward_to,
        early_phases: early,
        // Sessions need it; a tini-style container never looks it up.
        session_binary: if mode != Mode::System && !config_from_file {
            PathBuf::new()
        } else {
            session_binary()
        },
        config_from_file,
    };
    let crash_action = opts.config.crash_control.effective_action();
    let outcome = match Supervisor::new(opts) {
        Ok(mut s) => {
            let code = s.run();
            // The process ends next: freeing the supervisor's memory and closing its
            // descriptors would only cost the stop's last moments (an munmap each, ~10 µs in a
            // VM) for the kernel to do again. Nothing of it needs a destructor to run.
            std::mem::forget(s);
            Ok(code)
        }
        Err(e) => {
            log::error!("failed to set up the event loop: {e}");
            Err(())
        }
    };
    match bugcheck::ending(mode, outcome) {
        bugcheck::Ending::Exit(code) => code,
        bugcheck::Ending::Bugcheck(process, status) => {
            // No event loop: nothing would be reaped and every signal stays blocked.
            bugcheck::report(process, sys::getpid(), status);
            bugcheck::crash(crash_action, status)
        }
        bugcheck::Ending::Idle => {
            // PID 1 of a machine must not exit: that is a kernel panic. Only a failed
            // reboot(2) gets here; stay, so the console shows why.
            log::error!("the machine could not be taken down; smss stays idle");
            loop {
                nix::unistd::pause();
            }
        }
    }
}

/// Find the configuration (and whether it came from a file); never refuse to boot a machine
/// for lack of one.
fn load_config(mode: Mode, args: &Args) -> Option<(Config, bool)> {
    let from_kernel = (mode == Mode::System)
        .then(|| kernel_cmdline("smss.config"))
        .flatten()
        .map(PathBuf::from);
    let explicit = args.config.clone().or(from_kernel);
    let path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match smss_config::load_optional(&path) {
        Ok(Some(cfg)) => {
            log::info!("configuration {}", path.display());
            Some((cfg, true))
        }
        Ok(None) if explicit.is_none() => {
            log::info!(
                "no configuration at {}: using the built-in defaults",
                path.display()
            );
            Some((Config::default(), false))
        }
        Ok(None) | Err(_) if mode == Mode::System => {
            if let Err(diags) = smss_config::load_file(&path) {
                for d in diags.iter() {
                    log::error!("{d}");
                }
            }
            log::error!(
                "configuration {} unusable: booting with the built-in defaults",
                path.display()
            );
            Some((Config::default(), false))
        }
        // A container or subreaper does not start on a configuration it cannot use: said in
        // log lines (interface.md section 7), each problem, then why nothing runs.
        Ok(None) => {
            log::error!("{}:1:1: no such file", path.display());
            log::error!("configuration {} unusable: not starting", path.display());
            None
        }
        Err(diags) => {
            for d in diags.iter() {
                log::error!("{d}");
            }
            log::error!("configuration {} unusable: not starting", path.display());
            None
        }
    }
}

/// `smss-session` next to our own executable, else on PATH.
fn session_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("smss-session");
            if p.exists() {
                return p;
            }
        }
    }
    sys::process::resolve_program("smss-session", std::env::var("PATH").ok().as_deref())
        .unwrap_or_else(|| PathBuf::from("/sbin/smss-session"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_command_after_double_dash() {
        let Action::Run(a) = parse_args(&v(&["-g", "--config", "/x.toml", "--", "sh", "-c", "--"]))
        else {
            panic!("not run");
        };
        assert!(a.forward_to_group);
        assert_eq!(a.config, Some(PathBuf::from("/x.toml")));
        assert_eq!(a.command, Some(v(&["sh", "-c", "--"])));
    }

    #[test]
    fn usage_errors() {
        assert!(matches!(parse_args(&v(&["--"])), Action::Usage(_)));
        assert!(matches!(parse_args(&v(&["--config"])), Action::Usage(_)));
        assert!(matches!(
            parse_args(&v(&["check", "a", "b"])),
            Action::Usage(_)
        ));
        assert!(matches!(parse_args(&v(&["check"])), Action::Check(None)));
    }

    /// `--` with nothing after it is a usage error in every mode, PID 1 without `container=`
    /// included; without `--`, PID 1 of a machine never stops on a usage error.
    #[test]
    fn empty_double_dash_is_a_usage_error_in_every_mode() {
        for argv in [v(&["--"]), v(&["-g", "--"]), v(&["--config", "/x", "--"])] {
            for (pid, container) in [(1, false), (1, true), (42, false)] {
                assert!(
                    matches!(decide(&argv, pid, container), Action::Usage(_)),
                    "{argv:?} pid {pid} container {container}"
                );
            }
        }
        assert!(matches!(
            decide(&v(&["--config"]), 1, false),
            Action::Run(_)
        ));
        assert!(matches!(decide(&v(&["--help"]), 1, false), Action::Run(_)));
        assert!(matches!(decide(&v(&["--help"]), 1, true), Action::Print(_)));
        assert!(matches!(
            decide(&v(&["--config"]), 7, false),
            Action::Usage(_)
        ));
    }

    #[test]
    fn kernel_words_are_collected_not_fatal() {
        let Action::Run(a) = parse_args(&v(&["single", "splash"])) else {
            panic!("not run");
        };
        assert_eq!(a.unknown, vec!["single", "splash"]);
    }

    proptest::proptest! {
        /// Whatever precedes it, the command after `--` comes back exactly as given, and no
        /// argv makes the decision panic (PID 1 reads what the kernel hands it).
        #[test]
        fn command_after_double_dash_is_kept_byte_exact(
            pre in proptest::collection::vec(
                proptest::sample::select(vec!["-g", "--forward-to-group", "--config=/c", "-c/c", "single"]),
                0..4,
            ),
            cmd in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..8), 1..5),
            noise in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..8), 0..5),
        ) {
            let raw = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
            let mut argv: Vec<OsString> = pre.iter().map(OsString::from).collect();
            argv.push("--".into());
            let cmd: Vec<OsString> = cmd.iter().map(|b| raw(b)).collect();
            argv.extend(cmd.iter().cloned());
            let Action::Run(a) = parse_args(&argv) else {
                panic!("not run: {argv:?}");
            };
            proptest::prop_assert_eq!(a.command, Some(cmd));
            let noise: Vec<OsString> = noise.iter().map(|b| raw(b)).collect();
            for (pid, container) in [(1, false), (1, true), (42, false)] {
                let _ = decide(&noise, pid, container);
            }
            // As the machine's init, without `--`, nothing is a usage error.
            if !noise.iter().any(|a| a == "--") {
                let machine = decide(&noise, 1, false);
                proptest::prop_assert!(matches!(machine, Action::Run(_)));
            }
        }
    }

    /// The command and the --config path are bytes, exactly as given.
    #[test]
    fn arguments_are_bytes() {
        let raw = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
        let argv = vec![
            raw(b"--config=/c\xff.toml"),
            raw(b"--"),
            raw(b"prog\xfe"),
            raw(b"a\xffb"),
        ];
        let Action::Run(a) = parse_args(&argv) else {
            panic!("not run");
        };
        assert_eq!(a.config, Some(PathBuf::from(raw(b"/c\xff.toml"))));
        assert_eq!(a.command, Some(argv[2..].to_vec()));
        let argv = vec![raw(b"-c"), raw(b"/d\xfe"), raw(b"\xff")];
        assert_eq!(
            machine_config_arg(&argv),
            Some(PathBuf::from(raw(b"/d\xfe")))
        );
        let Action::Run(a) = parse_args(&argv) else {
            panic!("not run");
        };
        assert_eq!(a.unknown, vec!["\u{fffd}"]);
    }
}
