//! Process control and machine-level calls used by the supervisor: signals, reaping, kill,
//! reboot, swapoff/umount at shutdown, terminals.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

/// How a process ended, in the two forms smss reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Killed(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Killed(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited:{c}"),
            ExitStatus::Killed(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed:{}", sig.as_str().trim_start_matches("SIG")),
                Err(_) => write!(f, "killed:{s}"),
            },
        }
    }
}

/// Block every signal in the calling thread (first thing in main: signals then arrive only
/// through the signalfd, and children reset the mask themselves before exec).
pub fn block_all_signals() -> io::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None)?;
    Ok(())
}

/// A signalfd for every signal, non-blocking and close-on-exec.
pub fn signal_fd() -> io::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    Ok(SignalFd::with_flags(
        &SigSet::all(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// What one non-blocking wait found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Child(Pid, ExitStatus),
    /// Children exist, none has exited.
    Pending,
    /// No children at all (ECHILD): everything we started, and every orphan, is gone.
    NoChildren,
}

/// Reap one exited child without blocking. The raw waitpid, because nix's decoding fails
/// (EINVAL, after the kernel has reaped the child) for a child killed by a realtime signal.
pub fn reap_one() -> Reaped {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid > 0 {
            let st = if libc::WIFEXITED(status) {
                ExitStatus::Exited(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                ExitStatus::Killed(libc::WTERMSIG(status))
            } else {
                // Stopped/continued reports are not exits; wait again.
                continue;
            };
            return Reaped::Child(Pid::from_raw(pid), st);
        }
        if pid == 0 {
            return Reaped::Pending;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Reaped::NoChildren,
            _ => return Reaped::Pending,
        }
    }
}

/// Send `sig` to `pid` (negative: a process group; -1: every process we may signal).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `PR_SET_CHILD_SUBREAPER`: orphans of our subtree come to us instead of the real init.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn sync() {
    nix::unistd::sync();
}

pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// What reboot(2) should do at the very end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootCmd {
    Reboot,
    Poweroff,
    Halt,
}

/// reboot(2). Inside a PID namespace the kernel turns this into the death of the namespace's
/// init by SIGINT (power-off/halt) or SIGHUP (restart), which is how the tier-3 tests see it.
pub fn reboot(cmd: RebootCmd) -> io::Error {
    use nix::sys::reboot::{reboot, RebootMode};
    let mode = match cmd {
        RebootCmd::Reboot => RebootMode::RB_AUTOBOOT,
        RebootCmd::Poweroff => RebootMode::RB_POWER_OFF,
        RebootCmd::Halt => RebootMode::RB_HALT_SYSTEM,
    };
    match reboot(mode) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// Disable Ctrl-Alt-Del's immediate reboot: the kernel sends PID 1 SIGINT instead.
pub fn disable_cad() -> io::Result<()> {
    nix::sys::reboot::set_cad_enabled(false)?;
    Ok(())
}

/// Whether this process is in a PID namespace other than the machine's first one (the
/// kernel's own, whose inode is fixed): true in any container, even one whose runtime sets no
/// `container=` (docker, containerd). False when /proc cannot tell (a machine's init starts
/// before /proc is mounted; a container runtime always mounts it).
pub fn in_child_pid_namespace() -> bool {
    fs::read_link("/proc/self/ns/pid").is_ok_and(|l| !is_initial_pid_namespace(&l))
}

/// The link `/proc/self/ns/pid` of the kernel's first PID namespace (PROC_PID_INIT_INO).
fn is_initial_pid_namespace(link: &Path) -> bool {
    link == Path::new("pid:[4026531836]")
}

/// gethostname(2), lossy.
pub fn hostname() -> io::Result<String> {
    Ok(nix::unistd::gethostname()?.to_string_lossy().into_owned())
}

/// sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    nix::unistd::sethostname(name)?;
    Ok(())
}

pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// swapoff(2).
pub fn swapoff(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::swapoff(c.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// umount2(2) with the given flags.
pub fn umount(path: &Path, flags: nix::mount::MntFlags) -> io::Result<()> {
    nix::mount::umount2(path, flags)?;
    Ok(())
}

/// Does the calling process's stdin refer to a terminal?
pub fn stdin_is_tty() -> bool {
    // nix's isatty, as smss-session's tty check uses: ENOTTY (or EBADF) is "no".
    nix::unistd::isatty(0).unwrap_or(false)
}

/// Open a terminal device read-write, without making it our controlling terminal.
pub fn open_tty(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    Ok(f.into())
}

/// Make sure fds 0, 1 and 2 are open: the kernel starts init with none when the initramfs
/// has no /dev/console, and the first files smss opens must not become "stderr". Closed ones
/// are pointed at /dev/null when it exists. Returns true when any was closed.
pub fn ensure_stdio() -> bool {
    let mut any_closed = false;
    for fd in 0..3 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            any_closed = true;
            // SAFETY: a valid NUL-terminated path; open returns the lowest free fd, which is
            // this one because the lower ones are open by now.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
    any_closed
}

/// Point fds 0, 1 and 2 at the console (after devtmpfs is mounted, when they were closed).
pub fn stdio_to_console() -> io::Result<()> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")?;
    for fd in 0..3 {
        nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&f), fd)?;
    }
    Ok(())
}

/// Does this process have any child, running or zombie? (waitid with WNOWAIT: nothing is reaped.)
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data; waitid writes into it and reaps nothing (WNOWAIT).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: info is a valid out-pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return true;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return false,
            _ => return true,
        }
    }
}

