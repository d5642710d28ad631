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
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks { pid: 0, kmsg: None }),
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

/// Write one line to every sink regardless of the level (bugchecks, the panic hook).
pub fn emergency(line: &str) {
    let pid = LOGGER.sinks.lock().map(|s| s.pid).unwrap_or(0);
    let text = format!("smss[{pid}]: {line}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Ok(mut s) = LOGGER.sinks.lock() {
        if let Some(k) = s.kmsg.as_mut() {
            let _ = k.write_all(format!("<7>{text}").as_bytes());
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
        let _ = std::io::stderr().write_all(text.as_bytes());
        if let Some(k) = s.kmsg.as_mut() {
            // Level 7 (debug) keeps the kernel from echoing the line to the console a second
            // time; dmesg still shows it.
            let _ = k.write_all(format!("<7>{text}").as_bytes());
        }
    }

    fn flush(&self) {}
}
