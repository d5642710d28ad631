//! Fuzz target: the lines on the link between PID 1 and a session instance or keeper — what
//! PID 1 reads (`InstanceMessage`) and what a keeper reads (`KeeperCommand`). Nothing may
//! panic, and whatever parses survives a second encoding unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::control::instance::{InstanceMessage, KeeperCommand};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(m) = serde_json::from_slice::<InstanceMessage>(line) {
            let again = serde_json::to_vec(&m).expect("encodes");
            assert_eq!(serde_json::from_slice::<InstanceMessage>(&again).ok(), Some(m));
        }
        if let Ok(c) = serde_json::from_slice::<KeeperCommand>(line) {
            let again = serde_json::to_vec(&c).expect("encodes");
            assert_eq!(serde_json::from_slice::<KeeperCommand>(&again).ok(), Some(c));
        }
    }
});
