//! Tier 3: the real `smss` as PID 1 of a fresh PID + mount namespace — exit statuses, signal
//! forwarding, reaping, signal dispositions, the stop, the pty hand-off and the bugcheck.

mod common;

use std::time::{Duration, Instant};

use common::{config, run, Ns, TIMEOUT};

#[test]
fn every_exit_code_passes_through() {
    require_unshare!();
    for c in 0..=255 {
        let cmd = format!("exit {c}");
        let o = run(&["--", "sh", "-c", &cmd], &[]);
        assert_eq!(o.code, c, "exit {c}: {o:?}");
    }
}

#[test]
fn killed_child_gives_128_plus_signal() {
    require_unshare!();
    for (sig, name) in [(9, "KILL"), (15, "TERM"), (6, "ABRT"), (1, "HUP")] {
        let cmd = format!("kill -{name} $$");
        let o = run(&["--", "sh", "-c", &cmd], &[]);
        assert_eq!(o.code, 128 + sig, "{name}: {o:?}");
    }
}

#[test]
fn missing_and_unexecutable_programs_give_127_and_126() {
    require_unshare!();
    let o = run(&["--", "/nonexistent/program"], &[]);
    assert_eq!(o.code, 127, "{o:?}");
    assert!(o.stderr.contains("/nonexistent/program"), "{o:?}");
    let o = run(&["--", "no-such-program-anywhere"], &[]);
    assert_eq!(o.code, 127, "{o:?}");
    let dir = std::env::temp_dir().join(format!("smss-noexec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("plain-file");
    std::fs::write(&f, "not a program").unwrap();
    let o = run(&["--", f.to_str().unwrap()], &[]);
    assert_eq!(o.code, 126, "{o:?}");
}

/// Every catchable signal but the ones smss itself acts on reaches the child, in the order
/// sent. Each is acknowledged before the next is sent, so the order is the order of arrival.
#[test]
fn every_catchable_signal_is_forwarded_in_order() {
    require_unshare!();
    // KILL/STOP cannot be caught; CHLD is smss's own; INT/TERM stop (tested below); 32/33 are
    // glibc's; bash cannot trap them.
    let skip = [2, 9, 15, 17, 19, 32, 33];
    let sigs: Vec<i32> = (1..=64).filter(|s| !skip.contains(s)).collect();
    let traps: String = sigs
        .iter()
        .map(|s| format!("trap 'echo got {s}' {s}; "))
        .collect();
    let script = format!("{traps} echo ready; while :; do sleep 0.05 & wait $!; done");
    let ns = Ns::start(&["--", "bash", "-c", &script], &[]);
    ns.expect_line("ready", TIMEOUT);
    for s in &sigs {
        ns.signal(*s);
        ns.expect_line(&format!("got {s}"), Duration::from_secs(10));
    }
    ns.signal(libc::SIGKILL);
}

#[test]
fn sigterm_is_forwarded_and_stops() {
    require_unshare!();
    let ns = Ns::start(
        &[
            "--",
            "bash",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05 & wait $!; done",
        ],
        &[],
    );
    ns.expect_line("ready", TIMEOUT);
    ns.signal(libc::SIGTERM);
    ns.expect_line("got TERM", TIMEOUT);
    let o = ns.wait(TIMEOUT);
    assert_eq!(o.code, 7, "{o:?}");
}

#[test]
fn forward_to_group_reaches_grandchildren() {
    require_unshare!();
    let script = "trap 'echo child got USR1' USR1; \
                  bash -c \"trap 'echo grandchild got USR1' USR1; echo gready; while :; do sleep 0.05 & wait \\$!; done\" & \
                  echo ready; while :; do sleep 0.05 & wait $!; done";
    let ns = Ns::start(&["--forward-to-group", "--", "bash", "-c", script], &[]);
    // "ready" and "gready" come from two processes, in either order: wait for both, so
    // neither is mistaken for an answer to the signal.
    ns.expect_line("gready", TIMEOUT);
    ns.signal(libc::SIGUSR1);
    let (mut child, mut grandchild) = (false, false);
    let deadline = Instant::now() + TIMEOUT;
    while !(child && grandchild) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = ns
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("child {child}, grandchild {grandchild} after {TIMEOUT:?}"));
        match line.trim() {
            "child got USR1" => child = true,
            "grandchild got USR1" => grandchild = true,
            "ready" => {}
            other => panic!("unexpected line {other:?}"),
        }
    }
}

