//! The `.reg` export format: bytes -> keys and values, each with its line number.
//!
//! Facts about the format are in the project's research notes (`reg-format.md`): version 5
//! files (`Windows Registry Editor Version 5.00`) are UTF-16LE with a BOM when regedit or
//! `reg export` wrote them, UTF-8 (with or without a BOM) or the ANSI code page when written
//! by hand; `REGEDIT4` files are in the ANSI code page. This parser never panics, bounds every
//! size by [`MAX_REG_FILE_SIZE`] and [`MAX_VALUE_SIZE`], and reports every problem it finds (up
//! to [`MAX_PROBLEMS`]) with its line.

use std::fmt::Write as _;

/// The largest `.reg` file accepted. A Session Manager export is tens of kilobytes; a whole
/// SYSTEM hive export can be hundreds of megabytes and is refused (export the key instead).
pub const MAX_REG_FILE_SIZE: usize = 16 << 20;
/// The most data one value may hold, in bytes (decoded: a string's UTF-8, a hex value's bytes).
pub const MAX_VALUE_SIZE: usize = 1 << 20;
/// The longest value name, in characters (Windows' own limit).
pub const MAX_NAME_CHARS: usize = 16_383;
/// The longest key path, in characters (255 per component on Windows; generous here).
pub const MAX_KEY_PATH_CHARS: usize = 32_767;
/// Reporting stops after this many problems.
pub const MAX_PROBLEMS: usize = 100;

pub const HEADER_V5: &str = "Windows Registry Editor Version 5.00";
pub const HEADER_V4: &str = "REGEDIT4";

/// The format version, from the header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `Windows Registry Editor Version 5.00`: hex(2)/hex(7) data is UTF-16LE.
    V5,
    /// `REGEDIT4`: hex(2)/hex(7) data is one byte per character.
    Regedit4,
}

/// How the file's text was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf16Le,
    Utf8,
    /// Windows-1252, the usual ANSI code page (files without a byte-order mark that are not
    /// valid UTF-8: REGEDIT4, and version 5 tweak files saved as ANSI).
    Ansi,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf8 => "UTF-8",
            Encoding::Ansi => "ANSI (Windows-1252)",
        }
    }
}

/// A value's data as the file wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `"text"`: REG_SZ, escapes resolved.
    String(String),
    /// `dword:0000001e`: REG_DWORD.
    Dword(u32),
    /// `hex:` (kind 3, REG_BINARY) or `hex(N):` (kind N): the raw bytes.
    Hex { kind: u32, bytes: Vec<u8> },
    /// `-`: the value is deleted.
    Delete,
}

/// REG_BINARY, what `hex:` means.
pub const REG_BINARY: u32 = 3;

/// One `"Name"=DATA` (or `@=DATA`) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// `None` for `@`, the key's default value.
    pub name: Option<String>,
    pub data: Data,
    /// The (first) line of the value.
    pub line: usize,
}

/// One `[KEY]` or `[-KEY]` header and the values that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key path as written (between the brackets, without the `-`).
    pub path: String,
    /// `[-KEY]`: delete the key and all its subkeys.
    pub delete: bool,
    pub line: usize,
    /// Empty for a deletion (values under a `[-KEY]` go to [`RegFile::ignored`]).
    pub values: Vec<Value>,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegFile {
    pub version: Version,
    pub encoding: Encoding,
    pub keys: Vec<Key>,
    /// Things skipped without being errors: value lines before any key or under a `[-KEY]`,
    /// `#` comments.
    pub ignored: Vec<(usize, String)>,
}

/// A problem with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

fn problem(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        message: message.into(),
    }
}

