//! Every `examples/*.toml` must parse with zero diagnostics, and plan.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use smss_config::{load_file, plan::plan};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn all_examples_are_valid() {
    let files = examples();
    assert!(
        files.len() >= 3,
        "expected at least 3 examples, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        match load_file(f) {
            Ok(cfg) => {
                let text = plan(&cfg).to_string();
                assert!(text.contains("17. execute"), "{text}");
            }
            Err(d) => failures.push(d.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_three_named_examples_exist() {
    let names: Vec<String> = examples()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for n in ["container.toml", "full.toml", "multiseat.toml"] {
        assert!(names.iter().any(|m| m == n), "missing examples/{n}");
    }
}

/// Prints the plans: `cargo test -p smss-config --test examples -- --nocapture print_plans`.
#[test]
fn print_plans() {
    for f in examples() {
        if let Ok(cfg) = load_file(&f) {
            println!("== {}\n{}", f.display(), plan(&cfg));
        }
    }
}
