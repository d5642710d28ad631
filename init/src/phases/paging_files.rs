//! PagingFiles: swap files created, headed and enabled by smss itself (no mkswap on the image),
//! following SmpCreatePagingFiles. Nothing here is ever fatal.
//!
//! Sizes: `min max` in MB; Linux swap files cannot grow, so the file is made `min` large
//! (Windows' initial size; max is only used when min is 0). System managed (`0 0` or absent)
//! follows SmpMakeSystemManagedPagingFileDescriptor: RAM when RAM >= 1 GiB, else 1.5 x RAM.
//!
//! Room: a volume offers its free space (plus an existing file at the path, which would be
//! replaced) minus a reserve. Windows keeps 256 MB (MINIMUM_TO_KEEP_FREE); on small disks that
//! would forbid any swap, so the reserve is a quarter of the free space, at most 256 MiB.
//!
//! Retries: when creation fails for lack of space or memory (ENOSPC, EDQUOT, EFBIG, ENOMEM) the
//! file is deleted and tried again 16 MB smaller, down to 16 MB (Windows' FUZZ_FACTOR and
//! floor). Any other failure (EINVAL from swapon on a filesystem that cannot swap, EROFS, EPERM)
//! does not depend on the size, so that volume is given up at once instead of allocating the
//! file again N times. A `?:` entry tries each volume wanting its full size first, then each
//! again down to 16 MB; a system-managed entry likewise.
//!
//! Existing files: a path already active in /proc/swaps is left alone (counts as created); an
//! existing file of exactly the chosen size is reused (its UUID kept, header rewritten, mode
//! 0600); any other existing file there is stale and deleted.
//!
//! Priorities: swapon priority 16 for the first entry, 15 for the second, ... (first used
//! first); the emergency file gets 0. If entries were requested and none could be created, an
//! emergency file `smss-emergency.swap` is made at the root of the first usable volume of
//! `paging-file-volumes` (or `/`), system managed, down to 16 MB, like Windows'
//! SmpCreateEmergencyPagingFile (`?:\pagefile.sys`).
//!
//! Not handled: btrfs needs NOCOW files (chattr +C before any data is written); swapon then
//! fails EINVAL and the volume is skipped.

use std::io;
use std::path::{Path, PathBuf};

use smss_config::{PagingFile, MAX_PAGING_FILES};

use super::{errno, unescape_mount_field, PhaseError};
use crate::sys::Sys;

/// Step and floor of the retry loop (Windows' FUZZ_FACTOR).
pub const STEP_BYTES: u64 = 16 << 20;
/// Windows' MINIMUM_TO_KEEP_FREE, the largest reserve kept on a volume.
pub const MAX_RESERVE_BYTES: u64 = 256 << 20;
/// File name of the emergency paging file at a volume's root.
pub const EMERGENCY_NAME: &str = "smss-emergency.swap";
/// The swap label smss writes (shown by `swaplabel`, `blkid`).
pub const LABEL: &str = "smss";

const MIB: u64 = 1 << 20;

/// A paging file in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSwap {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub priority: i32,
    /// An existing file was used (already active, or reused with a new header).
    pub reused: bool,
}

/// What became of one requested paging file (or the emergency one).
#[derive(Debug)]
pub struct PagingOutcome {
    /// The entry as configured (`?:/swapfile 64 128`), or `emergency ...`.
    pub spec: String,
    pub result: Result<ActiveSwap, PhaseError>,
}

/// The Linux swap v1 header exactly as mkswap(8) writes it: one page, zeroed boot bits,
/// `version` 1, `last_page`, `nr_badpages` 0, the UUID and a volume name of up to 16 bytes,
/// "SWAPSPACE2" in the page's last 10 bytes (`union swap_header`, <linux/swap.h>; integers in
/// the machine's byte order, as the kernel reads them).
pub fn swap_header(page_size: usize, size_bytes: u64, uuid: [u8; 16], label: &str) -> Vec<u8> {
    // A page too small for the header cannot be real; use the common 4 KiB.
    let page = if page_size < 4096 { 4096 } else { page_size };
    let mut h = vec![0u8; page];
    let last_page = (size_bytes / page as u64)
        .saturating_sub(1)
        .min(u32::MAX as u64) as u32;
    h[1024..1028].copy_from_slice(&1u32.to_ne_bytes());
    h[1028..1032].copy_from_slice(&last_page.to_ne_bytes());
    h[1036..1052].copy_from_slice(&uuid);
    let l = label.as_bytes();
    let n = l.len().min(16);
    h[1052..1052 + n].copy_from_slice(&l[..n]);
    h[page - 10..].copy_from_slice(b"SWAPSPACE2");
    h
}