/// Parses a whole `.reg` file. Errors: every problem found, in line order.
pub fn parse(bytes: &[u8]) -> Result<RegFile, Vec<Problem>> {
    if bytes.starts_with(b"regf") {
        return Err(vec![problem(
            1,
            "not a registry export: this is a registry hive file (it starts with `regf`, as Windows/System32/config/SYSTEM does); on Windows, export the key: reg export \"HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\" sm.reg",
        )]);
    }
    if bytes.len() > MAX_REG_FILE_SIZE {
        return Err(vec![problem(
            1,
            // Not its size: a reader stops one byte past the limit (`smss import-reg` does).
            format!(
                "the file is larger than the {} MiB limit (export only the Session Manager key)",
                MAX_REG_FILE_SIZE >> 20
            ),
        )]);
    }
    let (text, encoding, version) = decode(bytes)?;
    let mut p = Parser {
        version,
        keys: Vec::new(),
        ignored: Vec::new(),
        problems: Vec::new(),
    };
    p.lines(&text);
    if p.problems.is_empty() {
        Ok(RegFile {
            version,
            encoding,
            keys: p.keys,
            ignored: p.ignored,
        })
    } else {
        p.problems.sort_by_key(|p| p.line);
        Err(p.problems)
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_at(text: &[u8], at: usize) -> usize {
    1 + text
        .get(..at)
        .unwrap_or(text)
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn not_an_export(first: &str) -> Problem {
    let shown: String = first.trim_end().chars().take(60).collect();
    problem(
        1,
        format!("not a registry export: the first line is {shown:?}, expected `{HEADER_V5}` or `{HEADER_V4}`"),
    )
}

fn header_of(first_line: &str) -> Option<Version> {
    let h = first_line.trim();
    if h.eq_ignore_ascii_case(HEADER_V5) {
        Some(Version::V5)
    } else if h.eq_ignore_ascii_case(HEADER_V4) {
        Some(Version::Regedit4)
    } else {
        None
    }
}

fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or("")
}

/// Bytes -> text, by BOM and header.
fn decode(bytes: &[u8]) -> Result<(String, Encoding, Version), Vec<Problem>> {
    if let Some(body) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let text = decode_utf16le(body)?;
        let version =
            header_of(first_line(&text)).ok_or_else(|| vec![not_an_export(first_line(&text))])?;
        return Ok((text, Encoding::Utf16Le, version));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(vec![problem(
            1,
            "UTF-16 big-endian is not a registry export encoding (regedit writes UTF-16LE)",
        )]);
    }
    let utf8_bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let first_end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let first = String::from_utf8_lossy(body.get(..first_end).unwrap_or(body)).into_owned();
    let Some(version) = header_of(&first) else {
        // A UTF-16LE file that lost its BOM shows as NUL-interleaved bytes.
        if body.len() > 1 && body.get(1) == Some(&0) {
            return Err(vec![problem(
                1,
                "not a registry export: UTF-16 text without a byte-order mark",
            )]);
        }
        return Err(vec![not_an_export(&first)]);
    };
    match std::str::from_utf8(body) {
        Ok(s) => Ok((s.to_owned(), Encoding::Utf8, version)),
        // Without a byte-order mark regedit reads the ANSI code page (Notepad saved tweak
        // files so): text that is not UTF-8 is taken as that.
        Err(_) if version == Version::Regedit4 || !utf8_bom => {
            Ok((decode_ansi(body), Encoding::Ansi, version))
        }
        Err(e) => Err(vec![problem(
            line_at(body, e.valid_up_to()),
            "invalid UTF-8 after a UTF-8 byte-order mark",
        )]),
    }
}

/// UTF-16LE bytes -> text; an odd length or an unpaired surrogate is an error on its line.
pub(crate) fn decode_utf16le(body: &[u8]) -> Result<String, Vec<Problem>> {
    let units = body.chunks_exact(2).map(|c| {
        u16::from_le_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ])
    });
    let mut text = String::with_capacity(body.len() / 2);
    let mut line = 1;
    let mut problems = Vec::new();
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                if c == '\n' {
                    line += 1;
                }
                text.push(c);
            }
            Err(_) => {
                if problems.len() < MAX_PROBLEMS {
                    problems.push(problem(line, "invalid UTF-16: an unpaired surrogate"));
                }
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    if body.len() % 2 == 1 {
        problems.push(problem(
            line,
            format!(
                "odd UTF-16 length: {} bytes after the byte-order mark, the last character is cut (truncated file?)",
                body.len()
            ),
        ));
    }
    if problems.is_empty() {
        Ok(text)
    } else {
        Err(problems)
    }
}

/// Windows-1252 bytes 0x80..=0x9F (the rest of the code page is Latin-1); undefined bytes map
/// to the C1 control of the same number, as Windows' own conversion does.
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}', '\u{178}',
];

