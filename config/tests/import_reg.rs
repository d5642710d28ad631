//! `smss import-reg` on the fixtures in `fixtures/reg/` (written by `make-fixtures.py` from the
//! format's documentation): every one that is a registry export becomes a configuration the
//! real validator accepts, with the values the issue asks for; every broken one lists its
//! problems with their lines.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use smss_config::reg::{self, Options};
use smss_config::{parse_command_line, parse_str, Config};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reg")
}

fn import(name: &str, drives: &[&str]) -> (String, Config) {
    let mut o = Options::new(name);
    for d in drives {
        let (l, p) = reg::parse_drive_flag(d).unwrap();
        o.map_drive(l, p);
    }
    let i = reg::import(&fixture(name), &o).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let cfg = parse_str(&i.toml, Path::new(name)).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
    (i.toml, cfg)
}

fn env<'a>(cfg: &'a Config, name: &str) -> Option<&'a str> {
    cfg.environment
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn dos<'a>(cfg: &'a Config, name: &str) -> Option<&'a str> {
    cfg.dos_devices
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn argvs(cmds: &[smss_config::CommandSpec]) -> Vec<String> {
    cmds.iter().map(|c| c.display_line()).collect()
}

#[test]
fn every_export_fixture_passes_the_real_validator() {
    let mut n = 0;
    for e in std::fs::read_dir(dir()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".reg") || name.starts_with("err-") {
            continue;
        }
        for drives in [&[][..], &["D:=/srv/d", "S:=/srv/s", "C:=/mnt/c"][..]] {
            let (toml, _) = import(&name, drives);
            assert!(toml.starts_with("# smss configuration made by `smss import-reg`"));
        }
        n += 1;
    }
    assert!(n >= 7, "only {n} fixtures");
}

#[test]
fn regedit_export_utf16le() {
    let (toml, cfg) = import("regedit-v5-utf16.reg", &[]);
    let sm = &cfg.session_manager;
    // BootExecute's default maps to the documented fsck analogue.
    assert_eq!(argvs(&sm.boot_execute), ["autocheck fsck -p -A"]);
    assert_eq!(
        sm.boot_execute[0],
        parse_command_line("autocheck fsck -p -A").unwrap()
    );
    assert_eq!(
        sm.object_directories,
        [
            PathBuf::from("/run/smss/objects/Windows"),
            PathBuf::from("/run/smss/objects/RPC Control")
        ]
    );
    assert_eq!(sm.protection_mode, 1);
    assert!(sm.setup_execute.is_empty()); // hex(7):00,00, the empty list
    let pf = &cfg.memory_management.paging_files;
    assert_eq!(pf.len(), 1);
    assert!(pf[0].any_volume && pf[0].system_managed());
    assert_eq!(pf[0].path, PathBuf::from("/pagefile.sys"));
    // %SystemRoot% stays a reference, defined from the drive map because the file does not.
    assert_eq!(env(&cfg, "SystemRoot"), Some("/Windows"));
    assert_eq!(cfg.environment[1].0, "SystemRoot"); // right after the built-in PATH
    assert_eq!(env(&cfg, "ComSpec"), Some("%SystemRoot%/system32/cmd.exe"));
    assert_eq!(env(&cfg, "TEMP"), Some("%SystemRoot%/TEMP"));
    assert_eq!(env(&cfg, "windir"), Some("%SystemRoot%"));
    assert_eq!(env(&cfg, "Path"), None);
    assert_eq!(env(&cfg, "PATH"), Some(smss_config::DEFAULT_PATH));
    assert!(toml.contains("# note: SystemRoot referenced but not defined by the file"));
    assert_eq!(dos(&cfg, "AUX"), Some("/dev/ttyS0"));
    assert_eq!(dos(&cfg, "NUL"), Some("/dev/null"));
    assert_eq!(dos(&cfg, "P:"), Some("/Emulators"));
    assert_eq!(dos(&cfg, "Z:"), None);
    let s = &cfg.subsystems;
    // Windows runs csrss.exe: required, it could not start and the boot would stop (STOP
    // 0xC000021A) on the unedited import. Left out of required, its definition kept.
    assert_eq!(s.required, ["Debug"]);
    assert!(
        toml.contains("# not imported: Session Manager\\SubSystems\\Required `Windows` (its command is a Windows program"),
        "{toml}"
    );
    assert!(s.optional.is_empty() && s.kmode.is_empty());
    let w = s.get("windows").unwrap();
    assert_eq!(w.argv[0], "%SystemRoot%/system32/csrss.exe");
    assert_eq!(w.argv[1], "ObjectDirectory=\\Windows");
    assert!(cfg.crash_control.auto_reboot);
    for line in [
        "# not imported: Session Manager\\GlobalFlag (",
        "# not imported: Session Manager\\CriticalSectionTimeout (",
        "# not imported: Session Manager\\AutoChkTimeout (",
        "# not imported: Session Manager\\HeapDeCommitFreeBlockThreshold (",
        "# not imported: Session Manager\\PendingFileRenameOperations (",
        "# not imported: Session Manager\\Memory Management\\SessionPoolSize (",
        "# not imported: Session Manager\\KnownDLLs (2 values;",
        // REG_BINARY (hex:) where Windows keeps binary data: parsed, listed.
        "# not imported: Session Manager\\AppCompatCache (1 value; Windows application compatibility data)",
        "# not imported: Session Manager\\DOS Devices\\Z: (drive D: is not mapped: add --drive D:=PATH)",
        "# not imported: Session Manager\\DOS Devices\\MAILSLOT (",
        "# not imported: Session Manager\\SubSystems\\Kmode `\\SystemRoot\\System32\\win32k.sys` (",
        "# not imported: CrashControl\\CrashDumpEnabled (",
        "# not imported: HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Lsa (not a Session Manager key)",
        "# note: Session Manager\\BootExecute: `autocheck autochk *` became `autocheck fsck -p -A`",
    ] {
        assert!(toml.contains(line), "no {line:?} in\n{toml}");
    }
    // A mapped D: brings Z: back.
    let (_, cfg) = import("regedit-v5-utf16.reg", &["D:=/srv/d"]);
    assert_eq!(dos(&cfg, "Z:"), Some("/srv/d/Shared"));
}