/// RAM when RAM >= 1 GiB, else 1.5 x RAM; whole MiB.
pub fn system_managed_bytes(ram: u64) -> u64 {
    let b = if ram >= 1 << 30 { ram } else { ram / 2 * 3 };
    b / MIB * MIB
}

/// Space kept free on a volume with `free` bytes available.
pub fn reserve_for(free: u64) -> u64 {
    (free / 4).min(MAX_RESERVE_BYTES)
}

/// Create and enable the paging files (see the module docs). One outcome per entry, plus one
/// for the emergency file when it was needed.
pub fn run(sys: &dyn Sys, files: &[PagingFile], volumes: &[PathBuf]) -> Vec<PagingOutcome> {
    let mut out = Vec::new();
    if files.is_empty() {
        log::info!("no paging file was requested");
        return out;
    }
    let active = active_swaps(sys);
    let volumes: Vec<PathBuf> = if volumes.is_empty() {
        vec![PathBuf::from("/")]
    } else {
        volumes.to_vec()
    };
    let mut seen_any_volume = false;
    for (i, f) in files.iter().enumerate() {
        let spec = f.to_string();
        let skip = |reason: &str| PagingOutcome {
            spec: spec.clone(),
            result: Err(PhaseError::PagingFileSkipped {
                spec: spec.clone(),
                reason: reason.to_string(),
            }),
        };
        if i >= MAX_PAGING_FILES {
            out.push(skip("more than 16 paging files"));
            continue;
        }
        if f.any_volume {
            // SmpCreatePagingFileDescriptor: only a second ?: entry counts as a duplicate.
            if seen_any_volume {
                out.push(skip("a second ?: entry is ignored, as on Windows"));
                continue;
            }
            seen_any_volume = true;
        }
        let want = if f.system_managed() {
            system_managed_bytes(sys.mem_total_bytes())
        } else if f.min_mb > 0 {
            f.min_mb.saturating_mul(MIB)
        } else {
            f.max_mb.saturating_mul(MIB)
        };
        let candidates = if f.any_volume {
            volumes.iter().map(|v| on_volume(v, &f.path)).collect()
        } else {
            vec![f.path.clone()]
        };
        let floors = floors(want, candidates.len() > 1 || f.system_managed());
        let priority = (MAX_PAGING_FILES - i) as i32;
        let result = create_entry(sys, &candidates, want, &floors, priority, &active);
        log_result(&spec, &result);
        out.push(PagingOutcome { spec, result });
    }
    if !out.iter().any(|o| o.result.is_ok()) {
        let candidates: Vec<PathBuf> = volumes
            .iter()
            .map(|v| on_volume(v, Path::new(EMERGENCY_NAME)))
            .collect();
        let want = system_managed_bytes(sys.mem_total_bytes()).max(STEP_BYTES);
        let spec = format!("emergency ?:/{EMERGENCY_NAME}");
        log::warn!("no paging file could be created; trying an emergency one");
        let result = create_entry(sys, &candidates, want, &[STEP_BYTES], 0, &active);
        log_result(&spec, &result);
        out.push(PagingOutcome { spec, result });
    }
    out
}

fn log_result(spec: &str, r: &Result<ActiveSwap, PhaseError>) {
    match r {
        Ok(s) => log::info!(
            "paging file {} ({} MiB, priority {}) for {spec}",
            s.path.display(),
            s.size_bytes / MIB,
            s.priority
        ),
        Err(e) => log::warn!("{e}"),
    }
}

/// Floors to try, largest first: the full size on each volume before a smaller file anywhere.
fn floors(want: u64, two_pass: bool) -> Vec<u64> {
    if two_pass && want > STEP_BYTES {
        vec![want, STEP_BYTES]
    } else {
        vec![STEP_BYTES]
    }
}

fn on_volume(volume: &Path, path: &Path) -> PathBuf {
    volume.join(path.strip_prefix("/").unwrap_or(path))
}

/// Paths active in /proc/swaps.
fn active_swaps(sys: &dyn Sys) -> Vec<PathBuf> {
    let Ok(b) = sys.read_file(Path::new("/proc/swaps")) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&b)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|p| PathBuf::from(unescape_mount_field(p)))
        .collect()
}