/// One byte per character, Windows-1252.
pub(crate) fn decode_ansi(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_HIGH
                .get(usize::from(b - 0x80))
                .copied()
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            _ => char::from(b),
        })
        .collect()
}

struct Parser {
    version: Version,
    keys: Vec<Key>,
    ignored: Vec<(usize, String)>,
    problems: Vec<Problem>,
}

impl Parser {
    fn err(&mut self, line: usize, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem(line, message));
        } else if self.problems.len() == MAX_PROBLEMS {
            self.problems.push(problem(
                line,
                format!("more than {MAX_PROBLEMS} problems: stopping"),
            ));
        }
    }

    fn lines(&mut self, text: &str) {
        // (line number, text without the line ending)
        // A final line ending does not start another (empty) line.
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
            .skip(1) // the header, checked by `decode`
            .peekable();
        while let Some((n, raw)) = lines.next() {
            if self.problems.len() > MAX_PROBLEMS {
                return;
            }
            let line = raw.trim_start();
            if line.trim_end().is_empty() || line.starts_with(';') {
                continue;
            }
            if line.starts_with('#') {
                self.ignored
                    .push((n, "a `#` comment (regedit does not accept these)".into()));
                continue;
            }
            if line.starts_with('[') {
                self.key_line(n, line);
                continue;
            }
            // A value line; hex data may continue on the next lines.
            let mut segments = vec![(n, line)];
            let mut cut = false;
            if data_is_hex(line) {
                let mut last = line;
                while last.trim_end().ends_with('\\') {
                    // Hex data never starts with these: the value was cut, and the next line
                    // is read as what it is.
                    let next_starts = lines.peek().and_then(|(_, next)| {
                        let t = next.trim_start();
                        if t.starts_with('[') {
                            Some("a key")
                        } else if t.starts_with('"') || t.starts_with('@') {
                            Some("a value")
                        } else {
                            None
                        }
                    });
                    if let Some(what) = next_starts {
                        let m = segments.last().map_or(n, |s| s.0);
                        self.err(
                            m,
                            format!("truncated hex data: the line ends with `\\` but the next one starts {what}"),
                        );
                        cut = true;
                        break;
                    }
                    match lines.next() {
                        Some((m, next)) if !next.trim().is_empty() => {
                            last = next.trim_start();
                            segments.push((m, last));
                        }
                        Some((m, _)) => {
                            self.err(m, "truncated hex data: the previous line ends with `\\` but this one is empty");
                            cut = true;
                            break;
                        }
                        None => {
                            let m = segments.last().map_or(n, |s| s.0);
                            self.err(m, "truncated hex data: the line ends with `\\` at the end of the file");
                            cut = true;
                            break;
                        }
                    }
                }
            }
            if cut {
                continue;
            }
            let Some(value) = self.value_line(&segments) else {
                continue;
            };
            match self.keys.last_mut() {
                Some(k) if k.delete => {
                    let name = match &value.name {
                        Some(nm) => format!("{nm:?}"),
                        None => "@".into(),
                    };
                    let at = k.line;
                    self.ignored.push((
                        n,
                        format!(
                            "value {name} under the key deletion [-...] on line {at} (regedit skips it)"
                        ),
                    ));
                }
                Some(k) => k.values.push(value),
                None => {
                    let name = match &value.name {
                        Some(nm) => format!("{nm:?}"),
                        None => "@".into(),
                    };
                    self.ignored
                        .push((n, format!("value {name} before any [KEY] header")));
                }
            }
        }
    }

    fn key_line(&mut self, n: usize, line: &str) {
        let line = line.trim_end();
        let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
            self.err(n, "a key header must end with `]`");
            return;
        };
        let (delete, path) = match inner.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, inner),
        };
        if path.trim().is_empty() {
            self.err(n, "empty key name");
            return;
        }
        if path.chars().count() > MAX_KEY_PATH_CHARS {
            self.err(
                n,
                format!("key name longer than {MAX_KEY_PATH_CHARS} characters"),
            );
            return;
        }
        self.keys.push(Key {
            path: path.to_owned(),
            delete,
            line: n,
            values: Vec::new(),
        });
    }

    /// `"Name"=DATA` or `@=DATA`, possibly spread over continuation segments.
    fn value_line(&mut self, segments: &[(usize, &str)]) -> Option<Value> {
        let &(n, line) = segments.first()?;
        let (name, rest) = if let Some(r) = line.strip_prefix('@') {
            (None, r)
        } else if line.starts_with('"') {
            match quoted(line) {
                Ok((s, _)) if s.chars().count() > MAX_NAME_CHARS => {
                    self.err(
                        n,
                        format!("value name longer than {MAX_NAME_CHARS} characters"),
                    );
                    return None;
                }
                Ok((s, r)) => (Some(s), r),
                Err(m) => {
                    self.err(n, format!("value name: {m}"));
                    return None;
                }
            }
        } else {
            let shown: String = line.chars().take(40).collect();
            self.err(
                n,
                format!("expected `[KEY]`, `\"NAME\"=DATA` or `@=DATA`, found {shown:?}"),
            );
            return None;
        };
        let Some(data) = rest.trim_start().strip_prefix('=') else {
            self.err(n, "expected `=` after the value name");
            return None;
        };
        let data = data.trim_start();
        let what = match &name {
            Some(s) => format!("value {s:?}"),
            None => "value @".into(),
        };
        let data = if data.starts_with('"') {
            match quoted(data) {
                Ok((s, r)) => {
                    if !trailer_ok(r) {
                        self.err(
                            n,
                            format!("{what}: unexpected text after the closing quote"),
                        );
                        return None;
                    }
                    if s.len() > MAX_VALUE_SIZE {
                        self.err(n, format!("{what}: more than {MAX_VALUE_SIZE} bytes"));
                        return None;
                    }
                    Data::String(s)
                }
                Err(m) => {
                    self.err(n, format!("{what}: {m}"));
                    return None;
                }
            }
        } else if data.trim_end() == "-" {
            Data::Delete
        } else if let Some(d) = strip_prefix_ci(data, "dword:") {
            let d = d.split(';').next().unwrap_or("").trim();
            if d.is_empty() || d.len() > 8 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.err(
                    n,
                    format!("{what}: dword needs 1 to 8 hex digits, found {d:?}"),
                );
                return None;
            }
            Data::Dword(u32::from_str_radix(d, 16).ok()?)
        } else if data_is_hex(data) {
            let mut segs: Vec<(usize, &str)> = segments.to_vec();
            let (kind, first) = match hex_kind(data) {
                Ok(x) => x,
                Err(m) => {
                    self.err(n, format!("{what}: {m}"));
                    return None;
                }
            };
            if let Some(s) = segs.first_mut() {
                s.1 = first;
            }
            let bytes = self.hex_bytes(&segs, &what)?;
            if self.version == Version::V5 && matches!(kind, 1 | 2 | 7) && bytes.len() % 2 == 1 {
                let m = segs.last().map_or(n, |s| s.0);
                self.err(
                    m,
                    format!("{what}: odd UTF-16 length: hex({kind:x}) data has {} bytes, a version 5 file stores two per character", bytes.len()),
                );
                return None;
            }
            Data::Hex { kind, bytes }
        } else {
            let shown: String = data.chars().take(40).collect();
            self.err(
                n,
                format!("{what}: unknown data {shown:?} (expected \"text\", dword:, hex:, hex(N): or -)"),
            );
            return None;
        };
        Some(Value {
            name,
            data,
            line: n,
        })
    }

    /// The comma-separated byte pairs of every segment (continuation `\` removed).
    fn hex_bytes(&mut self, segs: &[(usize, &str)], what: &str) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut ok = true;
        let count = segs.len();
        for (i, &(m, seg)) in segs.iter().enumerate() {
            let last = i + 1 == count;
            let mut seg = seg.trim_end();
            if !last {
                seg = seg.strip_suffix('\\').unwrap_or(seg).trim_end();
            }
            // A `;` comment may follow the data.
            if let Some(c) = seg.find(';') {
                seg = seg.get(..c).unwrap_or(seg).trim_end();
            }
            if seg.is_empty() {
                continue;
            }
            let tokens: Vec<&str> = seg.split(',').map(str::trim).collect();
            let nt = tokens.len();
            for (j, t) in tokens.into_iter().enumerate() {
                if t.is_empty() {
                    if j + 1 == nt && !last {
                        continue; // `01,02,\` then the next line
                    }
                    let m_ = if j + 1 == nt {
                        "truncated hex data: it ends with `,`"
                    } else {
                        "empty hex byte between two commas"
                    };
                    self.err(m, format!("{what}: {m_}"));
                    ok = false;
                    break;
                }
                if t.len() != 2 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let shown: String = t.chars().take(10).collect();
                    let m_ = if t.len() == 1 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                        format!("truncated hex data: byte {shown:?} has one digit")
                    } else {
                        format!("invalid hex byte {shown:?} (expected two hex digits)")
                    };
                    self.err(m, format!("{what}: {m_}"));
                    ok = false;
                    break;
                }
                if bytes.len() >= MAX_VALUE_SIZE {
                    self.err(m, format!("{what}: more than {MAX_VALUE_SIZE} bytes"));
                    return None;
                }
                bytes.push(u8::from_str_radix(t, 16).ok()?);
            }
            if !ok {
                return None;
            }
        }
        Some(bytes)
    }
}

