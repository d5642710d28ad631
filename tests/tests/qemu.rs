//! Tier 5: the initramfs booted by QEMU with Debian's kernel; everything checked on the serial
//! console. `SMSS_SKIP_QEMU=1` skips (loudly); nothing else does.
//!
//! Run: `cargo test -p smss-blackbox --test qemu -- --nocapture` (prints the boot time).

use smss_blackbox::vm::{self, Boot, Scratch, Vm};
use std::time::{Duration, Instant};

/// Boot phases in boot order (interface.md section 3 "Boot order", log lines section 7).
const PHASES: &[&str] = &[
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

/// TCG on a shared 2-core machine: generous, but finite.
const BOOT_DEADLINE: Duration = Duration::from_secs(240);
const CMD_DEADLINE: Duration = Duration::from_secs(60);
const EXIT_DEADLINE: Duration = Duration::from_secs(90);

fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the phase lines of the whole transcript: every phase logged `done in N us` exactly as
/// section 7 spells it, in boot order. Returns (name, microseconds).
fn assert_phases(transcript: &str) -> Vec<(String, u64)> {
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    for line in transcript.lines() {
        let Some(rest) = line.split("smss[1]: phase ").nth(1) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap_or("").to_string();
        let tail: Vec<&str> = words.collect();
        match tail.as_slice() {
            ["done", "in", n, "us", ..] => match n.parse::<u64>() {
                Ok(us) => seen.push((name, us)),
                Err(_) => problems.push(format!("bad duration in: {line}")),
            },
            ["failed:", ..] => problems.push(format!("phase {name} failed: {}", line.trim())),
            _ => problems.push(format!("unexpected phase line: {}", line.trim())),
        }
    }
    let mut last = 0;
    for phase in PHASES {
        match seen.iter().position(|(n, _)| n == phase) {
            None => problems.push(format!("no `smss[1]: phase {phase} done in N us` line")),
            Some(i) if i < last => problems.push(format!("phase {phase} logged out of boot order")),
            Some(i) => last = i,
        }
    }
    assert!(
        problems.is_empty(),
        "boot phase log problems:\n  {}\n--- transcript ---\n{}",
        problems.join("\n  "),
        vm::tail(transcript, 8000)
    );
    seen
}

fn no_kernel_panic(transcript: &str) {
    assert!(
        !transcript.contains("Kernel panic"),
        "the kernel panicked:\n{}",
        vm::tail(transcript, 6000)
    );
}

#[test]
fn demo_machine_boots_serves_sessions_and_powers_off() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU boot test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-demo"));
    let tty_s1 = scratch.path.join("ttyS1.log");
    let boot = Boot {
        serial2: Some(format!("file:{}", tty_s1.display())),
        ..Boot::default()
    };
    let mut m = must(Vm::boot(&image, &boot, &scratch, "qemu"));

    // --- boot: phases, the boot-time probe (Execute), the login prompt, boot time ---
    let handoff = must(m.console.wait_anywhere("Booting from ROM", BOOT_DEADLINE));
    let handoff = m.console.arrival(handoff).unwrap_or(m.console.started);
    let which = must(
        m.console
            .expect_any(&["PROBE OK", "PROBE FAIL", "*** STOP"], BOOT_DEADLINE),
    );
    if which == 1 {
        // let the probe finish listing what failed before reporting
        let _ = m.console.expect("check(s) failed", Duration::from_secs(30));
    }
    assert_eq!(
        which,
        0,
        "boot-time probe (session-manager.execute) did not pass:\n{}",
        vm::tail(&m.console.transcript(), 6000)
    );
    // getty may print its prompt before or after the probe's report
    let login = must(m.console.wait_anywhere("login: ", BOOT_DEADLINE));
    let login_at = m.console.arrival(login).unwrap_or_else(Instant::now);
    let phases = assert_phases(&m.console.transcript());
    eprintln!(
        "BOOT TIME: QEMU start -> login prompt {:.2} s; firmware hand-off to kernel -> login prompt {:.2} s (TCG)",
        login_at.duration_since(m.console.started).as_secs_f64(),
        login_at.duration_since(handoff).as_secs_f64()
    );
    for (name, us) in &phases {
        eprintln!("  phase {name:<22} {us:>9} us");
    }

    // --- log in, run the probe by hand ---
    must(m.console.send("root\n"));
    must(m.console.expect("smss-demo:", CMD_DEADLINE));
    must(m.console.expect("# ", CMD_DEADLINE));
    let (rc, out) = must(m.shell("probe", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("PROBE OK"),
        "probe from the login shell failed (rc {rc}):\n{out}"
    );

    // --- a second interactive session on ttyS1 ---
    let (rc, out) = must(m.shell("smctl session create --tty /dev/ttyS1", CMD_DEADLINE));
    assert_eq!(rc, 0, "smctl session create failed:\n{out}");
    let id = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("smctl session create printed no session id:\n{out}"))
        .to_string();
    let deadline = Instant::now() + CMD_DEADLINE;
    loop {
        let s1 = std::fs::read_to_string(&tty_s1).unwrap_or_default();
        if s1.contains("login: ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no login prompt on ttyS1 after `smctl session create` (session {id}); ttyS1 shows:\n{s1}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (rc, out) = must(m.shell("smctl session list", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("ttyS1"),
        "session list does not show the ttyS1 session {id} (rc {rc}):\n{out}"
    );
    let (rc, out) = must(m.shell("ps | grep '[g]etty.*ttyS1'", CMD_DEADLINE));
    assert_eq!(rc, 0, "no getty on ttyS1 in the process list:\n{out}");

    // --- terminate it: its login manager goes away ---
    let (rc, out) = must(m.shell(&format!("smctl session terminate {id}"), CMD_DEADLINE));
    assert_eq!(rc, 0, "smctl session terminate {id} failed:\n{out}");
    let deadline = Instant::now() + CMD_DEADLINE;
    loop {
        let (rc, _) = must(m.shell("ps | grep '[g]etty.*ttyS1'", CMD_DEADLINE));
        if rc != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "getty on ttyS1 still running after terminating session {id}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let (rc, out) = must(m.shell("smctl session list", CMD_DEADLINE));
    assert!(
        rc == 0 && !out.contains("ttyS1"),
        "terminated session {id} still listed (rc {rc}):\n{out}"
    );

    // --- clean power-off: QEMU exits by itself, no panic, the disk was synced ---
    must(m.console.send("smctl poweroff\n"));
    let status = must(m.console.wait_exit(EXIT_DEADLINE));
    let transcript = m.console.transcript();
    no_kernel_panic(&transcript);
    assert!(
        status.success(),
        "QEMU exited with {status} after smctl poweroff"
    );
    assert!(
        !transcript.contains("*** STOP"),
        "bugcheck during the run:\n{}",
        vm::tail(&transcript, 6000)
    );
    // Typed in the logged-in root shell (which ignores SIGTERM): the SIGHUP to processes with
    // a terminal ends it at once, so the stop does not wait out the 10 s grace period.
    let gone_us: u64 = transcript
        .lines()
        .find_map(|l| {
            let rest = l.split("all processes gone ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no \"all processes gone\" after smctl poweroff:\n{}",
                vm::tail(&transcript, 6000)
            )
        });
    eprintln!("STOP: smctl poweroff from the login shell -> all processes gone in {gone_us} us");
    assert!(
        gone_us < 1_000_000,
        "the stop took {gone_us} us (the login shell waited for the grace period?):\n{}",
        vm::tail(&transcript, 6000)
    );
    let renamed = must(vm::debugfs_cat(&m.disk, "/lib/smss/demo/renamed"));
    assert_eq!(
        renamed.trim(),
        "renamed",
        "applied rename not on the disk after power-off"
    );
    let keep = must(vm::debugfs_cat(&m.disk, "/lib/smss/demo/keep"));
    assert_eq!(
        keep.trim(),
        "original",
        "a rename without ! overwrote its destination"
    );
}

#[test]
fn required_subsystem_death_bugchecks_and_reboots() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU bugcheck test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-bugcheck"));
    let boot = Boot {
        config: Some("/etc/smss/bugcheck.toml".into()),
        ..Boot::default()
    };
    let mut m = must(Vm::boot(&image, &boot, &scratch, "qemu-bugcheck"));
    let stop = "*** STOP: 0xC000021A (STATUS_SYSTEM_PROCESS_TERMINATED)";
    // The subsystem dies 2 s after it starts: once the machine is up (login prompt), the STOP
    // must follow within seconds, so a missing bugcheck fails fast instead of at the deadline.
    if must(m.console.expect_any(&[stop, "login: "], BOOT_DEADLINE)) == 1 {
        must(m.console.expect(stop, Duration::from_secs(30)));
    }
    // action = "reboot": under -no-reboot QEMU exits instead of restarting the guest
    let status = must(m.console.wait_exit(EXIT_DEADLINE));
    let transcript = m.console.transcript();
    no_kernel_panic(&transcript);
    // The STOP line goes to the console and to the kernel log, whose echo on the same serial
    // line can split one copy: one whole copy must carry the details.
    let stops: Vec<&str> = transcript.lines().filter(|l| l.contains(stop)).collect();
    assert!(
        stops
            .iter()
            .any(|l| l.contains("status=exited:3") && l.contains("process=") && l.contains("pid=")),
        "no STOP line with status=exited:3, process= and pid=: {stops:?}"
    );
    assert!(
        status.success(),
        "QEMU exited with {status} after the bugcheck"
    );
    let log = must(vm::debugfs_cat(&m.disk, "/lib/smss/bugcheck.log"));
    assert!(
        log.contains("0xC000021A"),
        "/var/lib/smss/bugcheck.log lacks the STOP record:\n{log}"
    );
}
