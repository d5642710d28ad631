//! `[[volumes]]` wait for their device: a spec (`LABEL=`, `UUID=`, `PARTUUID=`, `PARTLABEL=`,
//! a path) is matched against each block device as it appears — first those already in
//! /sys/class/block, then each one a uevent announces — until its `device-timeout` passes.
//! No sleep polling: the only wait is on the uevent socket, with the nearest deadline as
//! timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::uevent::{self, Uevent};
use crate::phases::volumes::{probe, FsIdentity};
use crate::sys::Sys;

/// What a `[[volumes]] device` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    Path(PathBuf),
    Label(String),
    Uuid(String),
    PartUuid(String),
    PartLabel(String),
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

impl DeviceSpec {
    pub fn parse(spec: &str) -> Result<DeviceSpec, String> {
        type Make = fn(String) -> DeviceSpec;
        let tagged: [(&str, Make); 4] = [
            ("LABEL=", DeviceSpec::Label),
            ("UUID=", DeviceSpec::Uuid),
            ("PARTUUID=", DeviceSpec::PartUuid),
            ("PARTLABEL=", DeviceSpec::PartLabel),
        ];
        for (prefix, make) in tagged {
            if let Some(v) = spec.strip_prefix(prefix) {
                let v = unquote(v);
                if v.is_empty() {
                    return Err(format!("{prefix} needs a value"));
                }
                return Ok(make(v.to_string()));
            }
        }
        if spec.starts_with('/') {
            return Ok(DeviceSpec::Path(PathBuf::from(spec)));
        }
        Err("expected an absolute path, LABEL=, UUID=, PARTUUID= or PARTLABEL=".to_string())
    }

    /// True when `dev` is the device this spec names.
    pub fn matches(&self, dev: &Candidate) -> bool {
        match self {
            DeviceSpec::Path(p) => dev.node == *p,
            DeviceSpec::Label(l) => dev
                .fs
                .as_ref()
                .is_some_and(|f| !f.label.is_empty() && f.label == *l),
            DeviceSpec::Uuid(u) => dev
                .fs
                .as_ref()
                .is_some_and(|f| f.uuid.eq_ignore_ascii_case(u)),
            DeviceSpec::PartUuid(u) => dev
                .part
                .as_ref()
                .is_some_and(|p| p.uuid.eq_ignore_ascii_case(u)),
            DeviceSpec::PartLabel(l) => dev
                .part
                .as_ref()
                .is_some_and(|p| !p.label.is_empty() && p.label == *l),
        }
    }
}

/// What a partition table says about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartIdentity {
    /// GPT unique partition GUID, or `SSSSSSSS-NN` (MBR disk signature, partition number).
    pub uuid: String,
    /// GPT partition name ("" on MBR).
    pub label: String,
}

/// A block device as the wait sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: PathBuf,
    pub fs: Option<FsIdentity>,
    pub part: Option<PartIdentity>,
}

