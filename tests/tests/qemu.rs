//! Tier 5: the initramfs booted by QEMU with Debian's kernel; everything checked on the serial
//! console. `SMSS_SKIP_QEMU=1` skips (loudly); nothing else does.
//!
//! Run: `cargo test -p smss-blackbox --test qemu -- --nocapture` (prints the boot time).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use smss_blackbox::vm::{self, Boot, Scratch, Vm};
use std::time::{Duration, Instant};

// Boot phases in boot order (interface.md section 3 "Boot order", log lines section 7).
use smss_config::plan::PHASE_NAMES as PHASES;

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
    let transcript = m.console.transcript();
    // The machine has a name (/etc/hostname of the image), not the kernel's "(none)".
    assert!(
        transcript.contains("smss login: ") && !transcript.contains("(none) login:"),
        "the login prompt does not carry the hostname:\n{}",
        vm::tail(&transcript, 3000)
    );
    // The paging-file line shows the parsed entry, not the raw "/var/swapfile 32 32".
    assert!(
        transcript.contains(
            "paging file /var/swapfile: 32 MiB created, swap priority 16 (asked: 32 MiB)"
        ) && !transcript.contains("for /var/swapfile 32 32"),
        "paging-file log line:\n{}",
        vm::tail(&transcript, 6000)
    );
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
    // The STOP line is on the console once: the kernel's echo of its /dev/kmsg copy, not that
    // and smss's own write besides.
    let stops: Vec<&str> = transcript.lines().filter(|l| l.contains(stop)).collect();
    assert!(
        stops.len() == 1
            && stops[0].contains("status=exited:3")
            && stops[0].contains("process=")
            && stops[0].contains("pid="),
        "not one STOP line with status=exited:3, process= and pid=: {stops:?}"
    );
    assert!(
        !transcript.contains("(none) login:"),
        "the bugcheck boot has no hostname:\n{}",
        vm::tail(&transcript, 3000)
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

/// The size `smctl analyze plot` gave its picture (the root element's width and height).
fn svg_size(svg: &str) -> (u32, u32) {
    let root = svg
        .split("<svg")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or_else(|| panic!("no <svg> element:\n{}", vm::tail(svg, 2000)));
    let attr = |name: &str| -> u32 {
        root.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("<svg> has no numeric {name}: {root}"))
    };
    (attr("width"), attr("height"))
}

/// Renders `svg` to a PNG of `size` with headless Chromium (Debian's `chromium`), as root in
/// this container: no sandbox, no GPU, nothing fetched from the network, a fresh profile.
fn render_png(svg: &std::path::Path, png: &std::path::Path, size: (u32, u32), scratch: &Scratch) {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("no chromium to render the plot: scripts/install-deps.sh test installs it")
        });
    let profile = scratch.path.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let out = vm::run_with_timeout(
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            .arg(format!("file://{}", svg.display())),
        Duration::from_secs(120),
    );
    let out = must(out);
    assert!(
        png.exists(),
        "chromium wrote no {}: {}\n{}",
        png.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decodes a PNG: (width, height, RGBA pixels).
fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<[u8; 4]>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let buf = &buf[..info.buffer_size()];
    let px: Vec<[u8; 4]> = match info.color_type {
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, px)
}

