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

pub mod fake;
pub mod kernel;
pub mod process;

pub use kernel::*;

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;


/// Flags of [`Sys::mount`], the subset smss uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub read_only: bool,
    pub remount: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
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
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(mode).create(path)
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
        use nix::fcntl::{renameat2, RenameFlags};
        renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE)?;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
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
            if e.raw_os_error() == Some(libc::ENOSPC) {
                return Err(e);
            }
            // Filesystems without fallocate (tmpfs on old kernels, some FUSE): write zeros.
            let mut w = io::BufWriter::with_capacity(1 << 20, &f);
            let zeros = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                w.write_all(&zeros[..n])?;
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
        let flags = SWAP_FLAG_PREFER | (priority.clamp(0, SWAP_FLAG_PRIO_MASK) & SWAP_FLAG_PRIO_MASK);
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

    fn random_bytes(&self, buf: &mut [u8]) {
        // SAFETY: buf is a valid writable slice; getrandom may return fewer bytes, so loop.
        let mut got = 0;
        while got < buf.len() {
            let r = unsafe {
                libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0)
            };
            if r <= 0 {
                break;
            }
            got += r as usize;
        }
    }
}
