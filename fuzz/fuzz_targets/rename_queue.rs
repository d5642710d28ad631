//! Fuzz target: the PendingFileRenameOperations queue as PID 1 reads it at boot (the file may
//! hold anything: a torn write, a hand edit, garbage). `parse_queue` is total, its accounting
//! adds up, the whole-pair prefix applies the same entries, and every entry it accepts
//! survives the writer's encoding and a second parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::phases::pending_renames::{encode, parse_queue, valid_prefix_len, Action, Dropped};

fuzz_target!(|data: &[u8]| {
    let q = parse_queue(data);
    let nuls = data.iter().filter(|&&b| b == 0).count();
    let invalid = q
        .dropped
        .iter()
        .filter(|d| matches!(d, Dropped::Invalid(..)))
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