/// After a closing quote: nothing, blanks, or a `;` comment.
fn trailer_ok(r: &str) -> bool {
    let r = r.trim_start();
    r.is_empty() || r.starts_with(';')
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Does the data part of a value line (or the line itself) start a hex value?
fn data_is_hex(line: &str) -> bool {
    let data = if line.starts_with('"') {
        match quoted(line) {
            Ok((_, r)) => r.trim_start().strip_prefix('=').unwrap_or(r),
            Err(_) => return false,
        }
    } else if let Some(r) = line.strip_prefix('@') {
        r.trim_start().strip_prefix('=').unwrap_or(r)
    } else {
        line
    };
    strip_prefix_ci(data.trim_start(), "hex").is_some()
}

/// `hex:` / `hex(N):` -> (kind, the rest of the segment).
fn hex_kind(data: &str) -> Result<(u32, &str), String> {
    let rest = strip_prefix_ci(data.trim_start(), "hex").unwrap_or(data);
    if let Some(r) = rest.strip_prefix(':') {
        return Ok((REG_BINARY, r));
    }
    let inner_end = rest.find("):").ok_or("expected `hex:` or `hex(N):`")?;
    let n = rest.get(1..inner_end).unwrap_or("");
    if !rest.starts_with('(')
        || n.is_empty()
        || n.len() > 8
        || !n.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err("expected `hex:` or `hex(N):` with N in hex".into());
    }
    let kind = u32::from_str_radix(n, 16).map_err(|e| e.to_string())?;
    Ok((kind, rest.get(inner_end + 2..).unwrap_or("")))
}