/// GPT's mixed-endian GUID text (the first three fields little-endian), as blkid prints it.
fn guid_string(b: &[u8; 16]) -> String {
    let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, e0, e1, e2, e3, e4, e5] = b;
    format!(
        "{a3:02x}{a2:02x}{a1:02x}{a0:02x}-{b1:02x}{b0:02x}-{c1:02x}{c0:02x}-{d0:02x}{d1:02x}-{e0:02x}{e1:02x}{e2:02x}{e3:02x}{e4:02x}{e5:02x}"
    )
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Partition `partn` (1-based) of the disk read by `read(offset, len)`: from its GPT (at LBA 1,
/// 512- or 4096-byte sectors), else from its MBR. Bounded: at most 1024 entries of at most
/// 4 KiB; anything inconsistent is "no identity", never a panic.
pub fn partition_identity(
    read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
    partn: u32,
) -> Option<PartIdentity> {
    if partn == 0 {
        return None;
    }
    for sector in [512u64, 4096] {
        let Some(h) = read(sector, 92) else { continue };
        if h.len() < 92 || h.get(0..8) != Some(&b"EFI PART"[..]) {
            continue;
        }
        let entries_lba = le64(&h, 72)?;
        let count = le32(&h, 80)?;
        let size = le32(&h, 84)? as u64;
        if partn > count || count > 1024 || !(128..=4096).contains(&size) {
            return None;
        }
        let at = entries_lba
            .checked_mul(sector)?
            .checked_add((u64::from(partn) - 1).checked_mul(size)?)?;
        let e = read(at, 128)?;
        if e.len() < 128 || e.get(0..16)?.iter().all(|&b| b == 0) {
            return None;
        }
        let name: Vec<u16> = e
            .get(56..128)?
            .chunks_exact(2)
            .filter_map(|c| <[u8; 2]>::try_from(c).ok())
            .map(u16::from_le_bytes)
            .take_while(|&c| c != 0)
            .collect();
        return Some(PartIdentity {
            uuid: guid_string(e.get(16..32)?.try_into().ok()?),
            label: String::from_utf16_lossy(&name),
        });
    }
    let mbr = read(0, 512)?;
    if mbr.len() < 512 || mbr.get(510..512) != Some(&[0x55, 0xaa][..]) {
        return None;
    }
    let sig = le32(&mbr, 440)?;
    Some(PartIdentity {
        uuid: format!("{sig:08x}-{partn:02x}"),
        label: String::new(),
    })
}

/// `vda1` -> `vda`, `nvme0n1p2` -> `nvme0n1`, `mmcblk0p1` -> `mmcblk0`.
pub fn parent_disk(part: &str) -> Option<&str> {
    let base = part.trim_end_matches(|c: char| c.is_ascii_digit());
    if base.len() == part.len() || base.is_empty() {
        return None;
    }
    match base.strip_suffix('p') {
        Some(b) if b.ends_with(|c: char| c.is_ascii_digit()) => Some(b),
        _ => Some(base),
    }
}

/// Look at block device `name` (as in /sys/class/block): its node, filesystem and, for a
/// partition, its partition-table identity. None for what must not be read (floppies block for
/// seconds without a medium; zero-sized devices have nothing).
pub fn inspect(sys: &dyn Sys, name: &str) -> Option<Candidate> {
    if name.starts_with("fd") {
        return None;
    }
    let class = Path::new("/sys/class/block").join(name);
    if let Ok(s) = sys.read_file(&class.join("size")) {
        if String::from_utf8_lossy(&s).trim() == "0" {
            return None;
        }
    }
    // The kernel writes '/' in block device names as '!' in sysfs (cciss!c0d0).
    let node = Path::new("/dev").join(name.replace('!', "/"));
    let fs = probe(&|off, len| sys.read_at(&node, off, len).ok());
    let part = sys
        .read_file(&class.join("partition"))
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok())
        .and_then(|n| {
            let disk = parent_disk(name)?;
            let disk_node = Path::new("/dev").join(disk.replace('!', "/"));
            partition_identity(&|off, len| sys.read_at(&disk_node, off, len).ok(), n)
        });
    Some(Candidate { node, fs, part })
}

/// One awaited device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaited {
    pub spec: DeviceSpec,
    /// From the start of the wait.
    pub timeout: Duration,
    pub found: Option<PathBuf>,
    pub expired: bool,
}

/// The pure state of a wait: which specs are still pending and when the next one expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub items: Vec<Awaited>,
}

impl Waiter {
    pub fn new(specs: Vec<(DeviceSpec, Duration)>) -> Waiter {
        Waiter {
            items: specs
                .into_iter()
                .map(|(spec, timeout)| Awaited {
                    spec,
                    timeout,
                    found: None,
                    expired: false,
                })
                .collect(),
        }
    }

    fn pending_mut(&mut self) -> impl Iterator<Item = (usize, &mut Awaited)> {
        self.items
            .iter_mut()
            .enumerate()
            .filter(|(_, a)| a.found.is_none() && !a.expired)
    }

    pub fn is_pending(&self) -> bool {
        self.items.iter().any(|a| a.found.is_none() && !a.expired)
    }

    /// A device appeared: the pending specs it satisfies (indices) are resolved to it.
    pub fn offer(&mut self, dev: &Candidate) -> Vec<usize> {
        let mut hit = Vec::new();
        for (i, a) in self.pending_mut() {
            if a.spec.matches(dev) {
                a.found = Some(dev.node.clone());
                hit.push(i);
            }
        }
        hit
    }

    /// A path spec whose path exists (a node devtmpfs made, a symlink) is resolved to it.
    pub fn offer_existing(&mut self, exists: &dyn Fn(&Path) -> bool) -> Vec<usize> {
        let mut hit = Vec::new();
        for (i, a) in self.pending_mut() {
            if let DeviceSpec::Path(p) = &a.spec {
                if exists(p) {
                    a.found = Some(p.clone());
                    hit.push(i);
                }
            }
        }
        hit
    }

