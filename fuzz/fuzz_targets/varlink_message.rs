//! Fuzz target: the control socket's input path in PID 1 — the NUL framer fed in arbitrary
//! chunks, then every complete message through `parse_call` and `manager::decode` (and
//! `parse_reply`, the client side). Nothing may panic, and the framer never holds more than
//! one message's worth of unconsumed input beyond what was fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::control::manager;
use smss::control::wire::{parse_call, parse_reply, Framer, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so splits fall everywhere.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 64) + 1;
    let mut framer = Framer::new();
    for chunk in rest.chunks(step) {
        framer.push(chunk);
        while let Some(msg) = framer.next_message() {
            let Ok(msg) = msg else {
                // Too long: the server closes the connection here.
                return;
            };
            assert!(msg.len() <= MAX_MESSAGE);
            if let Ok(call) = parse_call(&msg) {
                let _ = call.interface();
                let _ = call.member();
                if let Ok(m) = manager::decode(&call) {
                    let _ = m.privileged();
                }
            }
            let _ = parse_reply(&msg);
        }
        assert!(framer.pending() <= rest.len());
    }
});