/// A quoted string at the start of `s` (which starts with `"`): `\\` and `\"` are escapes, any
/// other backslash is kept as written (hand-written REGEDIT4 files have single backslashes).
/// Returns the string and what follows the closing quote.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'"') => return Ok((out, s.get(i + 1..).unwrap_or(""))),
            Some(b'\\') => match bytes.get(i + 1) {
                Some(b'\\') => {
                    out.push('\\');
                    i += 2;
                }
                Some(b'"') => {
                    out.push('"');
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    i += 1;
                }
            },
            _ => {
                // Copy one whole character.
                let ch = s.get(i..).and_then(|r| r.chars().next());
                match ch {
                    Some(ch) => {
                        out.push(ch);
                        i += ch.len_utf8();
                    }
                    None => break,
                }
            }
        }
    }
    Err("unterminated string (no closing `\"` on this line)".into())
}

/// Renders one value as a `.reg` line (hex data wrapped with `\` continuations the way regedit
/// does). Parsing the rendered line under a key gives the value back (see the fuzz target).
pub fn render_value(v: &Value) -> String {
    let mut out = match &v.name {
        Some(n) => format!("\"{}\"=", escape(n)),
        None => "@=".to_owned(),
    };
    match &v.data {
        Data::String(s) => {
            let _ = write!(out, "\"{}\"", escape(s));
        }
        Data::Dword(d) => {
            let _ = write!(out, "dword:{d:08x}");
        }
        Data::Delete => out.push('-'),
        Data::Hex { kind, bytes } => {
            if *kind == REG_BINARY {
                out.push_str("hex:");
            } else {
                let _ = write!(out, "hex({kind:x}):");
            }
            let mut col = out.len();
            for (i, b) in bytes.iter().enumerate() {
                let _ = write!(out, "{b:02x}");
                col += 2;
                if i + 1 < bytes.len() {
                    out.push(',');
                    col += 1;
                    if col > 76 {
                        out.push_str("\\\r\n  ");
                        col = 2;
                    }
                }
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders a whole file as UTF-8 text with the given version's header: the inverse of
/// [`parse`] for the keys (hex data stays as bytes, so it means the same under that version).
pub fn render_file(version: Version, keys: &[Key]) -> String {
    let header = match version {
        Version::V5 => HEADER_V5,
        Version::Regedit4 => HEADER_V4,
    };
    let mut out = format!("{header}\r\n");
    for k in keys {
        let _ = write!(
            out,
            "\r\n[{}{}]\r\n",
            if k.delete { "-" } else { "" },
            k.path
        );
        for v in &k.values {
            out.push_str(&render_value(v));
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v5(body: &str) -> Vec<u8> {
        format!("{HEADER_V5}\r\n\r\n[HKEY_LOCAL_MACHINE\\K]\r\n{body}").into_bytes()
    }

    fn values(bytes: &[u8]) -> Vec<Value> {
        let f = parse(bytes).unwrap();
        f.keys.into_iter().flat_map(|k| k.values).collect()
    }

    fn errors(bytes: &[u8]) -> Vec<(usize, String)> {
        parse(bytes)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.line, p.message))
            .collect()
    }

    #[test]
    fn strings_escapes_and_single_backslashes() {
        let v = values(&v5(
            "\"a\\\\b\"=\"x\\\\y \\\"q\\\" C:\\z\"\r\n@=\"d\"\r\n\"e\" = \"f\" ; comment\r\n",
        ));
        assert_eq!(v[0].name.as_deref(), Some("a\\b"));
        assert_eq!(v[0].data, Data::String("x\\y \"q\" C:\\z".into()));
        assert_eq!(v[1].name, None);
        assert_eq!(v[2].data, Data::String("f".into()));
        assert_eq!(v[2].line, 6);
    }

    #[test]
    fn dword_hex_kinds_and_deletion() {
        let v = values(&v5(
            "\"a\"=dword:0000001e\r\n\"b\"=hex:01,FF\r\n\"c\"=hex(7):00,00\r\n\"d\"=hex(b):00,00,00,00,00,00,00,00\r\n\"e\"=-\r\n\"f\"=hex:\r\n",
        ));
        assert_eq!(v[0].data, Data::Dword(30));
        assert_eq!(
            v[1].data,
            Data::Hex {
                kind: REG_BINARY,
                bytes: vec![1, 255]
            }
        );
        assert_eq!(
            v[2].data,
            Data::Hex {
                kind: 7,
                bytes: vec![0, 0]
            }
        );
        assert_eq!(
            v[3].data,
            Data::Hex {
                kind: 0xb,
                bytes: vec![0; 8]
            }
        );
        assert_eq!(v[4].data, Data::Delete);
        assert_eq!(
            v[5].data,
            Data::Hex {
                kind: REG_BINARY,
                bytes: vec![]
            }
        );
    }

    #[test]
    fn continuations_with_any_indentation_and_line_numbers() {
        let v = values(&v5(
            "\"a\"=hex:01,\\\r\n\t02,\\\r\n        03\r\n\"b\"=dword:1\r\n",
        ));
        assert_eq!(
            v[0].data,
            Data::Hex {
                kind: REG_BINARY,
                bytes: vec![1, 2, 3]
            }
        );
        assert_eq!(v[1].line, 7);
        // An error in a continuation line is reported on that line.
        assert_eq!(errors(&v5("\"a\"=hex:01,\\\r\n  0x\r\n"))[0].0, 5);
    }

    #[test]
    fn encodings_and_headers() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(
                "Windows Registry Editor Version 5.00  \r\n[HKLM\\K]\r\n\"a\"=\"é\""
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        let f = parse(&utf16).unwrap();
        assert_eq!((f.version, f.encoding), (Version::V5, Encoding::Utf16Le));
        assert_eq!(f.keys[0].values[0].data, Data::String("é".into()));
        let ansi = b"REGEDIT4\n[HKLM\\K]\n\"a\"=\"caf\xe9 \x80\"\n";
        let f = parse(ansi).unwrap();
        assert_eq!((f.version, f.encoding), (Version::Regedit4, Encoding::Ansi));
        assert_eq!(f.keys[0].values[0].data, Data::String("café €".into()));
        // A version 5 tweak file saved by Notepad in the ANSI code page (its default before
        // 2019): regedit reads it so; this used to be refused as invalid UTF-8.
        let v5_ansi = b"Windows Registry Editor Version 5.00\r\n\r\n[HKLM\\K]\r\n\"TEMP\"=\"C:\\\\Donn\xe9es\"\r\n";
        let f = parse(v5_ansi).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((f.version, f.encoding), (Version::V5, Encoding::Ansi));
        assert_eq!(f.keys[0].values[0].data, Data::String("C:\\Données".into()));
        let bom = b"\xEF\xBB\xBFREGEDIT4\r\n";
        assert_eq!(parse(bom).unwrap().encoding, Encoding::Utf8);
    }

    #[test]
    fn not_an_export_and_broken_encodings() {
        assert!(errors(b"hello\n")[0].1.starts_with("not a registry export"));
        assert!(errors(b"")[0].1.starts_with("not a registry export"));
        let no_bom: Vec<u8> = "Windows Registry Editor Version 5.00"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(errors(&no_bom)[0].1.contains("without a byte-order mark"));
        let e = errors(b"\xFF\xFEW\x00\n\x00x");
        assert_eq!(e[0].0, 2);
        assert!(e[0].1.starts_with("odd UTF-16 length"), "{e:?}");
        // A byte that is not UTF-8 in a version 5 file: the ANSI code page, as regedit reads
        // a file without a byte-order mark (Notepad saved ANSI by default); the line is then
        // judged as text.
        let e = errors(b"Windows Registry Editor Version 5.00\n\n\xFF\n");
        assert_eq!(e[0].0, 3);
        assert!(e[0].1.starts_with("expected `[KEY]`"), "{e:?}");
        // hex(7) in a version 5 file is UTF-16LE: an odd byte count is an error.
        assert!(errors(&v5("\"a\"=hex(7):61,00,00\r\n"))[0]
            .1
            .contains("odd UTF-16 length"));
    }

    #[test]
    fn every_problem_is_listed_with_its_line() {
        let e = errors(&v5(
            "\"a\"=\"open\r\n\"b\"=hex:0\r\n\"c\"=hex:01,\r\n\"d\"=dword:123456789\r\nbogus\r\n[HKLM\\X\r\n\"e\"=hex:01,\\\r\n",
        ));
        let lines: Vec<usize> = e.iter().map(|p| p.0).collect();
        assert_eq!(lines, [4, 5, 6, 7, 8, 9, 10], "{e:?}");
        assert!(e[1].1.contains("truncated hex data"));
        assert!(e[2].1.contains("ends with `,`"));
        assert!(e[6].1.contains("end of the file"));
    }

    #[test]
    fn values_before_a_key_and_hash_comments_are_ignored_not_errors() {
        let f = parse(b"REGEDIT4\n\"x\"=\"y\"\n# wine\n[HKLM\\K]\n").unwrap();
        assert_eq!(f.ignored.len(), 2);
        assert_eq!(f.ignored[0].0, 2);
        assert!(f.keys[0].values.is_empty());
    }

    #[test]
    fn hex_cut_before_the_next_key_or_value_is_reported_on_its_own_line() {
        // A hand-edited file that lost the rest of a hex value but kept its `\`: the next key
        // header (or value) was taken as hex data, reported as `invalid hex byte "[HKLM\\X]"`,
        // and that key's values went under the previous key.
        let e = errors(&v5("\"a\"=hex(7):61,00,\\\r\n[HKLM\\X]\r\n\"b\"=\"1\"\r\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 4);
        assert!(
            e[0].1.contains(
                "truncated hex data: the line ends with `\\` but the next one starts a key"
            ),
            "{e:?}"
        );
        let e = errors(&v5("\"a\"=hex:01,\\\r\n\"b\"=dword:1\r\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 4);
        assert!(e[0].1.contains("the next one starts a value"), "{e:?}");
    }

    #[test]
    fn a_hive_file_is_named_as_such() {
        // The SYSTEM hive copied from a Windows disk (Windows/System32/config/SYSTEM) is the
        // registry, but not an export of it: the message showed its binary header as text.
        let mut hive = b"regf\x01\0\0\0\x01\0\0\0".to_vec();
        hive.resize(8192, 0);
        let e = errors(&hive);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, 1);
        assert!(e[0].1.contains("a registry hive file"), "{e:?}");
        assert!(e[0].1.contains("reg export"), "{e:?}");
        // Also when it is larger than the limit.
        hive.resize(MAX_REG_FILE_SIZE + 1, 0);
        assert!(errors(&hive)[0].1.contains("a registry hive file"));
    }

    #[test]
    fn values_after_a_key_deletion_are_ignored_and_said_so() {
        // `[-KEY]` leaves no key to write to: regedit skips the values under it. They used to
        // stay in the deleted key, which nothing reads, so they vanished without a word.
        let f =
            parse(b"REGEDIT4\n[-HKLM\\K]\n\"A\"=\"1\"\n@=\"d\"\n[HKLM\\K]\n\"B\"=\"2\"\n").unwrap();
        assert!(f.keys[0].delete);
        assert!(f.keys[0].values.is_empty(), "{:?}", f.keys[0].values);
        assert_eq!(f.keys[1].values.len(), 1);
        assert_eq!(
            f.ignored,
            [
                (
                    3,
                    "value \"A\" under the key deletion [-...] on line 2 (regedit skips it)"
                        .to_owned()
                ),
                (
                    4,
                    "value @ under the key deletion [-...] on line 2 (regedit skips it)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let big = vec![b' '; MAX_REG_FILE_SIZE + 1];
        assert!(errors(&big)[0].1.contains("MiB limit"));
        let mut s = String::from("\"a\"=hex:");
        s.push_str(&"00,".repeat(MAX_VALUE_SIZE));
        s.push_str("00\r\n");
        assert!(errors(&v5(&s))[0].1.contains("more than"));
        let s = format!("\"a\"=\"{}\"\r\n", "x".repeat(MAX_VALUE_SIZE + 1));
        assert!(errors(&v5(&s))[0].1.contains("more than"));
        let s = format!("\"{}\"=\"x\"\r\n", "n".repeat(MAX_NAME_CHARS + 1));
        assert!(errors(&v5(&s))[0].1.contains("value name longer"));
        let s = format!("[{}]\r\n", "k".repeat(MAX_KEY_PATH_CHARS + 1));
        assert!(errors(&v5(&s))[0].1.contains("key name longer"));
        let many = "bogus\n".repeat(3 * MAX_PROBLEMS);
        let e = errors(&v5(&many));
        assert_eq!(e.len(), MAX_PROBLEMS + 1);
        assert!(e[MAX_PROBLEMS].1.contains("stopping"));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let text = "[^\n]{0,40}";
        let data = prop_oneof![
            text.prop_map(Data::String),
            any::<u32>().prop_map(Data::Dword),
            (0u32..16, proptest::collection::vec(any::<u8>(), 0..80))
                .prop_map(|(kind, bytes)| Data::Hex { kind, bytes }),
            Just(Data::Delete),
        ];
        (proptest::option::of(text), data).prop_map(|(name, data)| Value {
            name,
            data,
            line: 0,
        })
    }

    proptest! {
        /// Rendering a value and parsing it back is the identity.
        #[test]
        fn render_then_parse_is_identity(v in arb_value()) {
            let mut v = v;
            if let Data::Hex { kind: 1 | 2 | 7, bytes } = &mut v.data {
                if bytes.len() % 2 == 1 { bytes.pop(); }
            }
            let key = Key { path: "HKLM\\K".into(), delete: false, line: 0, values: vec![v.clone()] };
            let text = render_file(Version::V5, &[key]);
            let f = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            let got = &f.keys[0].values[0];
            prop_assert_eq!(&got.name, &v.name);
            prop_assert_eq!(&got.data, &v.data);
        }

        /// Arbitrary bytes never panic the parser, and every value it accepts renders back.
        #[test]
        fn any_bytes(prefix in 0usize..3, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = match prefix {
                0 => format!("{HEADER_V5}\n[HKLM\\K]\n").into_bytes(),
                1 => format!("{HEADER_V4}\r\n").into_bytes(),
                _ => Vec::new(),
            };
            b.extend(body);
            let _ = parse(&b);
        }
    }
}
