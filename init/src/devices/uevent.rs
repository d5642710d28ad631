//! Kernel uevents as NETLINK_KOBJECT_UEVENT delivers them: `ACTION@DEVPATH\0KEY=VALUE\0...`
//! (see the kernel's lib/kobject_uevent.c). Anyone may not send to this group, but the bytes are
//! still parsed defensively: bounded, lossy, never panicking (fuzzed in fuzz/).

/// The kernel's own buffer is 2048 bytes (UEVENT_BUFFER_SIZE); anything longer is cut here.
pub const MAX_UEVENT: usize = 8192;

/// The fields of one uevent that smss uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    /// Device node name under /dev (`vda`, `sda1`, `bus/usb/001/002`).
    pub devname: String,
    /// `disk` or `partition` for block devices.
    pub devtype: String,
    pub modalias: String,
    /// Partition number of a partition.
    pub partn: Option<u32>,
}

impl Uevent {
    /// A block device (disk or partition) was added or changed (a medium inserted).
    pub fn is_block_arrival(&self) -> bool {
        self.subsystem == "block"
            && !self.devname.is_empty()
            && matches!(self.action.as_str(), "add" | "change")
    }

    /// A device with drivers to load was added.
    pub fn wants_driver(&self) -> bool {
        self.action == "add" && !self.modalias.is_empty()
    }
}

/// Parse one datagram; None when it is not a kernel uevent (udev's own `libudev` messages,
/// garbage).
pub fn parse(msg: &[u8]) -> Option<Uevent> {
    let msg = msg.get(..MAX_UEVENT).unwrap_or(msg);
    let mut parts = msg.split(|&b| b == 0);
    let header = String::from_utf8_lossy(parts.next()?);
    let (action, devpath) = header.split_once('@')?;
    let mut ev = Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        ..Uevent::default()
    };
    for part in parts {
        let field = String::from_utf8_lossy(part);
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "ACTION" => ev.action = value.to_string(),
            "DEVPATH" => ev.devpath = value.to_string(),
            "SUBSYSTEM" => ev.subsystem = value.to_string(),
            "DEVNAME" => ev.devname = value.to_string(),
            "DEVTYPE" => ev.devtype = value.to_string(),
            "MODALIAS" => ev.modalias = value.to_string(),
            "PARTN" => ev.partn = value.parse().ok(),
            _ => {}
        }
    }
    if ev.action.is_empty() || ev.devpath.is_empty() {
        return None;
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kernel_messages_parse() {
        let m = b"add@/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1\0SUBSYSTEM=block\0MAJOR=254\0MINOR=1\0DEVNAME=vda1\0DEVTYPE=partition\0DISKSEQ=2\0PARTN=1\0SEQNUM=1234\0";
        let e = parse(m).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.subsystem, "block");
        assert_eq!(e.devname, "vda1");
        assert_eq!(e.devtype, "partition");
        assert_eq!(e.partn, Some(1));
        assert!(e.is_block_arrival() && !e.wants_driver());
        let m = b"add@/devices/pci0000:00/0000:00:05.0/virtio2\0ACTION=add\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000002v00001AF4\0";
        let e = parse(m).unwrap();
        assert_eq!(e.devpath, "/devices/pci0000:00/0000:00:05.0/virtio2");
        assert!(e.wants_driver() && !e.is_block_arrival());
        let m = b"remove@/devices/x\0ACTION=remove\0MODALIAS=pci:v1\0";
        assert!(!parse(m).unwrap().wants_driver());
    }

    #[test]
    fn udev_and_garbage_are_ignored() {
        assert!(parse(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(parse(b"").is_none());
        assert!(parse(b"@\0").is_none());
        assert!(parse(b"add@\0ACTION=add").is_none());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn fields_round_trip(name in "[a-z0-9]{1,12}", alias in "[a-z0-9:*]{0,30}") {
            let msg = format!("add@/devices/x/{name}\0ACTION=add\0SUBSYSTEM=block\0DEVNAME={name}\0MODALIAS={alias}\0");
            let e = parse(msg.as_bytes()).unwrap();
            prop_assert_eq!(e.devname, name);
            prop_assert_eq!(e.modalias, alias);
        }
    }
}
