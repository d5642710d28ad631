//! Environment: the generated machine facts (SmpCreateDynamicEnvironmentVariables) and the
//! environment file later consumers (sessions, `smctl`) read.
//!
//! Facts, Windows' names with Linux values:
//! - `OS=Linux` (Windows writes `Windows_NT`).
//! - `PROCESSOR_ARCHITECTURE` = `uname -m` as is (`x86_64`, `aarch64`), not Windows' `AMD64`:
//!   scripts on Linux compare against uname's spelling.
//! - `NUMBER_OF_PROCESSORS` = online CPUs.
//! - `PROCESSOR_IDENTIFIER` = `/proc/cpuinfo`'s `model name`, followed by `, <vendor_id>` when
//!   known (Windows' "<Identifier>, <VendorIdentifier>" shape); `PROCESSOR_LEVEL` (cpu family)
//!   and `PROCESSOR_REVISION` (model and stepping as 4 hex digits, as Windows) on x86 only.
//!   Absent when cpuinfo does not say.

use std::path::Path;

use super::PhaseError;
use crate::sys::Sys;

/// The generated facts, in a fixed order.
pub fn generated_facts(sys: &dyn Sys) -> Vec<(String, String)> {
    let mut v = vec![("OS".to_string(), "Linux".to_string())];
    match sys.machine() {
        Ok(m) => v.push(("PROCESSOR_ARCHITECTURE".into(), m.trim().to_string())),
        Err(e) => log::warn!("failed to read the machine architecture: {e}"),
    }
    v.push((
        "NUMBER_OF_PROCESSORS".into(),
        sys.online_cpus().max(1).to_string(),
    ));
    if let Ok(b) = sys.read_file(Path::new("/proc/cpuinfo")) {
        v.extend(cpu_facts(&String::from_utf8_lossy(&b)));
    }
    v
}

/// PROCESSOR_IDENTIFIER/LEVEL/REVISION from the first processor of /proc/cpuinfo.
pub fn cpu_facts(cpuinfo: &str) -> Vec<(String, String)> {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                let (k, val) = l.split_once(':')?;
                (k.trim() == name).then(|| val.trim().to_string())
            })
            .filter(|s| !s.is_empty())
    };
    let mut v = Vec::new();
    let model_name = field("model name")
        .or_else(|| field("cpu model"))
        .or_else(|| field("uarch"))
        .or_else(|| field("Processor"));
    if let Some(name) = model_name {
        let id = match field("vendor_id") {
            Some(vendor) => format!("{name}, {vendor}"),
            None => name,
        };
        v.push(("PROCESSOR_IDENTIFIER".to_string(), id));
    }
    if let Some(family) = field("cpu family") {
        v.push(("PROCESSOR_LEVEL".to_string(), family));
    }
    let num = |s: Option<String>| s.and_then(|s| s.parse::<u32>().ok());
    if let (Some(model), Some(stepping)) = (num(field("model")), num(field("stepping"))) {
        v.push((
            "PROCESSOR_REVISION".to_string(),
            format!("{:04x}", (model & 0xff) << 8 | (stepping & 0xff)),
        ));
    }
    v
}

/// Write `vars` as `KEY=VALUE` lines to `path`, atomically: a temporary file in the same
/// directory, fsynced, renamed over `path`, directory fsynced. A variable that cannot be one
/// line (a newline or NUL in it, `=` or nothing in the name) is left out and logged.
pub fn write_environment_file(
    sys: &dyn Sys,
    path: &Path,
    vars: &[(String, String)],
) -> Result<(), PhaseError> {
    let mut text = String::new();
    for (k, v) in vars {
        let bad = |s: &str| s.contains('\n') || s.contains('\0');
        if k.is_empty() || k.contains('=') || bad(k) || bad(v) {
            log::warn!(
                "environment variable {k:?} cannot be written as one KEY=VALUE line; left out"
            );
            continue;
        }
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let write_err = |source| PhaseError::Write {
        path: path.to_path_buf(),
        source,
    };
    sys.create_dir_all(dir, 0o755)
        .map_err(|source| PhaseError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    sys.write_file(&tmp, text.as_bytes(), 0o644)
        .map_err(write_err)?;
    if let Err(e) = sys.rename(&tmp, path) {
        let _ = sys.remove_file(&tmp);
        return Err(write_err(e));
    }
    sys.fsync_dir(dir).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, Node};

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 158\nmodel name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\nstepping\t: 10\n\nprocessor\t: 1\nvendor_id\t: Other\n";

    #[test]
    fn facts() {
        let s = FakeSys::new();
        s.add_file("/proc/cpuinfo", CPUINFO.as_bytes());
        let f = generated_facts(&s);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OS"), Some("Linux"));
        assert_eq!(get("PROCESSOR_ARCHITECTURE"), Some("x86_64"));
        assert_eq!(get("NUMBER_OF_PROCESSORS"), Some("2"));
        assert_eq!(
            get("PROCESSOR_IDENTIFIER"),
            Some("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz, GenuineIntel")
        );
        assert_eq!(get("PROCESSOR_LEVEL"), Some("6"));
        assert_eq!(get("PROCESSOR_REVISION"), Some("9e0a"));
    }

    #[test]
    fn facts_without_cpuinfo() {
        let f = generated_facts(&FakeSys::new());
        assert_eq!(f.len(), 3);
        assert!(cpu_facts("processor : 0\nhart : 0\n").is_empty());
    }

    #[test]
    fn writes_atomically() {
        let s = FakeSys::new();
        let vars = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("BAD".to_string(), "a\nb".to_string()),
            ("A=B".to_string(), "x".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        write_environment_file(&s, Path::new("/run/smss/environment"), &vars).unwrap();
        assert_eq!(
            s.calls(),
            [
                "mkdir /run/smss 755",
                "write /run/smss/.environment.tmp 17 bytes",
                "rename /run/smss/.environment.tmp /run/smss/environment",
                "fsync /run/smss",
            ]
        );
        assert_eq!(
            s.node("/run/smss/environment"),
            Some(Node::File(b"PATH=/bin\nEMPTY=\n".to_vec(), 0o644))
        );
    }

    #[test]
    fn write_failure_names_the_file() {
        let s = FakeSys::new();
        s.fail("rename", "/run/smss/.environment.tmp", libc::EIO);
        let e = write_environment_file(&s, Path::new("/run/smss/environment"), &[]).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("failed to write /run/smss/environment: "));
        assert!(s.node("/run/smss/.environment.tmp").is_none());
    }
}
