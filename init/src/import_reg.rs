//! `smss import-reg [--drive X:=PATH]... [-o FILE] FILE.reg|-`: a Windows registry export of
//! the Session Manager key -> smss TOML (interface.md section 8).
//!
//! The work is done by the pure [`smss_config::reg`]; this is only the edge: arguments, reading
//! the input (bounded), and writing the output. Exit codes: 0 converted, 1 not a readable
//! registry export (`FILE:LINE: message` per problem, nothing written to `-o`), 2 usage.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::ffi::OsString;

use smss_config::reg::{self, Options, MAX_REG_FILE_SIZE};

use crate::cli::{self, Usage};

pub const USAGE: &str = "\
usage: smss import-reg [--drive X:=PATH]... [-o FILE] FILE.reg|-
  Translates a .reg export of HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager
  (regedit's Export, `reg export`, or a tweak file; `-` reads standard input) into smss TOML,
  written to standard output or to FILE. Values with no Linux meaning are listed in a comment
  block at the top.
  --drive X:=PATH   map drive X: to the absolute PATH (default: only C: -> /); repeatable
  -o, --output FILE write FILE (replaced atomically, only on success; through a symlink
                    its target is replaced, a device such as /dev/stdout is written into)
Exit status: 0 converted, 1 not a readable registry export (FILE:LINE: message per problem),
2 usage.";

/// The parsed command line of `import-reg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub drives: Vec<(char, String)>,
    pub output: Option<PathBuf>,
    /// `-` = standard input.
    pub input: String,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Import(Args),
    Help,
}

/// Parses the arguments after `import-reg`.
pub fn parse_args(argv: &[OsString]) -> Result<Cmd, String> {
    parse(argv).map_err(|e| e.0)
}

fn parse(argv: &[OsString]) -> Result<Cmd, Usage> {
    use crate::cli::Arg::*;
    let mut drives: Vec<(char, String)> = Vec::new();
    let mut output: Option<PathBuf> = None;
    let mut input: Option<String> = None;
    let mut p = cli::parser(argv.iter().cloned());
    loop {
        let files = cli::after_double_dash(&mut p);
        let after_dash = files.is_some();
        let words: Vec<OsString> = match files {
            Some(rest) => rest,
            None => match p.next()? {
                None => break,
                Some(Short('h') | Long("help")) => return Ok(Cmd::Help),
                Some(Long("drive")) => {
                    drives.push(reg::parse_drive_flag(&cli::string_value(&mut p)?)?);
                    continue;
                }
                Some(Short('o') | Long("output")) => {
                    if output.replace(PathBuf::from(p.value()?)).is_some() {
                        return Err("-o given twice".into());
                    }
                    continue;
                }
                Some(Value(v)) => vec![v],
                Some(other) => return Err(other.unexpected().into()),
            },
        };
        for w in words {
            let w = w
                .into_string()
                .map_err(|w| format!("not UTF-8: {}", w.to_string_lossy()))?;
            if input.replace(w).is_some() {
                return Err("import-reg takes one FILE.reg (or - for standard input)".into());
            }
        }
        if after_dash {
            break;
        }
    }
    let Some(input) = input else {
        return Err("import-reg needs a FILE.reg (or - for standard input)".into());
    };
    if output.as_deref() == Some(Path::new("")) {
        return Err("-o needs a file name".into());
    }
    Ok(Cmd::Import(Args {
        drives,
        output,
        input,
    }))
}

/// Reads at most `MAX_REG_FILE_SIZE + 1` bytes (one more tells "too large" apart).
fn read_bounded(r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(MAX_REG_FILE_SIZE as u64 + 1).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Writes `-o PATH`. A regular file (or a new one) is replaced atomically; when PATH is a
/// symlink, the file it points to is replaced and the link stays. Anything else that exists
/// (`/dev/stdout`, `/dev/null`, a FIFO) is written into: replacing it would put a regular
/// file where the device or link was.
fn write_output(path: &Path, text: &str) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => write_atomically(&std::fs::canonicalize(path)?, text),
        Ok(_) => {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.write_all(text.as_bytes())?;
            f.flush()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(&dangling_target(path)?, text)
        }
        Err(e) => Err(e),
    }
}

