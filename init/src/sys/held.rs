//! A process started *held*: forked, then parked until its parent releases it, and only then
//! exec'ing its command. `smss-session` starts every session process this way, so that PID 1
//! learns the pid before the process runs anything (see `smss-session`'s `spawn`).
//!
//! The child is a plain `fork` of the caller (one exec per session process, the command's,
//! instead of an exec of `smss-session exec --hold` first). Everything it needs is prepared
//! before the fork; between fork and exec it makes only async-signal-safe system calls. The
//! parent learns the outcome on a close-on-exec socket pair: EOF alone means the command was
//! exec'd; two words (what failed, errno) mean it was not, and the child then `_exit`s with
//! 127 (not found) or 126, as a shell would.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use super::process::{cstring, exec_vectors, Detach, SpawnError};

/// The identity a held process takes before its exec.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (setgroups).
    pub groups: Vec<u32>,
    /// The working directory it tries (then `/`), after the change of identity.
    pub home: PathBuf,
}

/// What to start held.
#[derive(Debug)]
pub struct HeldSpec<'a> {
    /// The program to execve: resolved already (no PATH lookup in the child).
    pub program: &'a Path,
    /// Tried in order when `program` cannot be exec'd for want of permission (EACCES), as
    /// execvp tries the rest of PATH: the same name in the later PATH directories. The lookup
    /// was made as root, before the change of identity, so its choice may be one the user
    /// cannot run (a 0700 program, a directory only root may search, a noexec mount).
    pub alternatives: &'a [PathBuf],
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub detach: Detach,
    /// When set, this fd becomes fds 0, 1 and 2 of the child.
    pub stdio: Option<RawFd>,
    /// Working directory (without `user`; with it, the user's home is tried).
    pub cwd: Option<&'a Path>,
    pub user: Option<&'a Credentials>,
}

/// Why a released child did not exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldFailure {
    /// setgroups, setgid or setuid failed.
    Credentials(nix::errno::Errno),
    /// execve failed.
    Exec(nix::errno::Errno),
}

/// A child started by [`spawn_held`]: parked until [`HeldChild::release`].
#[derive(Debug)]
pub struct HeldChild {
    pub pid: Pid,
    /// Our end of the socket pair: the go byte out, the exec outcome back.
    go: OwnedFd,
}

const STAGE_CREDENTIALS: i32 = 1;
const STAGE_EXEC: i32 = 2;

impl HeldChild {
    /// Let the child go on to its exec. A child that died meanwhile is EPIPE, not a
    /// SIGPIPE (MSG_NOSIGNAL): its parent does not ignore SIGPIPE.
    pub fn release(&self) -> nix::Result<()> {
        use nix::sys::socket::{send, MsgFlags};
        loop {
            match send(self.go.as_raw_fd(), b"g", MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map(drop),
            }
        }
    }

    /// Wait (at most `timeout`) for the released child to exec or fail to: `None` when it
    /// exec'd (or said nothing before the time ran out, which is logged), the failure
    /// otherwise.
    pub fn outcome(&self, timeout: Duration) -> Option<HeldFailure> {
        let deadline = Instant::now() + timeout;
        let mut got = [0u8; 8];
        let mut n = 0;
        while n < got.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "a session process did not exec within {} s",
                    timeout.as_secs()
                );
                return None;
            }
            let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&self.go),
                PollFlags::POLLIN,
            )];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(_) => return None,
            }
            let Some(rest) = got.get_mut(n..) else {
                break;
            };
            match nix::unistd::read(self.go.as_raw_fd(), rest) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(_) => break,
            }
        }
        decode_failure(got.get(..n).unwrap_or_default())
    }
}

/// The child's two words (stage, errno), native order; anything shorter is no failure (EOF
/// after a successful exec).
fn decode_failure(b: &[u8]) -> Option<HeldFailure> {
    let word = |r: std::ops::Range<usize>| -> Option<i32> {
        Some(i32::from_ne_bytes(b.get(r)?.try_into().ok()?))
    };
    let (stage, errno) = (word(0..4)?, word(4..8)?);
    let errno = nix::errno::Errno::from_raw(errno);
    match stage {
        STAGE_CREDENTIALS => Some(HeldFailure::Credentials(errno)),
        _ => Some(HeldFailure::Exec(errno)),
    }
}

