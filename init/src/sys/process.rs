//! Process creation with the fork discipline PID 1 needs: prepare everything, clone (vfork
//! style, on a separate stack), only async-signal-safe calls in the child, and the exec error
//! handed back in shared memory, never as a mysterious child exit.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// How the child relates to terminals and process groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// Own process group; if stdin is a terminal that is our controlling terminal, make the
    /// child's group its foreground group (tini/catatonit hand-off: Ctrl-C reaches the child).
    ProcessGroup,
    /// Own session (setsid). Daemons, getty, subsystems.
    Session,
    /// Own session, and the `stdio` terminal becomes its controlling terminal (TIOCSCTTY) with
    /// the child in the foreground: a login manager on a seat's tty.
    SessionWithTerminal,
}

/// Everything a child needs, prepared before fork so the child allocates nothing.
#[derive(Debug)]
pub struct SpawnSpec {
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub detach: Detach,
    /// When set, this fd becomes fds 0, 1 and 2 of the child.
    pub stdio: Option<RawFd>,
    /// Extra fd passed through to the child at the same number (e.g. a report pipe).
    pub pass_fd: Option<RawFd>,
    pub cwd: Option<PathBuf>,
}

/// Why a spawn failed, with the exit status a shell would give it (127 not found, 126 not executable).
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to find program {0}: not found in PATH")]
    NotFound(String),
    #[error("failed to execute {program}: {source}")]
    Exec { program: String, source: io::Error },
    /// ENOENT from execve of a file that is there: its `#!` line names a missing program.
    #[error("failed to execute {program}: its #! interpreter {interpreter} does not exist")]
    Interpreter {
        program: String,
        interpreter: String,
    },
    #[error("failed to fork for {program}: {source}")]
    Fork { program: String, source: io::Error },
    #[error("invalid argument for {0}: contains a NUL byte")]
    Nul(String),
}

impl SpawnError {
    /// The conventional status for a command that could not run.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound(_) | SpawnError::Interpreter { .. } => 127,
            SpawnError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => 127,
            _ => 126,
        }
    }
}

/// The PATH a lookup uses when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolve `program` like execvp: a name containing '/' is taken as is; otherwise each
/// directory of `path_var` is tried for an executable regular file.
pub fn resolve_program(program: &str, path_var: Option<&str>) -> Option<PathBuf> {
    resolve_program_os(OsStr::new(program), path_var.map(OsStr::new))
}

/// [`resolve_program`] on bytes: a container's command need not be UTF-8.
pub fn resolve_program_os(program: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    path_var
        .as_bytes()
        .split(|b| *b == b':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(OsStr::from_bytes(d)).join(program))
        .find(|p| is_executable(p))
}

/// Can root execute `program` (resolved like execvp)? The error reads like the failed exec's:
/// for checks made where the exec itself happens in a wrapper whose failure is not seen.
pub fn check_root_can_execute(program: &str, path_var: Option<&str>) -> Result<(), String> {
    let resolved = resolve_program(program, path_var)
        .ok_or_else(|| format!("failed to find program {program}: not found in PATH"))?;
    match std::fs::metadata(&resolved) {
        Ok(_) if is_executable(&resolved) => Ok(()),
        Ok(_) => Err(format!(
            "failed to execute {program}: {}",
            io::Error::from_raw_os_error(libc::EACCES)
        )),
        Err(e) => Err(format!("failed to execute {program}: {e}")),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub(super) fn cstring(s: &[u8], what: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Nul(what.to_string()))
}

/// `NAME=VALUE` for execve in one allocation, no formatting machinery: `CString::new` takes
/// the buffer over (its capacity already has room for the NUL).
fn env_entry(name: &[u8], value: &[u8], what: &str) -> Result<CString, SpawnError> {
    let mut kv = Vec::with_capacity(name.len() + value.len() + 2);
    kv.extend_from_slice(name);
    kv.push(b'=');
    kv.extend_from_slice(value);
    CString::new(kv).map_err(|_| SpawnError::Nul(what.to_string()))
}

/// The argument and environment vectors of an execve of `what`, as C strings.
pub(super) fn exec_vectors(
    argv: &[String],
    env: &[(String, String)],
    what: &str,
) -> Result<(Vec<CString>, Vec<CString>), SpawnError> {
    let argv = argv
        .iter()
        .map(|a| cstring(a.as_bytes(), what))
        .collect::<Result<_, _>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| env_entry(k.as_bytes(), v.as_bytes(), what))
        .collect::<Result<_, _>>()?;
    Ok((argv, envp))
}

/// Fork and exec `spec`. Returns once the child has exec'd (or failed to): a failed exec is
/// reported here as an error, never as a mysterious child exit.
pub fn spawn(spec: &SpawnSpec) -> Result<Pid, SpawnError> {
    let name = spec.program.display().to_string();
    let (argv, envp) = exec_vectors(&spec.argv, &spec.env, &name)?;
    spawn_c(spec, argv, envp)
}

/// [`spawn`] with the arguments and the environment as bytes (`spec.argv` and `spec.env` are
/// not used): a container's command and the environment it was given, exactly as they came.
pub fn spawn_os(
    spec: &SpawnSpec,
    argv: &[OsString],
    env: &[(&[u8], &[u8])],
) -> Result<Pid, SpawnError> {
    let name = spec.program.display().to_string();
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes(), &name))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| env_entry(k, v, &name))
        .collect::<Result<_, _>>()?;
    spawn_c(spec, argv, envp)
}

