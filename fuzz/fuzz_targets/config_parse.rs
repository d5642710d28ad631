//! Fuzz target: `parse_str` on arbitrary UTF-8 never panics; on success `plan()` and its
//! printout never panic either, and diagnostics always carry 1-based positions.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match smss_config::parse_str(src, Path::new("fuzz.toml")) {
        Ok(cfg) => {
            let plan = smss_config::plan::plan(&cfg);
            let _ = plan.to_string();
            for phase in &plan.phases {
                let _ = phase.name();
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.line >= 1 && d.col >= 1);
            }
            let _ = diags.to_string();
        }
    }
});
