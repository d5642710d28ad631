//! `%VAR%` expansion and the ordered environment builder (research §4).

use std::collections::HashMap;

/// The kernel's `MAX_ARG_STRLEN`: the most bytes one argv or envp string may take, its NUL
/// included (execve fails with E2BIG past it).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// The most bytes the whole environment may take, counted as execve counts it: each
/// `NAME=VALUE` string, its NUL and its pointer in envp (8 bytes). Half of the usual `ARG_MAX`
/// (a quarter of the 8 MiB stack limit), so the argument strings keep the other half.
pub const MAX_ENVIRONMENT_SIZE: usize = 1 << 20;

/// What execve counts for one variable: `NAME=VALUE`, its NUL, its envp pointer.
pub fn variable_cost(name: &str, value: &str) -> usize {
    name.len() + 1 + value.len() + 1 + std::mem::size_of::<u64>()
}

/// An expansion that would be longer than its limit: nothing was allocated past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expands to more than {limit} bytes")]
pub struct TooLong {
    pub limit: usize,
}

/// Why [`Environment::apply`] left a variable out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `NAME=VALUE` would not fit in one execve string.
    #[error("expanded, `{name}=VALUE` would be longer than {max} bytes, the most one variable may take (the kernel's MAX_ARG_STRLEN, {MAX_ARG_STRLEN} with the NUL)", max = MAX_ARG_STRLEN - 1)]
    VariableTooLong { name: String },
    /// The environment as a whole would pass [`MAX_ENVIRONMENT_SIZE`].
    #[error("the environment would be larger than {MAX_ENVIRONMENT_SIZE} bytes (each NAME=VALUE, its NUL and its 8-byte pointer, as execve counts them)")]
    EnvironmentFull { name: String },
}

impl EnvError {
    /// The variable that was left out.
    pub fn name(&self) -> &str {
        match self {
            EnvError::VariableTooLong { name } | EnvError::EnvironmentFull { name } => name,
        }
    }
}

/// Expands `%NAME%` references, the way Windows' `RtlExpandEnvironmentStrings_U` does, into
/// one argv string: the result may be at most `MAX_ARG_STRLEN - 1` bytes (see [`expand_within`]).
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
pub fn expand<V: AsRef<str>>(
    s: &str,
    lookup: impl Fn(&str) -> Option<V>,
) -> Result<String, TooLong> {
    expand_within(s, lookup, MAX_ARG_STRLEN - 1)
}

/// [`expand`] with an explicit limit: `Err` as soon as the result would pass `limit` bytes, so
/// no input (a chain of variables that each double the last) makes it allocate more than that.
pub fn expand_within<V: AsRef<str>>(
    s: &str,
    lookup: impl Fn(&str) -> Option<V>,
    limit: usize,
) -> Result<String, TooLong> {
    let mut out = String::with_capacity(s.len().min(limit));
    let push = |out: &mut String, piece: &str| {
        if out.len().saturating_add(piece.len()) > limit {
            return Err(TooLong { limit });
        }
        out.push_str(piece);
        Ok(())
    };
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        push(&mut out, rest.get(..start).unwrap_or(""))?;
        let after = rest.get(start + 1..).unwrap_or("");
        if let Some(end) = after.find('%') {
            let name = after.get(..end).unwrap_or("");
            if !name.is_empty() {
                if let Some(value) = lookup(name) {
                    push(&mut out, value.as_ref())?;
                    rest = after.get(end + 1..).unwrap_or("");
                    continue;
                }
            }
        }
        push(&mut out, "%")?;
        rest = after;
    }
    push(&mut out, rest)?;
    Ok(out)
}

/// An ordered environment, built the way smss builds `SmpDefaultEnvironment`: each variable is
/// expanded against the variables set so far (so forward references stay literal), and setting
/// an existing name replaces its value in place (the variable keeps its position).
///
/// [`apply`](Environment::apply) keeps every variable within the kernel's exec limits
/// ([`MAX_ARG_STRLEN`] per `NAME=VALUE`, [`MAX_ENVIRONMENT_SIZE`] in all) and leaves out one
/// that does not fit; [`set`](Environment::set) (the inherited environment, generated facts)
/// does not check, but is counted.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: Vec<(String, String)>,
    /// name -> index in `vars`, so building a large environment stays linear. Built once there
    /// are more than [`INDEX_FROM`] variables, then kept for good; a smaller environment (a
    /// container's few, a shell's few dozen) is scanned, which costs PID 1 no second copy of
    /// every name, no hashing and no `getrandom` for the hash keys at start-up.
    index: Option<HashMap<String, usize>>,
    /// Sum of [`variable_cost`] over `vars`.
    size: usize,
}