fn hex_rgb(c: &str) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// `smctl analyze plot` of the demo's real boot, rendered by headless Chromium: the PNG has
/// the picture's size and shows bars in the phase and subsystem colours. `SMSS_BOOT_SVG=FILE`
/// also keeps the SVG (scripts/boot-svg makes docs/boot.svg so).
#[test]
fn demo_boot_plot_renders_in_chromium() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU boot-plot test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-plot"));
    let mut m = must(Vm::boot(&image, &Boot::default(), &scratch, "qemu-plot"));
    must(m.console.expect("PROBE OK", BOOT_DEADLINE));
    must(m.console.wait_anywhere("login: ", BOOT_DEADLINE));
    must(m.console.send("root\n"));
    must(m.console.expect("smss-demo:", CMD_DEADLINE));
    must(m.console.expect("# ", CMD_DEADLINE));
    // Onto the /var disk (read back with debugfs after the power-off): the serial console
    // also carries kernel and smss log lines, which could land inside the picture.
    for (cmd, file) in [
        ("analyze plot", "boot.svg"),
        ("analyze blame --json", "blame.json"),
        ("call io.smss.Manager.GetStatus", "status.json"),
    ] {
        let (rc, out) = must(m.shell(&format!("smctl {cmd} > /var/lib/smss/{file}"), CMD_DEADLINE));
        assert_eq!(rc, 0, "smctl {cmd} failed in the guest:\n{out}");
    }
    let (rc, blame) = must(m.shell("smctl analyze blame", CMD_DEADLINE));
    assert_eq!(rc, 0, "{blame}");
    eprintln!("smctl analyze blame in the guest:\n{blame}");
    must(m.console.send("smctl poweroff\n"));
    let status = must(m.console.wait_exit(EXIT_DEADLINE));
    assert!(status.success(), "QEMU exited with {status}");

    let svg = must(vm::debugfs_cat(&m.disk, "/lib/smss/boot.svg"));
    let status: serde_json::Value =
        serde_json::from_str(&must(vm::debugfs_cat(&m.disk, "/lib/smss/status.json"))).unwrap();
    let blame: serde_json::Value =
        serde_json::from_str(&must(vm::debugfs_cat(&m.disk, "/lib/smss/blame.json"))).unwrap();

    // GetStatus of a machine: the kernel's time before smss, the demo's commands and its
    // notify subsystem with its readiness wait.
    let kernel = status["kernel_us"]
        .as_u64()
        .expect("kernel_us on a machine");
    assert!(kernel > 0, "{status}");
    let phases = status["phases"].as_array().unwrap();
    assert_eq!(phases.len(), PHASES.len(), "{status}");
    assert!(
        !status["commands"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let demo = status["subsystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "demo")
        .unwrap_or_else(|| panic!("no demo subsystem: {status}"));
    // The demo's subsystem says READY=1 (initramfs/libexec/subsystemd): a readiness wait.
    assert_eq!(demo["ready"], "notify", "{demo}");
    assert!(
        demo["ready_us"].as_u64() >= demo["start_us"].as_u64(),
        "{demo}"
    );
    assert!(
        svg.contains("to READY=1"),
        "the plot does not show the readiness wait"
    );

    // blame --json: GetStatus's own numbers, longest first, the kernel among them.
    let rows = blame.as_array().unwrap();
    for p in phases {
        assert!(
            rows.iter().any(|r| r["kind"] == "phase"
                && r["name"] == p["name"]
                && r["start_us"] == p["start_us"]
                && r["duration_us"] == p["duration_us"]),
            "no blame row matching {p}"
        );
    }
    assert!(rows
        .iter()
        .any(|r| r["kind"] == "kernel" && r["duration_us"] == kernel));
    let d: Vec<u64> = rows
        .iter()
        .map(|r| r["duration_us"].as_u64().unwrap())
        .collect();
    assert!(d.windows(2).all(|w| w[0] >= w[1]), "{d:?}");

    // One row per phase in the picture.
    let rows_of = |kind: &str| svg.matches(&format!("<g class=\"row {kind} ")).count();
    assert_eq!(rows_of("phase"), PHASES.len());
    assert_eq!(rows_of("kernel"), 1);

    let svg_path = scratch.path.join("boot.svg");
    std::fs::write(&svg_path, &svg).unwrap();
    if let Some(keep) = std::env::var_os("SMSS_BOOT_SVG") {
        std::fs::write(&keep, &svg).unwrap();
    }
    let size = svg_size(&svg);
    let png_path = scratch.path.join("boot.png");
    render_png(&svg_path, &png_path, size, &scratch);
    if let Some(keep) = std::env::var_os("SMSS_BOOT_PNG") {
        std::fs::copy(&png_path, &keep).unwrap();
    }
    let (w, h, px) = decode_png(&png_path);
    assert_eq!((w, h), size, "the PNG is not the picture's size");
    // Non-blank: a good share of non-white pixels, and the bars' own colours are there.
    let ink = px
        .iter()
        .filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240)
        .count();
    assert!(
        ink * 100 >= px.len(),
        "only {ink} of {} pixels are not white: a blank picture?",
        px.len()
    );
    let has = |hex: &str| {
        let c = hex_rgb(hex);
        px.iter()
            .filter(|p| (0..3).all(|i| p[i].abs_diff(c[i]) <= 6))
            .count()
    };
    // Each legend swatch is 14x12 pixels: the bars must add more than that.
    for (what, hex, min) in [("kernel", "#9d9d9d", 2000), ("phase", "#4c78a8", 300)] {
        let n = has(hex);
        assert!(
            n >= min,
            "only {n} pixels of the {what} colour {hex} in the rendered PNG"
        );
    }
    eprintln!(
        "boot plot: {}x{} PNG, {ink} of {} pixels inked",
        w,
        h,
        px.len()
    );
}

// --- issue 11: coldplug, volume waits, hotplug ---------------------------------------------------

/// The `coldplug: N devices, M modules loaded (...) in U us` line of the transcript.
fn coldplug_line(transcript: &str) -> Option<String> {
    transcript
        .lines()
        .find(|l| l.contains("smss[1]: coldplug: "))
        .map(|l| l.trim().to_string())
}

/// Boots `/etc/smss/slow-disks.toml` (no module named anywhere) with the disk on `bus`; waits
/// for the login prompt and logs in. Returns the VM and its transcript up to the prompt.
fn boot_slow_disks(bus: Option<&str>, name: &str) -> (Vm, Scratch) {
    boot_to_shell("/etc/smss/slow-disks.toml", bus, name)
}

/// Boot the image with `config` (a file in the image), the disk on `bus`, to the login
/// prompt, and log in as root.
fn boot_to_shell(config: &str, bus: Option<&str>, name: &str) -> (Vm, Scratch) {
    let image = must(vm::initramfs_image());
    let scratch = must(Scratch::new(name));
    let boot = Boot {
        config: Some(config.into()),
        disk_bus: bus.map(str::to_string),
        ..Boot::default()
    };
    let mut m = must(Vm::boot(&image, &boot, &scratch, name));
    if must(
        m.console
            .expect_any(&["login: ", "*** STOP"], BOOT_DEADLINE),
    ) == 1
    {
        panic!("bugcheck:\n{}", vm::tail(&m.console.transcript(), 6000));
    }
    must(m.console.send("root\n"));
    must(m.console.expect("# ", CMD_DEADLINE));
    (m, scratch)
}

fn power_off(m: &mut Vm) {
    must(m.console.send("smctl poweroff\n"));
    let status = must(m.console.wait_exit(EXIT_DEADLINE));
    no_kernel_panic(&m.console.transcript());
    assert!(status.success(), "QEMU exited with {status}");
}

/// The demo config names no module (`[boot-drivers] modules = []`) and its volume by
/// `LABEL=smssvar`: coldplug must load the virtio drivers, the wait must find the disk, and
/// /var must be mounted from it (the probe in the demo test checks the rest).
#[test]
fn demo_config_finds_its_labelled_volume_through_coldplug() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU coldplug test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-coldplug"));
    let mut m = must(Vm::boot(
        &image,
        &Boot::default(),
        &scratch,
        "qemu-coldplug",
    ));
    must(m.console.wait_anywhere("login: ", BOOT_DEADLINE));
    let t = m.console.transcript();
    let line = coldplug_line(&t)
        .unwrap_or_else(|| panic!("no coldplug log line:\n{}", vm::tail(&t, 6000)));
    eprintln!("COLDPLUG: {line}");
    for module in ["virtio_pci", "virtio_blk"] {
        assert!(
            line.contains(module),
            "coldplug did not load {module}: {line}"
        );
    }
    let devices: u32 = line
        .split("coldplug: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(devices > 0, "coldplug saw no devices: {line}");
    assert!(
        t.contains("volume /var: LABEL=smssvar is /dev/vda"),
        "LABEL=smssvar not resolved to /dev/vda:\n{}",
        vm::tail(&t, 6000)
    );
    must(m.console.send("root\n"));
    must(m.console.expect("# ", CMD_DEADLINE));
    let (rc, out) = must(m.shell("grep ' /var ' /proc/mounts", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("/dev/vda /var ext4 rw"),
        "/var not mounted rw from /dev/vda (rc {rc}):\n{out}"
    );
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("virtio_blk") && out.contains("ext4"),
        "virtio_blk/ext4 not in /proc/modules:\n{out}"
    );
    power_off(&mut m);
}

/// A disk behind virtio-scsi appears only after virtio_pci, virtio_scsi and an asynchronous
/// SCSI scan, announced by a uevent (sd_mod is loaded for it then): the volume waits for it and
/// mounts it. The second volume's label is on no disk: one warning after its 3 s
/// device-timeout, and the boot still reaches the login prompt.
#[test]
fn slow_bus_disk_is_awaited_and_a_missing_volume_only_warns() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU volume-wait test") {
        return;
    }
    let _one_vm_at_a_time = vm::exclusive();
    let (mut m, _scratch) = boot_slow_disks(Some("scsi"), "qemu-slow-disk");
    let t = m.console.transcript();
    assert!(
        t.contains("volume /var: LABEL=smssvar is /dev/sda"),
        "LABEL=smssvar on the SCSI disk not found:\n{}",
        vm::tail(&t, 6000)
    );
    let warning = "volume /mnt/absent: device LABEL=nosuchdisk did not appear within 3s";
    assert_eq!(
        t.matches(warning).count(),
        1,
        "expected the missing-volume warning once:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(!t.contains("*** STOP"), "bugcheck:\n{}", vm::tail(&t, 6000));
    let (rc, out) = must(m.shell("grep -E ' /var | /mnt/absent ' /proc/mounts", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("/dev/sda /var ext4 rw") && !out.contains("/mnt/absent"),
        "mounts wrong (rc {rc}):\n{out}"
    );
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules", CMD_DEADLINE));
    assert!(
        rc == 0 && out.contains("virtio_scsi") && out.contains("sd_mod"),
        "virtio_scsi/sd_mod not loaded:\n{out}"
    );
    power_off(&mut m);
}

/// Hotplug while running: a virtio-scsi controller and a disk on it are added through the QEMU
/// monitor (`device_add`) after the login prompt. Nothing in the demo boot needed virtio_scsi or
/// sd_mod, so they load only if smss's uevent listener hands the new devices' modaliases to a
/// helper: the log says so and /proc/modules lists them, and the disk's node appears.
#[test]
fn device_added_while_running_gets_its_driver() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU hotplug test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-hotplug"));
    let extra = scratch.path.join("hot.img");
    must(
        std::fs::File::create(&extra)
            .and_then(|f| f.set_len(16 << 20))
            .map_err(|e| format!("failed to create {}: {e}", extra.display())),
    );
    let mut m = must(Vm::boot(&image, &Boot::default(), &scratch, "qemu-hotplug"));
    must(m.console.wait_anywhere("login: ", BOOT_DEADLINE));
    must(m.console.send("root\n"));
    must(m.console.expect("# ", CMD_DEADLINE));
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules", CMD_DEADLINE));
    assert!(
        rc == 0 && !out.contains("virtio_scsi") && !out.contains("sd_mod"),
        "virtio_scsi or sd_mod already loaded before the hotplug:\n{out}"
    );
    // Ctrl-A c: the serial line is multiplexed with the monitor (run-qemu.sh -serial mon:stdio).
    must(m.console.send("\x01c"));
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    must(m.console.send(&format!(
        "drive_add 0 if=none,id=hp0,format=raw,file={}\n",
        extra.display()
    )));
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    must(m.console.send("device_add virtio-scsi-pci,id=hpscsi\n"));
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    must(
        m.console
            .send("device_add scsi-hd,drive=hp0,bus=hpscsi.0\n"),
    );
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    must(m.console.send("\x01c"));
    // Read the helpers' `hotplug: DEVPATH: loaded ...` lines as they arrive, one whole line
    // at a time, until both drivers were named (the controller's, then the disk's).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    while !["virtio_scsi", "sd_mod"]
        .iter()
        .all(|m| lines.iter().any(|l: &String| l.contains(m)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        must(m.console.expect("hotplug: ", left).map_err(|e| {
            format!("{e}\nno hotplug line for virtio_scsi and sd_mod; saw {lines:?}")
        }));
        lines.push(must(m.console.expect("\n", left)));
    }
    eprintln!("HOTPLUG: {lines:?}");
    must(m.console.send("\n"));
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules; ls /dev/sda", CMD_DEADLINE));
    assert!(
        rc == 0
            && out.contains("virtio_scsi")
            && out.contains("sd_mod")
            && out.contains("/dev/sda"),
        "hotplugged driver or disk missing (rc {rc}):\n{out}"
    );
    power_off(&mut m);
}

/// A small hotplug storm: four PCI controllers, each with its own driver, added in one burst
/// through the monitor. With helpers run one at a time and the later devices queued while one
/// runs, every driver must still load. (Here the guest's ACPI hotplug announces them one by
/// one, slower than a helper loads a driver: each got its own helper in the runs so far, so
/// this guards the wiring, not the queue; the queue is unit- and property-tested in
/// devices::hotplug and supervise::uevents.)
#[test]
fn a_storm_of_added_devices_gets_every_driver() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU hotplug storm test") {
        return;
    }
    const DRIVERS: [&str; 4] = ["xhci_pci", "ehci_pci", "nvme", "virtio_scsi"];
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-hotplug-storm"));
    let extra = scratch.path.join("nvme.img");
    must(
        std::fs::File::create(&extra)
            .and_then(|f| f.set_len(1 << 20))
            .map_err(|e| format!("failed to create {}: {e}", extra.display())),
    );
    let mut m = must(Vm::boot(
        &image,
        &Boot::default(),
        &scratch,
        "qemu-hotplug-storm",
    ));
    must(m.console.wait_anywhere("login: ", BOOT_DEADLINE));
    must(m.console.send("root\n"));
    must(m.console.expect("# ", CMD_DEADLINE));
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules", CMD_DEADLINE));
    let before: Vec<&str> = out.split_whitespace().collect();
    assert!(
        rc == 0 && DRIVERS.iter().all(|d| !before.contains(d)),
        "a storm driver was already loaded before the hotplug:\n{out}"
    );
    must(m.console.send("\x01c"));
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    must(m.console.send(&format!(
        "drive_add 0 if=none,id=nv0,format=raw,file={}\n",
        extra.display()
    )));
    must(m.console.expect("(qemu)", CMD_DEADLINE));
    // All in one write: the monitor adds them back to back, without our round trips between.
    let devices = [
        "qemu-xhci,id=s1",
        "usb-ehci,id=s2",
        "nvme,id=s3,serial=storm,drive=nv0",
        "virtio-scsi-pci,id=s4",
    ];
    let typed: String = devices
        .iter()
        .map(|d| format!("device_add {d}\n"))
        .collect();
    must(m.console.send(&typed));
    for dev in devices {
        let reply = must(m.console.expect("(qemu)", CMD_DEADLINE));
        assert!(!reply.contains("Error"), "device_add {dev}: {reply}");
    }
    must(m.console.send("\x01c"));
    // The helpers' `hotplug: DEVPATH: loaded A B C` lines, until every driver was named.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut loaded: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    while !DRIVERS.iter().all(|d| loaded.iter().any(|l| l == d)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let before = must(
            m.console
                .expect("hotplug: ", left)
                .map_err(|e| format!("{e}\nnot every storm driver loaded; saw {lines:?}")),
        );
        // The line's prefix names the helper that wrote it (its pid), for the record.
        let prefix = before.rsplit('\n').next().unwrap_or_default().to_string();
        let line = prefix + &must(m.console.expect("\n", left));
        if let Some((_, names)) = line.split_once(": loaded ") {
            loaded.extend(names.split_whitespace().map(str::to_string));
        }
        lines.push(line);
    }
    eprintln!("HOTPLUG STORM: {lines:?}");
    must(m.console.send("\n"));
    let (rc, out) = must(m.shell("cut -d' ' -f1 /proc/modules", CMD_DEADLINE));
    let after: Vec<&str> = out.split_whitespace().collect();
    assert!(
        rc == 0 && DRIVERS.iter().all(|d| after.contains(d)),
        "a storm driver is missing from /proc/modules (rc {rc}):\n{out}"
    );
    power_off(&mut m);
}