#[test]
fn hand_written_tweak_utf8_lf() {
    let (toml, cfg) = import("tweak-v5-utf8-lf.reg", &[]);
    let sm = &cfg.session_manager;
    assert_eq!(
        argvs(&sm.boot_execute),
        ["autocheck fsck -p -A", "/tools/clean -q"]
    );
    // "Execute"=- in the repeated header: deleted means not set.
    assert!(sm.execute.is_empty());
    assert!(toml.contains("# left unset: Session Manager\\Execute (deleted by the file on line 26"));
    assert!(toml.contains("# left unset: everything under HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\AppCompatCache"));
    assert_eq!(sm.protection_mode, 0); // from the second header of the same key
    assert!(toml.contains("# ignored: line 3: value \"Stray\" before any [KEY] header"));
    assert_eq!(env(&cfg, "GREETING"), Some("say \"hi\" to C:\\x"));
    assert_eq!(env(&cfg, "HOME_DIR"), Some("/Users/Default"));
    assert_eq!(env(&cfg, "TOOLS"), None);
    assert_eq!(dos(&cfg, "P:"), Some("/Emulators"));
    assert_eq!(dos(&cfg, "R:"), Some("/Users/Public"));
    assert_eq!(dos(&cfg, "Q:"), None);
    assert_eq!(
        cfg.sessions
            .session0_initial_command
            .as_ref()
            .map(|c| c.display_line()),
        Some("/sbin/session0 --quiet".to_owned())
    );
    for d in [
        "BootExecute entry `D:\\tools\\x`",
        "DOS Devices\\Q:",
        "Environment\\TOOLS",
        "Memory Management\\PagingFiles entry `d:\\swap`",
    ] {
        let line = format!(
            "# not imported: Session Manager\\{d} (drive D: is not mapped: add --drive D:=PATH)"
        );
        assert!(toml.contains(&line), "no {line:?} in\n{toml}");
    }
    let (_, cfg) = import("tweak-v5-utf8-lf.reg", &["D:=/srv/d"]);
    assert_eq!(
        argvs(&cfg.session_manager.boot_execute),
        ["autocheck fsck -p -A", "/tools/clean -q", "/srv/d/tools/x"]
    );
    assert_eq!(dos(&cfg, "Q:"), Some("/srv/d/Games"));
    assert_eq!(env(&cfg, "TOOLS"), Some("/tools:/srv/d/tools"));
    let pf: Vec<String> = cfg
        .memory_management
        .paging_files
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(pf, ["/pagefile.sys 16 8192", "/srv/d/swap"]);
}