fn spawn_c(spec: &SpawnSpec, argv: Vec<CString>, envp: Vec<CString>) -> Result<Pid, SpawnError> {
    let name = spec.program.display().to_string();
    let program = cstring(spec.program.as_os_str().as_bytes(), &name)?;
    let cwd = match &spec.cwd {
        Some(c) => Some(cstring(OsStr::new(c).as_bytes(), &name)?),
        None => None,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let stdin_is_tty = spec.detach == Detach::ProcessGroup && super::kernel::stdin_is_tty();
    let mut child = ChildArgs {
        spec,
        stdin_is_tty,
        program: program.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: cwd.as_ref().map(|c| c.as_ptr()),
        errno: 0,
    };
    // The child runs on a stack of its own, sharing our memory until it execs (CLONE_VM |
    // CLONE_VFORK, as glibc's posix_spawn does, without posix_spawn's habit of leaving
    // glibc's internal signals 32/33 ignored in the child). No page tables are copied and no
    // page of PID 1 becomes copy-on-write, and we resume only once the child has exec'd or
    // failed to, with the exec error in `child.errno`.
    // Capacity only: the child touches the few top pages it uses, nothing is zero-filled, so
    // PID 1's resident heap does not grow by the whole stack.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: `child_entry` only makes async-signal-safe system calls on data prepared above
    // (which outlives the call: CLONE_VFORK suspends us until the child execs or exits), on its
    // own stack; every signal is blocked in PID 1 and no handler is installed, so nothing else
    // runs in the child. It never returns into Rust code.
    #[allow(unsafe_code)]
    let pid = unsafe {
        libc::clone(
            child_entry,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(child).cast(),
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(SpawnError::Fork {
            program: name,
            source: io::Error::last_os_error(),
        });
    }
    let pid = Pid::from_raw(pid);
    if child.errno != 0 {
        // The child has _exit'ed; reap it here so it never reaches the main loop as a stranger.
        let _ = nix::sys::wait::waitpid(pid, None);
        if child.errno == libc::ENOENT {
            let path = match &spec.cwd {
                Some(dir) if spec.program.is_relative() => dir.join(&spec.program),
                _ => spec.program.clone(),
            };
            if let Some(interpreter) = missing_interpreter(&path) {
                return Err(SpawnError::Interpreter {
                    program: name,
                    interpreter,
                });
            }
        }
        return Err(SpawnError::Exec {
            program: name,
            source: io::Error::from_raw_os_error(child.errno),
        });
    }
    Ok(pid)
}

/// After an exec failed with ENOENT: the program named by `path`'s `#!` line when `path` is
/// there and that program is not (what the kernel's ENOENT then meant). Reads at most the
/// first 256 bytes, opened non-blocking (a FIFO put there meanwhile is not waited on).
fn missing_interpreter(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let mut head = Vec::with_capacity(256);
    file.take(256).read_to_end(&mut head).ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let interpreter = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|w| !w.is_empty())?;
    let interpreter = Path::new(OsStr::from_bytes(interpreter));
    match std::fs::metadata(interpreter) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(interpreter.display().to_string()),
        _ => None,
    }
}

