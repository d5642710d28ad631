//! One module per boot phase, named after the Session Manager value it implements. Each is
//! written against the [`crate::sys::Sys`] seam; the supervisor's boot runner calls them in
//! BootPlan order.
//!
//! Fatality is the caller's decision, following Windows: phases that Windows treats as fatal
//! (`dos_devices`, Kmode in `modules`) return the error; the others return every failure as a
//! list and carry on, as `SmpProcessFileRenames` and `SmpCreatePagingFiles` do.

use std::io;
use std::path::{Path, PathBuf};

use crate::sys::Sys;

pub mod dos_devices;
pub mod early_mounts;
pub mod environment;
pub mod hostname;
pub mod modules;
pub mod object_directories;
pub mod paging_files;
pub mod pending_renames;
pub mod volumes;

/// What went wrong in a boot phase; every variant names its object.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("failed to mount {fstype} on {target}: {source}")]
    Mount {
        target: PathBuf,
        fstype: String,
        source: io::Error,
    },
    #[error("failed to remount {target} read-write: {source}")]
    Remount { target: PathBuf, source: io::Error },
    #[error("failed to create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("failed to resolve device {spec}: {reason}")]
    ResolveDevice { spec: String, reason: String },
    #[error("failed to find kernel module {name} in {dir}: {reason}")]
    ModuleNotFound {
        name: String,
        dir: PathBuf,
        reason: String,
    },
    #[error("failed to load kernel module {name} from {path}: {source}")]
    LoadModule {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "failed to load compressed kernel module {name} from {path}: the kernel refused \
         MODULE_INIT_COMPRESSED_FILE (it needs Linux 6.3+ built with CONFIG_MODULE_DECOMPRESS \
         for this format; install an uncompressed .ko instead): {source}"
    )]
    CompressedModule {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "skipped compressed kernel modules {names}: the kernel refused \
         MODULE_INIT_COMPRESSED_FILE (see above)"
    )]
    CompressedSkipped { names: String },
    #[error("failed to load kernel module {name}: its dependency {dependency} did not load")]
    ModuleDependency { name: String, dependency: String },
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("failed to accept dos-devices name {name:?}: {reason}")]
    InvalidLinkName { name: String, reason: String },
    #[error("failed to link {link} -> {target}: {source}")]
    Link {
        link: PathBuf,
        target: String,
        source: io::Error,
    },
    #[error("failed to remove link {link}: {source}")]
    RemoveLink { link: PathBuf, source: io::Error },
    #[error("failed to claim rename queue {path}: {source}")]
    ClaimQueue { path: PathBuf, source: io::Error },
    #[error("failed to create paging file {path}: {source}")]
    PagingFile { path: PathBuf, source: io::Error },
    #[error("failed to create paging file {spec}: {reason}")]
    PagingFileSkipped { spec: String, reason: String },
}

/// Mount points listed in `/proc/self/mounts` (empty when it cannot be read, e.g. before /proc
/// is mounted). Used to skip what is already mounted rather than mount over it: proc, sysfs and
/// tmpfs happily stack a second instance on an occupied mount point instead of failing EBUSY.
pub(crate) fn mounted_targets(sys: &dyn Sys) -> Vec<PathBuf> {
    let Ok(bytes) = sys.read_file(Path::new("/proc/self/mounts")) else {
        return Vec::new();
    };
    proc_table_paths(&bytes, 0, 1)
}

/// Field `field` (whitespace-separated) of every line after the first `skip` of a /proc table
/// (/proc/self/mounts, /proc/swaps), unescaped into a path. Bytes, not text: a path is any
/// bytes, and the kernel escapes only whitespace and the backslash.
pub fn proc_table_paths(table: &[u8], skip: usize, field: usize) -> Vec<PathBuf> {
    table
        .split(|&b| b == b'\n')
        .skip(skip)
        .filter_map(|line| {
            line.split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty())
                .nth(field)
        })
        .map(unescape_mount_field)
        .collect()
}

/// Undo the octal escapes of /proc/self/mounts and /proc/swaps (`\040` space, `\011` tab,
/// `\012` newline, `\134` backslash), see proc_pid_mounts(5).
pub(crate) fn unescape_mount_field(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(b.len());
    let mut rest = b;
    while let Some((&c, tail)) = rest.split_first() {
        if let (b'\\', [d1 @ b'0'..=b'7', d2 @ b'0'..=b'7', d3 @ b'0'..=b'7', after @ ..]) =
            (c, tail)
        {
            let v = (d1 - b'0') as u32 * 64 + (d2 - b'0') as u32 * 8 + (d3 - b'0') as u32;
            out.push(v as u8);
            rest = after;
        } else {
            out.push(c);
            rest = tail;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The errno of an io::Error, 0 when it has none.
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_fields() {
        let u = |s: &[u8]| unescape_mount_field(s);
        assert_eq!(u(br"/mnt/a\040b"), Path::new("/mnt/a b"));
        assert_eq!(u(br"/x\134y"), Path::new(r"/x\y"));
        assert_eq!(u(br"/trail\04"), Path::new(r"/trail\04"));
        assert_eq!(u(br"/plain"), Path::new("/plain"));
    }

    /// A mount point or swap file whose name is not UTF-8 keeps its exact bytes (a lossy
    /// conversion would name another path, and shutdown would fail to unmount it).
    #[test]
    fn proc_tables_are_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let mounts = b"rootfs / rootfs rw 0 0\nfuse /mnt/\xff\xfe\\040x fuse rw 0 0\n";
        let got = proc_table_paths(mounts, 0, 1);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_os_str().as_bytes(), b"/mnt/\xff\xfe x");
        let swaps = b"Filename\tType\tSize\tUsed\tPriority\n/sw\xe9p file 8 0 -2\n";
        let got = proc_table_paths(swaps, 1, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_os_str().as_bytes(), b"/sw\xe9p");
    }
}
