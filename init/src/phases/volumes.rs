//! `[[volumes]]`: what the NT mount manager has done before smss runs. Devices named by
//! `LABEL=` or `UUID=` are found by reading superblocks (no blkid/udev on the image); volumes
//! are mounted read-only before boot-execute and remounted read-write after it. Waiting for a
//! device that is not there yet, and `PARTUUID=`/`PARTLABEL=`, are in
//! [`crate::devices::wait`]; [`resolve_device`] answers from what is present now.
//!
//! Recognised superblocks: ext2/3/4, xfs, btrfs, vfat (FAT12/16/32) and Linux swap. UUIDs
//! compare case-insensitively in the form blkid prints (`xxxxxxxx-xxxx-...`, vfat `XXXX-XXXX`).

use std::path::{Path, PathBuf};

use super::{mounted_targets, PhaseError};
use crate::sys::{MountFlags, Sys};

/// One `[[volumes]]` entry: (device, mountpoint, fstype, mount(8) options).
pub type Volume = (String, PathBuf, String, String);

/// What a superblock says about a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsIdentity {
    pub fstype: &'static str,
    pub uuid: String,
    pub label: String,
}

/// Resolve a `[[volumes]] device` value to a device path.
pub fn resolve_device(sys: &dyn Sys, spec: &str) -> Result<PathBuf, PhaseError> {
    let err = |reason: &str| PhaseError::ResolveDevice {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (key, want) = if let Some(v) = spec.strip_prefix("LABEL=") {
        ("LABEL", unquote(v))
    } else if let Some(v) = spec.strip_prefix("UUID=") {
        ("UUID", unquote(v))
    } else if spec.starts_with('/') {
        return Ok(PathBuf::from(spec));
    } else {
        return Err(err("expected an absolute path, LABEL=... or UUID=..."));
    };
    let class = Path::new("/sys/class/block");
    let names = sys
        .list_dir(class)
        .map_err(|e| err(&format!("cannot list {}: {e}", class.display())))?;
    for name in names {
        // Floppies block for seconds per read attempt without a medium.
        if name.starts_with("fd") {
            continue;
        }
        // Zero-sized devices (unused loop devices, empty CD drives) have nothing to read.
        let size = sys.read_file(&class.join(&name).join("size"));
        if let Ok(s) = size {
            if String::from_utf8_lossy(&s).trim() == "0" {
                continue;
            }
        }
        // The kernel writes '/' in block device names as '!' in sysfs (cciss!c0d0).
        let dev = Path::new("/dev").join(name.replace('!', "/"));
        let Some(id) = probe(&|off, len| sys.read_at(&dev, off, len).ok()) else {
            continue;
        };
        let hit = match key {
            "LABEL" => !id.label.is_empty() && id.label == want,
            _ => id.uuid.eq_ignore_ascii_case(want),
        };
        if hit {
            log::debug!("{spec} is {} ({})", dev.display(), id.fstype);
            return Ok(dev);
        }
    }
    Err(err("no block device has it"))
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// Identify the filesystem on a device given a reader `(offset, len) -> bytes`.
pub fn probe(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    probe_ext(read)
        .or_else(|| probe_xfs(read))
        .or_else(|| probe_btrfs(read))
        .or_else(|| probe_swap(read))
        .or_else(|| probe_vfat(read))
}

fn uuid_string(b: &[u8; 16]) -> String {
    let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, e @ ..] = b;
    let e: String = e.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{a0:02x}{a1:02x}{a2:02x}{a3:02x}-{b0:02x}{b1:02x}-{c0:02x}{c1:02x}-{d0:02x}{d1:02x}-{e}"
    )
}

/// The `N` bytes of `b` at `at`, or None when `b` is too short.
fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(b)).into_owned()
}

/// ext2/3/4: superblock at 1024, magic 0xEF53 (le16) at +0x38, UUID at +0x68, label at +0x78.
fn probe_ext(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    let sb = read(1024, 0x88)?;
    if sb.len() < 0x88 || bytes::<2>(&sb, 0x38)? != [0x53, 0xef] {
        return None;
    }
    Some(FsIdentity {
        fstype: "ext4",
        uuid: uuid_string(&bytes(&sb, 0x68)?),
        label: cstr(sb.get(0x78..0x88)?),
    })
}

/// xfs: "XFSB" at 0, UUID at 32, label (12 bytes) at 108.
fn probe_xfs(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    let sb = read(0, 120)?;
    if sb.len() < 120 || sb.get(0..4) != Some(&b"XFSB"[..]) {
        return None;
    }
    Some(FsIdentity {
        fstype: "xfs",
        uuid: uuid_string(&bytes(&sb, 32)?),
        label: cstr(sb.get(108..120)?),
    })
}