#[test]
fn hundred_orphaned_grandchildren_leave_no_zombie() {
    require_unshare!();
    // The payload orphans 100 short-lived processes, then watches /proc until none is left
    // (bounded: 10 s); any zombie that outlives its reaping shows up as a failure.
    let script = r#"
        for i in $(seq 100); do ( sh -c 'exit 0' & ) ; done
        for i in $(seq 1000); do
          z=0; n=0
          for s in /proc/[0-9]*/stat; do
            read -r line < "$s" 2>/dev/null || continue
            n=$((n+1))
            case "${line##*) }" in Z*) z=$((z+1));; esac
          done
          # Left: PID 1, this shell, and the subshell reading /proc ($n counts this shell only).
          if [ "$z" = 0 ] && [ "$n" -le 2 ]; then echo "clean after $i rounds"; exit 0; fi
          sleep 0.01
        done
        echo "zombies: $z processes: $n"; exit 1
    "#;
    let o = run(&["--", "bash", "-c", script], &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("clean after"), "{o:?}");
}

#[test]
fn ignored_signals_are_not_inherited() {
    require_unshare!();
    let mut c = common::ns_command(&["--", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    // SAFETY: pre_exec runs in the forked child before exec; signal() is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, || {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = Ns::spawn(c).wait(TIMEOUT);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("SigIgn:\t0000000000000000"), "{o:?}");
    assert!(o.stdout.contains("SigBlk:\t0000000000000000"), "{o:?}");
}

#[test]
fn term_ignoring_child_is_killed_after_the_grace_period() {
    require_unshare!();
    let cfg = config("grace", "[shutdown]\ngrace-period = \"1s\"\n");
    let ns = Ns::start(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ],
        &[],
    );
    ns.expect_line("ready", TIMEOUT);
    let t = Instant::now();
    ns.signal(libc::SIGTERM);
    let o = ns.wait(TIMEOUT);
    let took = t.elapsed();
    assert_eq!(o.code, 128 + libc::SIGKILL, "{o:?}");
    assert!(
        took >= Duration::from_millis(950),
        "killed too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "kill came too late: {took:?}"
    );
}

/// The stop ends when the processes are gone, not after a fixed sleep: with a 10 s grace
/// period and 20 children that exit promptly on SIGTERM, it takes a small fraction of it.
#[test]
fn stop_ends_when_processes_are_gone() {
    require_unshare!();
    let script = "for i in $(seq 20); do sleep 1000 & done; echo ready; wait";
    let ns = Ns::start(&["--", "bash", "-c", script], &[]);
    ns.expect_line("ready", TIMEOUT);
    let t = Instant::now();
    ns.signal(libc::SIGTERM);
    let o = ns.wait(TIMEOUT);
    let took = t.elapsed();
    eprintln!("stop with 20 children took {took:?}");
    assert_eq!(o.code, 128 + libc::SIGTERM, "{o:?}");
    assert!(
        took < Duration::from_secs(7),
        "stop waited for the grace period (10 s): {took:?}"
    );
}

#[test]
fn grandchildren_get_sigterm_when_the_initial_command_exits() {
    require_unshare!();
    // The child exits once the grandchild is up (a fifo says so); the grandchild must be
    // told with SIGTERM, not SIGKILLed with the namespace.
    let script = "f=$(mktemp -u); mkfifo $f; \
                  bash -c \"trap 'echo grandchild got TERM; exit 0' TERM; echo up > $f; while :; do sleep 0.05 & wait \\$!; done\" & \
                  read -r _ < $f; rm -f $f; exit 5";
    let o = run(&["--", "bash", "-c", script], &[]);
    assert_eq!(o.code, 5, "{o:?}");
    assert!(o.stdout.contains("grandchild got TERM"), "{o:?}");
}

#[test]
fn subreaper_mode_reaps_and_passes_status() {
    // Not PID 1: PR_SET_CHILD_SUBREAPER, otherwise like a container.
    let o = std::process::Command::new(common::smss())
        .args(["--", "sh", "-c", "(sleep 0.1 &); exit 9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(9), "{o:?}");
}

#[test]
fn critical_subsystem_exit_is_a_bugcheck_with_its_status() {
    require_unshare!();
    let cfg = config(
        "bugcheck",
        "[subsystems]\nrequired = [\"windows\"]\nwindows = { command = [\"sh\", \"-c\", \"sleep 0.2; exit 3\"] }\n\
         [sessions]\nsession0-initial-command = \"sleep 100\"\n",
    );
    let o = run(
        &["--config", cfg.to_str().unwrap()],
        &[("container", "test")],
    );
    assert_eq!(o.code, 3, "{o:?}");
    assert!(
        o.stderr.contains(
            "*** STOP: 0xC000021A (STATUS_SYSTEM_PROCESS_TERMINATED) process=windows pid="
        ),
        "{o:?}"
    );
    assert!(o.stderr.contains("status=exited:3"), "{o:?}");
}

#[test]
fn usage_errors_exit_2() {
    let o = std::process::Command::new(common::smss())
        .args(["--"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = std::process::Command::new(common::smss())
        .args(["--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = std::process::Command::new(common::smss())
        .args(["--version"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("smss "));
}

/// After the boot smss drops its code pages from the resident set; everything must still work
/// when they fault back in: forwarding, reaping, the stop and the exit status.
#[test]
fn works_after_trimming_its_working_set() {
    require_unshare!();
    let ns = Ns::start(
        &["--", "bash", "-c", "trap 'echo got USR1' USR1; trap 'exit 6' TERM; echo ready; while :; do sleep 0.05 & wait $!; done"],
        &[("SMSS_LOG", "debug")],
    );
    ns.expect_line("ready", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let l = ns
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no 'working set trimmed' log line");
        if l.contains("working set trimmed") {
            break;
        }
    }
    ns.signal(libc::SIGUSR1);
    ns.expect_line("got USR1", TIMEOUT);
    ns.signal(libc::SIGTERM);
    assert_eq!(ns.wait(TIMEOUT).code, 6);
}

/// Resident kB of the mapping named `name` (`[stack]`) in /proc/PID/smaps.
fn mapping_rss_kb(pid: i32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut inside = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        // A mapping's header: "start-end perms offset dev inode [name]".
        if f.next().is_some_and(|a| a.contains('-')) && f.next().is_some_and(|p| p.len() == 4) {
            inside = line.ends_with(name);
        } else if inside && line.starts_with("Rss:") {
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no {name} mapping in smaps of {pid}");
}

/// The trim also drops the stack pages start-up touched below the idle loop's frames (they
/// are dead: nothing lives below the stack pointer), so an idle smss keeps a few kB of stack,
/// not its start-up's high-water mark.
#[test]
fn trimming_drops_the_start_up_stack() {
    require_unshare!();
    let ns = Ns::start(&["--", "sleep", "1000"], &[("SMSS_LOG", "debug")]);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let l = ns
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no 'working set trimmed' log line");
        if l.contains("working set trimmed") {
            break;
        }
    }
    let pid = ns.init_pid();
    let kb = mapping_rss_kb(pid, "[stack]");
    ns.signal(libc::SIGTERM);
    ns.wait(TIMEOUT);
    assert!(kb <= 20, "idle smss keeps {kb} kB of stack resident");
}

#[test]
fn a_log_file_on_stderr_keeps_every_line_of_smss_and_its_children() {
    require_unshare!();
    let dir = std::env::temp_dir().join(format!("smss-logfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("log");
    let file = std::fs::File::create(&log).unwrap();
    let ns = common::ns_command(&["--", "sh", "-c", "echo child-says-hello >&2"]);
    // Under timeout(1): the hard limit, since this one's stderr is the file, not a pipe.
    let st = std::process::Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg(ns.get_program())
        .args(ns.get_args())
        .env("SMSS_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    // smss's own lines and the child's, none written over another.
    assert!(text.starts_with("smss[1]: smss "), "{text}");
    assert!(text.contains("\nchild-says-hello\n"), "{text}");
    for line in text.lines() {
        assert!(
            line == "child-says-hello" || line.starts_with("smss[1]: "),
            "a line written over: {line:?} in\n{text}"
        );
    }
    assert!(text.contains("smss[1]: boot complete in "), "{text}");
    // The payload's pid depends on what the namespace's shell ran first: any pid will do.
    assert!(
        text.lines()
            .any(|l| l.contains("sh (pid ") && l.ends_with(") exited:0")),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