/// Stack of the child between clone and exec: a handful of system calls.
const CHILD_STACK: usize = 32 * 1024;

/// What the child needs, in memory it shares with us until exec.
struct ChildArgs<'a> {
    spec: &'a SpawnSpec,
    stdin_is_tty: bool,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: Option<*const libc::c_char>,
    /// Set by the child when execve fails.
    errno: i32,
}

#[allow(unsafe_code)]
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `spawn` keeps alive until we exec or exit.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        child_exec(a)
    }
}

/// In a child between fork and exec (async-signal-safe calls only): `fd` becomes its
/// stdin, stdout and stderr, and with [`Detach::SessionWithTerminal`] (after `setsid`) that
/// terminal becomes its controlling terminal, with it in the foreground.
#[allow(unsafe_code)]
pub(super) unsafe fn child_stdio(fd: RawFd, detach: Detach) {
    for target in 0..3 {
        if fd != target {
            libc::dup2(fd, target);
        }
    }
    if fd > 2 {
        libc::close(fd);
    }
    if detach == Detach::SessionWithTerminal {
        libc::ioctl(0, libc::TIOCSCTTY, 1);
        libc::tcsetpgrp(0, libc::getpid());
    }
}

/// The child side of [`spawn`]. Async-signal-safe calls only.
#[allow(unsafe_code)]
unsafe fn child_exec(a: &mut ChildArgs) -> ! {
    let spec = a.spec;
    match spec.detach {
        Detach::ProcessGroup => {
            libc::setpgid(0, 0);
            if a.stdin_is_tty {
                // Our mask still blocks SIGTTOU, so a background group may take the terminal.
                libc::tcsetpgrp(0, libc::getpid());
            }
        }
        Detach::Session | Detach::SessionWithTerminal => {
            libc::setsid();
        }
    }
    if let Some(fd) = spec.stdio {
        child_stdio(fd, spec.detach);
    }
    if let Some(fd) = spec.pass_fd {
        // Clear close-on-exec on the descriptor we hand over.
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
    }
    // An empty mask. Dispositions need no work here: exec resets every caught signal, and
    // `kernel::reset_ignored_signals` cleared every SIG_IGN in smss itself at start-up, so
    // nothing ignored can leak into the child (tini and catatonit leak SIG_IGN).
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    if let Some(dir) = a.cwd {
        libc::chdir(dir);
    }
    libc::execve(a.program, a.argv, a.envp);
    let errno = *libc::__errno_location();
    a.errno = if errno == 0 { libc::ENOEXEC } else { errno };
    libc::_exit(if errno == libc::ENOENT { 127 } else { 126 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interpreter_names_only_a_program_that_is_not_there() {
        let dir = std::env::temp_dir().join(format!("smss-interp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        for (text, want) in [
            (&b"#!/nonexistent/sh -e\n"[..], Some("/nonexistent/sh")),
            (b"#! \t/nonexistent/sh", Some("/nonexistent/sh")),
            (b"#!/bin/sh\n", None),
            (b"#!\n", None),
            (b"echo no interpreter line\n", None),
            (b"\x7fELF", None),
        ] {
            std::fs::write(&f, text).unwrap();
            assert_eq!(
                missing_interpreter(&f).as_deref(),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(missing_interpreter(&dir.join("absent")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
