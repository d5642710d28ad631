//! The API filesystems a Linux system needs before anything else (what the NT kernel's object
//! manager provides before smss starts): /proc, /sys, /dev, /dev/pts, /dev/shm, /run, cgroup2.

use std::path::{Path, PathBuf};

use super::{errno, proc_table_paths, PhaseError};
use crate::sys::{MountFlags, Sys};

/// One early mount: what mount(8) would be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyMount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: &'static str,
    /// Boot cannot go on without it: every later phase reads /proc or opens /dev.
    pub essential: bool,
}

const fn flags(nosuid: bool, nodev: bool, noexec: bool) -> MountFlags {
    MountFlags {
        read_only: false,
        remount: false,
        nosuid,
        nodev,
        noexec,
        noatime: false,
        nodiratime: false,
        relatime: false,
        strictatime: false,
        lazytime: false,
        sync: false,
        dirsync: false,
    }
}

/// The early mounts in order (a mount point under /dev must come after /dev itself: devtmpfs
/// starts without pts/ and shm/). Options are systemd's and util-linux's usual ones; gid 5 is
/// the `tty` group devpts hands new terminals to.
pub const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: flags(true, true, true),
        data: "",
        essential: true,
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: flags(true, true, true),
        data: "",
        essential: false,
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: flags(true, false, false),
        data: "mode=0755",
        essential: true,
    },
    EarlyMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: flags(true, false, true),
        data: "gid=5,mode=620,ptmxmode=666",
        essential: false,
    },
    EarlyMount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: flags(true, true, false),
        data: "mode=1777",
        essential: false,
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: flags(true, true, false),
        data: "mode=0755",
        essential: false,
    },
    EarlyMount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: flags(true, true, true),
        data: "nsdelegate",
        essential: false,
    },
];

/// Mount [`EARLY_MOUNTS`]. Anything already mounted on a target (by an initramfs or the
/// kernel's devtmpfs.mount=1) is left alone; EBUSY counts as already mounted. A failure is
/// logged and the next mount tried; the error is returned only when /proc or /dev failed.
pub fn run(sys: &dyn Sys) -> Result<(), PhaseError> {
    let mut first_fatal = None;
    // /proc/self/mounts exists only once /proc is mounted: read until a read succeeds, then
    // that table holds for the rest (each target comes once, and what we mount ourselves is
    // not tried again). One read instead of seven: each is a parse, and under TCG a
    // measurable part of the phase.
    let mut mounted: Option<Vec<PathBuf>> = None;
    for m in EARLY_MOUNTS {
        let target = Path::new(m.target);
        if mounted.is_none() {
            mounted = sys
                .read_file(Path::new("/proc/self/mounts"))
                .ok()
                .map(|table| proc_table_paths(&table, 0, 1));
        }
        if mounted
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t == target))
        {
            log::debug!("{} already mounted, left alone", m.target);
            continue;
        }
        if let Err(e) = mount_one(sys, m) {
            log::warn!("{e}");
            if m.essential && first_fatal.is_none() {
                first_fatal = Some(e);
            }
        }
    }
    match first_fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn mount_one(sys: &dyn Sys, m: &EarlyMount) -> Result<(), PhaseError> {
    let target = PathBuf::from(m.target);
    sys.create_dir_all(&target, 0o755)
        .map_err(|source| PhaseError::CreateDir {
            path: target.clone(),
            source,
        })?;
    match sys.mount(m.source, &target, m.fstype, m.flags, m.data) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == libc::EBUSY => {
            log::debug!("{} already mounted (EBUSY)", m.target);
            Ok(())
        }
        Err(source) => Err(PhaseError::Mount {
            target,
            fstype: m.fstype.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn mounts_everything_in_order() {
        let sys = FakeSys::new();
        run(&sys).unwrap();
        let mounts = sys.calls_of("mount");
        let targets: Vec<&str> = mounts
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "/proc",
                "/sys",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/run",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(
            mounts[3],
            "mount /dev/pts devpts devpts rw,nosuid,noexec,gid=5,mode=620,ptmxmode=666"
        );
        assert_eq!(
            mounts[6],
            "mount /sys/fs/cgroup cgroup2 cgroup2 rw,nosuid,nodev,noexec,nsdelegate"
        );
        // Mount points are made before each mount.
        let calls = sys.calls();
        let mk = calls
            .iter()
            .position(|c| c.starts_with("mkdir /dev/pts"))
            .unwrap();
        let mo = calls
            .iter()
            .position(|c| c.starts_with("mount /dev/pts"))
            .unwrap();
        let dev = calls
            .iter()
            .position(|c| c.starts_with("mount /dev "))
            .unwrap();
        assert!(dev < mk && mk < mo);
    }

    #[test]
    fn ebusy_is_already_mounted() {
        let sys = FakeSys::new();
        sys.fail("mount", "/proc", libc::EBUSY);
        sys.fail("mount", "/dev", libc::EBUSY);
        run(&sys).unwrap();
        assert_eq!(sys.calls_of("mount").len(), 7);
    }

    #[test]
    fn non_essential_failure_is_logged_and_next_tried() {
        let sys = FakeSys::new();
        sys.fail("mount", "/sys", libc::EPERM);
        sys.fail("mount", "/sys/fs/cgroup", libc::ENODEV);
        run(&sys).unwrap();
        assert_eq!(sys.calls_of("mount").len(), 7);
    }

    #[test]
    fn proc_or_dev_failure_is_an_error_after_trying_the_rest() {
        let sys = FakeSys::new();
        sys.fail("mount", "/dev", libc::ENODEV);
        let e = run(&sys).unwrap_err();
        assert!(matches!(e, PhaseError::Mount { ref target, .. } if target == Path::new("/dev")));
        assert!(e
            .to_string()
            .starts_with("failed to mount devtmpfs on /dev: "));
        assert_eq!(sys.calls_of("mount").len(), 7);
    }

    #[test]
    fn the_mount_table_is_read_once_it_exists() {
        // Each read of /proc/self/mounts is a syscall round trip and a parse; under TCG the
        // seven reads were a measurable part of the phase. /proc is mounted already here, so
        // one read serves every target.
        let sys = FakeSys::new();
        sys.add_file("/proc/self/mounts", b"proc /proc proc rw 0 0\n");
        run(&sys).unwrap();
        let reads = sys.calls_of("read");
        assert_eq!(reads, ["read /proc/self/mounts"], "{reads:?}");
        assert_eq!(sys.calls_of("mount").len(), 6);
    }

    #[test]
    fn already_mounted_targets_are_skipped() {
        let sys = FakeSys::new();
        sys.add_file(
            "/proc/self/mounts",
            b"proc /proc proc rw 0 0\ndevtmpfs /dev devtmpfs rw 0 0\ncgroup /sys/fs/cgroup tmpfs ro 0 0\n",
        );
        run(&sys).unwrap();
        let mounts = sys.calls_of("mount");
        assert_eq!(mounts.len(), 4, "{mounts:?}");
        assert!(mounts.iter().all(|m| !m.starts_with("mount /proc ")));
        assert!(mounts
            .iter()
            .all(|m| !m.starts_with("mount /sys/fs/cgroup ")));
    }
}
