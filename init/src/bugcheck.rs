//! The bugcheck: a critical process died, or a fatal boot step failed. Print the STOP line
//! everywhere it can be seen, keep a record, sync, then do what `[crash-control]` says.

use std::io::Write;
use std::sync::Mutex;

use smss_config::CrashAction;

use crate::logging;
use crate::mode::Mode;
use crate::sys::{self, ExitStatus, RebootCmd};

/// STATUS_SYSTEM_PROCESS_TERMINATED, the code Windows raises when csrss or winlogon dies.
pub const STOP_CODE: &str = "0xC000021A";

/// Where the records go when the filesystem is writable.
pub const LOG_PATH: &str = "/var/lib/smss/bugcheck.log";

/// The exact line of interface.md section 3.
pub fn stop_line(name: &str, pid: i32, status: ExitStatus) -> String {
    format!("*** STOP: {STOP_CODE} (STATUS_SYSTEM_PROCESS_TERMINATED) process={name} pid={pid} status={status}")
}

/// Print the STOP line to the console and /dev/kmsg, append it to the bugcheck log, sync.
pub fn report(name: &str, pid: i32, status: ExitStatus) {
    let line = stop_line(name, pid, status);
    logging::emergency(&line);
    let record = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(t) => format!("{} {line}\n", t.as_secs()),
        Err(_) => format!("{line}\n"),
    };
    append_record(std::path::Path::new(LOG_PATH), &record);
    sys::sync();
}

/// Append `record` to the log at `path` and sync it; nothing when that cannot be done (a
/// read-only or missing /var: the console and /dev/kmsg have the line). Its directory is
/// made when missing: nothing else may have made /var/lib/smss on this machine yet.
fn append_record(path: &std::path::Path, record: &str) {
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(record.as_bytes());
        let _ = f.sync_all();
    }
}

/// System mode: do the configured action. Never returns.
pub fn crash(action: CrashAction, status: ExitStatus) -> ! {
    let cmd = match action {
        CrashAction::Reboot => Some(RebootCmd::Reboot),
        CrashAction::Poweroff => Some(RebootCmd::Poweroff),
        CrashAction::Halt => Some(RebootCmd::Halt),
        CrashAction::Panic => None,
    };
    if let Some(cmd) = cmd {
        let e = sys::reboot(cmd);
        logging::emergency(&format!(
            "failed to {}: {e}; panicking instead",
            action.as_str()
        ));
    }
    // PID 1 exiting is the kernel's own panic ("Attempted to kill init!"), the closest Linux
    // has to a bugcheck; with `panic=N` on the command line the kernel then reboots.
    std::process::exit(status.code().clamp(1, 255))
}

/// What `main` does once the supervisor's loop has returned, or the supervisor never came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Container and subreaper mode: exit with this code.
    Exit(i32),
    /// System mode after the loop: only a failed reboot(2) gets here; stay, so the console
    /// shows why.
    Idle,
    /// System mode, and the supervisor could not be set up (epoll, signalfd): with no event
    /// loop nothing would ever be reaped and every signal stays blocked, so PID 1 bugchecks.
    Bugcheck(&'static str, ExitStatus),
}

/// The process name of the STOP line when the supervisor cannot be set up.
pub const SETUP_PROCESS: &str = "smss:supervisor";

/// The decision at the end of `main`: `outcome` is the loop's exit code, or `Err` when
/// `Supervisor::new` failed.
pub fn ending(mode: Mode, outcome: Result<i32, ()>) -> Ending {
    match (mode, outcome) {
        (Mode::System, Ok(_)) => Ending::Idle,
        (Mode::System, Err(())) => Ending::Bugcheck(SETUP_PROCESS, ExitStatus::Exited(1)),
        (_, Ok(code)) => Ending::Exit(code),
        (_, Err(())) => Ending::Exit(1),
    }
}

static PANIC_CONTEXT: Mutex<Option<(Mode, CrashAction)>> = Mutex::new(None);

/// A panic inside smss is the `SmpUnhandledExceptionFilter` case: bugcheck, never a silent
/// abort of PID 1. (Under panic = "abort" the hook runs before the abort.) Installed first
/// thing with the default action; called again once the configuration says otherwise.
pub fn install_panic_hook(mode: Mode, action: CrashAction) {
    let first = match PANIC_CONTEXT.lock() {
        Ok(mut c) => c.replace((mode, action)).is_none(),
        Err(_) => false,
    };
    if !first {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        logging::emergency(&format!("internal error: {info}"));
        let pid = sys::getpid();
        let status = ExitStatus::Killed(libc::SIGABRT);
        report("smss", pid, status);
        let ctx = PANIC_CONTEXT.try_lock().ok().and_then(|c| *c);
        if let Some((Mode::System, action)) = ctx {
            crash(action, status);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_line_format() {
        assert_eq!(
            stop_line("windows", 42, ExitStatus::Exited(3)),
            "*** STOP: 0xC000021A (STATUS_SYSTEM_PROCESS_TERMINATED) process=windows pid=42 status=exited:3"
        );
        assert!(stop_line("x", 1, ExitStatus::Killed(9)).ends_with("status=killed:KILL"));
    }

    #[test]
    fn failed_setup_of_a_machine_is_a_bugcheck() {
        assert_eq!(
            ending(Mode::System, Err(())),
            Ending::Bugcheck(SETUP_PROCESS, ExitStatus::Exited(1))
        );
        assert_eq!(ending(Mode::System, Ok(0)), Ending::Idle);
        assert_eq!(ending(Mode::Container, Err(())), Ending::Exit(1));
        assert_eq!(ending(Mode::Subreaper, Err(())), Ending::Exit(1));
        assert_eq!(ending(Mode::Container, Ok(7)), Ending::Exit(7));
    }

    /// On a machine where nothing made /var/lib/smss yet (a stock install, a first boot), the
    /// record still gets written: its directory is made first.
    #[test]
    fn the_record_is_kept_where_its_directory_did_not_exist() {
        let base = std::env::temp_dir().join(format!("smss-bugcheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let log = base.join("var/lib/smss/bugcheck.log");
        append_record(&log, "1 *** STOP\n");
        append_record(&log, "2 *** STOP\n");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "1 *** STOP\n2 *** STOP\n"
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
