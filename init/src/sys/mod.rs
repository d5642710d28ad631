//! Every raw syscall and every `unsafe` block of smss lives under this module.
//!
//! We use `nix` for the calls it wraps (signals, wait, mount, reboot, sockets) because one
//! fd-safe API across the crate is simpler to read than two; `libc` directly only where nix has
//! no wrapper (swapon/swapoff, finit_module, fallocate, statvfs, the fork child). rustix is not
//! linked: it would duplicate nix and grow PID 1.
//!
//! The [`Sys`] trait is the seam the boot phases are written against: [`RealSys`] performs the
//! calls, [`fake::FakeSys`] records them and injects errors in unit tests.
#![allow(unsafe_code)]

pub mod chase;
pub mod fake;
pub mod fd;
pub mod held;
pub mod kernel;
pub mod peercred;
pub mod process;
pub mod uevent;

pub use kernel::*;

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Flags of [`Sys::mount`], the subset smss uses (mount(8)'s names, MS_* in mount(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub read_only: bool,
    pub remount: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub noatime: bool,
    pub nodiratime: bool,
    pub relatime: bool,
    pub strictatime: bool,
    pub lazytime: bool,
    pub sync: bool,
    pub dirsync: bool,
}

/// How long [`Sys::lock_file`] waits for another holder of the lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An exclusive `flock(2)` held on a file until dropped (the fake holds nothing).
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] Option<nix::fcntl::Flock<fs::File>>);

impl FileLock {
    /// A lock that holds nothing, for fakes.
    pub fn none() -> Self {
        FileLock(None)
    }
}

/// Take `flock(LOCK_EX)` on an open file, blocking until it is granted. Writers of the rename
/// queue use it on their own `File` (real I/O, not through [`Sys`]).
pub fn lock_exclusive(file: fs::File) -> io::Result<nix::fcntl::Flock<fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
}

/// flock(LOCK_EX | LOCK_NB): `WouldBlock` when someone else holds the lock.
pub fn try_lock_exclusive(file: fs::File) -> io::Result<nix::fcntl::Flock<fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io::Error::from(e))
}

/// Open `path` (read, plus append when `append`) with O_NONBLOCK, so a FIFO put where a
/// file belongs cannot block the caller in open(2), and refuse anything but a regular file
/// (an error saying what it is). O_NONBLOCK changes nothing for a regular file.
pub fn open_regular_file(path: &Path, append: bool) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .append(append)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    require_regular(&f, path)?;
    Ok(f)
}

/// An error saying what `f` is unless it is a regular file.
pub fn require_regular(f: &fs::File, path: &Path) -> io::Result<()> {
    let t = f.metadata()?.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = smss_config::file_kind(t);
    Err(io::Error::other(format!(
        "{} is not a regular file ({what})",
        path.display()
    )))
}

/// The arguments after the program name, from a C `main`'s `argc`/`argv` (lossy: a
/// non-UTF-8 word never panics). std's own `args()` is empty under `no_main` with musl, which
/// does not hand argv to initialisers as glibc does.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as the C runtime passes them.
pub unsafe fn c_args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<String> {
    let n = usize::try_from(argc).unwrap_or(0);
    (1..n)
        .filter_map(|i| {
            // SAFETY: i < argc, and the caller vouches for argv's first argc entries.
            let p = unsafe { *argv.add(i) };
            // SAFETY: a non-null entry is a NUL-terminated string (the caller's contract).
            (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) })
        })
        .map(|c| c.to_string_lossy().into_owned())
        .collect()
}

/// [`c_args`] as bytes: the words exactly as the caller passed them (a container's command,
/// a path, need not be UTF-8).
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as the C runtime passes them.
pub unsafe fn c_args_os(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let n = usize::try_from(argc).unwrap_or(0);
    (1..n)
        .filter_map(|i| {
            // SAFETY: i < argc, and the caller vouches for argv's first argc entries.
            let p = unsafe { *argv.add(i) };
            // SAFETY: a non-null entry is a NUL-terminated string (the caller's contract).
            (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) })
        })
        .map(|c| std::ffi::OsStr::from_bytes(c.to_bytes()).to_os_string())
        .collect()
}

