//! modules.alias and modules.softdep as depmod(8) writes them, parsed tolerantly (a malformed
//! line is one warning, never an error) and bounded, plus the fnmatch(3)-style glob matcher
//! that modprobe uses to match a device's `modalias` against the aliases.

use std::collections::BTreeMap;

/// Lines longer than this are malformed (the longest alias in a Debian kernel is ~200 bytes).
pub const MAX_LINE: usize = 4096;
/// At most this many entries are kept from one file (Debian 6.1 has ~26 000 aliases).
pub const MAX_ENTRIES: usize = 262_144;
/// At most this many malformed lines are described one by one; the rest are counted.
pub const MAX_WARNINGS: usize = 16;

/// Malformed lines of a parsed file: the first [`MAX_WARNINGS`] described, all counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Warnings {
    pub described: Vec<String>,
    pub total: usize,
}

impl Warnings {
    pub fn add(&mut self, file: &str, line: usize, why: &str) {
        self.total += 1;
        if self.described.len() < MAX_WARNINGS {
            self.described.push(format!("{file}:{line}: {why}"));
        }
    }

    /// The lines to log: one per described problem, one more for those left undescribed.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.described.clone();
        if self.total > self.described.len() {
            out.push(format!(
                "{} more malformed lines not shown",
                self.total - self.described.len()
            ));
        }
        out
    }
}

/// Split a file into (1-based number, line) pairs, skipping blank lines and `#` comments and
/// reporting over-long lines.
fn content_lines<'a>(text: &'a str, file: &str, warnings: &mut Warnings) -> Vec<(usize, &'a str)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_LINE {
            warnings.add(file, i + 1, "line too long, ignored");
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// `virtio-blk` and `virtio_blk` are the same module to the kernel and to modprobe.
pub fn underscores(s: &str) -> String {
    s.replace('-', "_")
}

/// modules.alias: `alias PATTERN MODULE` per line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AliasTable {
    /// Patterns without wildcards: looked up directly (`fs-ext4`, `crypto-crc32c`).
    exact: BTreeMap<String, Vec<String>>,
    /// Patterns with wildcards, grouped by their bus (the text before the first `:` when that
    /// has no wildcard, else ""), each with its literal prefix for a cheap first test.
    globs: BTreeMap<String, Vec<Glob>>,
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    pattern: String,
    prefix_len: usize,
    module: String,
}

fn is_wild(c: char) -> bool {
    matches!(c, '*' | '?' | '[' | '\\')
}

impl AliasTable {
    pub fn parse(text: &str) -> (AliasTable, Warnings) {
        let mut warnings = Warnings::default();
        let mut table = AliasTable::default();
        for (n, line) in content_lines(text, "modules.alias", &mut warnings) {
            let mut words = line.split_whitespace();
            let (Some("alias"), Some(pattern), Some(module), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                warnings.add(
                    "modules.alias",
                    n,
                    "expected `alias PATTERN MODULE`, ignored",
                );
                continue;
            };
            if table.len >= MAX_ENTRIES {
                warnings.add("modules.alias", n, "too many aliases, the rest ignored");
                break;
            }
            table.insert(pattern.to_string(), underscores(module));
        }
        (table, warnings)
    }

