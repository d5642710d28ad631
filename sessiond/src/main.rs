//! `smss-session`: the per-session instance (the copy of smss.exe the master starts for each
//! session). It reads its parameters from the descriptor PID 1 passed (`--fd N`), creates the
//! session's runtime directory and cgroup, starts the session subsystems and the login
//! manager on the seat's terminal, reports their pids on the same descriptor (each as soon as
//! it is started, then the whole report) and exits: its children are reparented to PID 1,
//! which supervises them from then on. Without a cgroup it stays instead, as the session's
//! keeper (see `keeper`).
//!
//! ```text
//! smss-session [--id ID] --fd N [--log LEVEL]      the instance (started by smss only;
//!                                                  without --id, a spare started ahead)
//! smss-session exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]
//!                                                  join DIR, drop to USER, exec CMD
//! ```
#![cfg_attr(not(test), no_main)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ffi::OsString;
use std::fs;
use std::path::Path;

mod args;
mod cgroup;
mod exec;
mod instance;
mod keeper;
mod login;
mod readiness;
mod runtime_dir;
mod setup;
mod spawn;

use args::{Command, USAGE};

/// See Cargo.toml: musl's allocator makes a system call for most small allocations.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
// The keeper starts processes as the instance does.
pub(crate) use spawn::{spawn_held, Held};

/// The C entry point: like `smss`, skip the Rust runtime's start-up syscalls (a session is
/// created on every login; the instance's own start-up is most of CreateSession's cost).
#[cfg(not(test))]
#[allow(unsafe_code)] // `no_mangle` names the C `main`; argv is the C runtime's own.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // Only the C runtime calls it, with a valid argv.
#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime passes argc valid NUL-terminated strings in argv.
    let args = unsafe { smss::sys::c_args_os(argc, argv) };
    session_main(args);
    0
}

#[cfg_attr(test, allow(dead_code))]
fn session_main(argv: Vec<OsString>) {
    // Nothing ignored may reach the session's login manager or subsystems (see smss's spawn).
    smss::sys::reset_ignored_signals();
    let code = match args::parse(&argv) {
        Ok(Command::Instance(a)) => instance::main(a),
        Ok(Command::Exec(a)) => exec::main(a),
        Ok(Command::Remove(dir)) => remove_main(&dir),
        Ok(Command::Help) => smss::cli::help(USAGE),
        Err(e) => smss::cli::usage_error(args::prog(&argv), &e, USAGE),
    };
    std::process::exit(code);
}

/// `remove DIR`: delete an ended session's runtime directory (renamed aside by smss). Done
/// here, not in PID 1: the directory was the user's, and may hold any number of files.
fn remove_main(dir: &Path) -> i32 {
    smss::logging::init(
        std::env::var("SMSS_LOG").ok().as_deref(),
        log::LevelFilter::Warn,
    );
    i32::from(!remove_dir(dir))
}

/// Delete `dir` and everything in it (`remove DIR`, and a keeper told `remove`); false (and
/// a warning) when that failed.
pub(crate) fn remove_dir(dir: &Path) -> bool {
    // remove_dir_all never follows a symlink inside the tree.
    match fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            log::warn!("failed to remove {}: {e}", dir.display());
            false
        }
    }
}