#[test]
fn crlf_and_lf_give_the_same_configuration() {
    let lf = fixture("tweak-v5-utf8-lf.reg");
    let text = String::from_utf8(lf.clone()).unwrap();
    let crlf = text.replace('\n', "\r\n") + "\r\n";
    let o = Options::new("x");
    let a = reg::import(&lf, &o).unwrap();
    let b = reg::import(crlf.as_bytes(), &o).unwrap();
    assert_eq!(a.toml, b.toml);
}

#[test]
fn regedit4_ansi() {
    let (toml, cfg) = import("regedit4-ansi.reg", &[]);
    assert!(toml.contains("(REGEDIT4, ANSI (Windows-1252))"));
    assert_eq!(
        argvs(&cfg.session_manager.boot_execute),
        ["autocheck fsck -p -A"]
    );
    assert_eq!(env(&cfg, "TEMP"), Some("/Temp")); // a single unescaped backslash
    assert_eq!(env(&cfg, "CAFE"), Some("café"));
    assert_eq!(env(&cfg, "LOGS"), Some("%SystemRoot%/Logs")); // hex(2), one byte per character
                                                              // hex(7), single final NUL: both names read; Posix runs psxss.exe, so not required.
    assert_eq!(cfg.subsystems.required, ["Debug"]);
    assert!(
        toml.contains("SubSystems\\Required `Posix` (its command is a Windows program"),
        "{toml}"
    );
    assert_eq!(
        cfg.subsystems.get("posix").unwrap().argv,
        ["%SystemRoot%/system32/psxss.exe"]
    );
}

#[test]
fn offline_hive_control_set() {
    let (toml, cfg) = import("offline-hive.reg", &[]);
    assert_eq!(cfg.session_manager.protection_mode, 1); // ControlSet001, not 002
    assert!(cfg.session_manager.boot_execute.is_empty());
    assert!(!cfg.crash_control.auto_reboot);
    assert_eq!(env(&cfg, "LANG"), Some("C.UTF-8"));
    assert!(toml.contains("# not imported: HKEY_LOCAL_MACHINE\\SOMEHIVE\\ControlSet002\\Control\\Session Manager (another control set; this import reads HKEY_LOCAL_MACHINE\\SOMEHIVE\\ControlSet001)"));
    assert!(toml.contains("# not imported: CrashControl\\DumpFileSize ("));
}

#[test]
fn utf8_with_bom_and_lower_case_keys() {
    let (_, cfg) = import("utf8-bom.reg", &[]);
    assert_eq!(env(&cfg, "EDITOR"), Some("vi"));
}

#[test]
fn no_session_manager_values() {
    let i = reg::import(&fixture("no-session-manager.reg"), &Options::new("x")).unwrap();
    assert_eq!(i.entries, 0);
    assert!(i
        .toml
        .contains("# The file has no Session Manager values: there is nothing to import."));
    assert_eq!(
        parse_str(&i.toml, Path::new("x")).unwrap(),
        Config::default()
    );
}

#[test]
fn broken_files_list_every_problem_with_its_line() {
    let errs = |name: &str| -> Vec<(usize, String)> {
        reg::import(&fixture(name), &Options::new(name))
            .unwrap_err()
            .into_iter()
            .map(|p| (p.line, p.message))
            .collect()
    };
    let e = errs("err-not-a-registry-export.reg");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.starts_with("not a registry export"));
    let e = errs("err-several.reg");
    assert_eq!(
        e.iter().map(|p| p.0).collect::<Vec<_>>(),
        [4, 5, 6, 7],
        "{e:?}"
    );
    assert!(e[0].1.contains("truncated hex data"));
    assert!(e[1].1.contains("unterminated string"));
    assert!(e[2].1.contains("dword"));
    assert!(e[3].1.contains("end of the file"));
    let e = errs("err-odd-utf16.reg");
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.starts_with("odd UTF-16 length"));
}

