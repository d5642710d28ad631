//! What smss, smctl and smss-session share about their command lines: one parser (`lexopt`:
//! no dependencies, `OsString` in and out, so a container's command stays bytes), one way to
//! say "usage error" (exit 2, `PROG: message` and the usage on stderr), one way to answer
//! `--help` (the usage on stdout, exit 0), and one reading of `--`.

use std::ffi::OsString;

pub use lexopt::{Arg, Parser, ValueExt};

/// Exit status of a usage error, in every binary.
pub const USAGE_EXIT: i32 = 2;

/// A usage error: what was wrong with the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Self {
        Usage(e.to_string())
    }
}

impl From<String> for Usage {
    fn from(s: String) -> Self {
        Usage(s)
    }
}

impl From<&str> for Usage {
    fn from(s: &str) -> Self {
        Usage(s.to_string())
    }
}

/// A parser over `argv` (without the program name).
pub fn parser<I: IntoIterator<Item = OsString>>(argv: I) -> Parser {
    Parser::from_args(argv)
}

/// When the next word is `--`: consume it and return everything after it, as given (possibly
/// nothing: the caller decides whether that is an error). `None` when the next word is not
/// `--` or the parser is half-way through a word.
pub fn after_double_dash(p: &mut Parser) -> Option<Vec<OsString>> {
    let mut raw = p.try_raw_args()?;
    raw.next_if(|a| a == "--")?;
    Some(raw.collect())
}

/// Like [`after_double_dash`], but `--` with nothing after it is a usage error.
pub fn command_after_double_dash(p: &mut Parser) -> Result<Option<Vec<OsString>>, Usage> {
    match after_double_dash(p) {
        Some(cmd) if cmd.is_empty() => Err(Usage("-- needs a command".into())),
        other => Ok(other),
    }
}

/// The value of the option just read, as a UTF-8 string.
pub fn string_value(p: &mut Parser) -> Result<String, Usage> {
    Ok(p.value()?.string()?)
}

/// The value of the option `flag` just read, parsed (`--id x`: "--id: cannot parse ...").
pub fn parsed_value<T>(p: &mut Parser, flag: &str) -> Result<T, Usage>
where
    T: std::str::FromStr,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    p.value()?
        .parse()
        .map_err(|e: lexopt::Error| Usage(format!("{flag}: {e}")))
}

/// Print `prog: message` and the usage on stderr; the exit status to use.
pub fn usage_error(prog: &str, e: &Usage, usage: &str) -> i32 {
    eprintln!("{prog}: {e}\n{usage}");
    USAGE_EXIT
}

/// Print the usage on stdout (`--help`); the exit status to use.
pub fn help(usage: &str) -> i32 {
    println!("{usage}");
    0
}

/// The words the parser has not consumed yet (for a subcommand's own parser).
pub fn rest(p: &mut Parser) -> Result<Vec<OsString>, Usage> {
    Ok(p.raw_args()?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Parser {
        parser(s.iter().map(OsString::from))
    }

    #[test]
    fn double_dash_ends_options_and_keeps_the_rest_as_given() {
        let mut q = p(&["--", "-x", "--", "y"]);
        assert_eq!(
            after_double_dash(&mut q),
            Some(vec!["-x".into(), "--".into(), "y".into()])
        );
        let mut q = p(&["--"]);
        assert!(command_after_double_dash(&mut q).is_err());
        let mut q = p(&["-a"]);
        assert_eq!(after_double_dash(&mut q), None);
        assert!(matches!(q.next(), Ok(Some(Arg::Short('a')))));
    }

    #[test]
    fn errors_name_the_option() {
        let mut q = p(&["--bogus"]);
        let Ok(Some(arg)) = q.next() else {
            panic!("no arg")
        };
        let e = Usage::from(arg.unexpected());
        assert!(e.0.contains("--bogus"), "{e}");
        let mut q = p(&["--id", "x"]);
        let _ = q.next();
        let e = parsed_value::<u32>(&mut q, "--id").unwrap_err();
        assert!(e.0.contains("--id") && e.0.contains('x'), "{e}");
        let mut q = p(&["--id"]);
        let _ = q.next();
        let e = parsed_value::<u32>(&mut q, "--id").unwrap_err();
        assert!(e.0.contains("--id"), "{e}");
    }
}