/// Above this many variables, names are looked up through an index instead of a scan.
const INDEX_FROM: usize = 64;

/// Equal when the variables and their order are (the index is a cache).
impl PartialEq for Environment {
    fn eq(&self, other: &Self) -> bool {
        self.vars == other.vars
    }
}

impl Eq for Environment {}

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

    /// Expands `raw_value` against the current variables, then sets `name`. When the result
    /// would not fit ([`EnvError`]), nothing changes: the variable is left out (or keeps its
    /// old value), and the expansion stopped at the limit, so nothing large was allocated.
    pub fn apply(&mut self, name: &str, raw_value: &str) -> Result<(), EnvError> {
        let limit = (MAX_ARG_STRLEN - 1).saturating_sub(name.len() + 1);
        let value = expand_within(raw_value, |n| self.get(n), limit).map_err(|_| {
            EnvError::VariableTooLong {
                name: name.to_owned(),
            }
        })?;
        if name.len() + 1 > MAX_ARG_STRLEN - 1 {
            return Err(EnvError::VariableTooLong {
                name: name.to_owned(),
            });
        }
        let old = self.get(name).map_or(0, |v| variable_cost(name, v));
        if self.size.saturating_sub(old) + variable_cost(name, &value) > MAX_ENVIRONMENT_SIZE {
            return Err(EnvError::EnvironmentFull {
                name: name.to_owned(),
            });
        }
        self.set(name, value);
        Ok(())
    }

    /// Sets `name` to `value` without expansion; replaces in place when it exists.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        let cost = variable_cost(name, &value);
        match self.position(name).and_then(|i| self.vars.get_mut(i)) {
            Some(slot) => {
                self.size = self.size.saturating_sub(variable_cost(name, &slot.1)) + cost;
                slot.1 = value;
            }
            None => {
                if let Some(index) = self.index.as_mut() {
                    index.insert(name.to_owned(), self.vars.len());
                }
                self.vars.push((name.to_owned(), value));
                self.size += cost;
                if self.index.is_none() && self.vars.len() > INDEX_FROM {
                    let index = self
                        .vars
                        .iter()
                        .enumerate()
                        .map(|(i, (n, _))| (n.clone(), i))
                        .collect();
                    self.index = Some(index);
                }
            }
        }
    }

    /// Where `name` is in `vars`.
    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.vars.iter().position(|(n, _)| n == name),
        }
    }

    /// Removes `name`; returns its value if it was set.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.position(name)?;
        if i >= self.vars.len() {
            return None;
        }
        let (_, value) = self.vars.remove(i);
        self.size = self.size.saturating_sub(variable_cost(name, &value));
        if let Some(index) = self.index.as_mut() {
            index.remove(name);
            for j in index.values_mut() {
                if *j > i {
                    *j -= 1;
                }
            }
        }
        Some(value)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name)
            .and_then(|i| self.vars.get(i))
            .map(|(_, v)| v.as_str())
    }

    /// Expands `%VAR%` in `s` against this environment into one argv string (see [`expand`]).
    pub fn expand(&self, s: &str) -> Result<String, TooLong> {
        expand(s, |name| self.get(name))
    }

    /// What execve would count for this environment ([`variable_cost`] summed).
    pub fn size(&self) -> usize {
        self.size
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

    /// Across the size where the index is built, lookups, replacements in place and removals
    /// agree with a plain list.
    #[test]
    fn scanned_and_indexed_environments_agree() {
        let mut e = Environment::default();
        let mut model: Vec<(String, String)> = Vec::new();
        for i in 0..(INDEX_FROM * 2) {
            let (n, v) = (format!("V{}", i % (INDEX_FROM + 10)), format!("{i}"));
            e.set(&n, v.clone());
            match model.iter_mut().find(|(m, _)| *m == n) {
                Some(slot) => slot.1 = v,
                None => model.push((n, v)),
            }
            if i % 7 == 3 {
                let gone = format!("V{}", i / 2);
                let had = model.iter().position(|(m, _)| *m == gone);
                let want = had.map(|p| model.remove(p).1);
                assert_eq!(e.remove(&gone), want, "remove {gone} at step {i}");
            }
            assert_eq!(e.vars(), &model[..], "step {i}");
            for (n, v) in &model {
                assert_eq!(e.get(n), Some(v.as_str()), "get {n} at step {i}");
            }
            assert_eq!(e.get("absent"), None);
            let size: usize = model.iter().map(|(n, v)| variable_cost(n, v)).sum();
            assert_eq!(e.size(), size);
        }
        assert!(e.index.is_some(), "a large environment is indexed");
        assert!(Environment::new(vec![("A".into(), "1".into())])
            .index
            .is_none());
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn x(s: &str, e: &Environment) -> String {
        e.expand(s).unwrap()
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
        e.apply("TEMP", "%ROOT%/tmp").unwrap();
        e.apply("ROOT", "/srv").unwrap();
        e.apply("LOG", "%ROOT%/log").unwrap();
        assert_eq!(e.get("TEMP"), Some("%ROOT%/tmp"));
        assert_eq!(e.get("LOG"), Some("/srv/log"));
    }

    #[test]
    fn replace_in_place() {
        let mut e = env(&[("HOME", "/"), ("TERM", "linux")]);
        e.apply("PATH", "/bin").unwrap();
        e.apply("HOME", "/root").unwrap();
        e.apply("PATH", "/sbin:%PATH%").unwrap();
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
        e.apply("TERM", "vt100").unwrap();
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

    #[test]
    fn doubling_chain_stops_at_the_limit_and_skips_the_variable() {
        let mut e = Environment::default();
        e.apply("V0", &"x".repeat(1024)).unwrap();
        let mut skipped = Vec::new();
        for i in 1..40 {
            let raw = format!("%V{p}%%V{p}%", p = i - 1);
            if let Err(err) = e.apply(&format!("V{i}"), &raw) {
                skipped.push(err);
            }
        }
        // V8 = "%V7%%V7%" stays literal (8 bytes), so the doubling restarts from there.
        let names: Vec<&str> = skipped.iter().map(EnvError::name).collect();
        assert_eq!(names, ["V7", "V22", "V37"]);
        assert!(matches!(skipped[0], EnvError::VariableTooLong { .. }));
        assert_eq!(e.get("V6").map(str::len), Some(64 * 1024));
        assert_eq!(e.get("V7"), None);
        assert_eq!(e.get("V8"), Some("%V7%%V7%"));
        let recount: usize = e.vars().iter().map(|(n, v)| variable_cost(n, v)).sum();
        assert_eq!(e.size(), recount);
        assert!(e.size() <= MAX_ENVIRONMENT_SIZE);
    }

    #[test]
    fn per_variable_limit_is_exact() {
        let mut e = Environment::default();
        // `A=` + value + NUL = MAX_ARG_STRLEN exactly.
        let fits = "v".repeat(MAX_ARG_STRLEN - 3);
        e.apply("A", &fits).unwrap();
        let err = e.apply("B", &format!("{fits}w")).unwrap_err();
        assert_eq!(err.name(), "B");
        // A failed apply keeps the old value.
        assert_eq!(e.apply("A", "%A%%A%").unwrap_err().name(), "A");
        assert_eq!(e.get("A").map(str::len), Some(fits.len()));
    }

    #[test]
    fn whole_environment_limit() {
        let mut e = Environment::default();
        let v = "z".repeat(100 * 1024);
        let mut n = 0;
        while e.apply(&format!("N{n}"), &v).is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(matches!(
            e.apply("N10", &v),
            Err(EnvError::EnvironmentFull { .. })
        ));
        // Replacing a value counts only the difference.
        e.apply("N0", "small").unwrap();
        e.apply("N10", &v).unwrap();
        e.remove("N10");
        let recount: usize = e.vars().iter().map(|(n, v)| variable_cost(n, v)).sum();
        assert_eq!(e.size(), recount);
    }

    #[test]
    fn argv_expansion_is_bounded() {
        let e = env(&[("A", &"a".repeat(100 * 1024))]);
        assert_eq!(
            e.expand("%A%%A%"),
            Err(TooLong {
                limit: MAX_ARG_STRLEN - 1
            })
        );
        assert_eq!(
            expand_within("abc%A%", |_| Some("xyz"), 6).unwrap(),
            "abcxyz"
        );
        assert!(expand_within("abc%A%", |_| Some("xyz"), 5).is_err());
        assert!(expand_within("%%%%%%", |_: &str| None::<&str>, 5).is_err());
    }
}