fn create_entry(
    sys: &dyn Sys,
    candidates: &[PathBuf],
    want: u64,
    floors: &[u64],
    priority: i32,
    active: &[PathBuf],
) -> Result<ActiveSwap, PhaseError> {
    let mut last = None;
    for &floor in floors {
        for path in candidates {
            match try_create(sys, path, want, floor, priority, active) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    log::debug!("{e}");
                    last = Some(e);
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| PhaseError::PagingFileSkipped {
        spec: String::new(),
        reason: "no volume to put it on".to_string(),
    }))
}

/// Size-dependent failures, worth retrying smaller.
fn retry_smaller(e: &io::Error) -> bool {
    matches!(
        errno(e),
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG | libc::ENOMEM
    )
}

fn try_create(
    sys: &dyn Sys,
    path: &Path,
    want: u64,
    floor: u64,
    priority: i32,
    active: &[PathBuf],
) -> Result<ActiveSwap, PhaseError> {
    let err = |source| PhaseError::PagingFile {
        path: path.to_path_buf(),
        source,
    };
    if active.iter().any(|a| a == path) {
        log::info!("{} is already in use as swap, left alone", path.display());
        return Ok(ActiveSwap {
            path: path.to_path_buf(),
            size_bytes: sys.file_size(path).unwrap_or(want),
            priority,
            reused: true,
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("/"),
    };
    let existing = sys.file_size(path).ok();
    let free = sys.free_bytes(dir).map_err(err)?;
    let room = free
        .saturating_add(existing.unwrap_or(0))
        .saturating_sub(reserve_for(free));
    let mut size = want.min(room) / MIB * MIB;
    if size < floor {
        return Err(PhaseError::PagingFileSkipped {
            spec: path.display().to_string(),
            reason: format!(
                "{} MiB of room on {} after keeping {} MiB free, {} MiB needed",
                room / MIB,
                dir.display(),
                reserve_for(free) / MIB,
                floor / MIB
            ),
        });
    }
    let page = sys.page_size();
    if let Some(len) = existing {
        if len == size {
            let uuid = existing_uuid(sys, path, page).unwrap_or_else(|| new_uuid(sys));
            let r = sys
                .set_mode(path, 0o600)
                .and_then(|()| sys.write_at(path, 0, &swap_header(page, size, uuid, LABEL)))
                .and_then(|()| sys.swapon(path, priority));
            match r {
                Ok(()) => {
                    return Ok(ActiveSwap {
                        path: path.to_path_buf(),
                        size_bytes: size,
                        priority,
                        reused: true,
                    })
                }
                Err(e) => log::info!("cannot reuse {}: {e}; recreating it", path.display()),
            }
        } else {
            log::info!(
                "deleting stale paging file {} ({} MiB, want {} MiB)",
                path.display(),
                len / MIB,
                size / MIB
            );
        }
        // A directory or the like is not ours to delete: the creation below reports it.
        let _ = sys.remove_file(path);
    }
    loop {
        let uuid = new_uuid(sys);
        let r = sys
            .allocate_file(path, size, 0o600)
            .and_then(|()| sys.write_at(path, 0, &swap_header(page, size, uuid, LABEL)))
            .and_then(|()| sys.swapon(path, priority));
        match r {
            Ok(()) => {
                return Ok(ActiveSwap {
                    path: path.to_path_buf(),
                    size_bytes: size,
                    priority,
                    reused: false,
                })
            }
            Err(e) => {
                let _ = sys.remove_file(path);
                if retry_smaller(&e) && size >= floor + STEP_BYTES {
                    log::debug!(
                        "{} at {} MiB: {e}; trying 16 MiB smaller",
                        path.display(),
                        size / MIB
                    );
                    size -= STEP_BYTES;
                    continue;
                }
                return Err(err(e));
            }
        }
    }
}

fn new_uuid(sys: &dyn Sys) -> [u8; 16] {
    let mut u = [0u8; 16];
    sys.random_bytes(&mut u);
    // RFC 4122 version 4, variant 1, as mkswap's libuuid makes.
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// The UUID of a valid swap header already in `path`, to keep it stable across boots.
fn existing_uuid(sys: &dyn Sys, path: &Path, page: usize) -> Option<[u8; 16]> {
    let magic = sys.read_at(path, page.checked_sub(10)? as u64, 10).ok()?;
    if magic != b"SWAPSPACE2" {
        return None;
    }
    sys.read_at(path, 1036, 16).ok()?.try_into().ok()
}
