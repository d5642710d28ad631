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

use super::{errno, proc_table_paths, PhaseError};
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
    // Every field lies inside the first 4096 bytes, and `page >= 4096`.
    let put = |h: &mut [u8], at: usize, data: &[u8]| {
        if let Some(d) = h.get_mut(at..at + data.len()) {
            d.copy_from_slice(data);
        }
    };
    put(&mut h, 1024, &1u32.to_ne_bytes());
    put(&mut h, 1028, &last_page.to_ne_bytes());
    put(&mut h, 1036, &uuid);
    let l = label.as_bytes();
    put(&mut h, 1052, l.get(..16).unwrap_or(l));
    put(&mut h, page - 10, b"SWAPSPACE2");
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
        mounted_volumes(sys, volumes)
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
        log_result(&asked(f), &result);
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
        log_result("an emergency file, sized from RAM", &result);
        out.push(PagingOutcome { spec, result });
    }
    out
}

/// The `?:` volumes that are mounted (`/` always is): one whose file system is not there
/// (its device never came, its mount failed) is a directory of the root file system, and a
/// paging file there would fill the wrong disk. All of them when the mount table cannot be
/// read.
fn mounted_volumes(sys: &dyn Sys, volumes: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(table) = sys.read_file(Path::new("/proc/self/mounts")) else {
        return volumes.to_vec();
    };
    let points = super::proc_table_paths(&table, 0, 1);
    volumes
        .iter()
        .filter(|v| {
            let mounted = v.as_path() == Path::new("/") || points.iter().any(|p| p == *v);
            if !mounted {
                log::warn!(
                    "paging-file volume {} is not mounted: no `?:` paging file there",
                    v.display()
                );
            }
            mounted
        })
        .cloned()
        .collect()
}

fn log_result(asked: &str, r: &Result<ActiveSwap, PhaseError>) {
    match r {
        Ok(s) => log::info!("{}", enabled_line(s, asked)),
        Err(e) => log::warn!("{e}"),
    }
}

/// What an entry asked for, in words (the log line shows the parsed entry, not its text).
pub fn asked(f: &PagingFile) -> String {
    let size = if f.system_managed() {
        "sized from RAM".to_string()
    } else if f.min_mb == 0 {
        format!("up to {} MiB", f.max_mb)
    } else if f.min_mb == f.max_mb {
        format!("{} MiB", f.min_mb)
    } else {
        format!("{}-{} MiB", f.min_mb, f.max_mb)
    };
    if f.any_volume {
        format!("{size} on the first paging-file volume with room")
    } else {
        size
    }
}

