//! `%VAR%` expansion and the ordered environment builder (research §4).

use std::collections::HashMap;

/// Expands `%NAME%` references, the way Windows' `RtlExpandEnvironmentStrings_U` does.
///
/// Scanning goes left to right. At a `%`, the text up to the next `%` is a name; if `lookup`
/// knows it, the whole `%NAME%` is replaced by its value and scanning resumes after the closing
/// `%`. Otherwise (unknown name, empty name as in `%%`, or no closing `%`) only that one `%` is
/// copied literally and scanning resumes right after it, so the closing `%` may open the next
/// reference. Consequences:
/// - `%A%%B%` expands both;
/// - an unknown `%X%` stays literally `%X%`, including both `%` signs;
/// - a lone `%` stays; `%%` is *not* an escape (Windows has none): `%%` stays `%%`, while
///   `%%A%` becomes `%` followed by the value of `A`;
/// - values are not rescanned, so a value containing `%B%` is inserted as is.
///
/// Names are looked up exactly as written (case-sensitive, as environment names are on Linux).
pub fn expand(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + 1..).unwrap_or("");
        if let Some(end) = after.find('%') {
            let name = after.get(..end).unwrap_or("");
            if !name.is_empty() {
                if let Some(value) = lookup(name) {
                    out.push_str(&value);
                    rest = after.get(end + 1..).unwrap_or("");
                    continue;
                }
            }
        }
        out.push('%');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// An ordered environment, built the way smss builds `SmpDefaultEnvironment`: each variable is
/// expanded against the variables set so far (so forward references stay literal), and setting
/// an existing name replaces its value in place (the variable keeps its position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
    /// name -> index in `vars`, so building a large environment stays linear.
    index: HashMap<String, usize>,
}

impl Environment {
    /// Starts from `base` (typically the kernel-given environment). A name repeated in `base`
    /// keeps its first position and its last value.
    pub fn new(base: Vec<(String, String)>) -> Self {
        let mut env = Environment::default();
        for (name, value) in base {
            env.set(&name, value);
        }
        env
    }

    /// Expands `raw_value` against the current variables, then sets `name`.
    pub fn apply(&mut self, name: &str, raw_value: &str) {
        let value = self.expand(raw_value);
        self.set(name, value);
    }

    /// Sets `name` to `value` without expansion; replaces in place when it exists.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.index.get(name).and_then(|i| self.vars.get_mut(*i)) {
            Some(slot) => slot.1 = value,
            None => {
                self.index.insert(name.to_owned(), self.vars.len());
                self.vars.push((name.to_owned(), value));
            }
        }
    }

    /// Removes `name`; returns its value if it was set.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.index.remove(name)?;
        if i >= self.vars.len() {
            return None;
        }
        let (_, value) = self.vars.remove(i);
        for j in self.index.values_mut() {
            if *j > i {
                *j -= 1;
            }
        }
        Some(value)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.index
            .get(name)
            .and_then(|i| self.vars.get(*i))
            .map(|(_, v)| v.as_str())
    }

    /// Expands `%VAR%` in `s` against this environment (see [`expand`]).
    pub fn expand(&self, s: &str) -> String {
        expand(s, |name| self.get(name).map(str::to_owned))
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }

    /// `NAME=VALUE` strings in order, ready for `execve`'s envp.
    pub fn to_envp(&self) -> Vec<String> {
        self.vars.iter().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn x(s: &str, e: &Environment) -> String {
        e.expand(s)
    }

    #[test]
    fn basic_and_adjacent() {
        let e = env(&[("A", "1"), ("B", "2")]);
        assert_eq!(x("%A%", &e), "1");
        assert_eq!(x("%A%%B%", &e), "12");
        assert_eq!(x("x%A%y%B%z", &e), "x1y2z");
    }

    #[test]
    fn unknown_stays_literal() {
        let e = env(&[("A", "1")]);
        assert_eq!(x("%NOPE%", &e), "%NOPE%");
        assert_eq!(x("%NOPE%%A%", &e), "%NOPE%1");
        assert_eq!(x("%NOPE%A%", &e), "%NOPE1");
    }

    #[test]
    fn lone_and_double_percent() {
        let e = env(&[("A", "1")]);
        assert_eq!(x("%", &e), "%");
        assert_eq!(x("100%", &e), "100%");
        assert_eq!(x("%%", &e), "%%");
        assert_eq!(x("%%A%", &e), "%1");
        // The ` of ` between the first two `%` is an unknown name, so only the first `%` is
        // consumed and the second one opens `%A%`.
        assert_eq!(x("50% of %A%", &e), "50% of 1");
    }

    #[test]
    fn case_sensitive_and_not_rescanned() {
        let e = env(&[("A", "%B%"), ("B", "2")]);
        assert_eq!(x("%a%", &e), "%a%");
        assert_eq!(x("%A%", &e), "%B%");
    }

    #[test]
    fn forward_reference_stays_literal() {
        let mut e = Environment::default();
        e.apply("TEMP", "%ROOT%/tmp");
        e.apply("ROOT", "/srv");
        e.apply("LOG", "%ROOT%/log");
        assert_eq!(e.get("TEMP"), Some("%ROOT%/tmp"));
        assert_eq!(e.get("LOG"), Some("/srv/log"));
    }

    #[test]
    fn replace_in_place() {
        let mut e = env(&[("HOME", "/"), ("TERM", "linux")]);
        e.apply("PATH", "/bin");
        e.apply("HOME", "/root");
        e.apply("PATH", "/sbin:%PATH%");
        assert_eq!(
            e.vars(),
            &[
                ("HOME".to_string(), "/root".to_string()),
                ("TERM".to_string(), "linux".to_string()),
                ("PATH".to_string(), "/sbin:/bin".to_string()),
            ]
        );
        assert_eq!(e.to_envp(), ["HOME=/root", "TERM=linux", "PATH=/sbin:/bin"]);
        assert_eq!(e.remove("TERM").as_deref(), Some("linux"));
        assert_eq!(e.get("TERM"), None);
        assert_eq!(e.get("PATH"), Some("/sbin:/bin"));
        e.apply("TERM", "vt100");
        assert_eq!(e.to_envp(), ["HOME=/root", "PATH=/sbin:/bin", "TERM=vt100"]);
        assert_eq!(e.remove("NOPE"), None);
    }

    #[test]
    fn base_duplicates_keep_first_position_last_value() {
        let e = env(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(e.to_envp(), ["A=3", "B=2"]);
    }

    #[test]
    fn multibyte() {
        let e = env(&[("Ä", "ü")]);
        assert_eq!(x("č%Ä%č%", &e), "čüč%");
    }
}