#[test]
fn a_key_deletion_unsets_what_came_before_it_only() {
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let text = format!(
        "REGEDIT4\n[{sm}\\Environment]\n\"A\"=\"1\"\n\"B\"=\"2\"\n[-{sm}\\Environment]\n[{sm}\\Environment]\n\"B\"=\"3\"\n[{sm}]\n\"ProtectionMode\"=dword:0\n[-{sm}]\n"
    );
    let i = reg::import(text.as_bytes(), &Options::new("x")).unwrap();
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    assert_eq!(env(&cfg, "A"), None);
    assert_eq!(env(&cfg, "B"), None); // the whole Session Manager key is deleted last
    assert_eq!(cfg.session_manager.protection_mode, 1);
    assert!(i.toml.contains(&format!("# left unset: everything under {sm}\\Environment (the file deletes the key with [-...] on line 5)")));
    // A value deletion is noted on its own; a key deletion is not repeated for every value.
    assert!(
        !i.toml.contains("deleted by the file on line"),
        "{}",
        i.toml
    );

    let text =
        format!("REGEDIT4\n[-{sm}\\Environment]\n[{sm}\\Environment]\n\"B\"=\"3\"\n\"C\"=-\n");
    let i = reg::import(text.as_bytes(), &Options::new("x")).unwrap();
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    assert_eq!(env(&cfg, "B"), Some("3"));
    assert!(i
        .toml
        .contains("# left unset: Session Manager\\Environment\\C (deleted by the file on line 5"));
}

#[test]
fn dos_device_names_plain_or_absolute() {
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let text = format!(
        "REGEDIT4\n[{sm}\\DOS Devices]\n\"/dev/cdrom\"=\"\\\\Device\\\\CdRom0\"\n\"a/b\"=\"C:\\\\x\"\n\"/\"=\"C:\\\\x\"\n\"/x/../y\"=\"C:\\\\x\"\n\"..\"=\"C:\\\\x\"\n\"OLD:\"=\"\"\n"
    );
    let i = reg::import(text.as_bytes(), &Options::new("x")).unwrap();
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    assert_eq!(
        cfg.dos_devices,
        [
            ("/dev/cdrom".to_owned(), "/dev/sr0".to_owned()),
            ("OLD:".to_owned(), String::new()), // an empty target deletes the link, as on Windows
        ]
    );
    assert_eq!(i.not_imported.len(), 4, "{:?}", i.not_imported);
}

#[test]
fn odd_names_and_equal_paths_never_make_an_invalid_configuration() {
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let text = format!(
        "REGEDIT4\n[{sm}\\SubSystems]\n\"\"=\"/bin/x\"\n[{sm}\\Memory Management]\n\"PagingFiles\"=hex(7):{}\n",
        "c:\\swap\0c:\\swap\\\0c:\\.\\swap 1\0?:\\s\0?:\\s\\\0\0"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let i = reg::import(text.as_bytes(), &Options::new("x")).unwrap_or_else(|e| panic!("{e:?}"));
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    let pf: Vec<String> = cfg
        .memory_management
        .paging_files
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(pf, ["/swap", "?:/s"]);
    assert!(cfg.subsystems.definitions.is_empty());
}

#[test]
fn control_characters_in_names_stay_out_of_the_toml_comments() {
    // Found by the reg_import fuzz target: a NUL inside a subkey name reached a comment line,
    // which TOML refuses.
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let text =
        format!("REGEDIT4\n[{sm}\\En\0\u{1}v]\n\"A\"=\"1\"\n[{sm}]\n\"Glob\ralFlag\"=dword:0\n");
    let i =
        reg::import(text.as_bytes(), &Options::new("x\u{7f}")).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        i.toml
            .contains("# not imported: Session Manager\\En??v (1 value;"),
        "{}",
        i.toml
    );
    assert!(
        i.toml
            .contains("# not imported: Session Manager\\Glob?alFlag ("),
        "{}",
        i.toml
    );
}