/// The seam between the boot phases and the kernel. Everything a phase does to the machine
/// goes through one of these methods, so each phase is unit-tested against [`fake::FakeSys`].
pub trait Sys {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn set_umask(&self, mask: u32);
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// renameat2(RENAME_NOREPLACE): never overwrite an existing destination.
    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// [`Sys::rename`] / [`Sys::rename_noreplace`] (`noreplace`) for paths someone else may
    /// control: no symlink but root's is followed on the way ([`chase`]).
    fn safe_rename(&self, from: &Path, to: &Path, noreplace: bool) -> io::Result<()>;
    /// Unlink `path`, or rmdir it when it is a directory, following no symlink but root's on
    /// the way ([`chase`]).
    fn safe_remove(&self, path: &Path) -> io::Result<()>;
    /// Open a regular file for reading without blocking (O_NONBLOCK: a FIFO is refused, never
    /// waited on); returns it with its size. Anything but a regular file is an error.
    fn open_regular(&self, path: &Path) -> io::Result<(Box<dyn io::Read>, u64)>;
    fn exists(&self, path: &Path) -> bool;
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Write a whole file (created with `mode`, truncated) and fsync it.
    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;
    /// fsync a directory, so a rename or unlink inside it is durable.
    fn fsync_dir(&self, path: &Path) -> io::Result<()>;
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// Create `path` of exactly `size` bytes with `mode`: fallocate, else write zeros.
    fn allocate_file(&self, path: &Path, size: u64, mode: u32) -> io::Result<()>;
    /// Write `data` at `offset` in an existing file and fsync it.
    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()>;
    fn swapon(&self, path: &Path, priority: i32) -> io::Result<()>;
    /// Bytes available to root on the filesystem holding `path`.
    fn free_bytes(&self, path: &Path) -> io::Result<u64>;
    fn mem_total_bytes(&self) -> u64;
    fn page_size(&self) -> usize;
    /// finit_module(2); `compressed` passes MODULE_INIT_COMPRESSED_FILE (kernel 6.3+ decompresses).
    fn finit_module(&self, path: &Path, params: &str, compressed: bool) -> io::Result<()>;
    fn random_bytes(&self, buf: &mut [u8]);
    /// Read up to `len` bytes at `offset` (fewer at end of file); superblocks of block devices.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Names of the entries of a directory, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Size in bytes of a regular file (not following a final symlink).
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// chmod(2).
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Open `path` (a regular file, opened non-blocking) and take an exclusive flock on it,
    /// waiting at most [`LOCK_WAIT`] (then `WouldBlock`): a writer stopped while holding it
    /// must not stop the boot.
    fn lock_file(&self, path: &Path) -> io::Result<FileLock>;
    /// `uname -r`.
    fn kernel_release(&self) -> io::Result<String>;
    /// `uname -m`.
    fn machine(&self) -> io::Result<String>;
    /// Online CPUs (sysconf _SC_NPROCESSORS_ONLN), at least 1.
    fn online_cpus(&self) -> usize;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn set_umask(&self, mask: u32) {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        // The raw system call: nix wraps renameat2 for glibc only, and the static binaries
        // may be built against musl.
        use std::os::unix::ffi::OsStrExt;
        let from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
        let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn safe_rename(&self, from: &Path, to: &Path, noreplace: bool) -> io::Result<()> {
        chase::rename(from, to, noreplace)
    }

    fn safe_remove(&self, path: &Path) -> io::Result<()> {
        chase::remove(path)
    }

    fn open_regular(&self, path: &Path) -> io::Result<(Box<dyn io::Read>, u64)> {
        let f = open_regular_file(path, false)?;
        let len = f.metadata()?.len();
        Ok((Box::new(f), len))
    }

    fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        f.write_all(data)?;
        f.sync_all()
    }