/// The log line of a paging file in use: where, how big, made or reused, its priority, and
/// what its entry asked for.
pub fn enabled_line(s: &ActiveSwap, asked: &str) -> String {
    format!(
        "paging file {}: {} MiB {}, swap priority {} (asked: {asked})",
        s.path.display(),
        s.size_bytes / MIB,
        if s.reused { "reused" } else { "created" },
        s.priority
    )
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
    proc_table_paths(&b, 1, 0)
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
    // Only a regular file (or nothing) may be at the path: a block device, a directory or a
    // symlink named in PagingFiles must never be truncated, zero-filled or deleted.
    let existing = match sys.file_size(path) {
        Ok(len) => Some(len),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => {
            return Err(PhaseError::PagingFile {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn the_log_line_shows_the_parsed_entry_not_its_text() {
        let s = ActiveSwap {
            path: PathBuf::from("/var/swapfile"),
            size_bytes: 32 * MIB,
            priority: 16,
            reused: false,
        };
        assert_eq!(
            enabled_line(&s, &asked(&pf("/var/swapfile", false, 32, 32))),
            "paging file /var/swapfile: 32 MiB created, swap priority 16 (asked: 32 MiB)"
        );
        assert_eq!(asked(&pf("/s", false, 64, 128)), "64-128 MiB");
        assert_eq!(asked(&pf("/s", false, 0, 0)), "sized from RAM");
        assert_eq!(asked(&pf("/s", false, 0, 8)), "up to 8 MiB");
        assert_eq!(
            asked(&pf("/pagefile", true, 0, 0)),
            "sized from RAM on the first paging-file volume with room"
        );
        let reused = ActiveSwap { reused: true, ..s };
        assert!(enabled_line(&reused, "x").contains("32 MiB reused"));
    }

    fn pf(path: &str, any_volume: bool, min_mb: u64, max_mb: u64) -> PagingFile {
        PagingFile {
            path: path.into(),
            any_volume,
            min_mb,
            max_mb,
        }
    }

    fn allocs(s: &FakeSys) -> Vec<String> {
        s.calls_of("allocate")
    }

    #[test]
    fn header_layout() {
        let h = swap_header(4096, 64 << 20, [0xab; 16], "a-label-longer-than-16");
        assert_eq!(h.len(), 4096);
        assert!(h[..1024].iter().all(|&b| b == 0));
        assert_eq!(&h[1024..1028], &1u32.to_ne_bytes());
        assert_eq!(&h[1028..1032], &((64u32 << 20) / 4096 - 1).to_ne_bytes());
        assert_eq!(&h[1032..1036], &[0; 4]);
        assert_eq!(&h[1036..1052], &[0xab; 16]);
        assert_eq!(&h[1052..1068], b"a-label-longer-t");
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert_eq!(swap_header(65536, 1 << 30, [0; 16], "").len(), 65536);
        assert_eq!(swap_header(0, 0, [0; 16], "").len(), 4096);
    }

    #[test]
    fn sizes() {
        assert_eq!(system_managed_bytes(512 << 20), 768 << 20);
        assert_eq!(system_managed_bytes(2 << 30), 2 << 30);
        assert_eq!(reserve_for(100 << 20), 25 << 20);
        assert_eq!(reserve_for(10 << 30), 256 << 20);
    }

    #[test]
    fn creates_in_order_with_priorities() {
        let s = FakeSys::new();
        let files = [
            pf("/swapfile", false, 64, 128),
            pf("/var/swap", false, 32, 0),
        ];
        let out = run(&s, &files, &[PathBuf::from("/")]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            s.calls_of("swapon"),
            ["swapon /swapfile 16", "swapon /var/swap 15"]
        );
        assert_eq!(
            allocs(&s),
            [
                "allocate /swapfile 67108864 600",
                "allocate /var/swap 33554432 600"
            ]
        );
        // The header went to offset 0 of each, before swapon.
        let calls = s.calls();
        let w = calls
            .iter()
            .position(|c| c == "write_at /swapfile 0 4096 bytes")
            .unwrap();
        let on = calls
            .iter()
            .position(|c| c == "swapon /swapfile 16")
            .unwrap();
        assert!(w < on);
        match s.node("/swapfile") {
            Some(crate::sys::fake::Node::File(d, mode)) => {
                assert_eq!(mode, 0o600);
                assert_eq!(&d[4086..4096], b"SWAPSPACE2");
                assert_eq!(d[1036 + 6] & 0xf0, 0x40, "uuid version 4");
            }
            n => panic!("{n:?}"),
        }
        assert!(out.iter().all(|o| o.result.is_ok()));
    }

    #[test]
    fn system_managed_is_sized_from_ram() {
        let s = FakeSys::new(); // 512 MiB of RAM
        let out = run(&s, &[pf("/swapfile", false, 0, 0)], &[]);
        assert_eq!(out[0].result.as_ref().unwrap().size_bytes, 768 << 20);
    }

    #[test]
    fn enospc_retries_16mb_smaller_down_to_16mb_then_emergency() {
        let s = FakeSys::new();
        s.fail("allocate", "/swapfile", libc::ENOSPC);
        let out = run(&s, &[pf("/swapfile", false, 64, 0)], &[PathBuf::from("/")]);
        let sizes: Vec<String> = allocs(&s)
            .iter()
            .map(|a| a.split(' ').nth(2).unwrap().to_string())
            .collect();
        assert_eq!(
            &sizes[..4],
            [64 << 20, 48 << 20, 32 << 20, 16 << 20].map(|n: u64| n.to_string())
        );
        // Each failed attempt deleted its file.
        assert_eq!(
            s.calls_of("unlink")
                .iter()
                .filter(|c| *c == "unlink /swapfile")
                .count(),
            4
        );
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0].result, Err(PhaseError::PagingFile { .. })));
        assert!(out[0]
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("No space left"));
        let e = out[1].result.as_ref().unwrap();
        assert_eq!(e.path, Path::new("/smss-emergency.swap"));
        assert_eq!(e.priority, 0);
        assert_eq!(out[1].spec, "emergency ?:/smss-emergency.swap");
    }

    #[test]
    fn disk_full_shrinks_to_what_fits() {
        let s = FakeSys::new();
        s.allocate_limit.set(Some(40 << 20));
        let out = run(&s, &[pf("/swapfile", false, 64, 0)], &[]);
        assert_eq!(out[0].result.as_ref().unwrap().size_bytes, 32 << 20);
    }

    #[test]
    fn swapon_einval_gives_up_at_once() {
        let s = FakeSys::new();
        s.fail("swapon", "/swapfile", libc::EINVAL);
        s.fail("swapon", "/smss-emergency.swap", libc::EINVAL);
        let out = run(&s, &[pf("/swapfile", false, 64, 0)], &[]);
        assert_eq!(allocs(&s).len(), 2, "{:?}", allocs(&s));
        assert!(out.iter().all(|o| o.result.is_err()));
        assert!(s.node("/swapfile").is_none() && s.node("/smss-emergency.swap").is_none());
    }

    #[test]
    fn any_volume_picks_the_first_with_room() {
        let s = FakeSys::new();
        // /a: 40 MiB free -> 30 MiB of room; /b: plenty.
        s.add_dir("/a");
        s.add_dir("/b");
        s.set_free("/a", 40 << 20);
        let vols = [PathBuf::from("/a"), PathBuf::from("/b")];
        let out = run(&s, &[pf("/swapfile", true, 64, 0)], &vols);
        let r = out[0].result.as_ref().unwrap();
        assert_eq!(r.path, Path::new("/b/swapfile"));
        assert_eq!(r.size_bytes, 64 << 20);
        // Without room anywhere for 64, the second pass takes what /a has.
        let s = FakeSys::new();
        s.set_free("/a", 40 << 20);
        s.set_free("/b", 20 << 20);
        let out = run(&s, &[pf("/swapfile", true, 64, 0)], &vols);
        let r = out[0].result.as_ref().unwrap();
        assert_eq!(
            (r.path.as_path(), r.size_bytes),
            (Path::new("/a/swapfile"), 30 << 20)
        );
    }

    /// A `?:` volume that is not mounted (its device never came, say) is only a directory of
    /// the root file system: no paging file goes there, and the next volume is taken. `/`
    /// always counts; without /proc's mount table nothing is left out.
    #[test]
    fn any_volume_skips_a_volume_that_is_not_mounted() {
        let s = FakeSys::new();
        s.add_dir("/var");
        s.add_dir("/srv/my disk");
        s.add_file(
            "/proc/self/mounts",
            b"/dev/vda1 / ext4 rw 0 0\n/dev/vdb /srv/my\\040disk ext4 rw 0 0\n",
        );
        let vols = [
            PathBuf::from("/var"),
            PathBuf::from("/srv/my disk"),
            PathBuf::from("/"),
        ];
        let out = run(&s, &[pf("/swapfile", true, 64, 0)], &vols);
        let r = out[0].result.as_ref().unwrap();
        assert_eq!(r.path, Path::new("/srv/my disk/swapfile"));
        assert!(!s.exists(Path::new("/var/swapfile")));
        // Only / mounted: / it is.
        let s = FakeSys::new();
        s.add_dir("/var");
        s.add_file("/proc/self/mounts", b"/dev/vda1 / ext4 rw 0 0\n");
        let out = run(&s, &[pf("/swapfile", true, 64, 0)], &vols);
        assert_eq!(out[0].result.as_ref().unwrap().path, Path::new("/swapfile"));
    }

    #[test]
    fn small_disk_reserve_scales() {
        let s = FakeSys::new();
        s.set_free("/", 100 << 20);
        let out = run(&s, &[pf("/swapfile", false, 512, 0)], &[]);
        // 100 MiB free, 25 kept: 75 MiB.
        assert_eq!(out[0].result.as_ref().unwrap().size_bytes, 75 << 20);
        let s = FakeSys::new();
        s.set_free("/", 16 << 20);
        let out = run(&s, &[pf("/swapfile", false, 64, 0)], &[]);
        assert!(out.iter().all(|o| o.result.is_err()));
        assert!(out[0]
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("MiB of room on /"));
        assert!(allocs(&s).is_empty());
    }

    #[test]
    fn active_swap_is_left_alone_and_right_size_file_reused() {
        let s = FakeSys::new();
        s.add_file(
            "/proc/swaps",
            b"Filename\tType\tSize\tUsed\tPriority\n/active\\040swap file\t1024\t0\t-2\n",
        );
        let mut old = swap_header(4096, 64 << 20, [9; 16], "old");
        old.resize(64 << 20, 0);
        s.add_file("/reuse", &old);
        s.add_file("/stale", b"junk");
        let out = run(
            &s,
            &[
                pf("/active swap", false, 64, 0),
                pf("/reuse", false, 64, 0),
                pf("/stale", false, 16, 0),
            ],
            &[],
        );
        assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
        assert!(out[0].result.as_ref().unwrap().reused);
        assert!(out[1].result.as_ref().unwrap().reused);
        assert!(!out[2].result.as_ref().unwrap().reused);
        assert_eq!(allocs(&s), ["allocate /stale 16777216 600"]);
        assert!(s.calls().contains(&"unlink /stale".to_string()));
        assert!(s.calls().contains(&"chmod /reuse 600".to_string()));
        match s.node("/reuse") {
            Some(crate::sys::fake::Node::File(d, _)) => {
                assert_eq!(&d[1036..1052], &[9; 16], "UUID kept");
                assert_eq!(&d[1052..1056], b"smss");
            }
            n => panic!("{n:?}"),
        }
        assert_eq!(
            s.calls_of("swapon"),
            ["swapon /reuse 15", "swapon /stale 14"]
        );
    }

    #[test]
    fn nothing_requested_nothing_done_and_limits() {
        let s = FakeSys::new();
        assert!(run(&s, &[], &[]).is_empty());
        assert!(s.calls().is_empty());
        let files: Vec<_> = (0..18)
            .map(|i| pf(&format!("/s{i}"), false, 16, 0))
            .collect();
        let out = run(&s, &files, &[]);
        assert_eq!(out.len(), 18);
        assert_eq!(out.iter().filter(|o| o.result.is_ok()).count(), 16);
        let files = [pf("/x", true, 16, 0), pf("/y", true, 16, 0)];
        let out = run(&FakeSys::new(), &files, &[]);
        assert!(out[0].result.is_ok() && out[1].result.is_err());
    }
}

#[cfg(test)]
mod non_regular_tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    #[test]
    fn a_directory_or_device_at_the_path_is_never_touched() {
        let s = FakeSys::new();
        s.add_dir("/dev/sdb2");
        let spec = smss_config::PagingFile {
            path: "/dev/sdb2".into(),
            any_volume: false,
            min_mb: 16,
            max_mb: 16,
        };
        let out = run(&s, &[spec], &[PathBuf::from("/")]);
        assert!(out[0].result.is_err());
        let calls = s.calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("unlink /dev/sdb2") || c.starts_with("allocate /dev/sdb2")),
            "{calls:?}"
        );
    }
}