/// Fork a child that waits for [`HeldChild::release`], then takes `spec.user`'s identity
/// and execs `spec.program`. The child has an empty signal mask; if the caller goes away
/// before releasing it (its end of the socket closes), it exits 126 having run nothing.
pub fn spawn_held(spec: &HeldSpec) -> Result<HeldChild, SpawnError> {
    let name = spec.program.display().to_string();
    let program = cstring(spec.program.as_os_str().as_bytes(), &name)?;
    let alternatives: Vec<CString> = spec
        .alternatives
        .iter()
        .map(|p| cstring(p.as_os_str().as_bytes(), &name))
        .collect::<Result<_, _>>()?;
    let mut alternative_ptrs: Vec<*const libc::c_char> =
        alternatives.iter().map(|a| a.as_ptr()).collect();
    alternative_ptrs.push(std::ptr::null());
    let (argv, envp) = exec_vectors(spec.argv, spec.env, &name)?;
    let cwd = match (spec.user, spec.cwd) {
        (Some(u), _) => Some(cstring(OsStr::new(&u.home).as_bytes(), &name)?),
        (None, Some(c)) => Some(cstring(c.as_os_str().as_bytes(), &name)?),
        (None, None) => None,
    };
    let groups: Vec<libc::gid_t> = spec.user.map(|u| u.groups.clone()).unwrap_or_default();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let root = c"/";

    let mut pair = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into `pair`, which we own from here on.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(SpawnError::Fork {
            program: name,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    let (go, hold) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };

    // SAFETY: after fork the child runs only `held_child`, which makes async-signal-safe
    // system calls on memory prepared above (its own copy of it) and never returns: it
    // execs or `_exit`s. Nothing in it allocates, takes a lock or runs a destructor, so a
    // lock another thread of the caller held at the fork cannot be met.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SpawnError::Fork {
            program: name,
            source: io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        let a = ChildArgs {
            go: go.as_raw_fd(),
            hold: hold.as_raw_fd(),
            detach: spec.detach,
            stdio: spec.stdio,
            program: program.as_ptr(),
            alternatives: alternative_ptrs.as_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp: envp_ptrs.as_ptr(),
            cwd: cwd.as_ref().map(|c| c.as_ptr()),
            root: root.as_ptr(),
            user: spec.user.map(|u| (u.uid, u.gid)),
            groups: groups.as_ptr(),
            ngroups: groups.len(),
        };
        // SAFETY: see the fork above.
        unsafe { held_child(&a) }
    }
    drop(hold);
    Ok(HeldChild {
        pid: Pid::from_raw(pid),
        go,
    })
}

/// What the forked child uses (pointers into the parent's memory, copied by the fork).
struct ChildArgs {
    go: RawFd,
    hold: RawFd,
    detach: Detach,
    stdio: Option<RawFd>,
    program: *const libc::c_char,
    /// NULL-terminated.
    alternatives: *const *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: Option<*const libc::c_char>,
    root: *const libc::c_char,
    user: Option<(u32, u32)>,
    groups: *const libc::gid_t,
    ngroups: usize,
}