    /// Time from the start of the wait until the nearest pending deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.items
            .iter()
            .filter(|a| a.found.is_none() && !a.expired)
            .map(|a| a.timeout)
            .min()
    }

    /// `elapsed` since the start: the pending specs whose time is up (indices).
    pub fn expire(&mut self, elapsed: Duration) -> Vec<usize> {
        let mut gone = Vec::new();
        for (i, a) in self.pending_mut() {
            if elapsed >= a.timeout {
                a.expired = true;
                gone.push(i);
            }
        }
        gone
    }
}

/// Consecutive socket errors after which the wait gives up (each is followed by a rescan).
const MAX_ERRORS_IN_A_ROW: u32 = 8;

/// Where uevents come from: the netlink socket, or a script in tests.
pub trait UeventSource {
    /// The next message within `timeout`; Ok(None) when the time is up. An error (ENOBUFS:
    /// messages were lost) makes the caller rescan.
    fn next(&mut self, timeout: Duration) -> std::io::Result<Option<Vec<u8>>>;
}

/// Offer every block device in /sys/class/block.
fn scan(sys: &dyn Sys, waiter: &mut Waiter) {
    waiter.offer_existing(&|p| sys.exists(p));
    for name in sys
        .list_dir(Path::new("/sys/class/block"))
        .unwrap_or_default()
    {
        if !waiter.is_pending() {
            return;
        }
        if let Some(c) = inspect(sys, &name) {
            waiter.offer(&c);
        }
    }
}

