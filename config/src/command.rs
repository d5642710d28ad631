//! Command lines of smss-launched programs: the smss string grammar and the table form.

use std::time::Duration;

use crate::duration::format_duration;

/// How a started program reports that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ready {
    /// Ready as soon as `execve` succeeded.
    #[default]
    Exec,
    /// Ready when it says so on its notify socket (`READY=1`, the sd_notify protocol).
    Notify,
}

impl Ready {
    pub fn as_str(self) -> &'static str {
        match self {
            Ready::Exec => "exec",
            Ready::Notify => "notify",
        }
    }
}

/// One command smss starts: boot-execute, setup-execute, execute, a subsystem or an initial command.
///
/// Values are raw: `%VAR%` references are expanded by the executor when the command is started
/// (see [`crate::expand`]), because the environment is only known then. Expansion is done per
/// argument, after splitting, so a value containing spaces stays one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Program and arguments; never empty, `argv[0]` never empty.
    pub argv: Vec<String>,
    /// `autocheck`: a missing program is a warning and the command is skipped (Windows autochk rule).
    pub autocheck: bool,
    /// `async`: do not wait for the program to exit.
    pub async_: bool,
    /// `debug`: accepted for compatibility (Windows sets the process' debug flags); the executor
    /// may raise the log level for this command.
    pub debug: bool,
    pub ready: Ready,
    /// How long to wait for readiness; `None` = the executor's default.
    pub ready_timeout: Option<Duration>,
    /// `None` = the phase's default (required subsystems and the session-0 initial command are
    /// critical, everything else is not).
    pub critical: Option<bool>,
    /// Boot-execute only: a non-zero exit stops the boot (a deliberate extension; Windows ignores
    /// BootExecute exit codes).
    pub fatal: bool,
}

impl CommandSpec {
    /// A plain command with every flag at its default.
    pub fn new(argv: Vec<String>) -> Self {
        CommandSpec {
            argv,
            autocheck: false,
            async_: false,
            debug: false,
            ready: Ready::Exec,
            ready_timeout: None,
            critical: None,
            fatal: false,
        }
    }

    /// The program (`argv[0]`), or "" for a hand-built empty spec.
    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// `critical` if given, else the phase's default.
    pub fn is_critical(&self, default: bool) -> bool {
        self.critical.unwrap_or(default)
    }

    /// One line for the plan printout and logs: the smss-grammar string (keywords, program,
    /// arguments), followed by the table-only attributes in brackets when they differ from the
    /// defaults. An argument that is empty or contains whitespace is shown quoted, since the
    /// string grammar cannot express it. For commands that the string grammar can express,
    /// `parse_command_line(&spec.display_line()) == Ok(spec)`.
    pub fn display_line(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if self.autocheck {
            words.push("autocheck".into());
        }
        if self.async_ {
            words.push("async".into());
        }
        if self.debug {
            words.push("debug".into());
        }
        for arg in &self.argv {
            if arg.is_empty() || arg.chars().any(is_separator) {
                words.push(format!("{arg:?}"));
            } else {
                words.push(arg.clone());
            }
        }
        let mut attrs: Vec<String> = Vec::new();
        if self.ready != Ready::Exec {
            attrs.push(format!("ready={}", self.ready.as_str()));
        }
        if let Some(t) = self.ready_timeout {
            attrs.push(format!("ready-timeout={}", format_duration(t)));
        }
        if let Some(c) = self.critical {
            attrs.push(format!("critical={c}"));
        }
        if self.fatal {
            attrs.push("fatal".into());
        }
        let mut line = words.join(" ");
        if !attrs.is_empty() {
            line.push_str(&format!(" [{}]", attrs.join(", ")));
        }
        line
    }
}

/// A token separator in the smss grammar: any character `<= ' '` (ReactOS `SmpParseToken`).
fn is_separator(c: char) -> bool {
    c <= ' '
}

/// Parses a command line in smss grammar (research §7): leading keywords `autocheck`, `async`,
/// `debug` in any order, case-insensitive, repeatable; then the program; then the arguments,
/// split on any run of characters `<= ' '`. There is no quoting; a program literally named like a
/// keyword must be given with a path (`./debug`) or in table form.
///
/// Errors: an empty (or all-blank) line, and a line of keywords only.
pub fn parse_command_line(s: &str) -> Result<CommandSpec, String> {
    let mut spec = CommandSpec::new(Vec::new());
    let mut tokens = s.split(is_separator).filter(|t| !t.is_empty()).peekable();
    if tokens.peek().is_none() {
        return Err("empty command line".into());
    }
    for token in tokens {
        if spec.argv.is_empty() {
            if token.eq_ignore_ascii_case("autocheck") {
                spec.autocheck = true;
                continue;
            }
            if token.eq_ignore_ascii_case("async") {
                spec.async_ = true;
                continue;
            }
            if token.eq_ignore_ascii_case("debug") {
                spec.debug = true;
                continue;
            }
        }
        spec.argv.push(token.to_owned());
    }
    if spec.argv.is_empty() {
        return Err(format!(
            "command line `{}` has keywords but no program",
            s.trim_matches(is_separator)
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain() {
        let c = parse_command_line("/sbin/fsck -p -A").unwrap();
        assert_eq!(c.argv, argv(&["/sbin/fsck", "-p", "-A"]));
        assert!(!c.autocheck && !c.async_ && !c.debug);
    }

    #[test]
    fn keywords_any_order_mixed_case_repeated() {
        let c = parse_command_line("  ASYNC AutoCheck async\tdEbUg fsck *").unwrap();
        assert!(c.autocheck && c.async_ && c.debug);
        assert_eq!(c.argv, argv(&["fsck", "*"]));
    }

    #[test]
    fn keywords_only_after_program_are_arguments() {
        let c = parse_command_line("prog async debug").unwrap();
        assert_eq!(c.argv, argv(&["prog", "async", "debug"]));
        assert!(!c.async_ && !c.debug);
    }

    #[test]
    fn separators_are_any_char_up_to_space() {
        let c = parse_command_line("a\u{1}b\r\nc\u{0}d").unwrap();
        assert_eq!(c.argv, argv(&["a", "b", "c", "d"]));
    }

    #[test]
    fn no_quoting() {
        let c = parse_command_line(r#"echo "a b""#).unwrap();
        assert_eq!(c.argv, argv(&["echo", "\"a", "b\""]));
    }

    #[test]
    fn empty_and_keyword_only() {
        assert_eq!(parse_command_line("").unwrap_err(), "empty command line");
        assert_eq!(
            parse_command_line(" \t ").unwrap_err(),
            "empty command line"
        );
        assert_eq!(
            parse_command_line(" autocheck Async ").unwrap_err(),
            "command line `autocheck Async` has keywords but no program"
        );
    }

    #[test]
    fn display_round_trip() {
        for line in ["a", "autocheck fsck -p -A", "autocheck async debug x y z"] {
            let c = parse_command_line(line).unwrap();
            assert_eq!(c.display_line(), line);
            assert_eq!(parse_command_line(&c.display_line()), Ok(c));
        }
    }

    #[test]
    fn display_table_attributes() {
        let mut c = CommandSpec::new(argv(&["/usr/libexec/posixd", "a b", ""]));
        c.ready = Ready::Notify;
        c.ready_timeout = Some(Duration::from_secs(60));
        c.critical = Some(false);
        c.fatal = true;
        assert_eq!(
            c.display_line(),
            r#"/usr/libexec/posixd "a b" "" [ready=notify, ready-timeout=1m, critical=false, fatal]"#
        );
    }
}