    fn insert(&mut self, pattern: String, module: String) {
        self.len += 1;
        let prefix_len = pattern.find(is_wild).unwrap_or(pattern.len());
        if prefix_len == pattern.len() {
            let mods = self.exact.entry(pattern).or_default();
            if !mods.contains(&module) {
                mods.push(module);
            }
            return;
        }
        let bus = match pattern.find(':') {
            Some(i) if i <= prefix_len => pattern[..i].to_string(),
            _ => String::new(),
        };
        self.globs.entry(bus).or_default().push(Glob {
            pattern,
            prefix_len,
            module,
        });
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The modules whose aliases match `name` (a modalias or an alias such as `fs-ext4`), each
    /// once, in file order of their first matching alias (exact aliases first).
    pub fn lookup(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self.exact.get(name).cloned().unwrap_or_default();
        let bus = name.split_once(':').map(|(b, _)| b).unwrap_or("");
        let groups = [self.globs.get(bus), self.globs.get("")];
        for g in groups.into_iter().flatten() {
            for glob in g {
                if name.starts_with(&glob.pattern[..glob.prefix_len])
                    && glob_match(&glob.pattern, name)
                    && !out.contains(&glob.module)
                {
                    out.push(glob.module.clone());
                }
            }
        }
        out
    }
}

/// fnmatch(3) without flags, as modprobe matches aliases: `*` any run, `?` one character,
/// `[abc]`, `[a-z]`, `[!a]`/`[^a]` classes, `\x` a literal x. Linear-time backtracking (only the
/// last `*` is revisited), so no input makes it slow.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&tc) = t.get(ti) {
        let rest = p.get(pi..).unwrap_or_default();
        let step = match rest {
            ['*', ..] => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            ['?', ..] => Some(1),
            ['[', ..] => match class(rest, tc) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                // An unterminated `[` is a literal, as in fnmatch.
                None => (tc == '[').then_some(1),
            },
            ['\\', next, ..] => (*next == tc).then_some(2),
            [c, ..] => (*c == tc).then_some(1),
            [] => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p` tested against `c`: (matched, length of the class in
/// `p`), or None when the class is not terminated.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let range_hi = match (p.get(i + 1), p.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => Some(hi),
            _ => None,
        };
        if let Some(hi) = range_hi {
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// modules.softdep: `softdep MODULE pre: A B post: C` per line; only the `pre:` modules matter
/// to loading (they load before MODULE). Names may be aliases (`crypto-crc32c`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SoftdepTable {
    pub pre: BTreeMap<String, Vec<String>>,
}

impl SoftdepTable {
    pub fn parse(text: &str) -> (SoftdepTable, Warnings) {
        let mut warnings = Warnings::default();
        let mut table = SoftdepTable::default();
        let mut count = 0usize;
        for (n, line) in content_lines(text, "modules.softdep", &mut warnings) {
            let mut words = line.split_whitespace();
            let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
                warnings.add(
                    "modules.softdep",
                    n,
                    "expected `softdep MODULE pre: ... post: ...`, ignored",
                );
                continue;
            };
            let mut in_pre = false;
            for w in words {
                match w {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    name if in_pre && count < MAX_ENTRIES => {
                        count += 1;
                        let list = table.pre.entry(underscores(module)).or_default();
                        if !list.iter().any(|x| x == name) {
                            list.push(name.to_string());
                        }
                    }
                    // depmod also writes modinfo softdeps without pre:/post: (`softdep cifs
                    // gcm`); modprobe ignores words outside a section, and so do we.
                    _ => {}
                }
            }
        }
        (table, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"
        ));
        assert!(!glob_match(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00008086d00001001sv00001AF4sd00000002bc01sc00i00"
        ));
        assert!(glob_match(
            "virtio:d00000002v*",
            "virtio:d00000002v00001AF4"
        ));
        assert!(!glob_match(
            "virtio:d00000002v*",
            "virtio:d00000012v00001AF4"
        ));
        assert!(glob_match("scsi:t-0x00*", "scsi:t-0x00"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "ac"));
        assert!(glob_match(
            "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"
        ));
        assert!(glob_match("x[0-9A-F]y", "x7y") && glob_match("x[0-9A-F]y", "xBy"));
        assert!(!glob_match("x[0-9A-F]y", "xgy"));
        assert!(glob_match("x[!0-9]y", "xgy") && !glob_match("x[!0-9]y", "x5y"));
        assert!(glob_match("x[^a]y", "xby"));
        assert!(glob_match("x[]]y", "x]y"));
        assert!(glob_match("a[b", "a[b"), "an unterminated class is literal");
        assert!(glob_match(r"a\*b", "a*b") && !glob_match(r"a\*b", "axb"));
        assert!(glob_match("*", "") && glob_match("**", "abc"));
        assert!(!glob_match("", "a") && glob_match("", ""));
        assert!(glob_match("acpi*:LNRO0005:*", "acpi:LNRO0005:"));
        assert!(glob_match("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob_match("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    const ALIASES: &str = "\
# Aliases extracted from modules themselves.
alias fs-ext4 ext4
alias ext2 ext4
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias virtio:d00000008v* virtio_scsi
alias scsi:t-0x00* sd_mod
alias scsi:t-0x0e* sd_mod
alias crypto-crc32c crc32c_generic
alias crypto-crc32c crc32c-intel
alias acpi*:LNRO0005:* virtio_mmio
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb-storage
this is not an alias line
alias too many words here
alias
";

    #[test]
    fn aliases_parse_and_resolve() {
        let (t, w) = AliasTable::parse(ALIASES);
        assert_eq!(t.len(), 11);
        assert_eq!(w.total, 3, "{w:?}");
        assert_eq!(
            w.described[0],
            "modules.alias:13: expected `alias PATTERN MODULE`, ignored"
        );
        assert_eq!(t.lookup("fs-ext4"), ["ext4"]);
        assert_eq!(
            t.lookup("crypto-crc32c"),
            ["crc32c_generic", "crc32c_intel"]
        );
        assert_eq!(
            t.lookup("pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00"),
            ["virtio_pci"]
        );
        assert_eq!(t.lookup("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert_eq!(t.lookup("scsi:t-0x00"), ["sd_mod"]);
        assert_eq!(t.lookup("acpi:LNRO0005:"), ["virtio_mmio"]);
        assert_eq!(
            t.lookup("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"),
            ["usb_storage"]
        );
        assert!(t
            .lookup("pci:v00008086d00007000sv0000sd0000bc06sc01i00")
            .is_empty());
        assert!(t.lookup("").is_empty());
    }

    #[test]
    fn long_lines_and_many_warnings_are_bounded() {
        let mut text = format!("alias {} x\n", "a".repeat(MAX_LINE));
        for _ in 0..100 {
            text.push_str("junk\n");
        }
        let (t, w) = AliasTable::parse(&text);
        assert!(t.is_empty());
        assert_eq!(w.total, 101);
        assert_eq!(w.described[0], "modules.alias:1: line too long, ignored");
        let lines = w.lines();
        assert_eq!(lines.len(), MAX_WARNINGS + 1);
        assert_eq!(lines[MAX_WARNINGS], "85 more malformed lines not shown");
    }

    #[test]
    fn softdeps_keep_pre_only() {
        let (t, w) = SoftdepTable::parse(
            "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep cifs gcm\nsoftdep a-b pre: x y post: z pre: w\nbogus line\n",
        );
        assert_eq!(w.total, 1);
        assert_eq!(
            w.described[0],
            "modules.softdep:5: expected `softdep MODULE pre: ... post: ...`, ignored"
        );
        assert_eq!(t.pre["ext4"], ["crypto-crc32c"]);
        assert_eq!(t.pre["a_b"], ["x", "y", "w"]);
        assert!(!t.pre.contains_key("cifs"));
    }

    /// A reference matcher by plain recursion over the same grammar minus classes and escapes.
    fn reference(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_a_reference(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(glob_match(&p, &t), reference(&pc, &tc));
        }

        #[test]
        fn a_literal_pattern_matches_itself(t in "[ -~]{0,40}") {
            let escaped: String = t.chars().flat_map(|c| {
                if is_wild(c) || c == ']' { vec!['\\', c] } else { vec![c] }
            }).collect();
            prop_assert!(glob_match(&escaped, &t));
            let star = format!("{}*", escaped);
            let extended = format!("{t}xyz");
            prop_assert!(glob_match(&star, &extended));
        }

        #[test]
        fn parsers_never_panic(text in "(alias|softdep|pre:|post:|[ a-z*?\\[\\]:#\n-]){0,60}") {
            let (a, _) = AliasTable::parse(&text);
            let _ = a.lookup("pci:v1");
            let (_s, _) = SoftdepTable::parse(&text);
        }
    }
}
