//! Fuzz target: `smctl analyze` reading a GetStatus reply (from any smss, possibly a remote or
//! hostile one): arbitrary JSON through `analyze`, `blame_json`, `blame_text` and `plot`.
//! Nothing may panic, and the SVG stays well-formed enough to check cheaply: no control
//! characters, every `<g>` closed, and no `<` inside text or attribute values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::control::analyze;

fuzz_target!(|data: &[u8]| {
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(a) = analyze::analyze(&status) else {
        return;
    };
    let rows = analyze::blame_json(&a);
    assert_eq!(rows.as_array().map(Vec::len), Some(a.rows.len()));
    let _ = analyze::blame_text(&a);
    let svg = analyze::plot(&a);
    assert!(!svg
        .chars()
        .any(|c| (c as u32) < 0x20 && c != '\n'));
    assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
    // Between a '>' and the next '<' is text: escaped, so no '<' can start inside it; and
    // every '<' starts a tag or the declaration.
    for part in svg.split('<').skip(1) {
        let c = part.chars().next();
        assert!(
            matches!(c, Some('?' | '/' | 'a'..='z')),
            "a '<' that starts no tag: {:?}",
            part.get(..40.min(part.len())).unwrap_or(part)
        );
    }
});