/// btrfs: superblock at 64 KiB, fsid at +0x20, magic "_BHRfS_M" at +0x40, label at +0x12b.
fn probe_btrfs(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    let sb = read(0x10000, 0x22b)?;
    if sb.len() < 0x22b || sb.get(0x40..0x48) != Some(&b"_BHRfS_M"[..]) {
        return None;
    }
    Some(FsIdentity {
        fstype: "btrfs",
        uuid: uuid_string(&bytes(&sb, 0x20)?),
        label: cstr(sb.get(0x12b..0x22b)?),
    })
}

/// Linux swap v1: "SWAPSPACE2" in the last 10 bytes of the first page (4 KiB, else 64 KiB),
/// UUID at 1036, label at 1052 (see [`super::paging_files::swap_header`]).
fn probe_swap(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    if ![4096u64, 8192, 16384, 65536]
        .into_iter()
        .any(|p| read(p - 10, 10).is_some_and(|m| m == b"SWAPSPACE2"))
    {
        return None;
    }
    let h = read(1036, 32)?;
    if h.len() < 32 {
        return None;
    }
    Some(FsIdentity {
        fstype: "swap",
        uuid: uuid_string(&bytes(&h, 0)?),
        label: cstr(h.get(16..32)?),
    })
}

/// vfat: boot sector signature 0x55AA; FAT32 ("FAT32   " at 0x52) keeps the volume id at 0x43
/// and label at 0x47, FAT12/16 ("FAT1" at 0x36) at 0x27 and 0x2b. The "UUID" is the volume id
/// as blkid prints it, `XXXX-XXXX`.
fn probe_vfat(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<FsIdentity> {
    let bs = read(0, 512)?;
    if bs.len() < 512 || bytes::<2>(&bs, 510)? != [0x55, 0xaa] {
        return None;
    }
    let (id_at, label_at) = if bs.get(0x52..0x5a) == Some(&b"FAT32   "[..]) {
        (0x43, 0x47)
    } else if bs.get(0x36..0x3a) == Some(&b"FAT1"[..]) {
        (0x27, 0x2b)
    } else {
        return None;
    };
    let id = u32::from_le_bytes(bytes(&bs, id_at)?);
    let label = String::from_utf8_lossy(&bytes::<11>(&bs, label_at)?)
        .trim_end()
        .to_string();
    Some(FsIdentity {
        fstype: "vfat",
        uuid: format!("{:04X}-{:04X}", id >> 16, id & 0xffff),
        label: if label == "NO NAME" {
            String::new()
        } else {
            label
        },
    })
}

/// mount(8) options split into kernel flags and the filesystem's data string. Userspace-only
/// options (defaults, auto, noauto, nofail, user, users, owner, group, _netdev, x-*, comment=)
/// are dropped: a filesystem rejects what it does not know. `ro`/`rw` are dropped too: the
/// phase decides the mode.
pub fn parse_options(options: &str) -> (MountFlags, String) {
    let mut f = MountFlags::default();
    let mut data = Vec::new();
    for o in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" | "defaults" | "auto" | "noauto" | "nofail" | "user" | "nouser"
            | "users" | "owner" | "group" | "_netdev" => {}
            _ if o.starts_with("x-") || o.starts_with("comment=") => {}
            "nosuid" => f.nosuid = true,
            "suid" => f.nosuid = false,
            "nodev" => f.nodev = true,
            "dev" => f.nodev = false,
            "noexec" => f.noexec = true,
            "exec" => f.noexec = false,
            "noatime" => f.noatime = true,
            "atime" => f.noatime = false,
            "nodiratime" => f.nodiratime = true,
            "diratime" => f.nodiratime = false,
            "relatime" => f.relatime = true,
            "norelatime" => f.relatime = false,
            "strictatime" => f.strictatime = true,
            "nostrictatime" => f.strictatime = false,
            "lazytime" => f.lazytime = true,
            "nolazytime" => f.lazytime = false,
            "sync" => f.sync = true,
            "async" => f.sync = false,
            "dirsync" => f.dirsync = true,
            other => data.push(other),
        }
    }
    (f, data.join(","))
}

fn is_read_only(options: &str) -> bool {
    options.split(',').any(|o| o.trim() == "ro")
}

fn is_nofail(options: &str) -> bool {
    options.split(',').any(|o| o.trim() == "nofail")
}

