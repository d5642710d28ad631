//! Fuzz target: `%VAR%` expansion and the environment builder (issue 12). Whatever the
//! variables (the fuzzer builds doubling chains readily, with a small limit to reach it), the
//! expansion never allocates past its limit, never panics, and the environment's size is
//! exactly what execve would count and never past MAX_ENVIRONMENT_SIZE through `apply`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss_config::{expand_within, variable_cost, EnvError, Environment, MAX_ENVIRONMENT_SIZE};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // Lines `NAME=RAW`; the first line is a limit for the free expansion test.
    let mut lines = src.lines();
    let limit = lines.next().map_or(0, |l| l.len() * 97 % 4096);
    let mut env = Environment::default();
    for line in lines {
        let (name, raw) = line.split_once('=').unwrap_or((line, ""));
        // Repeat the raw value so chains reach the real limits quickly.
        let raw = raw.repeat(1 + raw.len() % 7);
        let before = env.size();
        let old = env.get(name).map(str::to_owned);
        match env.apply(name, &raw) {
            Ok(()) => {
                let v = env.get(name).expect("just set");
                assert!(name.len() + 1 + v.len() < smss_config::MAX_ARG_STRLEN);
            }
            Err(e) => {
                assert_eq!(e.name(), name);
                assert!(matches!(
                    e,
                    EnvError::VariableTooLong { .. } | EnvError::EnvironmentFull { .. }
                ));
                // Nothing changed.
                assert_eq!(env.size(), before);
                assert_eq!(env.get(name).map(str::to_owned), old);
            }
        }
        let recount: usize = env.vars().iter().map(|(n, v)| variable_cost(n, v)).sum();
        assert_eq!(env.size(), recount);
        assert!(env.size() <= MAX_ENVIRONMENT_SIZE);
        match expand_within(line, |n| env.get(n), limit) {
            Ok(out) => assert!(out.len() <= limit),
            Err(e) => assert_eq!(e.limit, limit),
        }
    }
});