    fn fsync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        use nix::mount::MsFlags;
        let mut f = MsFlags::empty();
        f.set(MsFlags::MS_RDONLY, flags.read_only);
        f.set(MsFlags::MS_REMOUNT, flags.remount);
        f.set(MsFlags::MS_NOSUID, flags.nosuid);
        f.set(MsFlags::MS_NODEV, flags.nodev);
        f.set(MsFlags::MS_NOEXEC, flags.noexec);
        f.set(MsFlags::MS_NOATIME, flags.noatime);
        f.set(MsFlags::MS_NODIRATIME, flags.nodiratime);
        f.set(MsFlags::MS_RELATIME, flags.relatime);
        f.set(MsFlags::MS_STRICTATIME, flags.strictatime);
        f.set(MsFlags::MS_LAZYTIME, flags.lazytime);
        f.set(MsFlags::MS_SYNCHRONOUS, flags.sync);
        f.set(MsFlags::MS_DIRSYNC, flags.dirsync);
        let data = (!data.is_empty()).then_some(data);
        let fstype = (!fstype.is_empty()).then_some(fstype);
        nix::mount::mount(Some(source), target, fstype, f, data)?;
        Ok(())
    }

    fn allocate_file(&self, path: &Path, size: u64, mode: u32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        // SAFETY: f is an open file descriptor for the duration of the call.
        let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(e);
            }
            // Filesystems without fallocate (tmpfs on old kernels, some FUSE): write zeros.
            let mut w = io::BufWriter::with_capacity(1 << 20, &f);
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                w.write_all(zeros.get(..n).unwrap_or_default())?;
                left -= n as u64;
            }
            w.flush()?;
        }
        f.sync_all()
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(path)?;
        f.write_all_at(data, offset)?;
        f.sync_all()
    }

    fn swapon(&self, path: &Path, priority: i32) -> io::Result<()> {
        let c = kernel::cpath(path)?;
        // <linux/swap.h>: SWAP_FLAG_PREFER | (prio << SWAP_FLAG_PRIO_SHIFT) & SWAP_FLAG_PRIO_MASK.
        const SWAP_FLAG_PREFER: i32 = 0x8000;
        const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;
        let flags =
            SWAP_FLAG_PREFER | (priority.clamp(0, SWAP_FLAG_PRIO_MASK) & SWAP_FLAG_PRIO_MASK);
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::swapon(c.as_ptr(), flags) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        let s = nix::sys::statvfs::statvfs(path)?;
        Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
    }

    fn mem_total_bytes(&self) -> u64 {
        nix::sys::sysinfo::sysinfo()
            .map(|i| i.ram_total())
            .unwrap_or(0)
    }

    fn page_size(&self) -> usize {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|v| v as usize)
            .unwrap_or(4096)
    }

    fn finit_module(&self, path: &Path, params: &str, compressed: bool) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = fs::File::open(path)?;
        let p = CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // MODULE_INIT_COMPRESSED_FILE: the kernel decompresses .ko.xz/.ko.zst itself.
        let flags: libc::c_int = if compressed { 4 } else { 0 };
        // SAFETY: fd is open, p is a valid NUL-terminated string.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), p.as_ptr(), flags) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(path)?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(buf.get_mut(got..).unwrap_or_default(), offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let m = fs::symlink_metadata(path)?;
        if !m.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "exists and is not a regular file",
            ));
        }
        Ok(m.len())
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    fn lock_file(&self, path: &Path) -> io::Result<FileLock> {
        use nix::fcntl::{Flock, FlockArg};
        let mut f = open_regular_file(path, false)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(FileLock(Some(l))),
                Err((back, nix::errno::Errno::EWOULDBLOCK))
                    if std::time::Instant::now() < deadline =>
                {
                    f = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("locked by another writer for {} s", LOCK_WAIT.as_secs()),
                    ))
                }
                Err((_, e)) => return Err(e.into()),
            }
        }
    }

    fn kernel_release(&self) -> io::Result<String> {
        let u = nix::sys::utsname::uname()?;
        Ok(u.release().to_string_lossy().into_owned())
    }

    fn machine(&self) -> io::Result<String> {
        let u = nix::sys::utsname::uname()?;
        Ok(u.machine().to_string_lossy().into_owned())
    }

    fn online_cpus(&self) -> usize {
        nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .map(|v| v.max(1) as usize)
            .unwrap_or(1)
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        // GRND_NONBLOCK: early boot on a kernel without jitter entropy must not block PID 1;
        // a UUID then falls back to time and pid (unique enough for a swap label).
        let mut got = 0;
        while let Some(tail) = buf.get_mut(got..).filter(|t| !t.is_empty()) {
            // SAFETY: the pointer and length describe the unfilled tail of the writable `buf`.
            let r = unsafe {
                libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), libc::GRND_NONBLOCK)
            };
            if r > 0 {
                got += r as usize;
                continue;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                ^ (u128::from(std::process::id()) << 64);
            for (i, b) in buf.iter_mut().skip(got).enumerate() {
                *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
            }
            break;
        }
    }
}
