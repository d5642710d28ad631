//! The command line of `smss-session`, read with the parser smss and smctl use (`smss::cli`).

use std::ffi::OsString;
use std::path::PathBuf;

use smss::cli::{self, Arg::*, Usage};

pub const USAGE: &str = "\
usage: smss-session [--id ID] --fd N [--log LEVEL]   (started by smss for each session)
       smss-session exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]
       smss-session remove DIR                        (an ended session's runtime directory)
       smss-session --help";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Instance(Instance),
    Exec(Exec),
    Remove(PathBuf),
    Help,
}

/// `[--id ID] --fd N [--log LEVEL]`. Without `--id`, a spare: started ahead, it learns its
/// session from the parameters.
#[derive(Debug, PartialEq)]
pub struct Instance {
    pub id: Option<u32>,
    pub fd: i32,
    pub log: Option<String>,
}

/// `exec [--hold FD] [--cgroup DIR] [--user USER] -- CMD [ARG..]`.
#[derive(Debug, PartialEq)]
pub struct Exec {
    /// As given: a descriptor that does not parse means "not released" (exit 126), as one
    /// that is closed does.
    pub hold: Option<String>,
    pub cgroup: Option<PathBuf>,
    pub user: Option<String>,
    /// Bytes, exactly as given.
    pub command: Vec<OsString>,
}

/// The error prefix of each form (`smss-session exec: ...`).
pub fn prog(argv: &[OsString]) -> &'static str {
    match argv.first().and_then(|a| a.to_str()) {
        Some("exec") => "smss-session exec",
        Some("remove") => "smss-session remove",
        _ => "smss-session",
    }
}

pub fn parse(argv: &[OsString]) -> Result<Command, Usage> {
    let Some((first, rest)) = argv.split_first() else {
        return parse_instance(argv);
    };
    match first.to_str() {
        Some("exec") => parse_exec(rest),
        Some("remove") => parse_remove(rest),
        _ => parse_instance(argv),
    }
}

fn parse_instance(argv: &[OsString]) -> Result<Command, Usage> {
    let (mut id, mut fd, mut log) = (None, None, None);
    let mut p = cli::parser(argv.iter().cloned());
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("id") => id = Some(cli::parsed_value::<u32>(&mut p, "--id")?),
            Long("fd") => fd = Some(cli::parsed_value::<i32>(&mut p, "--fd")?),
            Long("log") => log = Some(cli::string_value(&mut p)?),
            other => return Err(other.unexpected().into()),
        }
    }
    match fd {
        Some(fd) => Ok(Command::Instance(Instance { id, fd, log })),
        None => Err("--fd is required".into()),
    }
}

fn parse_exec(argv: &[OsString]) -> Result<Command, Usage> {
    let (mut hold, mut cgroup, mut user) = (None, None, None);
    let mut p = cli::parser(argv.iter().cloned());
    loop {
        if let Some(command) = cli::command_after_double_dash(&mut p)? {
            return Ok(Command::Exec(Exec {
                hold,
                cgroup,
                user,
                command,
            }));
        }
        match p.next()? {
            None => return Err("exec needs -- CMD [ARG..]".into()),
            Some(Short('h') | Long("help")) => return Ok(Command::Help),
            Some(Long("hold")) => hold = Some(cli::string_value(&mut p)?),
            Some(Long("cgroup")) => cgroup = Some(PathBuf::from(p.value()?)),
            Some(Long("user")) => user = Some(cli::string_value(&mut p)?),
            Some(other) => return Err(other.unexpected().into()),
        }
    }
}

fn parse_remove(argv: &[OsString]) -> Result<Command, Usage> {
    let mut dir = None;
    let mut p = cli::parser(argv.iter().cloned());
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            Value(v) => {
                return Err(
                    format!("one directory expected, not also {}", v.to_string_lossy()).into(),
                )
            }
            other => return Err(other.unexpected().into()),
        }
    }
    dir.map(Command::Remove)
        .ok_or_else(|| "one directory expected".into())
}

/// `[--id ID] --fd N [--log LEVEL]` alone.
#[cfg(test)]
fn parse_instance_args(argv: &[OsString]) -> Result<(Option<u32>, i32, Option<String>), String> {
    match parse_instance(argv) {
        Ok(Command::Instance(i)) => Ok((i.id, i.fd, i.log)),
        Ok(other) => Err(format!("not an instance: {other:?}")),
        Err(e) => Err(e.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn instance_arguments() {
        assert_eq!(
            parse_instance_args(&v(&["--id", "3", "--fd", "5"])),
            Ok((Some(3), 5, None))
        );
        assert_eq!(
            parse_instance_args(&v(&["--fd", "5", "--id", "3", "--log", "debug"])),
            Ok((Some(3), 5, Some("debug".into())))
        );
        // A spare: no id until its parameters come.
        assert_eq!(
            parse_instance_args(&v(&["--fd", "5", "--log", "info"])),
            Ok((None, 5, Some("info".into())))
        );
        assert!(parse_instance_args(&v(&["--id", "x", "--fd", "5"])).is_err());
        assert!(parse_instance_args(&v(&["--id", "3"])).is_err());
        assert!(parse_instance_args(&v(&["--bogus"])).is_err());
    }

    #[test]
    fn exec_and_remove_arguments() {
        let Ok(Command::Exec(e)) = parse(&v(&[
            "exec", "--hold", "4", "--cgroup", "/c", "--user", "u", "--", "sh", "-c", "--",
        ])) else {
            panic!("not exec")
        };
        assert_eq!(e.hold.as_deref(), Some("4"));
        assert_eq!(e.cgroup, Some(PathBuf::from("/c")));
        assert_eq!(e.user.as_deref(), Some("u"));
        assert_eq!(e.command, v(&["sh", "-c", "--"]));
        for bad in [
            v(&["exec"]),
            v(&["exec", "--"]),
            v(&["exec", "--bogus", "--", "sh"]),
            v(&["exec", "sh"]),
            v(&["remove"]),
            v(&["remove", "a", "b"]),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&v(&["remove", "/run/x"])),
            Ok(Command::Remove(PathBuf::from("/run/x")))
        );
        assert_eq!(parse(&v(&["--help"])), Ok(Command::Help));
        assert_eq!(parse(&v(&["exec", "--help"])), Ok(Command::Help));
    }
}