#[test]
fn the_result_always_fits_what_smss_check_reads() {
    // An export of the whole `Control` key (a common mistake: 12,000 DeviceClasses keys, about
    // 3 MiB, well inside the 16 MiB input limit) used to give a 3 MB TOML, exit 0, that
    // `smss check` refuses (larger than 1 MiB). The comment block is bounded and the Session
    // Manager values come first.
    let control = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control";
    let mut text = format!("REGEDIT4\r\n\r\n[{control}\\Session Manager]\r\n\"GlobalFlag\"=dword:0\r\n\"ProtectionMode\"=dword:1\r\n");
    for i in 0..12_000 {
        text.push_str(&format!(
            "\r\n[{control}\\DeviceClasses\\{{53f56307-b6bf-11d0-94f2-00a0c91efb8b}}\\##?#STORAGE#Volume#{{{i:08x}-0000-0000-0000-000000000000}}#0000000000100000#{{53f56307-b6bf-11d0-94f2-00a0c91efb8b}}]\r\n\"DeviceInstance\"=\"STORAGE\\\\Volume\\\\{i}\"\r\n"
        ));
    }
    assert!(text.len() < reg::MAX_REG_FILE_SIZE);
    let i = reg::import(text.as_bytes(), &Options::new("control.reg")).unwrap();
    assert!(
        i.toml.len() as u64 <= smss_config::MAX_CONFIG_SIZE,
        "{} bytes",
        i.toml.len()
    );
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    assert_eq!(cfg.session_manager.protection_mode, 1);
    assert!(i
        .toml
        .contains("# not imported: Session Manager\\GlobalFlag ("));
    assert_eq!(i.not_imported.len(), 12_001);
    assert!(
        i.toml.contains("more comment lines not listed"),
        "{}",
        &i.toml[i.toml.len() - 2000..]
    );

    // Values that are imported and too many to fit in 1 MiB: an error, not a file `smss check`
    // refuses.
    let mut text = format!("REGEDIT4\r\n[{control}\\Session Manager\\DOS Devices]\r\n");
    for i in 0..30_000 {
        text.push_str(&format!(
            "\"D{i}\"=\"\\\\??\\\\C:\\\\Program Files\\\\Some Vendor\\\\Data\\\\{i}\"\r\n"
        ));
    }
    let e = reg::import(text.as_bytes(), &Options::new("dos.reg")).unwrap_err();
    assert!(
        e[0].message.contains("more than the 1048576 bytes"),
        "{e:?}"
    );
}

#[test]
fn many_values_translate_in_linear_time() {
    // Every DOS device naming an NT device gets a note, every undefined `%VAR%` one too: the
    // notes were kept unique by a scan of the list, so 60,000 of each (a 4 MiB file, inside
    // the 16 MiB limit) took minutes.
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let n = 60_000;
    let mut text = format!("REGEDIT4\r\n[{sm}\\DOS Devices]\r\n");
    for i in 0..n {
        text.push_str(&format!("\"D{i}\"=\"\\\\DosDevices\\\\COM1\"\r\n"));
    }
    text.push_str(&format!("[{sm}\\Environment]\r\n"));
    for i in 0..n {
        text.push_str(&format!("\"E{i}\"=\"%V{i}%\"\r\n"));
    }
    assert!(text.len() < reg::MAX_REG_FILE_SIZE);
    let file = reg::parse(text.as_bytes()).unwrap();
    let start = std::time::Instant::now();
    let i = reg::translate(&file, &Options::new("many.reg"));
    let took = start.elapsed();
    assert!(i.entries >= n, "{}", i.entries);
    assert!(
        // A bound on a blow-up, not a speed goal: the quadratic version took 124 s here, the
        // linear one 3 s in a debug build; 60 s leaves room for a loaded machine.
        took < std::time::Duration::from_secs(60),
        "translating took {took:?}"
    );
}

#[test]
fn an_environment_past_execs_limits_is_listed_not_an_internal_error() {
    // One variable longer than execve takes (131,071 bytes), or one that becomes so when
    // expanded against the ones before it: `import` used to fail with "internal error: the
    // generated configuration does not validate" instead of leaving it out with the reason.
    let sm = "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager";
    let text = format!(
        "REGEDIT4\r\n[{sm}\\Environment]\r\n\"BIG\"=\"{}\"\r\n\"A\"=\"{}\"\r\n\"B\"=\"%A%%A%\"\r\n\"C\"=\"%A%\"\r\n",
        "x".repeat(200_000),
        "y".repeat(70_000)
    );
    let i =
        reg::import(text.as_bytes(), &Options::new("env.reg")).unwrap_or_else(|e| panic!("{e:?}"));
    let cfg = parse_str(&i.toml, Path::new("x")).unwrap();
    assert_eq!(env(&cfg, "BIG"), None);
    assert_eq!(env(&cfg, "B"), None);
    assert_eq!(env(&cfg, "A").map(str::len), Some(70_000));
    assert_eq!(env(&cfg, "C"), Some("%A%"));
    for name in ["BIG", "B"] {
        assert!(
            i.not_imported.iter().any(|n| n.starts_with(&format!(
                "Session Manager\\Environment\\{name} (expanded, `{name}=VALUE` would be longer"
            ))),
            "{:?}",
            i.not_imported
        );
    }
}
