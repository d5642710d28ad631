//! Fuzz target: the PendingFileRenameOperations queue as PID 1 reads it at boot (the file may
//! hold anything: a torn write, a hand edit, garbage). `parse_queue` is total, its accounting
//! adds up, the whole-pair prefix applies the same entries, and every entry it accepts
//! survives the writer's encoding and a second parse unchanged. Issue 12: the streaming
//! reader gives the same items whatever the sizes of the reads it is fed, no accepted path is
//! longer than PATH_MAX, and the writer's piecewise scan agrees with the whole-slice one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;

use smss::rename_queue::{
    encode, parse_queue, valid_prefix_len, Action, Dropped, Item, PairScanner, QueueReader,
    MAX_PATH_LEN,
};

/// Hands out the input in pieces of the sizes in `sizes` (cycled), so string boundaries fall
/// anywhere relative to the reader's buffer.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .sizes
            .get(self.i % self.sizes.len().max(1))
            .map_or(usize::MAX, |&s| usize::from(s) + 1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    // The first bytes choose read sizes; the rest is the queue. Long paths come from a
    // repeated expansion of the input, so PATH_MAX is reached.
    let (sizes, data) = input.split_at(input.len().min(4));
    let owned;
    let data = if sizes.first().is_some_and(|&b| b & 7 == 1) {
        owned = data.repeat(1 + 4200 / (data.len() + 1));
        &owned[..]
    } else {
        data
    };
    let q = parse_queue(data);
    let mut r = QueueReader::new(Chunked { data, sizes, i: 0 });
    let (mut entries, mut dropped) = (Vec::new(), Vec::new());
    while let Some(item) = r.next_item().expect("reading memory") {
        match item {
            Item::Entry(e) => entries.push(e),
            Item::Dropped(d) => dropped.push(d),
        }
    }
    assert_eq!(entries, q.entries);
    assert_eq!(dropped, q.dropped);
    let mut scan = PairScanner::default();
    for piece in data.chunks(usize::from(sizes.first().copied().unwrap_or(0)) + 1) {
        scan.feed(piece);
    }
    assert_eq!(scan.valid_len() as usize, valid_prefix_len(data));
    let nuls = data.iter().filter(|&&b| b == 0).count();
    let invalid = q
        .dropped
        .iter()
        .filter(|d| matches!(d, Dropped::Invalid(..) | Dropped::TooLong(..)))
        .count();
    assert_eq!(q.entries.len() + invalid, nuls / 2);
    let odd = q
        .dropped
        .iter()
        .any(|d| matches!(d, Dropped::OddSource(_)));
    assert_eq!(odd, nuls % 2 == 1);
    let torn = q
        .dropped
        .iter()
        .any(|d| matches!(d, Dropped::TornWrite(_)));
    assert_eq!(torn, data.last().is_some_and(|&b| b != 0));

    let n = valid_prefix_len(data);
    assert!(n <= data.len());
    assert_eq!(parse_queue(&data[..n]).entries, q.entries);

    for e in &q.entries {
        assert!(e.source.is_absolute());
        assert!(e.source.as_os_str().len() <= MAX_PATH_LEN);
        if let Action::Rename { destination, .. } = &e.action {
            assert!(destination.is_absolute());
            assert!(destination.as_os_str().len() <= MAX_PATH_LEN);
        }
    }
    // The encode round trip for the first few entries (it is the costly part).
    for e in q.entries.iter().take(16) {
        let (dst, replace) = match &e.action {
            Action::Delete => (None, false),
            Action::Rename {
                destination,
                replace,
            } => (Some(destination.as_path()), *replace),
        };
        let rec = encode(&e.source, dst, replace).expect("a parsed entry is encodable");
        let again = parse_queue(&rec);
        assert_eq!(again.entries, vec![e.clone()]);
        assert!(again.dropped.is_empty());
    }
});
