//! Taking the machine down once every process is gone: swapoff, sync, unmount (or remount
//! read-only what stays busy), reboot(2). The plan is pure; the executor calls `sys`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::phases::proc_table_paths;
use crate::sys::{self, RebootCmd};

/// API filesystems the kernel tears down itself; unmounting them only produces noise.
const KEEP: &[&str] = &[
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/run",
    "/sys/fs/cgroup",
];

/// What to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownPlan {
    pub swapoff: Vec<PathBuf>,
    /// Mount points, deepest (most recently mounted) first.
    pub unmount: Vec<PathBuf>,
    pub reboot: RebootCmd,
}

/// Plan from the contents of /proc/swaps and /proc/self/mounts (bytes: paths need not be
/// UTF-8).
pub fn plan(swaps: &[u8], mounts: &[u8], reboot: RebootCmd) -> ShutdownPlan {
    let swapoff = proc_table_paths(swaps, 1, 0);
    let mut unmount: Vec<PathBuf> = proc_table_paths(mounts, 0, 1)
        .into_iter()
        .filter(|m| {
            let b = m.as_os_str().as_bytes();
            !KEEP.iter().any(|k| k.as_bytes() == b)
                && !b.starts_with(b"/sys/")
                && !b.starts_with(b"/proc/")
        })
        .collect();
    // Stacked mounts on one mount point each need their own unmount: no dedup.
    unmount.reverse();
    ShutdownPlan {
        swapoff,
        unmount,
        reboot,
    }
}

/// Execute the plan. Returns only if reboot(2) failed.
pub fn take_down_machine(cmd: RebootCmd) {
    let swaps = std::fs::read("/proc/swaps").unwrap_or_default();
    let mounts = std::fs::read("/proc/self/mounts").unwrap_or_default();
    let plan = plan(&swaps, &mounts, cmd);
    execute(&plan);
}

fn execute(plan: &ShutdownPlan) {
    for s in &plan.swapoff {
        match sys::swapoff(s) {
            Ok(()) => log::info!("swapoff {}", s.display()),
            Err(e) => log::warn!("failed to swapoff {}: {e}", s.display()),
        }
    }
    sys::sync();
    for m in &plan.unmount {
        if let Err(e) = sys::umount(m, nix::mount::MntFlags::empty()) {
            // Busy: at least make it clean on disk.
            match remount_read_only(m) {
                Ok(()) => log::info!("{} busy ({e}); remounted read-only", m.display()),
                Err(e2) => log::warn!(
                    "failed to unmount {}: {e}; remount read-only: {e2}",
                    m.display()
                ),
            }
        }
    }
    if let Err(e) = remount_read_only(Path::new("/")) {
        log::debug!("failed to remount / read-only: {e}");
    }
    sys::sync();
    log::info!(
        "{}",
        match plan.reboot {
            RebootCmd::Reboot => "rebooting",
            RebootCmd::Poweroff => "powering off",
            RebootCmd::Halt => "halting",
        }
    );
    let e = sys::reboot(plan.reboot);
    log::error!("failed to reboot: {e}");
}

fn remount_read_only(path: &Path) -> std::io::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_swapoff_and_unmounts_deepest_first() {
        let swaps = b"Filename\tType\tSize\tUsed\tPriority\n/var/swapfile file 32764 0 -2\n";
        let mounts = b"rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n/dev/vda /var ext4 rw 0 0\n\
                      tmpfs /var/x\\040y tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        let p = plan(swaps, mounts, RebootCmd::Poweroff);
        assert_eq!(p.swapoff, vec![PathBuf::from("/var/swapfile")]);
        assert_eq!(
            p.unmount,
            vec![PathBuf::from("/var/x y"), PathBuf::from("/var")]
        );
    }
}