/// `required = true`: a volume whose device never appears stops the boot with a bugcheck after
/// its device-timeout, before any login prompt, and the machine powers off.
#[test]
fn required_volume_that_never_appears_bugchecks() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU required-volume test") {
        return;
    }
    let image = must(vm::initramfs_image());
    let _one_vm_at_a_time = vm::exclusive();
    let scratch = must(Scratch::new("qemu-required-volume"));
    let boot = Boot {
        config: Some("/etc/smss/required-volume.toml".into()),
        ..Boot::default()
    };
    let mut m = must(Vm::boot(&image, &boot, &scratch, "qemu-required-volume"));
    let which = must(
        m.console
            .expect_any(&["*** STOP", "login: "], BOOT_DEADLINE),
    );
    let status = must(m.console.wait_exit(EXIT_DEADLINE));
    let t = m.console.transcript();
    assert_eq!(
        which,
        0,
        "booted to a login prompt:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(
        t.contains("volume /mnt/required: device PARTLABEL=nosuchpartition did not appear within 2s (required)"),
        "no required-volume message:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(
        t.lines()
            .any(|l| l.contains("*** STOP") && l.contains("process=smss:volumes")),
        "STOP line does not name smss:volumes:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(status.success(), "QEMU exited with {status}");
}

/// A root the kernel mounted read-only (`ro`, a stock Debian command line) is remounted
/// read-write after boot-execute, before the rename queue on it is applied; without that, the
/// rename (and paging files, the bugcheck record) fail on `/`.
#[test]
fn a_read_only_root_is_remounted_read_write_after_boot_execute() {
    if vm::skip_requested("SMSS_SKIP_QEMU", "the QEMU read-only root test") {
        return;
    }
    let _one_vm_at_a_time = vm::exclusive();
    let (mut m, _scratch) = boot_to_shell("/etc/smss/ro-root.toml", None, "qemu-ro-root");
    // Written by the shell, not typed: the typed line's echo must not pass for the answer.
    let (rc, out) = must(m.shell(
        "test -e /etc/ro-root-after && echo re''named; touch /etc/ro-root-probe && echo wri''table",
        CMD_DEADLINE,
    ));
    let t = m.console.transcript();
    assert!(
        t.contains("boot-execute: / is read-only"),
        "boot-execute did not make / read-only:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(
        t.contains("/ remounted read-write (the kernel mounted it read-only)"),
        "no remount line:\n{}",
        vm::tail(&t, 6000)
    );
    assert!(
        out.contains("renamed"),
        "the rename on / was not applied: {out}"
    );
    assert!(out.contains("writable"), "/ is not writable: {out}");
    assert_eq!(rc, 0, "{out}");
    power_off(&mut m);
}
