//! A parsed `.reg` file -> smss TOML, plus the list of what was not imported and why.
//!
//! Pure: no I/O. Every value that is read is either translated or named in the comment block
//! at the top of the output ("not imported: NAME (why)", "left unset: NAME (...)"); nothing is
//! dropped silently.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::parse::{decode_ansi, decode_utf16le, Data, RegFile, Version, REG_BINARY};
use crate::parse_command_line;

/// Translation options: the drive map (`--drive X:=PATH`) and the name shown in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// (upper-case letter, absolute Linux path), at most one per letter.
    drives: Vec<(char, String)>,
    /// How the input is named in the generated header (a file name, or `-`).
    pub source: String,
}

impl Options {
    /// The default drive map: only `C:` -> `/`.
    pub fn new(source: impl Into<String>) -> Self {
        Options {
            drives: vec![('C', "/".to_owned())],
            source: source.into(),
        }
    }

    /// Maps (or re-maps) a drive letter.
    pub fn map_drive(&mut self, letter: char, root: String) {
        let letter = letter.to_ascii_uppercase();
        match self.drives.iter_mut().find(|(l, _)| *l == letter) {
            Some(slot) => slot.1 = root,
            None => self.drives.push((letter, root)),
        }
        self.drives.sort_by_key(|(l, _)| *l);
    }

    fn drive(&self, letter: char) -> Option<&str> {
        let letter = letter.to_ascii_uppercase();
        self.drives
            .iter()
            .find(|(l, _)| *l == letter)
            .map(|(_, r)| r.as_str())
    }
}

/// Parses `X:=PATH` (the `--drive` flag): a letter, `:=`, an absolute path without whitespace
/// or control characters (smss command strings have no quoting).
pub fn parse_drive_flag(s: &str) -> Result<(char, String), String> {
    let mut chars = s.chars();
    let (Some(letter), Some(':'), Some('=')) = (chars.next(), chars.next(), chars.next()) else {
        return Err(format!("--drive wants X:=PATH, found {s:?}"));
    };
    if !letter.is_ascii_alphabetic() {
        return Err(format!("--drive: {letter:?} is not a drive letter"));
    }
    let path = chars.as_str();
    if !path.starts_with('/') {
        return Err(format!(
            "--drive {letter}: wants an absolute path, found {path:?}"
        ));
    }
    if path.chars().any(|c| c <= ' ' || c == '\u{7f}' || c == '%') {
        return Err(format!(
            "--drive {letter}: the path {path:?} contains whitespace, `%` or a control character"
        ));
    }
    Ok((letter.to_ascii_uppercase(), path.to_owned()))
}

/// The result of a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The smss TOML, comment block first.
    pub toml: String,
    /// "NAME (why)" for everything read but not imported (also in the TOML's comments).
    pub not_imported: Vec<String>,
    /// How many TOML entries were written (0: the file had no Session Manager values).
    pub entries: usize,
}

/// One value as it stands after the whole file was read (later lines replace earlier ones).
struct Slot {
    /// Key path relative to `...\Control`, as first written, e.g. `Session Manager\Environment`.
    key: String,
    /// Lower-cased `key`.
    key_lower: String,
    name: Option<String>,
    /// `None`: deleted by `"X"=-`.
    data: Option<Data>,
    line: usize,
    /// When it was last written, counted in key headers.
    seq: usize,
    /// Unset by a later `[-KEY]` (noted once for the key, not per value).
    key_deleted: bool,
}

/// Keys nested deeper than this below `Control` are listed, not read (the keys smss reads are
/// at most two deep; this bounds the work a hostile file can ask for).
const MAX_DEPTH: usize = 8;

/// The comment block at the top (ignored lines, not imported, left unset, notes) stops after
/// this many bytes with a count of the lines left out, so that the file stays well within the
/// 1 MiB `smss check` reads even for an export of a whole `Control` key.
pub const MAX_COMMENT_BYTES: usize = 256 << 10;

/// The entries of one TOML section: (comment, key, rendered value).
type Entries = Vec<(String, String, String)>;

#[derive(Default)]
struct Out {
    session_manager: Entries,
    memory: Entries,
    /// Unlike the other sections, the values as the variables hold them (made TOML strings by
    /// `render`): `fit_environment` expands them.
    environment: Entries,
    /// Variable name -> the value it came from (`Session Manager\Environment\TEMP`).
    env_what: HashMap<String, String>,
    dos: Entries,
    subsystems: Entries,
    sessions: Entries,
    crash: Entries,
    not_imported: Vec<String>,
    /// Keys smss does not read (outside Session Manager, another control set...): listed after
    /// the Session Manager values, so a bounded comment block keeps those.
    outside: Vec<String>,
    unset: Vec<String>,
    notes: Vec<String>,
    /// The notes, to keep them unique without a scan (there is one per DOS device or
    /// undefined reference, and a file may have hundreds of thousands).
    noted: HashSet<String>,
    /// Every string written, to look for `%VAR%` references.
    strings: Vec<String>,
}

impl Out {
    fn skip(&mut self, what: &str, why: impl AsRef<str>) {
        self.not_imported.push(format!("{what} ({})", why.as_ref()));
    }
    fn skip_outside(&mut self, what: &str, why: impl AsRef<str>) {
        self.outside.push(format!("{what} ({})", why.as_ref()));
    }
    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        if self.noted.insert(n.clone()) {
            self.notes.push(n);
        }
    }
}

/// Why a string could not be translated.
enum Skip {
    Unmapped(char),
    Why(String),
}

impl Skip {
    fn text(&self) -> String {
        match self {
            Skip::Unmapped(l) => {
                format!("drive {l}: is not mapped: add --drive {l}:=PATH")
            }
            Skip::Why(w) => w.clone(),
        }
    }
}

/// A path-shaped string after the drive map.
enum Mapped {
    Path(String),
    Unmapped(char),
    NotAPath,
}

const NT_PREFIXES: [&str; 3] = ["\\??\\", "\\DosDevices\\", "\\GLOBAL??\\"];

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn strip_nt_prefix(s: &str) -> (bool, &str) {
    for p in NT_PREFIXES {
        if let Some(r) = strip_prefix_ci(s, p) {
            return (true, r);
        }
    }
    (false, s)
}

/// `X:` then the end, `\` or `/`: (upper-case letter, the rest after the colon).
fn drive_form(s: &str) -> Option<(char, &str)> {
    let mut it = s.chars();
    let letter = it.next()?;
    if !letter.is_ascii_alphabetic() || it.next()? != ':' {
        return None;
    }
    let tail = it.as_str();
    (tail.is_empty() || tail.starts_with('\\') || tail.starts_with('/'))
        .then_some((letter.to_ascii_uppercase(), tail))
}

