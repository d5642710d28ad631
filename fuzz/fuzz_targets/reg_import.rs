//! Fuzz target: `smss import-reg` on arbitrary bytes (a .reg file is whatever someone sends).
//! Properties: the parser and the translator never panic; whatever `import` returns passes the
//! configuration validator (it never reports an internal error); every value the parser
//! accepts, and a value built from the input, renders and parses back to itself.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use smss_config::reg::{self, Data, Key, Options, Value, Version, REG_BINARY};

fn round_trip(version: Version, v: &Value) {
    let key = Key {
        path: "HKEY_LOCAL_MACHINE\\K".into(),
        delete: false,
        line: 1,
        values: vec![v.clone()],
    };
    let text = reg::render_file(version, &[key]);
    let f = match reg::parse(text.as_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("a rendered value does not parse: {e:?}\n{text}"),
    };
    let got = &f.keys[0].values[0];
    assert_eq!((&got.name, &got.data), (&v.name, &v.data), "{text}");
}

fuzz_target!(|data: &[u8]| {
    let mut opts = Options::new("fuzz.reg");
    opts.map_drive('D', "/srv/d".into());
    match reg::import(data, &opts) {
        Ok(i) => assert!(smss_config::parse_str(&i.toml, Path::new("fuzz.toml")).is_ok()),
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(
                problems.iter().all(|p| p.line > 0),
                "internal error: {problems:?}"
            );
        }
    }
    if let Ok(f) = reg::parse(data) {
        for k in &f.keys {
            for v in &k.values {
                round_trip(f.version, v);
            }
        }
    }
    if let Some((&sel, rest)) = data.split_first() {
        let s = String::from_utf8_lossy(rest).replace('\n', "");
        let data = match sel % 4 {
            0 => Data::String(s.clone()),
            1 => Data::Dword(rest.iter().fold(0u32, |a, &b| a.rotate_left(8) ^ u32::from(b))),
            2 => Data::Hex {
                kind: if sel & 0x80 != 0 { REG_BINARY } else { u32::from(sel >> 2) & 0xf },
                bytes: rest.to_vec(),
            },
            _ => Data::Delete,
        };
        let data = match data {
            // hex(1), hex(2) and hex(7) are UTF-16LE in a version 5 file: whole characters only.
            Data::Hex { kind: k @ (1 | 2 | 7), mut bytes } => {
                bytes.truncate(bytes.len() & !1);
                Data::Hex { kind: k, bytes }
            }
            d => d,
        };
        let name = (sel & 0x40 == 0).then_some(s);
        round_trip(Version::V5, &Value { name, data, line: 0 });
    }
});
