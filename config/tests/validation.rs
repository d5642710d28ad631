//! One fixture per validation rule, with the exact diagnostic (line:col and message) expected.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use smss_config::{parse_str, Config, CrashAction, ForwardTo, Ready};

/// The diagnostics of `src` as "LINE:COL: message", in order; the path prefix is checked once in
/// `path_prefix`.
fn diags(src: &str) -> Vec<String> {
    match parse_str(src, Path::new("t.toml")) {
        Ok(_) => Vec::new(),
        Err(d) => {
            d.0.iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect()
        }
    }
}

#[track_caller]
fn check(src: &str, expected: &[&str]) {
    assert_eq!(diags(src), expected, "source:\n{src}");
}

#[track_caller]
fn ok(src: &str) -> Config {
    match parse_str(src, Path::new("t.toml")) {
        Ok(c) => c,
        Err(d) => panic!("unexpected diagnostics:\n{d}\nsource:\n{src}"),
    }
}

#[test]
fn path_prefix() {
    let err = parse_str("[nope]\n", Path::new("/etc/smss/smss.toml")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/etc/smss/smss.toml:1:2: unknown section `nope`"));
}

#[test]
fn empty_file_is_the_builtin_default() {
    assert_eq!(ok(""), Config::default());
    assert_eq!(ok("# nothing\n\n"), Config::default());
}

#[test]
fn builtin_defaults() {
    let c = Config::default();
    assert!(c.session_manager.boot_execute.is_empty());
    assert!(c.session_manager.object_directories.is_empty());
    assert_eq!(c.session_manager.protection_mode, 1);
    assert_eq!(
        c.session_manager.dos_devices_directory,
        Path::new("/run/smss/dosdevices")
    );
    assert!(c.memory_management.paging_files.is_empty());
    assert!(c.subsystems.required.is_empty());
    assert!(c.dos_devices.is_empty());
    assert_eq!(
        c.environment,
        [(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
        )]
    );
    assert_eq!(c.sessions.max_sessions, 64);
    assert_eq!(c.sessions.parallel_session_creation, 4);
    assert_eq!(c.crash_control.effective_action(), CrashAction::Panic);
    assert!(!c.crash_control.auto_reboot);
    assert_eq!(c.shutdown.grace_period, Duration::from_secs(10));
    assert_eq!(c.container.forward_to, ForwardTo::Process);
    assert_eq!(c.control.socket, Path::new("/run/smss/control"));
    assert_eq!(
        c.pending_file_rename_operations.queue,
        Path::new("/var/lib/smss/pending-renames")
    );
}

// ---- TOML itself ----

#[test]
fn toml_syntax_error() {
    let d = diags("[sessions]\nmax-sessions = = 3\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("2:16: TOML syntax error: "), "{d:?}");
}

#[test]
fn toml_duplicate_key() {
    let d = diags("[control]\nsocket = \"/a\"\nsocket = \"/b\"\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].starts_with("3:1: TOML syntax error: "), "{d:?}");
    assert!(d[0].contains("duplicate key"), "{d:?}");
}

// ---- unknown keys and wrong types ----

#[test]
fn unknown_section() {
    check(
        "[sesions]\n",
        &["1:2: unknown section `sesions` in the top level (expected one of: session-manager, boot-drivers, volumes, memory-management, environment, dos-devices, pending-file-rename-operations, subsystems, sessions, seats, crash-control, control, shutdown, container)"],
    );
}

#[test]
fn unknown_key_with_suggestion() {
    check(
        "[session-manager]\nProtectionMode = 1\nboot_execute = []\n",
        &[
            "2:1: unknown key `ProtectionMode` in [session-manager]; did you mean `protection-mode`?",
            "3:1: unknown key `boot_execute` in [session-manager]; did you mean `boot-execute`?",
        ],
    );
}

#[test]
fn unknown_key_lists_the_known_ones() {
    check(
        "[control]\nport = 1\n",
        &["2:1: unknown key `port` in [control] (expected one of: socket, allowed-group)"],
    );
}

#[test]
fn unknown_key_in_array_of_tables_and_command_table() {
    check(
        "[[seats]]\nname = \"s\"\ntty = \"/dev/tty1\"\ncolor = 1\n\n[subsystems]\nx = { command = [\"/x\"], restart = true }\n",
        &[
            "4:1: unknown key `color` in [[seats]] (expected one of: name, tty)",
            "7:25: unknown key `restart` in the command table of `subsystems.x` (expected one of: command, autocheck, async, debug, ready, ready-timeout, critical, fatal)",
        ],
    );
}

#[test]
fn wrong_types() {
    check(
        "[sessions]\nmax-sessions = \"64\"\n[crash-control]\nauto-reboot = \"yes\"\n[control]\nsocket = 5\n",
        &[
            "2:16: `sessions.max-sessions`: expected an integer, found a string",
            "4:15: `crash-control.auto-reboot`: expected a boolean (true or false), found a string",
            "6:10: `control.socket`: expected a string, found an integer",
        ],
    );
}

#[test]
fn section_of_wrong_type() {
    check(
        "environment = [\"A=1\"]\n",
        &["1:15: `environment`: expected a table, found an array"],
    );
}

#[test]
fn array_of_tables_of_wrong_type() {
    check(
        "[volumes]\ndevice = \"/dev/vda\"\n",
        &["1:1: `volumes`: expected an array of tables ([[volumes]]), found a table"],
    );
}

#[test]
fn array_element_of_wrong_type() {
    check(
        "[boot-drivers]\nmodules = [\"ext4\", 3]\n",
        &["2:20: `boot-drivers.modules`: expected strings, found an integer"],
    );
}

// ---- subsystems ----

#[test]
fn undefined_subsystem_names() {
    check(
        "[subsystems]\nrequired = [\"debug\", \"Windows\", \"csr\"]\noptional = [\"posix\"]\nwindows = \"/usr/bin/w\"\n[sessions]\nsession-subsystems = [\"os2\"]\n",
        &[
            "2:33: `subsystems.required`: subsystem \"csr\" is not defined in [subsystems]",
            "3:13: `subsystems.optional`: subsystem \"posix\" is not defined in [subsystems]",
            "6:23: `sessions.session-subsystems`: subsystem \"os2\" is not defined in [subsystems]",
        ],
    );
}

#[test]
fn debug_is_allowed_in_required_without_definition() {
    let c = ok("[subsystems]\nrequired = [\"Debug\"]\n");
    assert_eq!(c.subsystems.required, ["Debug"]);
}

#[test]
fn subsystem_both_required_and_optional() {
    check(
        "[subsystems]\nrequired = [\"w\"]\noptional = [\"W\"]\nw = \"/w\"\n",
        &["3:13: `subsystems.optional`: subsystem \"W\" is also required (line 2); a subsystem is either required or optional"],
    );
}

#[test]
fn subsystem_listed_twice() {
    check(
        "[subsystems]\nrequired = [\"w\", \"w\"]\nw = \"/w\"\n",
        &["2:18: `subsystems.required`: \"w\" is listed twice"],
    );
}

#[test]
fn subsystem_defined_twice_case_insensitively() {
    check(
        "[subsystems]\nwindows = \"/a\"\nWindows = \"/b\"\n",
        &["3:1: `subsystems`: subsystem \"Windows\" is already defined as \"windows\" at line 2 (names are case-insensitive)"],
    );
}

#[test]
fn subsystem_lookup_is_case_insensitive() {
    let c = ok("[subsystems]\nrequired = [\"WINDOWS\"]\nWindows = \"/a b\"\n");
    assert_eq!(
        c.subsystems.get("windows").map(|s| s.argv.clone()),
        Some(vec!["/a".into(), "b".into()])
    );
    assert_eq!(c.subsystems.definitions[0].0, "Windows");
}

#[test]
fn subsystem_definition_of_wrong_type() {
    check(
        "[subsystems]\nw = 3\n",
        &["2:5: `subsystems.w`: expected a command line string or a command table, found an integer"],
    );
}

// ---- seats ----

#[test]
fn duplicate_seat_name_and_tty() {
    check(
        "[[seats]]\nname = \"seat0\"\ntty = \"/dev/tty1\"\n[[seats]]\nname = \"seat0\"\ntty = \"/dev/tty1\"\n",
        &[
            "5:8: `seats.name`: duplicate seat name \"seat0\" (first used at line 2)",
            "6:7: `seats.tty`: tty \"/dev/tty1\" is already used by the seat at line 3",
        ],
    );
}

#[test]
fn seat_missing_keys() {
    check(
        "[[seats]]\nname = \"seat0\"\n",
        &["1:1: `seats`: missing key `tty` in this [[seats]] entry"],
    );
}

#[test]
fn seat_tty_relative() {
    check(
        "seats = [{ name = \"a\", tty = \"tty1\" }]\n",
        &["1:30: `seats.tty`: expected an absolute path, found \"tty1\""],
    );
}

// ---- paging files ----

#[test]
fn paging_size_not_a_number() {
    check(
        "[memory-management]\npaging-files = [\"/swap 64M\"]\n",
        &["2:17: `memory-management.paging-files`: paging file size \"64M\" is not a whole number of megabytes"],
    );
}

#[test]
fn paging_size_negative() {
    check(
        "[memory-management]\npaging-files = [\"/swap -1\"]\n",
        &["2:17: `memory-management.paging-files`: paging file size \"-1\" is not a whole number of megabytes"],
    );
}

#[test]
fn paging_max_smaller_than_min() {
    check(
        "[memory-management]\npaging-files = [\"/swap 128 64\"]\n",
        &["2:17: `memory-management.paging-files`: maximum size 64 MB is smaller than minimum size 128 MB in \"/swap 128 64\""],
    );
}

#[test]
fn paging_too_many_numbers() {
    check(
        "[memory-management]\npaging-files = [\"/swap 1 2 3\"]\n",
        &["2:17: `memory-management.paging-files`: too many numbers in \"/swap 1 2 3\" (expected \"path [minMB [maxMB]]\")"],
    );
}

#[test]
fn paging_too_many_files() {
    let entries: Vec<String> = (0..18).map(|i| format!("\"/swap{i}\"")).collect();
    let src = format!(
        "[memory-management]\npaging-files = [\n{}\n]\n",
        entries.join(",\n")
    );
    // The 17th entry is on line 19; only the first one over the limit is reported.
    check(
        &src,
        &["19:1: `memory-management.paging-files`: at most 16 paging files are allowed, this is number 17"],
    );
}

#[test]
fn paging_relative_path() {
    check(
        "[memory-management]\npaging-files = [\"swapfile\", \"?:swapfile\"]\n",
        &[
            "2:17: `memory-management.paging-files`: paging file path must be absolute, found \"swapfile\"",
            "2:29: `memory-management.paging-files`: paging file path after `?:` must be absolute, found \"?:swapfile\"",
        ],
    );
}

#[test]
fn paging_duplicate_and_empty() {
    check(
        "[memory-management]\npaging-files = [\"/s 1\", \"/s 2\", \"\"]\n",
        &[
            "2:25: `memory-management.paging-files`: paging file \"/s\" is listed twice",
            "2:33: `memory-management.paging-files`: empty paging file entry",
        ],
    );
}

#[test]
fn paging_any_volume_without_volumes() {
    check(
        "[memory-management]\npaging-files = [\"?:/s\"]\npaging-file-volumes = []\n",
        &["2:17: `memory-management.paging-files`: a `?:` paging file needs at least one entry in `memory-management.paging-file-volumes`"],
    );
}

#[test]
fn paging_grammar() {
    let c = ok("[memory-management]\npaging-files = [\"/a\", \"/b 0 0\", \"/c 64\", \"?:/d 64 128\", \"/e 0\", \"/f 32 0\"]\n");
    let f = &c.memory_management.paging_files;
    let sizes: Vec<(bool, u64, u64, bool)> = f
        .iter()
        .map(|p| (p.any_volume, p.min_mb, p.max_mb, p.system_managed()))
        .collect();
    assert_eq!(
        sizes,
        [
            (false, 0, 0, true),
            (false, 0, 0, true),
            (false, 64, 64, false),
            (true, 64, 128, false),
            (false, 0, 0, true),
            (false, 32, 32, false),
        ]
    );
    assert_eq!(f[3].path, Path::new("/d"));
    assert_eq!(f[3].to_string(), "?:/d 64 128");
    assert_eq!(f[0].to_string(), "/a");
    // Display is the config grammar: printing and parsing again gives the same entries.
    let again: Vec<String> = f.iter().map(|p| format!("{:?}", p.to_string())).collect();
    let c2 = ok(&format!(
        "[memory-management]\npaging-files = [{}]\n",
        again.join(", ")
    ));
    assert_eq!(&c2.memory_management.paging_files, f);
}

// ---- absolute paths ----

#[test]
fn relative_paths() {
    check(
        concat!(
            "[session-manager]\n",
            "object-directories = [\"run/objects\"]\n",
            "dos-devices-directory = \"dos\"\n",
            "[[volumes]]\n",
            "device = \"/dev/vda\"\n",
            "mountpoint = \"var\"\n",
            "fstype = \"ext4\"\n",
            "[memory-management]\n",
            "paging-file-volumes = [\"\"]\n",
            "[pending-file-rename-operations]\n",
            "queue = \"renames\"\n",
            "[control]\n",
            "socket = \"./control\"\n",
        ),
        &[
            "2:23: `session-manager.object-directories`: expected an absolute path, found \"run/objects\"",
            "3:25: `session-manager.dos-devices-directory`: expected an absolute path, found \"dos\"",
            "6:14: `volumes.mountpoint`: expected an absolute path, found \"var\"",
            "9:24: `memory-management.paging-file-volumes`: expected an absolute path, found an empty string",
            "11:9: `pending-file-rename-operations.queue`: expected an absolute path, found \"renames\"",
            "13:10: `control.socket`: expected an absolute path, found \"./control\"",
        ],
    );
}

// ---- durations ----

#[test]
fn bad_durations() {
    check(
        "[shutdown]\ngrace-period = \"10 s\"\n[subsystems]\nx = { command = [\"/x\"], ready-timeout = \"5x\" }\n",
        &[
            "2:16: `shutdown.grace-period`: invalid duration \"10 s\": no spaces allowed (write \"10s\")",
            "4:41: `subsystems.x.ready-timeout`: invalid duration \"5x\": unknown unit `x` (use ms, s, m or h)",
        ],
    );
}

#[test]
fn duration_negative_and_wrong_type() {
    check(
        "[shutdown]\ngrace-period = -1\n",
        &["2:16: `shutdown.grace-period`: a duration cannot be negative"],
    );
    check(
        "[shutdown]\ngrace-period = 1.5\n",
        &["2:16: `shutdown.grace-period`: expected a duration like \"10s\", found a float"],
    );
}

#[test]
fn durations_accepted() {
    let c = ok("[shutdown]\ngrace-period = 3\n");
    assert_eq!(c.shutdown.grace_period, Duration::from_secs(3));
    let c = ok("[shutdown]\ngrace-period = \"1m30s\"\n");
    assert_eq!(c.shutdown.grace_period, Duration::from_secs(90));
    let c = ok("[shutdown]\ngrace-period = \"250ms\"\n");
    assert_eq!(c.shutdown.grace_period, Duration::from_millis(250));
}

// ---- enumerations ----

#[test]
fn unknown_crash_action() {
    check(
        "[crash-control]\naction = \"explode\"\n",
        &["2:10: `crash-control.action`: unknown crash action \"explode\" (expected \"panic\", \"reboot\", \"poweroff\" or \"halt\")"],
    );
}

#[test]
fn crash_action_effective() {
    let c = ok("[crash-control]\nauto-reboot = true\n");
    assert_eq!(c.crash_control.effective_action(), CrashAction::Reboot);
    let c = ok("[crash-control]\nauto-reboot = true\naction = \"halt\"\n");
    assert_eq!(c.crash_control.effective_action(), CrashAction::Halt);
    let c = ok("[crash-control]\naction = \"poweroff\"\n");
    assert_eq!(c.crash_control.effective_action(), CrashAction::Poweroff);
}

#[test]
fn unknown_forward_to_and_ready() {
    check(
        "[container]\nforward-signals-to = \"group\"\n[subsystems]\nx = { command = [\"/x\"], ready = \"socket\" }\n",
        &[
            "2:22: `container.forward-signals-to`: unknown value \"group\" (expected \"process\" or \"process-group\")",
            "4:33: `subsystems.x.ready`: unknown readiness \"socket\" (expected \"exec\" or \"notify\")",
        ],
    );
}

#[test]
fn protection_mode_not_0_or_1() {
    check(
        "[session-manager]\nprotection-mode = 2\n",
        &["2:19: `session-manager.protection-mode`: expected 0 (liberal) or 1 (strict), found 2"],
    );
}

#[test]
fn counts_at_least_one() {
    check(
        "[sessions]\nmax-sessions = 0\nparallel-session-creation = 0\n",
        &[
            "2:16: `sessions.max-sessions`: must be at least 1, found 0",
            "3:29: `sessions.parallel-session-creation`: must be at least 1, found 0",
        ],
    );
    check(
        "[sessions]\nmax-sessions = 4294967296\n",
        &["2:16: `sessions.max-sessions`: must be at most 4294967295, found 4294967296"],
    );
}

// ---- commands ----

#[test]
fn empty_commands() {
    check(
        concat!(
            "[session-manager]\n",
            "boot-execute = [\"\", \"autocheck ASYNC\", \"  \"]\n",
            "execute = [{ command = [] }, { command = [\"\", \"x\"] }, { async = true }]\n",
        ),
        &[
            "2:17: `session-manager.boot-execute`: empty command line",
            "2:21: `session-manager.boot-execute`: command line `autocheck ASYNC` has keywords but no program",
            "2:40: `session-manager.boot-execute`: empty command line",
            "3:24: `session-manager.execute.command`: empty command",
            "3:43: `session-manager.execute.command`: the program name is empty",
            "3:55: `session-manager.execute`: missing key `command` in command table",
        ],
    );
}

#[test]
fn command_list_not_an_array() {
    check(
        "[session-manager]\nboot-execute = \"fsck\"\n",
        &["2:16: `session-manager.boot-execute`: expected an array, found a string"],
    );
}

#[test]
fn command_argv_with_nul() {
    check(
        "[session-manager]\nexecute = [{ command = [\"/x\", \"a\\u0000b\"] }]\n",
        &["2:31: `session-manager.execute.command`: \"a\\0b\" contains a NUL character"],
    );
}

#[test]
fn empty_multi_string_is_no_commands() {
    let c = ok("[session-manager]\nboot-execute = []\nsetup-execute = []\nexecute = []\n");
    assert!(c.session_manager.boot_execute.is_empty());
}

#[test]
fn command_forms() {
    let c = ok(concat!(
        "[session-manager]\n",
        "boot-execute = [\"AutoCheck  async fsck -p\", { command = [\"/sbin/x\", \"a b\"], fatal = true, debug = true }]\n",
        "[subsystems]\n",
        "optional = [\"p\"]\n",
        "p = { command = \"async /usr/bin/p --x\", ready = \"notify\", ready-timeout = \"60s\", critical = false }\n",
        "[sessions]\n",
        "initial-command = \"\"\n",
        "session0-initial-command = \" \"\n",
    ));
    let be = &c.session_manager.boot_execute;
    assert!(be[0].autocheck && be[0].async_ && !be[0].debug);
    assert_eq!(be[0].argv, ["fsck", "-p"]);
    assert!(be[1].fatal && be[1].debug && !be[1].autocheck);
    assert_eq!(be[1].argv, ["/sbin/x", "a b"]);
    let p = c.subsystems.get("P").expect("defined");
    assert!(p.async_);
    assert_eq!(p.argv, ["/usr/bin/p", "--x"]);
    assert_eq!(p.ready, Ready::Notify);
    assert_eq!(p.ready_timeout, Some(Duration::from_secs(60)));
    assert_eq!(p.critical, Some(false));
    assert!(!p.is_critical(true));
    assert_eq!(c.sessions.initial_command, None);
    assert_eq!(c.sessions.session0_initial_command, None);
}

// ---- environment ----

#[test]
fn environment_names() {
    check(
        "[environment]\n\"\" = \"x\"\n\"A=B\" = \"y\"\n\"N\\u0000\" = \"z\"\nOK = \"v\\u0000\"\nNUM = 3\n",
        &[
            "2:1: `environment`: variable name is empty",
            "3:1: `environment`: variable name \"A=B\" contains `=`",
            "4:1: `environment`: \"N\\0\" contains a NUL character",
            "5:6: `environment.OK`: \"v\\0\" contains a NUL character",
            "6:7: `environment.NUM`: expected a string, found an integer",
        ],
    );
}

#[test]
fn environment_keeps_file_order_and_path_default() {
    let c = ok("[environment]\nZ = \"1\"\nA = \"%Z%\"\nM = \"2\"\n");
    let names: Vec<&str> = c.environment.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["PATH", "Z", "A", "M"]);
    assert_eq!(c.environment[2].1, "%Z%", "values stay raw");
    let c = ok("[environment]\nZ = \"1\"\nPATH = \"/bin\"\n");
    assert_eq!(
        c.environment,
        [("Z".into(), "1".into()), ("PATH".into(), "/bin".into())]
    );
}

/// Issue 12: forty variables that each double the previous one made PID 1 allocate
/// gigabytes at boot. `check` names the first variable past the kernel's per-string limit.
#[test]
fn doubling_chain_is_reported_at_the_first_oversize_variable() {
    let mut src = format!("[environment]\nV0 = \"{}\"\n", "x".repeat(1024));
    for i in 1..40 {
        src.push_str(&format!("V{i} = \"%V{p}%%V{p}%\"\n", p = i - 1));
    }
    // V7 would be 128 KiB: with `V7=` and its NUL, past MAX_ARG_STRLEN. Later variables see
    // V7 as undefined (as the boot does, which skips it): V8 is the literal `%V7%%V7%`, and the
    // doubling starts again from there.
    let msg = |n: u32| {
        format!("`environment.V{n}`: expanded, `V{n}=VALUE` would be longer than 131071 bytes, the most one variable may take (the kernel's MAX_ARG_STRLEN, 131072 with the NUL)")
    };
    assert_eq!(
        diags(&src),
        [
            format!("9:1: {}", msg(7)),
            format!("24:1: {}", msg(22)),
            format!("39:1: {}", msg(37)),
        ]
    );
}

#[test]
fn one_mebibyte_variable_is_reported() {
    let src = format!(
        "[environment]\nA = \"1\"\nBIG = \"{}\"\n",
        "y".repeat(1000 * 1024)
    );
    check(
        &src,
        &["3:1: `environment.BIG`: expanded, `BIG=VALUE` would be longer than 131071 bytes, the most one variable may take (the kernel's MAX_ARG_STRLEN, 131072 with the NUL)"],
    );
    // Just under the limit is fine: `NAME=` + value + NUL = 131072.
    ok(&format!(
        "[environment]\nBIG = \"{}\"\n",
        "y".repeat(131072 - 5)
    ));
}

#[test]
fn whole_environment_is_capped() {
    // Each copy is under the per-variable limit; together they pass 1 MiB.
    let mut src = format!("[environment]\nA = \"{}\"\n", "z".repeat(120 * 1024));
    for i in 0..10 {
        src.push_str(&format!("C{i} = \"%A%\"\n"));
    }
    // PATH (62 bytes + NUL + pointer) and A fit with C0..C6; C7 is the ninth 120 KiB value,
    // and each later one is left out the same way.
    let msg = "the environment would be larger than 1048576 bytes (each NAME=VALUE, its NUL and its 8-byte pointer, as execve counts them)";
    assert_eq!(
        diags(&src),
        [
            format!("10:1: `environment.C7`: {msg}"),
            format!("11:1: `environment.C8`: {msg}"),
            format!("12:1: `environment.C9`: {msg}"),
        ]
    );
}

// ---- dos devices ----

#[test]
fn dos_device_names() {
    check(
        "[dos-devices]\n\"\" = \"/x\"\n\"a/b\" = \"/y\"\n\"..\" = \"/z\"\n",
        &[
            "2:1: `dos-devices`: device name is empty",
            "3:1: `dos-devices`: device name \"a/b\" must be a single file name or an absolute path",
            "4:1: `dos-devices`: device name \"..\" must be a single file name or an absolute path",
        ],
    );
}

#[test]
fn dos_devices_keep_file_order() {
    let c = ok("[dos-devices]\n\"Z:\" = \"/z\"\n\"/dev/cdrom\" = \"/dev/sr0\"\n\"A:\" = \"\"\n");
    assert_eq!(
        c.dos_devices,
        [
            ("Z:".into(), "/z".into()),
            ("/dev/cdrom".into(), "/dev/sr0".into()),
            ("A:".into(), "".into())
        ]
    );
}

// ---- volumes ----

#[test]
fn duplicate_volume_mountpoint() {
    check(
        concat!(
            "[[volumes]]\ndevice = \"/dev/a\"\nmountpoint = \"/var\"\nfstype = \"ext4\"\n",
            "[[volumes]]\ndevice = \"/dev/b\"\nmountpoint = \"/var/\"\nfstype = \"ext4\"\n",
        ),
        &["7:14: `volumes.mountpoint`: \"/var/\" is already the mountpoint of the volume at line 3"],
    );
}

#[test]
fn volume_missing_keys_and_empty_values() {
    check(
        "[[volumes]]\ndevice = \"\"\nmountpoint = \"/x\"\n",
        &[
            "1:1: `volumes`: missing key `fstype` in this [[volumes]] entry",
            "2:10: `volumes.device`: device is empty",
        ],
    );
}

/// `device` is what the boot can wait for: an absolute path or a tag with a value. A label may
/// hold spaces (GPT's "EFI System Partition", an ext4 "My Data"); `tmpfs` (fstab's habit) and a
/// tag without a value are refused here, not only at boot.
#[test]
fn volume_devices_the_boot_can_resolve() {
    let c = ok(concat!(
        "[[volumes]]\ndevice = \"PARTLABEL=EFI System Partition\"\nmountpoint = \"/a\"\nfstype = \"vfat\"\n",
        "[[volumes]]\ndevice = 'LABEL=\"My Data\"'\nmountpoint = \"/b\"\nfstype = \"ext4\"\n",
        "[[volumes]]\ndevice = \"/dev/disk/by-id/usb-My Disk\"\nmountpoint = \"/c\"\nfstype = \"ext4\"\n",
    ));
    assert_eq!(c.volumes[0].device, "PARTLABEL=EFI System Partition");
    assert_eq!(c.volumes[1].device, "LABEL=\"My Data\"");
    check(
        concat!(
            "[[volumes]]\ndevice = \"tmpfs\"\nmountpoint = \"/x\"\nfstype = \"tmpfs\"\n",
            "[[volumes]]\ndevice = \"LABEL=\"\nmountpoint = \"/y\"\nfstype = \"ext4\"\n",
            "[[volumes]]\ndevice = 'UUID=\"\"'\nmountpoint = \"/z\"\nfstype = \"ext4\"\n",
            "[[volumes]]\ndevice = \"/dev/a\\tb\"\nmountpoint = \"/w\"\nfstype = \"ext4\"\n",
        ),
        &[
            "2:10: `volumes.device`: expected an absolute path, LABEL=, UUID=, PARTUUID= or PARTLABEL=, found \"tmpfs\"",
            "6:10: `volumes.device`: LABEL= needs a value",
            "10:10: `volumes.device`: UUID= needs a value",
            "14:10: `volumes.device`: device \"/dev/a\\tb\" contains a control character",
        ],
    );
}

#[test]
fn volume_read_only() {
    let c = ok("volumes = [{ device = \"/dev/a\", mountpoint = \"/a\", fstype = \"ext4\", options = \"nodev,ro\" }, { device = \"UUID=1\", mountpoint = \"/b\", fstype = \"xfs\", options = \"rw,noatime\" }]\n");
    assert!(c.volumes[0].read_only());
    assert!(!c.volumes[1].read_only());
}

// ---- names ----

#[test]
fn bad_names() {
    check(
        "[boot-drivers]\nmodules = [\"\", \"ext 4\"]\n[control]\nallowed-group = \"\"\n",
        &[
            "2:12: `boot-drivers.modules`: module name is empty",
            "2:16: `boot-drivers.modules`: module name \"ext 4\" contains whitespace or a control character",
            "4:17: `control.allowed-group`: group name is empty",
        ],
    );
}

// ---- everything at once ----

#[test]
fn ten_problems_ten_diagnostics() {
    let src = concat!(
        "[session-manager]\n",              // 1
        "protection-mode = 7\n",            // 2
        "boot-execute = [\"async\"]\n",     // 3
        "object-directories = [\"rel\"]\n", // 4
        "colour = \"blue\"\n",              // 5
        "[sessions]\n",                     // 6
        "max-sessions = 0\n",               // 7
        "[subsystems]\n",                   // 8
        "required = [\"nope\"]\n",          // 9
        "[crash-control]\n",                // 10
        "action = \"boom\"\n",              // 11
        "[shutdown]\n",                     // 12
        "grace-period = \"forever\"\n",     // 13
        "[control]\n",                      // 14
        "socket = \"control\"\n",           // 15
        "[environment]\n",                  // 16
        "\"A=B\" = \"x\"\n",                // 17
    );
    let d = diags(src);
    assert_eq!(d.len(), 10, "{d:#?}");
    let lines: Vec<&str> = d
        .iter()
        .map(|s| s.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        ["2", "3", "4", "5", "7", "9", "11", "13", "15", "17"]
    );
}

#[test]
fn round_trip_display_line_through_config() {
    let c = ok("[session-manager]\nboot-execute = [\"autocheck async debug /sbin/fsck -p -A\"]\n");
    let line = c.session_manager.boot_execute[0].display_line();
    let again = ok(&format!("[session-manager]\nboot-execute = [{line:?}]\n"));
    assert_eq!(again, c);
}

/// A 1 MiB-class file with thousands of entries and problems must stay fast (duplicate checks
/// and positions are hashed / computed incrementally; this took seconds when they were not).
#[test]
fn large_inputs_stay_linear() {
    let mut src = String::new();
    for i in 0..5000 {
        src.push_str(&format!(
            "[[seats]]\nname = \"s{i}\"\ntty = \"/dev/tty{i}\"\n"
        ));
    }
    src.push_str("[boot-drivers]\nmodules = [");
    src.push_str(&vec!["\"\""; 20000].join(","));
    src.push_str("]\n");
    let t = std::time::Instant::now();
    let d = parse_str(&src, Path::new("big.toml")).unwrap_err();
    assert_eq!(d.len(), 20000);
    assert_eq!(d.0[19999].line, 15002);
    assert_eq!(d.0[19999].col, 12 + 19999 * 3);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[test]
fn absurd_durations_and_unusable_absolute_dos_names_are_rejected() {
    let src = "[shutdown]\ngrace-period = 9223372036854775807\n\
               [subsystems]\nrequired = [\"a\"]\na = { command = [\"x\"], ready = \"notify\", ready-timeout = \"18446744073709551615s\" }\n\
               [dos-devices]\n\"/\" = \"/x\"\n\"/a/../b\" = \"/y\"\n";
    let err = smss_config::parse_str(src, std::path::Path::new("t.toml")).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.len(), 4, "{text}");
    assert!(
        text.contains("t.toml:2:16: `shutdown.grace-period`: duration too long"),
        "{text}"
    );
    assert!(text.contains("too"), "{text}");
    assert!(text.contains("\"/\" must name a file below /"), "{text}");
    assert!(text.contains("\"/a/../b\""), "{text}");
}

/// Issue 11: `[boot-drivers] coldplug` and `[[volumes]] device-timeout` / `required`
/// (interface.md section 8).
#[test]
fn coldplug_and_volume_waits() {
    let c = ok("[boot-drivers]\nmodules = []\n[[volumes]]\ndevice = \"LABEL=x\"\nmountpoint = \"/var\"\nfstype = \"ext4\"\n");
    assert!(c.boot_drivers.coldplug, "coldplug defaults to true");
    assert_eq!(c.volumes[0].device_timeout, Duration::from_secs(10));
    assert!(!c.volumes[0].required);
    assert!(Config::default().boot_drivers.coldplug);
    let c = ok("[boot-drivers]\ncoldplug = false\n[[volumes]]\ndevice = \"PARTLABEL=data\"\nmountpoint = \"/var\"\nfstype = \"ext4\"\ndevice-timeout = \"1m30s\"\nrequired = true\n");
    assert!(!c.boot_drivers.coldplug);
    assert_eq!(c.volumes[0].device_timeout, Duration::from_secs(90));
    assert!(c.volumes[0].required);
    check(
        "[boot-drivers]\ncoldplug = \"yes\"\n[[volumes]]\ndevice = \"/dev/vda\"\nmountpoint = \"/var\"\nfstype = \"ext4\"\ndevice-timeout = \"soon\"\nrequired = 1\n",
        &[
            "2:12: `boot-drivers.coldplug`: expected a boolean (true or false), found a string",
            "7:18: `volumes.device-timeout`: invalid duration \"soon\": expected a number followed by a unit (ms, s, m, h)",
            "8:12: `volumes.required`: expected a boolean (true or false), found an integer",
        ],
    );
}

/// A list under a misspelt `required`, `optional` or `kmode` (or Windows' `Required`) is
/// named as the list it was meant to be: before, it was taken for a subsystem definition and
/// reported as "expected a command line string or a command table, found an array".
#[test]
fn a_misspelt_subsystems_list_is_named() {
    check(
        "[subsystems]\nRequired = [\"w\"]\nrequried = [\"w\"]\noptinal = [\"w\"]\nkmod = [\"fuse\"]\nzz = [\"w\"]\nw = \"/bin/true\"\n",
        &[
            "2:12: `subsystems.Required`: expected a command line string or a command table, found an array; did you mean `required`?",
            "3:12: `subsystems.requried`: expected a command line string or a command table, found an array; did you mean `required`?",
            "4:11: `subsystems.optinal`: expected a command line string or a command table, found an array; did you mean `optional`?",
            "5:8: `subsystems.kmod`: expected a command line string or a command table, found an array; did you mean `kmode`?",
            "6:6: `subsystems.zz`: expected a command line string or a command table, found an array",
        ],
    );
}

/// A key written above the first `[section]` line (or with that line forgotten) is in the
/// top level: it is named as a key and its section is given. Before, it read "unknown
/// section `max-sessions` in the top level (expected one of: session-manager, ...)".
#[test]
fn a_key_outside_its_section_is_named_with_the_section() {
    check(
        "max-sessions = 3\nboot-execute = [\"x\"]\nrequired = [\"w\"]\nbogus = 1\n[sessions]\n",
        &[
            "1:1: key `max-sessions` is outside any section: it belongs in [sessions]",
            "2:1: key `boot-execute` is outside any section: it belongs in [session-manager]",
            "3:1: key `required` is outside any section: it belongs in [[volumes]] or [subsystems]",
            "4:1: unknown section `bogus` in the top level (expected one of: session-manager, boot-drivers, volumes, memory-management, environment, dos-devices, pending-file-rename-operations, subsystems, sessions, seats, crash-control, control, shutdown, container)",
        ],
    );
}