fn join(root: &str, tail: &str) -> String {
    let tail = tail.replace('\\', "/");
    let tail = tail.trim_start_matches('/');
    if tail.is_empty() {
        root.to_owned()
    } else if root.ends_with('/') {
        format!("{root}{tail}")
    } else {
        format!("{root}/{tail}")
    }
}

impl Options {
    /// `C:\x`, `\??\C:\x`, `\DosDevices\C:\x` through the drive map; `\SystemRoot\x` and
    /// `%VAR%\x` keep their reference with `/` separators; a Linux absolute path stays.
    fn map_path(&self, s: &str) -> Mapped {
        let (prefixed, rest) = strip_nt_prefix(s);
        if let Some((letter, tail)) = drive_form(rest) {
            return match self.drive(letter) {
                Some(root) => Mapped::Path(join(root, tail)),
                None => Mapped::Unmapped(letter),
            };
        }
        if prefixed {
            return Mapped::NotAPath;
        }
        if let Some(tail) = strip_prefix_ci(s, "\\SystemRoot") {
            if tail.is_empty() || tail.starts_with('\\') {
                return Mapped::Path(join("%SystemRoot%", tail));
            }
        }
        if let Some(after) = s.strip_prefix('%') {
            if let Some(end) = after.find('%') {
                let tail = after.get(end + 1..).unwrap_or("");
                if end > 0 && tail.starts_with('\\') {
                    let var = s.get(..end + 2).unwrap_or(s);
                    return Mapped::Path(join(var, tail));
                }
            }
        }
        if s.starts_with('/') {
            return Mapped::Path(s.to_owned());
        }
        Mapped::NotAPath
    }
}

fn type_name(d: &Data) -> String {
    match d {
        Data::String(_) => "REG_SZ".into(),
        Data::Dword(_) => "REG_DWORD".into(),
        Data::Delete => "a deletion".into(),
        Data::Hex { kind, .. } => match *kind {
            0 => "REG_NONE".into(),
            1 => "REG_SZ (hex)".into(),
            2 => "REG_EXPAND_SZ".into(),
            REG_BINARY => "REG_BINARY".into(),
            4 => "REG_DWORD (hex)".into(),
            7 => "REG_MULTI_SZ".into(),
            0xb => "REG_QWORD".into(),
            k => format!("hex({k:x})"),
        },
    }
}

/// hex(1)/hex(2)/hex(7) bytes -> text: UTF-16LE in version 5, one byte per character in
/// REGEDIT4 (UTF-8 when the bytes are valid UTF-8, else Windows-1252).
fn hex_text(bytes: &[u8], version: Version) -> Result<String, String> {
    match version {
        Version::V5 => decode_utf16le(bytes).map_err(|_| "invalid UTF-16 data".to_owned()),
        Version::Regedit4 => Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => decode_ansi(bytes),
        }),
    }
}

/// A REG_SZ / REG_EXPAND_SZ value as a string (up to its terminating NUL).
fn as_string(d: &Data, version: Version) -> Result<String, String> {
    match d {
        Data::String(s) => Ok(s.clone()),
        Data::Hex { kind: 1 | 2, bytes } => {
            let t = hex_text(bytes, version)?;
            Ok(t.split('\0').next().unwrap_or("").to_owned())
        }
        other => Err(format!("{}, expected a string", type_name(other))),
    }
}

/// Splits REG_MULTI_SZ text: each string ends with a NUL, then one more NUL ends the list.
/// `"\0"` (written `00,00`) is the empty list; a single final NUL and a missing one are accepted.
pub fn split_multi_sz(text: &str) -> Vec<String> {
    let mut t = text.strip_suffix('\0').unwrap_or(text);
    if t.is_empty() {
        return Vec::new();
    }
    t = t.strip_suffix('\0').unwrap_or(t);
    t.split('\0').map(str::to_owned).collect()
}

/// A REG_MULTI_SZ (a plain string counts as a list of one, as tweak files write it).
fn as_multi(d: &Data, version: Version) -> Result<Vec<String>, String> {
    match d {
        Data::Hex { kind: 7, bytes } => Ok(split_multi_sz(&hex_text(bytes, version)?)),
        Data::String(_) | Data::Hex { kind: 1 | 2, .. } => Ok(vec![as_string(d, version)?]),
        other => Err(format!("{}, expected REG_MULTI_SZ", type_name(other))),
    }
}

fn as_dword(d: &Data) -> Result<u32, String> {
    match d {
        Data::Dword(x) => Ok(*x),
        Data::Hex { kind: 4, bytes } if bytes.len() == 4 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(bytes);
            Ok(u32::from_le_bytes(b))
        }
        other => Err(format!("{}, expected REG_DWORD", type_name(other))),
    }
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        toml_str(s)
    }
}

/// Whether a command line (as the registry holds it) runs a Windows program: its first word
/// ends in `.exe` (`%SystemRoot%\system32\csrss.exe ObjectDirectory=...`).
fn runs_windows_program(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|p| {
        p.rsplit(['\\', '/'])
            .next()
            .is_some_and(|b| b.to_ascii_lowercase().ends_with(".exe"))
    })
}