/// Mount every volume read-only (MS_RDONLY plus its options), creating mount points. A mount
/// point that is already mounted is left alone. Failures are returned, not fatal; a volume with
/// `nofail` only logs its failure.
pub fn mount_read_only(sys: &dyn Sys, volumes: &[Volume]) -> Vec<PhaseError> {
    let mut errors = Vec::new();
    let mounted = mounted_targets(sys);
    for v in volumes {
        if mounted.iter().any(|t| t == &v.1) {
            log::info!("{} is already mounted, left alone", v.1.display());
            continue;
        }
        if let Err(e) = mount_one(sys, v) {
            if is_nofail(&v.3) {
                log::warn!("{e} (nofail)");
            } else {
                errors.push(e);
            }
        }
    }
    errors
}

fn mount_one(
    sys: &dyn Sys,
    (device, mountpoint, fstype, options): &Volume,
) -> Result<(), PhaseError> {
    let device = resolve_device(sys, device)?;
    sys.create_dir_all(mountpoint, 0o755)
        .map_err(|source| PhaseError::CreateDir {
            path: mountpoint.clone(),
            source,
        })?;
    let (mut flags, data) = parse_options(options);
    flags.read_only = true;
    sys.mount(&device.to_string_lossy(), mountpoint, fstype, flags, &data)
        .map_err(|source| PhaseError::Mount {
            target: mountpoint.clone(),
            fstype: fstype.clone(),
            source,
        })
}

/// Remount read-write every volume whose options do not say `ro` (Windows'
/// "VolumesSafeForWriteAccess" after autochk). The flags are given again: MS_REMOUNT resets any
/// flag not passed. With `root` (no `[[volumes]]` entry names `/`), also `/` when the kernel
/// mounted it read-only (`ro` on its command line, or no `rw`), as an init does once the
/// boot's checks are done; a root that cannot be made writable (a read-only medium) is
/// left as it is, with a warning.
pub fn remount_read_write(sys: &dyn Sys, volumes: &[Volume], root: bool) -> Vec<PhaseError> {
    let mut errors = Vec::new();
    if root {
        remount_root(sys);
    }
    for (device, mountpoint, fstype, options) in volumes.iter().filter(|v| !is_read_only(&v.3)) {
        let (mut flags, data) = parse_options(options);
        flags.remount = true;
        match sys.mount(device, mountpoint, fstype, flags, &data) {
            Ok(()) => {}
            Err(e) if is_nofail(options) => {
                log::warn!(
                    "failed to remount {} read-write: {e} (nofail)",
                    mountpoint.display()
                );
            }
            Err(source) => errors.push(PhaseError::Remount {
                target: mountpoint.clone(),
                source,
            }),
        }
    }
    errors
}