// The layout below is x86_64's; another architecture's kernel `struct sigaction` differs
// (field order, a missing sa_restorer, a wider mask), and passing the wrong one to the raw
// system call would corrupt signal dispositions silently. Refuse to build instead.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "sys::kernel::KernelSigaction is written for x86_64 only: add this architecture's kernel struct sigaction"
);

/// The kernel's `struct sigaction` for rt_sigaction(2) on x86_64 (not glibc's layout, whose
/// wrapper also refuses glibc's internal signals 32 and 33).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// SIGPIPE back to its default disposition, for the command-line tools (smctl, `smss check`):
/// a reader that went away (`smctl session list | head -1`) then ends the tool quietly, killed
/// by SIGPIPE as coreutils are (a shell reports 141), instead of a write error or a panic on
/// EPIPE. Rust's runtime ignores SIGPIPE before `main`, and a parent may have too. std's
/// `UnixStream` sends with MSG_NOSIGNAL, so a control socket the server closed is still an
/// error message, not a silent death: only stdout and stderr raise SIGPIPE.
pub fn default_sigpipe() {
    let dfl = KernelSigaction::default();
    // SAFETY: a valid action struct of the kernel's layout (handler 0 = SIG_DFL).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::SIGPIPE,
            &dfl as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        )
    };
}

/// Turn every SIG_IGN this process inherited (or Rust's runtime set: SIGPIPE) back into the
/// default, once at start-up. Signals are all blocked and read from the signalfd, so smss never
/// relies on ignoring; and SIG_IGN is the one disposition exec passes on to children.
pub fn reset_ignored_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction::default();
        // SAFETY: a null new action only reads the current one into `old`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                8usize,
            )
        };
        if r == 0 && old.handler == libc::SIG_IGN {
            let dfl = KernelSigaction::default();
            // SAFETY: a valid action struct of the kernel's layout.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
}

extern "C" {
    /// The ELF header: the first byte of the first (read-only) load segment.
    static __ehdr_start: u8;
    /// Start of the RELRO data; everything below it in the image is read-only file content.
    static __init_array_start: u8;
}

/// Drop our clean, file-backed code and read-only data pages from the resident set (Windows'
/// EmptyWorkingSet, which its services call after start-up). They stay in the page cache and
/// fault back in when run; RSS then shows what the idle loop really touches. The range ends
/// before the RELRO page, whose relocated (anonymous) copy must never be discarded.
pub fn trim_working_set() {
    // Only the addresses of the two linker-defined symbols are taken, never their contents.
    // SAFETY: taking an extern static's address reads nothing (safe since Rust 1.82; the
    // block is for rust-version 1.80, where it still needs one).
    #[allow(unused_unsafe)]
    let (start, relro) = unsafe {
        (
            std::ptr::addr_of!(__ehdr_start) as usize,
            std::ptr::addr_of!(__init_array_start) as usize,
        )
    };
    let end = relro & !4095;
    if end > start {
        // SAFETY: [start, end) lies inside our executable's read-only mappings; MADV_DONTNEED
        // on clean private file pages only unmaps them (they are re-read from the file on access).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    trim_dead_stack();
}

/// Kept below this function's frame: the frame of the one call it makes (libc's madvise
/// wrapper, tens of bytes) and the x86-64 red zone (128 bytes), several times over.
const STACK_KEEP_BELOW: usize = 1024;
/// Dropped below that. Start-up (configuration, boot phases, the first spawns) runs deeper
/// than the idle loop, and the pages it touched stay resident, anonymous, for the life of PID
/// 1: 36 kB measured with `smss -- sleep`, where the idle loop needs a few. The window lies
/// within the stack mapping or in the guard gap the kernel keeps free below it (1 MiB,
/// `stack_guard_gap`), so it never reaches another mapping; unmapped parts are skipped.
const STACK_DROP_WINDOW: usize = 256 * 1024;

/// Drop the main thread's stack pages below the current frame. Everything below the stack
/// pointer is dead (signals are blocked, no handler or alternate stack runs on it); the pages
/// are zero-filled again when a deeper call next needs them.
#[inline(never)]
fn trim_dead_stack() {
    // Only on the main thread's stack, the one with the guard gap below it: a thread's stack
    // is a plain mapping, with another one possibly right under its guard page.
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    if tid != i64::from(std::process::id()) {
        return;
    }
    let marker = 0u8;
    // Only the address of a local is taken: a point inside this frame.
    let here = std::ptr::addr_of!(marker) as usize;
    let end = here.saturating_sub(STACK_KEEP_BELOW) & !4095;
    let start = end.saturating_sub(STACK_DROP_WINDOW);
    if start == 0 || end <= start {
        return;
    }
    // SAFETY: [start, end) is at least STACK_KEEP_BELOW below every live frame (ours is the
    // deepest, and the call below uses far less than that); it holds only dead stack pages of
    // this thread or nothing (see STACK_DROP_WINDOW). MADV_DONTNEED on private anonymous pages
    // makes them read back as zeros; ENOMEM for the unmapped part is expected and ignored.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
    std::hint::black_box(&marker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pid_namespace_is_known_by_its_inode() {
        assert!(is_initial_pid_namespace(Path::new("pid:[4026531836]")));
        assert!(!is_initial_pid_namespace(Path::new("pid:[4026532451]")));
        assert!(!is_initial_pid_namespace(Path::new("")));
    }
}