fn toml_array(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Text for a comment line: control characters shown as `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c < ' ' || c == '\u{7f}' { '?' } else { c })
        .collect()
}

/// Why a Session Manager value with no smss counterpart is not imported.
fn top_reason(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "pendingfilerenameoperations" | "pendingfilerenameoperations2" => {
            "renames queued for the next Windows boot; queue them with `smctl rename SRC [DST]`"
        }
        "allowprotectedrenames" => "Windows File Protection renames: no Linux meaning",
        "autochktimeout" | "autochkskipsystempartition" => {
            "autochk's own setting; fsck has no countdown"
        }
        "criticalsectiontimeout" | "resourcetimeoutcount" => {
            "NT deadlock timeouts: no Linux meaning"
        }
        "excludefromknowndlls"
        | "safedllsearchmode"
        | "safeprocesssearchmode"
        | "cwdillegalindllsearch" => "DLL search rules: no Linux meaning",
        "globalflag" | "globalflag2" => "NT debugging flags (gflags): no Linux meaning",
        "heapdecommitfreeblockthreshold"
        | "heapdecommittotalfreethreshold"
        | "heapsegmentcommit"
        | "heapsegmentreserve" => "Win32 heap tuning: no Linux meaning",
        "numberofinitialsessions" => {
            "sessions are made on request (smctl session create) and for [[seats]]"
        }
        "processorcontrol" | "licensedprocessors" | "registeredprocessors" => {
            "Windows licensing: no Linux meaning"
        }
        "enablemca" | "enablemce" => "machine-check handling belongs to the Linux kernel",
        "objectsecuritysetting" => "NT object security: no Linux meaning",
        _ => "no Linux meaning in smss",
    }
}

fn subkey_reason(sub: &str) -> &'static str {
    match sub.to_ascii_lowercase().as_str() {
        "knowndlls" => "pre-mapped Windows DLLs: ld.so has no counterpart",
        "kernel" | "executive" | "i/o system" | "configuration manager" | "quota system" => {
            "NT kernel tuning: no Linux meaning (see sysctl)"
        }
        "power" => "power management belongs to the Linux kernel and its tools",
        "appcompatcache" | "appcompatibility" => "Windows application compatibility data",
        "wpa" => "Windows product activation",
        _ => "no counterpart in smss",
    }
}

fn memory_reason(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "existingpagefiles" => "written by Windows at each boot",
        "clearpagefileatshutdown" => "smss does not wipe swap at shutdown (use encrypted swap)",
        _ => "NT memory manager tuning: no Linux meaning (see sysctl vm.*)",
    }
}

/// Translates a parsed file.
pub fn translate(file: &RegFile, opts: &Options) -> Imported {
    let mut t = Translator {
        file,
        opts,
        out: Out::default(),
    };
    t.run()
}

struct Translator<'a> {
    file: &'a RegFile,
    opts: &'a Options,
    out: Out,
}

/// Components of a key path.
fn components(path: &str) -> Vec<&str> {
    path.split('\\').filter(|c| !c.is_empty()).collect()
}

fn is_control_set(c: &str) -> bool {
    c.eq_ignore_ascii_case("CurrentControlSet")
        || (c.len() == 13
            && strip_prefix_ci(c, "ControlSet")
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
}

/// `HKLM\<hive>\<control set>\Control\REST...` -> (control set prefix, REST).
fn classify(path: &str) -> Option<(String, Vec<&str>)> {
    let c = components(path);
    let root = c.first()?;
    if !(root.eq_ignore_ascii_case("HKEY_LOCAL_MACHINE") || root.eq_ignore_ascii_case("HKLM")) {
        return None;
    }
    if c.len() < 4 || !is_control_set(c.get(2)?) || !c.get(3)?.eq_ignore_ascii_case("Control") {
        return None;
    }
    Some((c.get(..3)?.join("\\"), c.get(4..)?.to_vec()))
}

fn relevant(rest: &[&str]) -> bool {
    rest.first().is_some_and(|r| {
        r.eq_ignore_ascii_case("Session Manager") || r.eq_ignore_ascii_case("CrashControl")
    })
}

impl<'a> Translator<'a> {
    fn version(&self) -> Version {
        self.file.version
    }

    fn run(&mut self) -> Imported {
        let slots = self.collect();
        // Group by key, in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, Vec<&Slot>> = HashMap::new();
        for s in &slots {
            if !by_key.contains_key(&s.key_lower) {
                order.push(s.key_lower.clone());
            }
            by_key.entry(s.key_lower.clone()).or_default().push(s);
        }
        let get = |k: &str| by_key.get(k).cloned().unwrap_or_default();
        self.session_manager(&get("session manager"));
        self.memory(&get("session manager\\memory management"));
        self.environment(&get("session manager\\environment"));
        self.dos_devices(&get("session manager\\dos devices"));
        self.subsystems(&get("session manager\\subsystems"));
        self.crash(&get("crashcontrol"));
        for k in &order {
            if matches!(
                k.as_str(),
                "session manager"
                    | "session manager\\memory management"
                    | "session manager\\environment"
                    | "session manager\\dos devices"
                    | "session manager\\subsystems"
                    | "crashcontrol"
            ) {
                continue;
            }
            let group = get(k);
            let Some(first) = group.first() else { continue };
            let sub = first.key.split('\\').nth(1).unwrap_or(first.key.as_str());
            let why = if first.key_lower.starts_with("crashcontrol\\") {
                "crash dump settings: no counterpart in smss"
            } else {
                subkey_reason(sub)
            };
            let n = group.iter().filter(|s| s.data.is_some()).count();
            if n > 0 {
                self.out.skip(
                    &first.key,
                    format!("{n} value{}; {why}", if n == 1 { "" } else { "s" }),
                );
            }
        }
        self.define_references();
        self.fit_environment();
        self.render()
    }

    /// Walks the keys: picks the control set, lists other keys, applies deletions.
    fn collect(&mut self) -> Vec<Slot> {
        let mut slots: Vec<Slot> = Vec::new();
        // (key_lower, name lower or "@") -> index
        let mut index: HashMap<(String, Option<String>), usize> = HashMap::new();
        let mut control_set: Option<String> = None;
        let mut listed: HashSet<String> = HashSet::new();
        // Key lower-case path -> sequence number of its last `[-KEY]`; values carry theirs.
        let mut deleted: HashMap<String, usize> = HashMap::new();
        let mut seq = 0usize;
        for key in &self.file.keys {
            let class = classify(&key.path);
            let shown = clean(&key.path);
            let Some((cs, rest)) = class else {
                if key.delete {
                    self.out
                        .skip_outside(&format!("[-{shown}]"), "deletes a key smss does not read");
                } else if listed.insert(key.path.to_ascii_lowercase()) {
                    self.out.skip_outside(&shown, "not a Session Manager key");
                }
                continue;
            };
            if !(relevant(&rest) || (key.delete && rest.is_empty())) {
                if key.delete {
                    self.out
                        .skip_outside(&format!("[-{shown}]"), "deletes a key smss does not read");
                } else if listed.insert(key.path.to_ascii_lowercase()) {
                    self.out.skip_outside(&shown, "not a Session Manager key");
                }
                continue;
            }
            match &control_set {
                Some(c) if !c.eq_ignore_ascii_case(&cs) => {
                    if listed.insert(key.path.to_ascii_lowercase()) {
                        self.out.skip_outside(
                            &shown,
                            format!("another control set; this import reads {}", clean(c)),
                        );
                    }
                    continue;
                }
                Some(_) => {}
                None => control_set = Some(cs),
            }
            if rest.len() > MAX_DEPTH {
                if listed.insert(key.path.to_ascii_lowercase()) {
                    self.out
                        .skip_outside(&shown, "nested too deep to mean anything to smss");
                }
                continue;
            }
            let rel = rest.join("\\");
            let rel_lower = rel.to_ascii_lowercase();
            seq += 1;
            if key.delete {
                deleted.insert(rel_lower, seq);
                self.out.unset.push(format!(
                    "everything under {shown} (the file deletes the key with [-...] on line {})",
                    key.line
                ));
                continue;
            }
            for v in &key.values {
                let id = (
                    rel_lower.clone(),
                    v.name.as_ref().map(|n| n.to_ascii_lowercase()),
                );
                let data = match &v.data {
                    Data::Delete => None,
                    d => Some(d.clone()),
                };
                match index.get(&id).and_then(|&i| slots.get_mut(i)) {
                    Some(slot) => {
                        slot.data = data;
                        slot.line = v.line;
                        slot.seq = seq;
                    }
                    None => {
                        index.insert(id, slots.len());
                        slots.push(Slot {
                            key: rel.clone(),
                            key_lower: rel_lower.clone(),
                            name: v.name.clone(),
                            data,
                            line: v.line,
                            seq,
                            key_deleted: false,
                        });
                    }
                }
            }
        }
        // A `[-KEY]` unsets every value of KEY and its subkeys written before it. Each value
        // looks up its key's ancestors (at most MAX_DEPTH + 1 of them), once per key.
        if !deleted.is_empty() {
            let mut latest: HashMap<String, usize> = HashMap::new();
            for slot in slots.iter_mut() {
                let last = *latest.entry(slot.key_lower.clone()).or_insert_with(|| {
                    let mut best = deleted.get("").copied().unwrap_or(0);
                    let mut prefix = String::new();
                    for c in slot.key_lower.split('\\') {
                        if !prefix.is_empty() {
                            prefix.push('\\');
                        }
                        prefix.push_str(c);
                        best = best.max(deleted.get(&prefix).copied().unwrap_or(0));
                    }
                    best
                });
                if last > slot.seq {
                    slot.data = None;
                    slot.key_deleted = true;
                }
            }
        }
        if let Some(cs) = control_set {
            self.out.note(format!("read from {}\\Control", clean(&cs)));
        }
        slots
    }

    /// The display name of a slot's value, `Session Manager\BootExecute`.
    fn what(s: &Slot) -> String {
        let name = match &s.name {
            Some(n) => clean(n),
            None => "@".into(),
        };
        format!("{}\\{name}", clean(&s.key))
    }

    /// Handles deletions and `@`; returns the data of a value to translate.
    fn live<'s>(&mut self, s: &'s Slot) -> Option<(&'s str, &'s Data)> {
        let what = Self::what(s);
        let Some(data) = &s.data else {
            if s.key_deleted {
                return None;
            }
            self.out.unset.push(format!(
                "{what} (deleted by the file on line {}: a deletion means \"not set\")",
                s.line
            ));
            return None;
        };
        let Some(name) = &s.name else {
            self.out
                .skip(&what, "the key's default value: no meaning here");
            return None;
        };
        Some((name.as_str(), data))
    }

    /// A command line in smss grammar; `Ok(None)` for an empty string.
    fn command(&mut self, line: &str, what: &str) -> Result<Option<String>, Skip> {
        if line.contains('\0') {
            return Err(Skip::Why("contains a NUL character".into()));
        }
        let tokens: Vec<&str> = line
            .split(|c: char| c <= ' ')
            .filter(|t| !t.is_empty())
            .collect();
        let mut words: Vec<String> = Vec::new();
        let mut rest = tokens.as_slice();
        let mut autocheck = false;
        while let Some((first, tail)) = rest.split_first() {
            let lower = first.to_ascii_lowercase();
            if matches!(lower.as_str(), "autocheck" | "async" | "debug") {
                autocheck |= lower == "autocheck";
                words.push(lower);
                rest = tail;
            } else {
                break;
            }
        }
        let Some((program, args)) = rest.split_first() else {
            if words.is_empty() {
                return Ok(None);
            }
            return Err(Skip::Why(format!(
                "`{}` has keywords but no program",
                clean(line.trim())
            )));
        };
        let base = program.rsplit(['\\', '/']).next().unwrap_or(program);
        let base_lower = base.to_ascii_lowercase();
        if base_lower == "autochk" || base_lower == "autochk.exe" {
            if args.len() == 1 && args.first() == Some(&"*") {
                if !autocheck {
                    words.insert(0, "autocheck".into());
                }
                words.extend(["fsck", "-p", "-A"].map(String::from));
                self.out.note(format!(
                    "{what}: `autocheck autochk *` became `autocheck fsck -p -A`, the documented analogue (fsck checks every filesystem of /etc/fstab; a missing fsck is a warning and the entry is skipped)"
                ));
                return Ok(Some(words.join(" ")));
            }
            return Err(Skip::Why(
                "autochk with arguments other than `*`: write the fsck command for that volume"
                    .into(),
            ));
        }
        for (i, tok) in std::iter::once(program).chain(args.iter()).enumerate() {
            let mapped = match self.opts.map_path(tok) {
                Mapped::Path(p) => p,
                Mapped::Unmapped(l) => return Err(Skip::Unmapped(l)),
                Mapped::NotAPath => (*tok).to_owned(),
            };
            if i == 0 && base_lower.ends_with(".exe") {
                self.out.note(format!(
                    "{what}: {} is a Windows program: point it at its Linux counterpart",
                    clean(base)
                ));
            }
            words.push(mapped);
        }
        let s = words.join(" ");
        match parse_command_line(&s) {
            Ok(_) => Ok(Some(s)),
            Err(e) => Err(Skip::Why(e)),
        }
    }

    /// A list of commands (BootExecute, SetupExecute, Execute).
    /// A REG_MULTI_SZ value's strings; None (listed as not imported) when it is not one.
    fn multi(&mut self, what: &str, data: &Data) -> Option<Vec<String>> {
        match as_multi(data, self.version()) {
            Ok(l) => Some(l),
            Err(e) => {
                self.out.skip(what, e);
                None
            }
        }
    }

    fn command_list(&mut self, what: &str, data: &Data) -> Option<Vec<String>> {
        let lines = self.multi(what, data)?;
        let mut cmds = Vec::new();
        for l in lines {
            match self.command(&l, what) {
                Ok(Some(c)) => cmds.push(c),
                Ok(None) => {}
                Err(e) => self
                    .out
                    .skip(&format!("{what} entry `{}`", clean(&l)), e.text()),
            }
        }
        Some(cmds)
    }

    fn session_manager(&mut self, slots: &[&Slot]) {
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "bootexecute" | "setupexecute" | "execute" => {
                    let key = match lower.as_str() {
                        "bootexecute" => "boot-execute",
                        "setupexecute" => "setup-execute",
                        _ => "execute",
                    };
                    if let Some(cmds) = self.command_list(&what, data) {
                        self.out.strings.extend(cmds.iter().cloned());
                        let comment = match key {
                            "boot-execute" => "[BootExecute]",
                            "setup-execute" => "[SetupExecute]",
                            _ => "[Execute]",
                        };
                        self.out.session_manager.push((
                            comment.into(),
                            key.into(),
                            toml_array(&cmds),
                        ));
                    }
                }
                "objectdirectories" => {
                    let Some(dirs) = self.multi(&what, data) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    for d in dirs {
                        if d.is_empty() {
                            continue;
                        }
                        if !d.starts_with('\\')
                            || d.contains('\0')
                            || d.split('\\').any(|c| c == "..")
                        {
                            self.out.skip(
                                &format!("{what} entry `{}`", clean(&d)),
                                "not an NT object directory path",
                            );
                            continue;
                        }
                        out.push(join("/run/smss/objects", &d));
                    }
                    self.out.note(format!(
                        "{what}: NT object directories became directories under /run/smss/objects"
                    ));
                    self.out.session_manager.push((
                        "[ObjectDirectories]".into(),
                        "object-directories".into(),
                        toml_array(&out),
                    ));
                }
                "protectionmode" => match as_dword(data) {
                    Ok(v) => {
                        if v > 1 {
                            self.out.note(format!(
                                "{what}: {v} has bit 0 {}; smss reads only that bit",
                                v & 1
                            ));
                        }
                        self.out.session_manager.push((
                            "[ProtectionMode]".into(),
                            "protection-mode".into(),
                            (v & 1).to_string(),
                        ));
                    }
                    Err(e) => self.out.skip(&what, e),
                },
                "s0initialcommand" => {
                    let line = match as_string(data, self.version()) {
                        Ok(l) => l,
                        Err(e) => {
                            self.out.skip(&what, e);
                            continue;
                        }
                    };
                    match self.command(&line, &what) {
                        Ok(c) => {
                            let c = c.unwrap_or_default();
                            self.out.strings.push(c.clone());
                            self.out.sessions.push((
                                "[S0InitialCommand]".into(),
                                "session0-initial-command".into(),
                                toml_str(&c),
                            ));
                        }
                        Err(e) => self.out.skip(&what, e.text()),
                    }
                }
                _ => self.out.skip(&what, top_reason(name)),
            }
        }
    }

    fn memory(&mut self, slots: &[&Slot]) {
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            if !name.eq_ignore_ascii_case("PagingFiles") {
                self.out.skip(&what, memory_reason(name));
                continue;
            }
            let Some(entries) = self.multi(&what, data) else {
                continue;
            };
            let mut files: Vec<String> = Vec::new();
            // Compared as paths, the way the validator does (`/a/` is `/a`).
            let mut seen: HashSet<(bool, std::path::PathBuf)> = HashSet::new();
            let mut any_volume = false;
            for e in entries {
                if e.trim().is_empty() {
                    continue;
                }
                match self.paging_file(&e) {
                    Ok((path, line)) => {
                        if files.len() == crate::MAX_PAGING_FILES {
                            self.out.skip(
                                &format!("{what} entry `{}`", clean(&e)),
                                format!("at most {} paging files", crate::MAX_PAGING_FILES),
                            );
                        } else if !seen.insert(match path.strip_prefix("?:") {
                            Some(p) => (true, p.into()),
                            None => (false, path.as_str().into()),
                        }) {
                            self.out
                                .skip(&format!("{what} entry `{}`", clean(&e)), "listed twice");
                        } else {
                            any_volume |= path.starts_with("?:");
                            files.push(line);
                        }
                    }
                    Err(why) => self
                        .out
                        .skip(&format!("{what} entry `{}`", clean(&e)), why.text()),
                }
            }
            self.out.strings.extend(files.iter().cloned());
            self.out.memory.push((
                "[Memory Management\\PagingFiles]".into(),
                "paging-files".into(),
                toml_array(&files),
            ));
            if any_volume {
                let mut roots: Vec<String> = Vec::new();
                for (_, r) in &self.opts.drives {
                    if !roots.contains(r) {
                        roots.push(r.clone());
                    }
                }
                if roots != ["/"] {
                    self.out.note(format!(
                        "{what}: `?:` (any drive) became the mapped drives, in letter order"
                    ));
                    self.out.memory.push((
                        "the drives a `?:` paging file may use (the mapped drives)".into(),
                        "paging-file-volumes".into(),
                        toml_array(&roots),
                    ));
                }
            }
        }
    }

    /// `c:\pagefile.sys 16 8192` -> (path, `/pagefile.sys 16 8192`).
    fn paging_file(&self, e: &str) -> Result<(String, String), Skip> {
        let mut tokens = e.split(|c: char| c <= ' ').filter(|t| !t.is_empty());
        let first = tokens.next().unwrap_or("");
        let path = if let Some(tail) = first.strip_prefix("?:") {
            if !(tail.starts_with('\\') || tail.starts_with('/')) {
                return Err(Skip::Why("`?:` must be followed by a path".into()));
            }
            format!("?:{}", join("/", tail))
        } else {
            match self.opts.map_path(first) {
                Mapped::Path(p) if p.starts_with('/') => p,
                Mapped::Unmapped(l) => return Err(Skip::Unmapped(l)),
                _ => {
                    return Err(Skip::Why(
                        "the path does not name a drive (expected X:\\file or ?:\\file)".into(),
                    ))
                }
            }
        };
        let sizes: Vec<&str> = tokens.collect();
        if sizes.len() > 2 {
            return Err(Skip::Why("more than two sizes".into()));
        }
        let mut nums = Vec::new();
        for t in &sizes {
            match t.parse::<u64>() {
                Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) => nums.push(n),
                _ => {
                    return Err(Skip::Why(format!(
                        "size {:?} is not a whole number of megabytes",
                        clean(t)
                    )))
                }
            }
        }
        let min = nums.first().copied().unwrap_or(0);
        let max = nums.get(1).copied().unwrap_or(0);
        if max != 0 && max < min {
            return Err(Skip::Why("the maximum is smaller than the minimum".into()));
        }
        let mut line = path.clone();
        for n in nums {
            let _ = write!(line, " {n}");
        }
        Ok((path, line))
    }

    /// An environment value: paths through the drive map, `;` lists of paths become `:` lists.
    fn env_value(&self, v: &str) -> Result<String, Skip> {
        let parts: Vec<&str> = v.split(';').filter(|p| !p.is_empty()).collect();
        let mut mapped = Vec::new();
        for p in &parts {
            match self.opts.map_path(p) {
                Mapped::Path(m) => mapped.push(m),
                Mapped::Unmapped(l) => return Err(Skip::Unmapped(l)),
                Mapped::NotAPath => return Ok(v.to_owned()),
            }
        }
        if mapped.is_empty() {
            return Ok(v.to_owned());
        }
        Ok(mapped.join(":"))
    }

    fn environment(&mut self, slots: &[&Slot]) {
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            let value = match as_string(data, self.version()) {
                Ok(v) => v,
                Err(e) => {
                    self.out.skip(&what, e);
                    continue;
                }
            };
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.out.skip(&what, "not a valid variable name");
                continue;
            }
            if value.contains('\0') {
                self.out.skip(&what, "contains a NUL character");
                continue;
            }
            let windowsish = value.contains('\\') || value.contains(';');
            if name.eq_ignore_ascii_case("Path") && windowsish {
                self.out.skip(
                    &what,
                    "Windows program directories; smss keeps the Linux PATH",
                );
                continue;
            }
            if name.eq_ignore_ascii_case("PATHEXT") {
                self.out
                    .skip(&what, "Windows executable extensions: no Linux meaning");
                continue;
            }
            let name = if name.eq_ignore_ascii_case("Path") {
                "PATH"
            } else {
                name
            };
            match self.env_value(&value) {
                Ok(v) => {
                    self.out.strings.push(v.clone());
                    self.out.env_what.insert(name.to_owned(), what.clone());
                    self.out
                        .environment
                        .push((String::new(), name.to_owned(), v));
                }
                Err(e) => self.out.skip(&what, e.text()),
            }
        }
    }

    /// A DOS device's target: a path through the drive map, or an NT device's /dev analogue.
    fn dos_target(&self, v: &str) -> Result<String, Skip> {
        if v.is_empty() {
            return Ok(String::new());
        }
        match self.opts.map_path(v) {
            Mapped::Path(p) => return Ok(p),
            Mapped::Unmapped(l) => return Err(Skip::Unmapped(l)),
            Mapped::NotAPath => {}
        }
        let (prefixed, rest) = strip_nt_prefix(v);
        let lower = rest.to_ascii_lowercase();
        let numbered = |prefix: &str, base: u32| -> Option<u32> {
            let n = lower.strip_prefix(prefix)?;
            if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse::<u32>().ok()?.checked_sub(base)
        };
        let dev = if prefixed {
            match lower.as_str() {
                "nul" => Some("/dev/null".to_owned()),
                "aux" => Some("/dev/ttyS0".to_owned()),
                "prn" => Some("/dev/lp0".to_owned()),
                _ => numbered("com", 1)
                    .map(|n| format!("/dev/ttyS{n}"))
                    .or_else(|| numbered("lpt", 1).map(|n| format!("/dev/lp{n}"))),
            }
        } else if let Some(d) = strip_prefix_ci(v, "\\Device\\") {
            let lower = d.to_ascii_lowercase();
            let num = |p: &str| -> Option<u32> {
                let n = lower.strip_prefix(p)?;
                (!n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok())
                    .flatten()
            };
            if lower == "null" {
                Some("/dev/null".to_owned())
            } else {
                num("serial")
                    .map(|n| format!("/dev/ttyS{n}"))
                    .or_else(|| num("parallel").map(|n| format!("/dev/lp{n}")))
                    .or_else(|| num("cdrom").map(|n| format!("/dev/sr{n}")))
                    .or_else(|| num("floppy").map(|n| format!("/dev/fd{n}")))
            }
        } else {
            None
        };
        dev.ok_or_else(|| Skip::Why("an NT device with no Linux analogue".into()))
    }

    fn dos_devices(&mut self, slots: &[&Slot]) {
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            let target = match as_string(data, self.version()) {
                Ok(v) => v,
                Err(e) => {
                    self.out.skip(&what, e);
                    continue;
                }
            };
            // A plain name (`P:`, `NUL`) or, as smss also allows, an absolute path below /.
            let name_ok = if name.starts_with('/') {
                !name.trim_end_matches('/').is_empty() && !name.split('/').any(|c| c == "..")
            } else {
                !name.is_empty() && !name.contains('/') && name != "." && name != ".."
            };
            if !name_ok || name.contains('\0') || target.contains('\0') {
                self.out.skip(&what, "not a valid device name or target");
                continue;
            }
            match self.dos_target(&target) {
                Ok(t) => {
                    if t.starts_with("/dev/") && !target.starts_with('/') {
                        self.out
                            .note(format!("{what}: NT device {} became {t}", clean(&target)));
                    }
                    self.out.strings.push(t.clone());
                    self.out
                        .dos
                        .push((String::new(), name.to_owned(), toml_str(&t)));
                }
                Err(e) => self.out.skip(&what, e.text()),
            }
        }
    }

    fn subsystems(&mut self, slots: &[&Slot]) {
        let mut required: Option<(String, Vec<String>)> = None;
        let mut optional: Option<(String, Vec<String>)> = None;
        // Lower-cased names of definitions: imported, or present but not imported.
        let mut defined: HashSet<String> = HashSet::new();
        let mut failed: HashSet<String> = HashSet::new();
        // Definitions that run a Windows program (csrss.exe): kept, never required.
        let mut windows: HashSet<String> = HashSet::new();
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "required" | "optional" => match as_multi(data, self.version()) {
                    Ok(l) => {
                        let l = l.into_iter().filter(|n| !n.is_empty()).collect();
                        if lower == "required" {
                            required = Some((what, l));
                        } else {
                            optional = Some((what, l));
                        }
                    }
                    Err(e) => self.out.skip(&what, e),
                },
                "kmode" => {
                    let Some(mods) = self.multi(&what, data) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    for m in mods {
                        if m.is_empty() {
                            continue;
                        }
                        if m.contains(['\\', '/', '.']) {
                            self.out.skip(
                                &format!("{what} `{}`", clean(&m)),
                                "a Windows kernel driver; kmode takes Linux module names",
                            );
                        } else if m.chars().any(|c| c <= ' ') {
                            self.out
                                .skip(&format!("{what} `{}`", clean(&m)), "not a module name");
                        } else {
                            out.push(m);
                        }
                    }
                    if !out.is_empty() {
                        self.out.subsystems.push((
                            "[SubSystems\\Kmode]".into(),
                            "kmode".into(),
                            toml_array(&out),
                        ));
                    }
                }
                "posixsingleinstance" => self
                    .out
                    .skip(&what, "a POSIX subsystem option: no Linux meaning"),
                _ => {
                    let line = match as_string(data, self.version()) {
                        Ok(l) => l,
                        Err(e) => {
                            failed.insert(lower.clone());
                            self.out.skip(&what, e);
                            continue;
                        }
                    };
                    if name.is_empty() || name.chars().any(|c| c <= ' ') {
                        failed.insert(lower.clone());
                        self.out
                            .skip(&what, "not a subsystem name (empty, or with whitespace)");
                        continue;
                    }
                    match self.command(&line, &what) {
                        Ok(Some(c)) => {
                            if runs_windows_program(&line) {
                                windows.insert(lower.clone());
                            }
                            defined.insert(lower.clone());
                            self.out.strings.push(c.clone());
                            self.out.subsystems.push((
                                format!("[SubSystems\\{}]", clean(name)),
                                name.to_owned(),
                                toml_str(&c),
                            ));
                        }
                        Ok(None) => {
                            failed.insert(lower.clone());
                            let why = if lower == "debug" {
                                "empty: there is no debugging subsystem (`Debug` in Required is skipped)"
                            } else {
                                "an empty command"
                            };
                            self.out.skip(&what, why);
                        }
                        Err(e) => {
                            failed.insert(lower.clone());
                            self.out.skip(&what, e.text());
                        }
                    }
                }
            }
        }
        let mut listed: HashSet<String> = HashSet::new();
        for (is_required, list) in [(true, required), (false, optional)] {
            let Some((what, names)) = list else { continue };
            let mut out = Vec::new();
            for n in names {
                let lower = n.to_ascii_lowercase();
                let shown = format!("{what} `{}`", clean(&n));
                if n.chars().any(|c| c <= ' ') {
                    self.out.skip(&shown, "not a subsystem name");
                } else if !listed.insert(lower.clone()) {
                    self.out.skip(&shown, "listed twice");
                } else if is_required && windows.contains(&lower) {
                    self.out.skip(
                        &shown,
                        "its command is a Windows program, and a Required subsystem that cannot \
                         start stops the machine: point its definition at a Linux counterpart, \
                         then add it to required",
                    );
                } else if (is_required && lower == "debug") || defined.contains(&lower) {
                    out.push(n);
                } else if failed.contains(&lower) {
                    self.out.skip(&shown, "its command was not imported");
                } else {
                    self.out.skip(
                        &shown,
                        "no SubSystems value defines it (Windows skips it as an invalid subsystem name)",
                    );
                }
            }
            let key = if is_required { "required" } else { "optional" };
            let comment = if is_required {
                "[SubSystems\\Required]"
            } else {
                "[SubSystems\\Optional]"
            };
            self.out
                .subsystems
                .insert(0, (comment.into(), key.into(), toml_array(&out)));
        }
        // `required` before `optional` at the top of the section.
        self.out
            .subsystems
            .sort_by_key(|(_, k, _)| match k.as_str() {
                "required" => 0,
                "optional" => 1,
                "kmode" => 2,
                _ => 3,
            });
    }

    fn crash(&mut self, slots: &[&Slot]) {
        for s in slots {
            let what = Self::what(s);
            let Some((name, data)) = self.live(s) else {
                continue;
            };
            if !name.eq_ignore_ascii_case("AutoReboot") {
                self.out
                    .skip(&what, "crash dump settings: no counterpart in smss");
                continue;
            }
            match as_dword(data) {
                Ok(v) => self.out.crash.push((
                    "[CrashControl\\AutoReboot]".into(),
                    "auto-reboot".into(),
                    (v != 0).to_string(),
                )),
                Err(e) => self.out.skip(&what, e),
            }
        }
    }

    /// `%SystemRoot%`, `%SystemDrive%`, `%windir%` referenced but not defined by the file are
    /// defined from the drive map (the NT kernel gives smss the first two); other undefined
    /// references stay literal, with a note.
    fn define_references(&mut self) {
        let mut defined: HashSet<String> = self
            .out
            .environment
            .iter()
            .map(|(_, n, _)| n.clone())
            .collect();
        for n in ["PATH", "TTY", "TTYNAME", "SEAT", "SESSION"] {
            defined.insert(n.to_owned());
        }
        let mut referenced: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for s in &self.out.strings {
            let mut rest = s.as_str();
            while let Some(start) = rest.find('%') {
                let after = rest.get(start + 1..).unwrap_or("");
                match after.find('%') {
                    Some(end) if end > 0 => {
                        let name = after.get(..end).unwrap_or("");
                        if !defined.contains(name) && seen.insert(name) {
                            referenced.push(name.to_owned());
                        }
                        rest = after.get(end + 1..).unwrap_or("");
                    }
                    _ => rest = after,
                }
            }
        }
        let c_root = self.opts.drive('C').map(str::to_owned);
        let mut added: Vec<(String, String)> = Vec::new();
        let needs_root = referenced.iter().any(|r| r == "windir");
        for want in ["SystemDrive", "SystemRoot", "windir"] {
            let wanted =
                referenced.iter().any(|r| r == want) || (want == "SystemRoot" && needs_root);
            if !wanted || defined.contains(want) {
                continue;
            }
            let value = match (want, &c_root) {
                ("windir", _) => "%SystemRoot%".to_owned(),
                ("SystemDrive", Some(r)) => r.trim_end_matches('/').to_owned(),
                ("SystemRoot", Some(r)) => join(r, "Windows"),
                _ => continue,
            };
            defined.insert(want.to_owned());
            added.push((want.to_owned(), value));
        }
        if !added.is_empty() {
            let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
            self.out.note(format!(
                "{} referenced but not defined by the file (Windows gets them from the kernel): defined at the top of [environment] from the drive map (C:\\ -> SystemDrive\\, C:\\Windows -> SystemRoot)",
                names.join(", ")
            ));
            for (i, (n, v)) in added.into_iter().enumerate() {
                self.out.environment.insert(
                    i,
                    (
                        "defined by import-reg (referenced, not set by the file)".into(),
                        n,
                        v,
                    ),
                );
            }
        }
        for r in referenced {
            if !defined.contains(&r) {
                self.out.note(format!(
                    "%{}% is referenced but not defined: it stays literal",
                    clean(&r)
                ));
            }
        }
    }

    /// Leaves out, with the reason, each variable that the validator (and the boot) would
    /// refuse: expanded against the ones before it, past execve's limits for one variable or
    /// for the whole environment. Replays what the validator does, in the same order.
    fn fit_environment(&mut self) {
        let mut env = crate::Environment::default();
        if !self.out.environment.iter().any(|(_, n, _)| n == "PATH") {
            env.set("PATH", crate::DEFAULT_PATH);
        }
        for (comment, name, value) in std::mem::take(&mut self.out.environment) {
            match env.apply(&name, &value) {
                Ok(()) => self.out.environment.push((comment, name, value)),
                Err(e) => {
                    let what = match self.out.env_what.get(&name) {
                        Some(w) => w.clone(),
                        None => format!("[environment] {}", clean(&name)),
                    };
                    self.out.skip(&what, e.to_string());
                }
            }
        }
    }

    fn render(&mut self) -> Imported {
        let o = &self.out;
        let mut t = String::new();
        let version = match self.file.version {
            Version::V5 => "Windows Registry Editor Version 5.00",
            Version::Regedit4 => "REGEDIT4",
        };
        let _ = writeln!(
            t,
            "# smss configuration made by `smss import-reg` from {} ({version}, {}).",
            clean(&self.opts.source),
            self.file.encoding.as_str()
        );
        let _ = writeln!(
            t,
            "# Check it with `smss check FILE`; every key is described in examples/full.toml."
        );
        let drives: Vec<String> = self
            .opts
            .drives
            .iter()
            .map(|(l, r)| format!("{l}: -> {r}"))
            .collect();
        let _ = writeln!(t, "# Drive map: {}.", drives.join(", "));
        let entries = o.session_manager.len()
            + o.memory.len()
            + o.environment.len()
            + o.dos.len()
            + o.subsystems.len()
            + o.sessions.len()
            + o.crash.len();
        if entries == 0 {
            let _ = writeln!(
                t,
                "#\n# The file has no Session Manager values: there is nothing to import."
            );
        }
        // The comment block, within MAX_COMMENT_BYTES: the lines past it are counted.
        let start = t.len();
        let mut left_out = 0usize;
        let mut line = |t: &mut String, l: String| {
            if left_out == 0 && t.len() - start + l.len() < MAX_COMMENT_BYTES {
                t.push_str(&l);
            } else {
                left_out += 1;
            }
        };
        for (n, what) in &self.file.ignored {
            line(&mut t, format!("# ignored: line {n}: {}\n", clean(what)));
        }
        // The keys smss does not read come last: an export of a larger key lists thousands.
        let groups: [(&str, &Vec<String>); 4] = [
            ("not imported", &o.not_imported),
            ("left unset", &o.unset),
            ("note", &o.notes),
            ("not imported", &o.outside),
        ];
        for (label, items) in groups {
            if !items.is_empty() {
                line(&mut t, "#\n".to_owned());
            }
            for n in items {
                line(&mut t, format!("# {label}: {}\n", clean(n)));
            }
        }
        if left_out > 0 {
            let _ = writeln!(
                t,
                "#\n# ... and {left_out} more comment lines not listed (this list stops at {} KiB; {} values and keys not imported in all)",
                MAX_COMMENT_BYTES >> 10,
                o.not_imported.len() + o.outside.len()
            );
        }
        let environment: Entries = o
            .environment
            .iter()
            .map(|(c, n, v)| (c.clone(), n.clone(), toml_str(v)))
            .collect();
        let sections: [(&str, &Entries); 7] = [
            ("session-manager", &o.session_manager),
            ("memory-management", &o.memory),
            ("environment", &environment),
            ("dos-devices", &o.dos),
            ("subsystems", &o.subsystems),
            ("sessions", &o.sessions),
            ("crash-control", &o.crash),
        ];
        for (name, entries) in sections {
            if entries.is_empty() {
                continue;
            }
            let _ = writeln!(t, "\n[{name}]");
            for (comment, key, value) in entries {
                if !comment.is_empty() {
                    let _ = writeln!(t, "# {}", clean(comment));
                }
                let _ = writeln!(t, "{} = {value}", toml_key(key));
            }
        }
        Imported {
            toml: t,
            not_imported: o.not_imported.iter().chain(&o.outside).cloned().collect(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(drives: &[(char, &str)]) -> Options {
        let mut o = Options::new("t.reg");
        for (l, r) in drives {
            o.map_drive(*l, (*r).to_owned());
        }
        o
    }

    #[test]
    fn multi_sz_terminators() {
        assert_eq!(split_multi_sz("\0"), Vec::<String>::new()); // 00,00: the empty list
        assert_eq!(split_multi_sz(""), Vec::<String>::new());
        assert_eq!(split_multi_sz("a\0b\0\0"), ["a", "b"]);
        assert_eq!(split_multi_sz("a\0b\0"), ["a", "b"]); // a single final NUL
        assert_eq!(split_multi_sz("a\0b"), ["a", "b"]);
        assert_eq!(split_multi_sz("a\0\0\0"), ["a", ""]); // an empty string inside
    }

    #[test]
    fn paths_go_through_the_drive_map() {
        let o = opts(&[('d', "/srv/d/")]);
        let p = |s: &str| match o.map_path(s) {
            Mapped::Path(p) => p,
            Mapped::Unmapped(l) => format!("unmapped {l}"),
            Mapped::NotAPath => "not a path".into(),
        };
        assert_eq!(p("C:\\x\\y"), "/x/y");
        assert_eq!(p("c:"), "/");
        assert_eq!(p("\\??\\C:\\x"), "/x");
        assert_eq!(p("\\DosDevices\\D:\\x"), "/srv/d/x");
        assert_eq!(p("\\GLOBAL??\\d:"), "/srv/d/");
        assert_eq!(p("E:\\x"), "unmapped E");
        assert_eq!(
            p("\\SystemRoot\\System32\\x.sys"),
            "%SystemRoot%/System32/x.sys"
        );
        assert_eq!(p("%ProgramFiles%\\App"), "%ProgramFiles%/App");
        assert_eq!(p("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(p("\\DosDevices\\COM1"), "not a path");
        assert_eq!(p("ObjectDirectory=\\Windows"), "not a path");
        assert_eq!(p("C:x"), "not a path");
    }

    #[test]
    fn drive_flags() {
        assert_eq!(parse_drive_flag("d:=/mnt/d"), Ok(('D', "/mnt/d".into())));
        for bad in ["D=/x", "D:/x", "1:=/x", "D:=x", "D:=/a b", "D:=/%x%", "D:="] {
            assert!(parse_drive_flag(bad).is_err(), "{bad}");
        }
        let mut o = Options::new("x");
        o.map_drive('c', "/srv/c".into());
        assert_eq!(o.drive('C'), Some("/srv/c"));
    }

    fn cmd(o: &Options, line: &str) -> Result<Option<String>, String> {
        let file = RegFile {
            version: Version::V5,
            encoding: super::super::Encoding::Utf8,
            keys: Vec::new(),
            ignored: Vec::new(),
        };
        let mut t = Translator {
            file: &file,
            opts: o,
            out: Out::default(),
        };
        t.command(line, "X").map_err(|e| e.text())
    }

    #[test]
    fn commands_in_smss_grammar() {
        let o = opts(&[]);
        assert_eq!(
            cmd(&o, "autocheck autochk *"),
            Ok(Some("autocheck fsck -p -A".into()))
        );
        assert_eq!(
            cmd(&o, "AutoCheck AUTOCHK.EXE *"),
            Ok(Some("autocheck fsck -p -A".into()))
        );
        assert_eq!(
            cmd(&o, "autochk *"),
            Ok(Some("autocheck fsck -p -A".into()))
        );
        assert!(cmd(&o, "autocheck autochk /k:C *").is_err());
        assert_eq!(
            cmd(
                &o,
                "ASYNC  debug\t\\??\\C:\\bin\\x  C:\\a ObjectDirectory=\\Windows"
            ),
            Ok(Some(
                "async debug /bin/x /a ObjectDirectory=\\Windows".into()
            ))
        );
        assert_eq!(
            cmd(&o, "autocheck autoconv \\DosDevices\\x: /FS:NTFS"),
            Err("drive X: is not mapped: add --drive X:=PATH".into())
        );
        assert_eq!(cmd(&o, "   "), Ok(None));
        assert!(cmd(&o, "async").is_err());
    }

    #[test]
    fn toml_strings_and_keys() {
        assert_eq!(toml_str("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
        assert_eq!(toml_key("ComSpec"), "ComSpec");
        assert_eq!(toml_key("C:"), "\"C:\"");
        assert_eq!(toml_key(""), "\"\"");
    }
}
