//! Fuzz target: the control socket's admission and deadlines, driven by arbitrary sequences
//! of connects and disconnects from arbitrary uids, and of connection events at arbitrary
//! times. Nothing may panic, and whatever the sequence: the totals stay within the limits,
//! a uid other than root never exceeds its cap nor takes root's reserve, root is admitted
//! whenever the total is below the limit, and a connection always has a deadline unless it
//! waits for a deferred reply with nothing to write.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smss::control::server::{
    admission, Clock, Held, LogLimiter, DENIAL_LOG_BURST, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_UID, MAX_UNPRIVILEGED_CONNECTIONS, MAX_UNPRIVILEGED_PER_UID,
    ROOT_RESERVE,
};

fuzz_target!(|data: &[u8]| {
    // Connections held: (uid, privileged).
    let mut conns: Vec<(u32, bool)> = Vec::new();
    let t0 = Instant::now();
    let mut clock = Clock::new(t0);
    let mut limiter = LogLimiter::default();
    let mut now = t0;
    let mut logged_in_window: HashMap<u64, u32> = HashMap::new();
    for op in data.chunks(2) {
        let (a, b) = (op[0], op.get(1).copied().unwrap_or(0));
        now += Duration::from_millis(u64::from(b) * 50);
        match a % 8 {
            0..=3 => {
                // Connect: uid 0..7, privileged by the high bit.
                let uid = u32::from(a >> 4 & 7);
                let privileged = uid == 0 || a & 0x80 != 0;
                let held = Held {
                    total: conns.len(),
                    unprivileged: conns.iter().filter(|c| !c.1).count(),
                    same_uid: conns.iter().filter(|c| c.0 == uid).count(),
                };
                let ok = admission(held, uid, privileged).is_ok();
                if uid == 0 {
                    assert_eq!(ok, conns.len() < MAX_CONNECTIONS);
                }
                if ok {
                    conns.push((uid, privileged));
                }
            }
            4 => {
                if !conns.is_empty() {
                    let i = usize::from(b) % conns.len();
                    conns.swap_remove(i);
                }
            }
            5 => clock.input(usize::from(b), now),
            6 => match b % 3 {
                0 => clock.message(usize::from(b / 3), now),
                1 => clock.output(usize::from(b / 3), now),
                _ => clock.replied(now),
            },
            _ => {
                let (log, _) = limiter.admit(now);
                if log {
                    // Count per 10 s bucket of the limiter's own windows, loosely: never more
                    // than the burst within one window start.
                    let e = logged_in_window.entry(now.duration_since(t0).as_secs() / 10).or_default();
                    *e += 1;
                    assert!(*e <= 2 * DENIAL_LOG_BURST);
                }
                let _ = limiter.flush(now);
            }
        }
        // Limits.
        assert!(conns.len() <= MAX_CONNECTIONS);
        let non_root = conns.iter().filter(|c| c.0 != 0).count();
        assert!(non_root <= MAX_CONNECTIONS - ROOT_RESERVE);
        assert!(conns.iter().filter(|c| !c.1).count() <= MAX_UNPRIVILEGED_CONNECTIONS);
        for uid in 1..8 {
            let mine: Vec<_> = conns.iter().filter(|c| c.0 == uid).collect();
            let cap = if mine.iter().any(|c| c.1) {
                MAX_CONNECTIONS_PER_UID
            } else {
                MAX_UNPRIVILEGED_PER_UID
            };
            assert!(mine.len() <= cap);
        }
        // Deadlines: none only while waiting for us with nothing to write.
        assert!(clock.deadline(false).is_some());
        if let Some(d) = clock.deadline(true) {
            assert!(d >= t0);
        }
    }
});
