//! The log sink: every line `smss[PID]: ...`, to the console and /dev/kmsg in system mode,
//! to stderr otherwise (interface.md section 7).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    sinks: Mutex<Sinks>,
}

struct Sinks {
    pid: i32,
    /// /dev/kmsg once /dev is mounted (system mode only).
    kmsg: Option<File>,
    /// Our own non-blocking descriptor for the console / stderr: a stalled terminal (XOFF, a
    /// full pipe) drops log lines instead of blocking PID 1. `None` = plain stderr.
    console: Option<File>,
    /// Where to open `console` from, on the first line written (a quiet container never logs
    /// and never pays for the open).
    console_path: Option<&'static str>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        pid: 0,
        kmsg: None,
        console: None,
        console_path: None,
    }),
};

/// Install the logger. `level` uses env_logger's level words (error, warn, info, debug, trace,
/// off); without one, `default` applies. Later calls only change the level.
pub fn init(level: Option<&str>, default: LevelFilter) {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.pid = std::process::id() as i32;
    }
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(parse_level(level, default));
}

/// Parse an env_logger-style spec; only the global level is honoured (a `module=level` list
/// takes its last bare level word), which is all a one-crate PID 1 needs.
pub fn parse_level(spec: Option<&str>, default: LevelFilter) -> LevelFilter {
    let Some(spec) = spec else {
        return default;
    };
    let mut level = default;
    for part in spec.split(',') {
        let word = part.rsplit('=').next().unwrap_or(part).trim();
        if let Ok(l) = word.parse::<LevelFilter>() {
            level = l;
        }
    }
    level
}

/// Write log lines through a non-blocking descriptor of its own for `path` (`/dev/console` on a
/// machine, `/proc/self/fd/2` elsewhere: a new open file description, so children sharing fd 2
/// keep their blocking one). Without /proc or the device, plain stderr stays.
/// The descriptor is opened when the first line is written.
pub fn open_console(path: &'static str) {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.console = None;
        s.console_path = Some(path);
    }
}

impl Sinks {
    /// The console descriptor, opened on first use.
    fn console(&mut self) -> Option<&mut File> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(path) = self.console_path.take() {
            self.console = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_APPEND)
                .open(path)
                .ok();
        }
        self.console.as_mut()
    }
}

/// Start writing to /dev/kmsg as well (system mode, after /dev is mounted).
pub fn open_kmsg() {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        if let Ok(mut s) = LOGGER.sinks.lock() {
            s.kmsg = Some(f);
        }
    }
}

/// Forget the cached pid (the per-session instance and forked children call this).
pub fn refresh_pid() {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.pid = std::process::id() as i32;
    }
}

/// The kernel log level of emergency lines (KERN_CRIT).
const KERN_CRIT: u8 = 2;

/// Does the kernel print a /dev/kmsg line of `level` on its consoles itself? Yes when the level
/// is below the console log level, the first field of /proc/sys/kernel/printk (syslog(2)).
pub fn kernel_echoes(printk: &str, level: u8) -> bool {
    printk
        .split_whitespace()
        .next()
        .and_then(|w| w.parse::<u8>().ok())
        .is_some_and(|console_level| level < console_level)
}

/// Write one line to every sink regardless of the level (bugchecks, the panic hook). Never
/// waits for the logger's lock (a panic may have happened while it was held), and writes to a
/// fresh /dev/kmsg descriptor: the kernel rate-limits each open file, and a STOP line must
/// not be the one it drops. The line goes to /dev/kmsg at KERN_CRIT; on a machine whose kernel
/// prints that level on its consoles (every console= device, /dev/console among them), that
/// echo is the console's copy, so it is not written to the console a second time.
pub fn emergency(line: &str) {
    let guard = LOGGER.sinks.try_lock().ok();
    let pid = guard
        .as_ref()
        .map(|s| s.pid)
        .unwrap_or_else(|| std::process::id() as i32);
    let text = format!("smss[{pid}]: {line}\n");
    let in_kmsg = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| k.write_all(format!("<{KERN_CRIT}>{text}").as_bytes()))
        .is_ok();
    let mut guard = guard;
    // Our console is the kernel's only in system mode, where the log also goes to /dev/kmsg.
    let console_is_kernels = guard.as_ref().is_some_and(|s| s.kmsg.is_some());
    if in_kmsg
        && console_is_kernels
        && std::fs::read_to_string("/proc/sys/kernel/printk")
            .is_ok_and(|p| kernel_echoes(&p, KERN_CRIT))
    {
        return;
    }
    match guard.as_mut().and_then(|s| s.console()) {
        Some(c) => {
            let _ = c.write_all(text.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut s) = self.sinks.lock() else {
            return;
        };
        let tag = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        let text = format!("smss[{}]: {tag}{}\n", s.pid, record.args());
        // One write per line, so lines from several processes on one console do not interleave.
        match s.console() {
            Some(c) => {
                let _ = c.write_all(text.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
        if let Some(k) = s.kmsg.as_mut() {
            // Level 7 (debug) keeps the kernel from echoing the line to the console a second
            // time; dmesg still shows it.
            let _ = k.write_all(format!("<7>{text}").as_bytes());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_echoes_levels_below_the_console_log_level() {
        // Debian's default "4 4 1 7", `quiet` gives 4 too; `loglevel=2` silences KERN_CRIT.
        assert!(kernel_echoes("4\t4\t1\t7\n", KERN_CRIT));
        assert!(kernel_echoes("7 4 1 7", KERN_CRIT));
        assert!(!kernel_echoes("2 4 1 7", KERN_CRIT));
        assert!(!kernel_echoes("1 4 1 7", KERN_CRIT));
        // Normal log lines go to /dev/kmsg at 7 (debug): never echoed at the default levels.
        assert!(!kernel_echoes("7 4 1 7", 7));
        assert!(!kernel_echoes("", KERN_CRIT));
        assert!(!kernel_echoes("x", KERN_CRIT));
    }
}
