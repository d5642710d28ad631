//! Fuzz target: what PID 1 reads from a block device while it waits for a volume's device
//! (issue 11): the filesystem superblocks (`LABEL=`, `UUID=`) and the GPT/MBR partition
//! entries (`PARTUUID=`, `PARTLABEL=`). Any disk plugged in at boot is read, so its bytes are
//! untrusted. The input is the disk; reads past its end return what is there. Nothing may
//! panic or read without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::devices::wait::partition_identity;
use smss::phases::volumes::probe;

fuzz_target!(|data: &[u8]| {
    let read = |offset: u64, len: usize| -> Option<Vec<u8>> {
        assert!(len <= 1 << 20, "a read of {len} bytes");
        let start = usize::try_from(offset).ok()?;
        let end = start.saturating_add(len).min(data.len());
        data.get(start..end).map(<[u8]>::to_vec)
    };
    if let Some(id) = probe(&read) {
        assert!(id.label.len() <= 4096 && id.uuid.len() <= 4096);
    }
    // The partition number comes from the device's name (sda1): the first byte picks it.
    let partn = u32::from(data.first().copied().unwrap_or(1));
    for n in [1, 2, 128, partn, u32::MAX] {
        if let Some(p) = partition_identity(&read, n) {
            assert!(p.label.len() <= 4096 && p.uuid.len() <= 64);
        }
    }
});