/// `/` read-write, if it is mounted read-only (see [`remount_read_write`]).
fn remount_root(sys: &dyn Sys) {
    let Ok(table) = sys.read_file(Path::new("/proc/self/mounts")) else {
        return;
    };
    // The last mount on / is the one in use (an initramfs's rootfs lies below it).
    let Some(fields) = table
        .split(|&b| b == b'\n')
        .map(|l| {
            l.split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty())
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.get(1).copied() == Some(b"/".as_slice()))
    else {
        return;
    };
    let text = |i: usize| {
        fields
            .get(i)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default()
    };
    let (device, fstype, options) = (text(0), text(2), text(3));
    if !is_read_only(&options) {
        return;
    }
    // Its VFS flags again; its filesystem's own options stay as they are without them.
    let (mut flags, _) = parse_options(&options);
    flags.remount = true;
    match sys.mount(&device, Path::new("/"), &fstype, flags, "") {
        Ok(()) => log::info!("/ remounted read-write (the kernel mounted it read-only)"),
        Err(e) => log::warn!(
            "failed to remount / read-write: {e}; it stays read-only (a [[volumes]] entry for / \
             with options \"ro\" leaves it so without trying)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    fn vol(device: &str, mountpoint: &str, fstype: &str, options: &str) -> Volume {
        (
            device.into(),
            mountpoint.into(),
            fstype.into(),
            options.into(),
        )
    }

    const UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ];

    fn ext4_image(label: &str) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        d[1024 + 0x38] = 0x53;
        d[1024 + 0x39] = 0xef;
        d[1024 + 0x68..1024 + 0x78].copy_from_slice(&UUID);
        d[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        d
    }

    fn vfat32_image(id: u32, label: &str) -> Vec<u8> {
        let mut d = vec![0u8; 512];
        d[510] = 0x55;
        d[511] = 0xaa;
        d[0x52..0x5a].copy_from_slice(b"FAT32   ");
        d[0x43..0x47].copy_from_slice(&id.to_le_bytes());
        let mut l = [b' '; 11];
        l[..label.len()].copy_from_slice(label.as_bytes());
        d[0x47..0x52].copy_from_slice(&l);
        d
    }

    fn machine() -> FakeSys {
        let s = FakeSys::new();
        for n in ["fd0", "loop0", "vda", "vda1", "vdb", "cciss!c0d0"] {
            s.add_dir(format!("/sys/class/block/{n}"));
        }
        s.add_file("/sys/class/block/loop0/size", b"0\n");
        s.add_file("/sys/class/block/vda/size", b"2048\n");
        s.add_file("/dev/vda", &[0u8; 4096]);
        s.add_file("/dev/vda1", &ext4_image("data"));
        s.add_file("/dev/vdb", &vfat32_image(0x1234abcd, "EFI"));
        s.add_file(
            "/dev/cciss/c0d0",
            &super::super::paging_files::swap_header(4096, 1 << 20, [7; 16], "swp"),
        );
        s
    }

    #[test]
    fn paths_pass_through_and_junk_is_rejected() {
        let s = machine();
        assert_eq!(
            resolve_device(&s, "/dev/vda").unwrap(),
            Path::new("/dev/vda")
        );
        assert!(resolve_device(&s, "vda").is_err());
    }

    #[test]
    fn label_and_uuid_from_superblocks() {
        let s = machine();
        assert_eq!(
            resolve_device(&s, "LABEL=data").unwrap(),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            resolve_device(&s, "LABEL=\"data\"").unwrap(),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            resolve_device(&s, "UUID=12345678-9ABC-DEF0-0123-456789abcdef").unwrap(),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            resolve_device(&s, "UUID=1234-ABCD").unwrap(),
            Path::new("/dev/vdb")
        );
        assert_eq!(
            resolve_device(&s, "LABEL=EFI").unwrap(),
            Path::new("/dev/vdb")
        );
        assert_eq!(
            resolve_device(&s, "LABEL=swp").unwrap(),
            Path::new("/dev/cciss/c0d0")
        );
        let e = resolve_device(&s, "LABEL=nope").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to resolve device LABEL=nope: no block device has it"
        );
        // The floppy and the empty loop device were never read.
        let reads = s.calls_of("read_at");
        assert!(reads
            .iter()
            .all(|r| !r.contains("/dev/fd0") && !r.contains("loop0")));
    }

    /// Every probe reads its magic, UUID and label at the documented offsets, and an image
    /// cut short is "no identity" (none of them panics on a short read).
    #[test]
    fn each_probe_reads_its_fields_and_short_images_are_nothing() {
        let uuid: Vec<u8> = (1..=16).collect();
        let text = "01020304-0506-0708-090a-0b0c0d0e0f10";
        let put = |d: &mut Vec<u8>, at: usize, b: &[u8]| d[at..at + b.len()].copy_from_slice(b);
        let mut xfs = vec![0u8; 4096];
        put(&mut xfs, 0, b"XFSB");
        put(&mut xfs, 32, &uuid);
        put(&mut xfs, 108, b"xlabel");
        let mut btrfs = vec![0u8; 0x20000];
        put(&mut btrfs, 0x10040, b"_BHRfS_M");
        put(&mut btrfs, 0x10020, &uuid);
        put(&mut btrfs, 0x1012b, b"blabel");
        let mut ext = vec![0u8; 4096];
        put(&mut ext, 1024 + 0x38, &[0x53, 0xef]);
        put(&mut ext, 1024 + 0x68, &uuid);
        put(&mut ext, 1024 + 0x78, b"elabel");
        let mut swap = vec![0u8; 4096];
        put(&mut swap, 4086, b"SWAPSPACE2");
        put(&mut swap, 1036, &uuid);
        put(&mut swap, 1052, b"slabel");
        let mut fat16 = vec![0u8; 512];
        put(&mut fat16, 510, &[0x55, 0xaa]);
        put(&mut fat16, 0x36, b"FAT16   ");
        put(&mut fat16, 0x27, &0x1234_abcdu32.to_le_bytes());
        put(&mut fat16, 0x2b, b"FLABEL     ");
        let cases = [
            (xfs, "xfs", text, "xlabel"),
            (btrfs, "btrfs", text, "blabel"),
            (ext, "ext4", text, "elabel"),
            (swap, "swap", text, "slabel"),
            (fat16, "vfat", "1234-ABCD", "FLABEL"),
        ];
        for (img, fstype, uuid, label) in cases {
            let read = |off: u64, len: usize| -> Option<Vec<u8>> {
                let off = usize::try_from(off).ok()?;
                Some(img.get(off..)?.iter().take(len).copied().collect())
            };
            let id = probe(&read).unwrap();
            assert_eq!(
                (id.fstype, id.uuid.as_str(), id.label.as_str()),
                (fstype, uuid, label)
            );
            // Every read comes back one byte short: nothing is identified, nothing panics.
            let short = |off: u64, len: usize| read(off, len.saturating_sub(1));
            assert_eq!(probe(&short), None, "{fstype}");
        }
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = parse_options(
            "defaults,noatime,nosuid,ro,errors=remount-ro,x-systemd.foo,nofail,data=ordered",
        );
        assert!(f.noatime && f.nosuid && !f.read_only && !f.nodev);
        assert_eq!(d, "errors=remount-ro,data=ordered");
    }

    #[test]
    fn mounts_read_only_then_remounts_read_write_except_ro() {
        let s = machine();
        let vols = [
            vol("LABEL=data", "/var", "ext4", "noatime,commit=60"),
            vol("/dev/vdb", "/boot/efi", "vfat", "ro,umask=077"),
        ];
        assert!(mount_read_only(&s, &vols).is_empty());
        assert!(remount_read_write(&s, &vols, false).is_empty());
        let m = s.calls_of("mount");
        assert_eq!(
            m,
            [
                "mount /var /dev/vda1 ext4 ro,noatime,commit=60",
                "mount /boot/efi /dev/vdb vfat ro,umask=077",
                "mount /var LABEL=data ext4 rw,remount,noatime,commit=60",
            ]
        );
        assert!(s.calls().contains(&"mkdir /boot/efi 755".to_string()));
    }

    /// A stock Debian kernel command line says `ro`: the kernel mounts / read-only for the
    /// boot's checks, and the init makes it writable after them. Its VFS flags are kept
    /// (MS_REMOUNT resets what is not passed); its filesystem options are not repeated.
    #[test]
    fn a_root_the_kernel_mounted_read_only_is_remounted_read_write() {
        let s = machine();
        s.add_file(
            "/proc/self/mounts",
            b"rootfs / rootfs rw 0 0\n/dev/vda1 / ext4 ro,nosuid,relatime,errors=remount-ro 0 0\n\
              proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n",
        );
        assert!(remount_read_write(&s, &[], true).is_empty());
        assert_eq!(
            s.calls_of("mount"),
            ["mount / /dev/vda1 ext4 rw,remount,nosuid,relatime"]
        );
        // Named in [[volumes]] (here with "ro", so not in the list): left to that entry.
        let s = machine();
        s.add_file("/proc/self/mounts", b"/dev/vda1 / ext4 ro,relatime 0 0\n");
        assert!(remount_read_write(&s, &[], false).is_empty());
        assert!(s.calls_of("mount").is_empty());
        // Already writable (an initramfs, a `rw` command line): nothing to do.
        let s = machine();
        s.add_file("/proc/self/mounts", b"/dev/vda1 / ext4 rw,relatime 0 0\n");
        assert!(remount_read_write(&s, &[], true).is_empty());
        assert!(s.calls_of("mount").is_empty());
        // A read-only medium: a warning, not a boot problem.
        let s = machine();
        s.add_file("/proc/self/mounts", b"/dev/sr0 / iso9660 ro,relatime 0 0\n");
        s.fail("mount", "/", libc::EROFS);
        assert!(remount_read_write(&s, &[], true).is_empty());
        assert_eq!(s.calls_of("mount").len(), 1);
    }

    #[test]
    fn failures_are_collected_and_the_rest_mounted() {
        let s = machine();
        s.fail("mount", "/a", libc::EINVAL);
        s.fail("mount", "/c", libc::EIO);
        let vols = [
            vol("/dev/vda1", "/a", "ext4", ""),
            vol("LABEL=missing", "/b", "ext4", ""),
            vol("/dev/vda1", "/c", "ext4", "nofail"),
            vol("/dev/vdb", "/d", "vfat", ""),
        ];
        let errs = mount_read_only(&s, &vols);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0]
            .to_string()
            .starts_with("failed to mount ext4 on /a: "));
        assert!(matches!(errs[1], PhaseError::ResolveDevice { .. }));
        assert_eq!(s.calls_of("mount").len(), 3);
    }

    #[test]
    fn already_mounted_is_left_alone() {
        let s = machine();
        s.add_file("/proc/self/mounts", b"/dev/vda1 /var ext4 rw 0 0\n");
        assert!(mount_read_only(&s, &[vol("/dev/vda1", "/var", "ext4", "")]).is_empty());
        assert!(s.calls_of("mount").is_empty());
    }
}