/// Wait until every spec of `waiter` is found or expired. `events` may be None (no socket):
/// then only what is present now is found. `on_driver` gets each `add` uevent with a MODALIAS
/// (the caller loads its modules, which may make the awaited disk appear).
pub fn wait_for_devices(
    sys: &dyn Sys,
    waiter: &mut Waiter,
    events: Option<&mut dyn UeventSource>,
    on_driver: &mut dyn FnMut(&Uevent),
) {
    let start = Instant::now();
    scan(sys, waiter);
    let Some(events) = events else {
        let never = Duration::MAX;
        waiter.expire(never);
        return;
    };
    let mut errors_in_a_row = 0;
    while let Some(deadline) = waiter.next_deadline() {
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            waiter.expire(elapsed);
            continue;
        }
        let next = events.next(deadline - elapsed);
        if next.is_ok() {
            errors_in_a_row = 0;
        }
        match next {
            Ok(Some(msg)) => {
                let Some(ev) = uevent::parse(&msg) else {
                    continue;
                };
                if ev.wants_driver() {
                    on_driver(&ev);
                }
                if ev.is_block_arrival() {
                    let name = ev.devname.replace('/', "!");
                    if let Some(c) = inspect(sys, &name) {
                        waiter.offer(&c);
                    }
                    waiter.offer_existing(&|p| sys.exists(p));
                }
            }
            Ok(None) => {
                // The source waited the time asked for: the nearest deadline has passed.
                waiter.expire(start.elapsed().max(deadline));
            }
            Err(e) => {
                // ENOBUFS: announcements were lost; what they announced is in sysfs now.
                log::debug!("uevent socket: {e}; rescanning block devices");
                scan(sys, waiter);
                errors_in_a_row += 1;
                // A socket that keeps failing must not make PID 1 spin: give up waiting.
                if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
                    log::warn!("uevent socket keeps failing ({e}); no more waiting for devices");
                    waiter.expire(Duration::MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn ext4(label: &str, uuid: [u8; 16]) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        d[1024 + 0x38] = 0x53;
        d[1024 + 0x39] = 0xef;
        d[1024 + 0x68..1024 + 0x78].copy_from_slice(&uuid);
        d[1024 + 0x78..1024 + 0x78 + label.len()].copy_from_slice(label.as_bytes());
        d
    }

    /// A GPT disk with one partition "data" whose unique GUID is 0102..10.
    fn gpt_disk() -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        d[510] = 0x55;
        d[511] = 0xaa;
        d[512..520].copy_from_slice(b"EFI PART");
        d[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        d[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        d[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024;
        d[e..e + 16].copy_from_slice(&[0xaf; 16]);
        let guid: Vec<u8> = (1..=16).collect();
        d[e + 16..e + 32].copy_from_slice(&guid);
        for (i, c) in "data".encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        d
    }

    type Step = Option<(Vec<u8>, Vec<(&'static str, Vec<u8>)>)>;

    /// Uevents in order, each making its files appear first (devtmpfs makes the node before
    /// the kernel sends the event); then timeouts.
    struct Script<'a>(VecDeque<Step>, &'a FakeSys);

    impl UeventSource for Script<'_> {
        fn next(&mut self, _timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
            match self.0.pop_front() {
                Some(Some((msg, files))) => {
                    for (p, d) in files {
                        self.1.add_file(p, &d);
                    }
                    Ok(Some(msg))
                }
                _ => Ok(None),
            }
        }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            DeviceSpec::parse("LABEL=\"a b\""),
            Ok(DeviceSpec::Label("a b".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTUUID=x"),
            Ok(DeviceSpec::PartUuid("x".into()))
        );
        assert_eq!(
            DeviceSpec::parse("PARTLABEL=y"),
            Ok(DeviceSpec::PartLabel("y".into()))
        );
        assert_eq!(
            DeviceSpec::parse("/dev/vda"),
            Ok(DeviceSpec::Path("/dev/vda".into()))
        );
        assert!(DeviceSpec::parse("vda").is_err());
        assert!(DeviceSpec::parse("LABEL=").is_err());
    }

    #[test]
    fn gpt_and_mbr_identities() {
        let d = gpt_disk();
        let read = |off: u64, len: usize| {
            d.get(off as usize..)
                .map(|s| s[..len.min(s.len())].to_vec())
        };
        assert_eq!(
            partition_identity(&read, 1),
            Some(PartIdentity {
                uuid: "04030201-0605-0807-090a-0b0c0d0e0f10".into(),
                label: "data".into()
            })
        );
        assert_eq!(partition_identity(&read, 2), None, "an empty entry");
        assert_eq!(partition_identity(&read, 200), None, "past the table");
        let mut m = vec![0u8; 512];
        m[510] = 0x55;
        m[511] = 0xaa;
        m[440..444].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        let read = |off: u64, len: usize| {
            m.get(off as usize..)
                .map(|s| s[..len.min(s.len())].to_vec())
        };
        assert_eq!(partition_identity(&read, 3).unwrap().uuid, "deadbeef-03");
        assert_eq!(parent_disk("vda1"), Some("vda"));
        assert_eq!(parent_disk("nvme0n1p2"), Some("nvme0n1"));
        assert_eq!(parent_disk("mmcblk0p1"), Some("mmcblk0"));
        assert_eq!(parent_disk("sda"), None);
    }

    #[test]
    fn present_devices_resolve_without_waiting() {
        let s = FakeSys::new();
        s.add_file("/sys/class/block/fd0/size", b"8\n");
        s.add_file("/sys/class/block/vda/size", b"8\n");
        s.add_file("/dev/vda", &gpt_disk());
        s.add_file("/sys/class/block/vda1/partition", b"1\n");
        s.add_file("/dev/vda1", &ext4("smssvar", [7; 16]));
        let mut w = Waiter::new(vec![
            (
                DeviceSpec::parse("LABEL=smssvar").unwrap(),
                Duration::from_secs(10),
            ),
            (
                DeviceSpec::parse("PARTLABEL=data").unwrap(),
                Duration::from_secs(10),
            ),
            (
                DeviceSpec::parse("PARTUUID=04030201-0605-0807-090A-0B0C0D0E0F10").unwrap(),
                Duration::from_secs(10),
            ),
            (
                DeviceSpec::parse("UUID=07070707-0707-0707-0707-070707070707").unwrap(),
                Duration::from_secs(10),
            ),
            (
                DeviceSpec::parse("/dev/vda").unwrap(),
                Duration::from_secs(10),
            ),
        ]);
        let start = Instant::now();
        wait_for_devices(&s, &mut w, None, &mut |_| {});
        assert!(start.elapsed() < Duration::from_secs(5));
        let found: Vec<_> = w.items.iter().map(|a| a.found.clone()).collect();
        let vda1 = Some(PathBuf::from("/dev/vda1"));
        assert_eq!(
            found,
            [
                vda1.clone(),
                vda1.clone(),
                vda1.clone(),
                vda1,
                Some("/dev/vda".into())
            ]
        );
        assert!(s.calls_of("read_at").iter().all(|c| !c.contains("fd0")));
    }

    #[test]
    fn a_late_disk_arrives_by_uevent_and_drivers_are_asked_for() {
        let s = FakeSys::new();
        s.add_dir("/sys/class/block");
        let mut script = Script(
            VecDeque::from([
                Some((b"add@/devices/pci/virtio3\0ACTION=add\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000008v00001AF4\0".to_vec(), vec![])),
                Some((b"add@/devices/x/block/sdb\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sdb\0".to_vec(), vec![("/dev/sdb", ext4("other", [2; 16]))])),
                Some((b"add@/devices/x/block/sda\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sda\0DEVTYPE=disk\0".to_vec(), vec![("/dev/sda", ext4("slow", [1; 16]))])),
            ]),
            &s,
        );
        let mut w = Waiter::new(vec![
            (
                DeviceSpec::parse("LABEL=slow").unwrap(),
                Duration::from_secs(30),
            ),
            (
                DeviceSpec::parse("/dev/sdb").unwrap(),
                Duration::from_secs(30),
            ),
            (
                DeviceSpec::parse("LABEL=never").unwrap(),
                Duration::from_secs(30),
            ),
        ]);
        let mut asked = Vec::new();
        wait_for_devices(&s, &mut w, Some(&mut script), &mut |ev| {
            asked.push(ev.modalias.clone())
        });
        assert_eq!(asked, ["virtio:d00000008v00001AF4"]);
        assert_eq!(w.items[0].found, Some(PathBuf::from("/dev/sda")));
        assert_eq!(w.items[1].found, Some(PathBuf::from("/dev/sdb")));
        // The script ran dry: the source said "time is up" and the last one expired.
        assert!(w.items[2].expired && w.items[2].found.is_none());
    }

    /// A source that only fails (a broken socket): the wait rescans a few times, finds what
    /// is there, and gives up on the rest instead of spinning until the deadline.
    #[test]
    fn a_failing_socket_is_rescanned_then_abandoned() {
        struct Broken(u32);
        impl UeventSource for Broken {
            fn next(&mut self, _timeout: Duration) -> std::io::Result<Option<Vec<u8>>> {
                self.0 += 1;
                Err(std::io::Error::from_raw_os_error(libc::ENOBUFS))
            }
        }
        let s = FakeSys::new();
        s.add_dir("/sys/class/block");
        let mut w = Waiter::new(vec![(
            DeviceSpec::parse("LABEL=x").unwrap(),
            Duration::from_secs(3600),
        )]);
        let mut src = Broken(0);
        let start = Instant::now();
        wait_for_devices(&s, &mut w, Some(&mut src), &mut |_| {});
        assert!(start.elapsed() < Duration::from_secs(60));
        assert!(w.items[0].expired);
        assert_eq!(src.0, MAX_ERRORS_IN_A_ROW);
        let scans = s
            .calls_of("list")
            .iter()
            .filter(|c| *c == "list /sys/class/block")
            .count();
        assert_eq!(scans, 1 + MAX_ERRORS_IN_A_ROW as usize);
    }

    proptest! {
        /// Every spec ends found or expired, never both; expiry respects each timeout.
        #[test]
        fn waiter_settles(timeouts in proptest::collection::vec(0u64..100, 1..6), steps in proptest::collection::vec(0u64..120, 0..10)) {
            let specs = timeouts.iter().enumerate().map(|(i, &t)| (DeviceSpec::Label(format!("l{i}")), Duration::from_millis(t))).collect();
            let mut w = Waiter::new(specs);
            let mut now = 0;
            for (k, s) in steps.iter().enumerate() {
                now = now.max(*s);
                for i in w.expire(Duration::from_millis(now)) {
                    prop_assert!(timeouts[i] <= now);
                }
                let dev = Candidate { node: format!("/dev/d{k}").into(), fs: Some(FsIdentity { fstype: "ext4", uuid: String::new(), label: format!("l{k}") }), part: None };
                for i in w.offer(&dev) {
                    prop_assert!(timeouts[i] > now);
                }
            }
            w.expire(Duration::MAX);
            prop_assert!(!w.is_pending());
            prop_assert!(w.items.iter().all(|a| a.found.is_some() != a.expired));
            prop_assert_eq!(w.next_deadline(), None);
        }
    }
}