/// The file a path that does not resolve names: itself, or the end of its (dangling) chain of
/// symlinks, followed at most 40 times as the kernel does.
fn dangling_target(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so a
/// failure never leaves a half-written file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "smss.toml".into());
    let tmp = path.with_file_name(format!(".{name}.import-reg-{}", std::process::id()));
    // The file replaced keeps its mode (and, where allowed, its owner).
    let old = std::fs::metadata(path).ok().filter(|m| m.is_file());
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Some(m) = &old {
            use std::os::unix::fs::MetadataExt;
            f.set_permissions(m.permissions())?;
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `smss import-reg ARGS`: returns the exit status.
pub fn main(argv: &[OsString]) -> i32 {
    let args = match parse(argv) {
        Ok(Cmd::Import(a)) => a,
        Ok(Cmd::Help) => return cli::help(USAGE),
        Err(e) => return cli::usage_error("smss import-reg", &e, USAGE),
    };
    let shown = if args.input == "-" {
        "<stdin>".to_owned()
    } else {
        args.input.clone()
    };
    let bytes = if args.input == "-" {
        read_bounded(std::io::stdin().lock())
    } else {
        std::fs::File::open(&args.input).and_then(read_bounded)
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{shown}:1: cannot read it: {e}");
            return 1;
        }
    };
    let mut opts = Options::new(shown.clone());
    for (letter, root) in args.drives {
        opts.map_drive(letter, root);
    }
    let imported = match reg::import(&bytes, &opts) {
        Ok(i) => i,
        Err(problems) => {
            for p in &problems {
                if p.line == 0 {
                    eprintln!("{shown}: {}", p.message);
                } else {
                    eprintln!("{shown}:{}: {}", p.line, p.message);
                }
            }
            eprintln!("{} problem(s) in {shown}; nothing written", problems.len());
            return 1;
        }
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = write_output(path, &imported.toml) {
                eprintln!("smss import-reg: cannot write {}: {e}", path.display());
                return 1;
            }
            eprintln!(
                "smss import-reg: {} entr{} written to {}; {} not imported (listed at its top)",
                imported.entries,
                if imported.entries == 1 { "y" } else { "ies" },
                path.display(),
                imported.not_imported.len()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(imported.toml.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_drives_output_and_input() {
        let Ok(Cmd::Import(a)) = parse_args(&v(&[
            "--drive",
            "d:=/srv/d",
            "--drive=E:=/mnt/e",
            "-o",
            "out.toml",
            "sm.reg",
        ])) else {
            panic!("not an import");
        };
        assert_eq!(
            a.drives,
            vec![('D', "/srv/d".to_owned()), ('E', "/mnt/e".to_owned())]
        );
        assert_eq!(a.output, Some(PathBuf::from("out.toml")));
        assert_eq!(a.input, "sm.reg");
        let Ok(Cmd::Import(a)) = parse_args(&v(&["-"])) else {
            panic!("stdin");
        };
        assert_eq!(a.input, "-");
        let Ok(Cmd::Import(a)) = parse_args(&v(&["--", "-o"])) else {
            panic!("after --");
        };
        assert_eq!(a.input, "-o");
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["a.reg", "b.reg"][..],
            &["--drive"][..],
            &["--drive", "D:/x", "a.reg"][..],
            &["--drive", "D:=relative", "a.reg"][..],
            &["--drive", "D:=/with space", "a.reg"][..],
            &["--drive", "1:=/x", "a.reg"][..],
            &["-o"][..],
            &["-o", "a", "-o", "b", "x.reg"][..],
            &["--bogus", "a.reg"][..],
        ] {
            assert!(parse_args(&v(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse_args(&v(&["--help"])), Ok(Cmd::Help));
    }
}