/// Tell the parent why we did not exec, then exit as a shell would.
unsafe fn fail(hold: RawFd, stage: i32, errno: i32) -> ! {
    let mut msg = [0u8; 8];
    let (a, b) = msg.split_at_mut(4);
    a.copy_from_slice(&stage.to_ne_bytes());
    b.copy_from_slice(&errno.to_ne_bytes());
    libc::send(hold, msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL);
    libc::_exit(if stage == STAGE_EXEC && errno == libc::ENOENT {
        127
    } else {
        126
    });
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The child side of [`spawn_held`]. Async-signal-safe calls only.
unsafe fn held_child(a: &ChildArgs) -> ! {
    // The parent's end: only the parent may hold it, so that its exit reads as EOF here.
    libc::close(a.go);
    // An empty mask (the caller may block signals it reads from a signalfd): a held child is
    // killable while it waits. No handler needs resetting: the callers install none.
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    match a.detach {
        Detach::ProcessGroup => {
            libc::setpgid(0, 0);
        }
        Detach::Session | Detach::SessionWithTerminal => {
            libc::setsid();
        }
    }
    if let Some(fd) = a.stdio {
        super::process::child_stdio(fd, a.detach);
    }
    // Held: one byte means go; EOF (the parent died or gave up) means run nothing.
    let mut b = 0u8;
    loop {
        let n = libc::read(a.hold, std::ptr::addr_of_mut!(b).cast(), 1);
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        libc::_exit(126);
    }
    if let Some((uid, gid)) = a.user {
        // setgroups, then setgid, then setuid: after setuid we could do neither.
        if libc::setgroups(a.ngroups, a.groups) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            fail(a.hold, STAGE_CREDENTIALS, errno());
        }
    }
    if let Some(dir) = a.cwd {
        if libc::chdir(dir) != 0 && a.user.is_some() {
            libc::chdir(a.root);
        }
    }
    libc::execve(a.program, a.argv, a.envp);
    let first = errno();
    if first == libc::EACCES {
        // As execvp: on through PATH past what we may not run or what is not there; the
        // first refusal is what is reported if nothing runs.
        let mut next = a.alternatives;
        while !(*next).is_null() {
            libc::execve(*next, a.argv, a.envp);
            match errno() {
                libc::EACCES
                | libc::ENOENT
                | libc::ENOTDIR
                | libc::ESTALE
                | libc::ENODEV
                | libc::ETIMEDOUT => {}
                other => fail(a.hold, STAGE_EXEC, other),
            }
            next = next.add(1);
        }
    }
    fail(a.hold, STAGE_EXEC, first);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_decode_from_the_childs_words() {
        let words = |s: i32, e: i32| [s.to_ne_bytes(), e.to_ne_bytes()].concat();
        assert_eq!(decode_failure(&[]), None);
        assert_eq!(decode_failure(&[1, 2, 3]), None);
        assert_eq!(
            decode_failure(&words(STAGE_EXEC, libc::ENOENT)),
            Some(HeldFailure::Exec(nix::errno::Errno::ENOENT))
        );
        assert_eq!(
            decode_failure(&words(STAGE_CREDENTIALS, libc::EPERM)),
            Some(HeldFailure::Credentials(nix::errno::Errno::EPERM))
        );
    }

    fn start(program: &str, argv: &[&str]) -> HeldChild {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        spawn_held(&HeldSpec {
            program: Path::new(program),
            alternatives: &[],
            argv: &argv,
            env: &[],
            detach: Detach::Session,
            stdio: None,
            cwd: None,
            user: None,
        })
        .unwrap()
    }

    fn wait(pid: Pid) -> nix::sys::wait::WaitStatus {
        nix::sys::wait::waitpid(pid, None).unwrap()
    }

    #[test]
    fn a_released_child_execs_and_reports_nothing() {
        let c = start("/bin/sh", &["sh", "-c", "exit 7"]);
        c.release().unwrap();
        assert_eq!(c.outcome(Duration::from_secs(30)), None);
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 7));
    }

    #[test]
    fn an_exec_failure_comes_back_with_its_errno_and_status() {
        let c = start("/nonexistent/program", &["program"]);
        c.release().unwrap();
        assert_eq!(
            c.outcome(Duration::from_secs(30)),
            Some(HeldFailure::Exec(nix::errno::Errno::ENOENT))
        );
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 127));
        let c = start("/dev/null", &["null"]);
        c.release().unwrap();
        assert_eq!(
            c.outcome(Duration::from_secs(30)),
            Some(HeldFailure::Exec(nix::errno::Errno::EACCES))
        );
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 126));
    }

    /// Releasing a child that already died (killed while held) is an error (EPIPE), never a
    /// SIGPIPE: the instance and the keeper do not ignore SIGPIPE, and a keeper killed by it
    /// would end its whole session. Shown with SIGPIPE blocked in this thread: a write that
    /// raised it leaves it pending here.
    #[test]
    fn releasing_a_dead_child_raises_no_sigpipe() {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal};
        let c = start("/bin/sh", &["sh", "-c", "exit 0"]);
        nix::sys::signal::kill(c.pid, Signal::SIGKILL).unwrap();
        assert!(matches!(
            wait(c.pid),
            nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _)
        ));
        let mut pipe = SigSet::empty();
        pipe.add(Signal::SIGPIPE);
        let mut old = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), Some(&mut old))
            .unwrap();
        let r = c.release();
        let pending = {
            // SAFETY: sigpending fills the set it is given.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            (unsafe { libc::sigpending(&mut set) } == 0)
                .then(|| unsafe { libc::sigismember(&set, libc::SIGPIPE) } == 1)
        };
        if pending == Some(true) {
            // Consume it before unblocking (it would be ignored anyway in a test binary).
            let _ = pipe.wait();
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None).unwrap();
        assert_eq!(r, Err(nix::errno::Errno::EPIPE));
        assert_eq!(pending, Some(false), "the release raised SIGPIPE");
    }

    /// A program it may not run (EACCES) is passed over for the next alternative, past
    /// missing ones; when none runs, the first refusal is what comes back.
    #[test]
    fn a_refused_program_falls_back_to_the_alternatives_as_execvp_does() {
        let argv: Vec<String> = ["sh", "-c", "exit 7"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let spawn = |alternatives: &[PathBuf]| {
            spawn_held(&HeldSpec {
                program: Path::new("/dev/null"),
                alternatives,
                argv: &argv,
                env: &[],
                detach: Detach::Session,
                stdio: None,
                cwd: None,
                user: None,
            })
            .unwrap()
        };
        let c = spawn(&[PathBuf::from("/nonexistent/sh"), PathBuf::from("/bin/sh")]);
        c.release().unwrap();
        assert_eq!(c.outcome(Duration::from_secs(30)), None);
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 7));
        let c = spawn(&[PathBuf::from("/nonexistent/sh"), PathBuf::from("/dev/zero")]);
        c.release().unwrap();
        assert_eq!(
            c.outcome(Duration::from_secs(30)),
            Some(HeldFailure::Exec(nix::errno::Errno::EACCES))
        );
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 126));
    }

    /// As root (the test tiers run as root): the child takes the identity before its exec,
    /// and a home it cannot enter leaves it in `/`.
    #[test]
    fn a_released_child_takes_the_users_identity() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let creds = Credentials {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            home: PathBuf::from("/nonexistent-home"),
        };
        let argv: Vec<String> = [
            "sh",
            "-c",
            "[ \"$(id -u):$(id -g):$(id -G):$(pwd)\" = 65534:65534:65534:/ ]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = spawn_held(&HeldSpec {
            program: Path::new("/bin/sh"),
            alternatives: &[],
            argv: &argv,
            env: &[("PATH".into(), "/usr/bin:/bin".into())],
            detach: Detach::Session,
            stdio: None,
            cwd: None,
            user: Some(&creds),
        })
        .unwrap();
        c.release().unwrap();
        assert_eq!(c.outcome(Duration::from_secs(30)), None);
        assert_eq!(wait(c.pid), nix::sys::wait::WaitStatus::Exited(c.pid, 0));
    }

    #[test]
    fn a_child_never_released_runs_nothing() {
        let dir = std::env::temp_dir().join(format!("smss-held-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mark = dir.join("ran");
        let c = start(
            "/bin/sh",
            &["sh", "-c", &format!("touch {}", mark.display())],
        );
        let pid = c.pid;
        drop(c);
        assert_eq!(wait(pid), nix::sys::wait::WaitStatus::Exited(pid, 126));
        assert!(!mark.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
