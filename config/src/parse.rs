//! The TOML walker: source text -> [`Config`], collecting every problem with its position.
//!
//! `toml_edit` gives a tree in which every key and value knows its byte span. We walk it by hand
//! (instead of serde) so that one bad value does not hide the next: each problem becomes a
//! diagnostic, the default is kept for that field, and the walk goes on.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ArrayOfTables, ImDocument, Item, TableLike, Value};

use crate::command::parse_command_line;
use crate::diag::{line_col, LineIndex};
use crate::duration::parse_duration;
use crate::{
    CommandSpec, Config, CrashAction, Diagnostic, Diagnostics, Environment, ForwardTo, PagingFile,
    Ready, Seat, Subsystems, Volume, DEFAULT_PATH, MAX_PAGING_FILES,
};

/// Largest configuration file accepted (1 MiB): PID 1 reads it into memory.
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// Reads and parses a configuration file.
///
/// A file that cannot be read (missing, unreadable, not a regular file: a FIFO is refused, never
/// waited on; larger than [`MAX_CONFIG_SIZE`]) gives one
/// diagnostic at 1:1; a file that is not UTF-8 gives one at the first invalid byte. Use
/// [`load_optional`] to tell "no file" (boot with defaults) apart from a broken one.
pub fn load_file(path: &Path) -> Result<Config, Diagnostics> {
    match read_config(path)? {
        Some(src) => parse_str(&src, path),
        None => Err(Diagnostics::whole_file(
            path,
            "cannot read configuration file: No such file or directory",
        )),
    }
}

/// Like [`load_file`], but a missing file (`ENOENT`) is `Ok(None)`: the caller then uses
/// [`Config::default`] and says so.
pub fn load_optional(path: &Path) -> Result<Option<Config>, Diagnostics> {
    match read_config(path)? {
        Some(src) => parse_str(&src, path).map(Some),
        None => Ok(None),
    }
}

fn read_config(path: &Path) -> Result<Option<String>, Diagnostics> {
    let cannot = |e: std::io::Error| {
        Diagnostics::whole_file(path, format!("cannot read configuration file: {e}"))
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, and PID 1
    // opens this with every signal blocked. What is not a regular file is refused below.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e)),
    };
    let meta = file.metadata().map_err(cannot)?;
    if !meta.file_type().is_file() {
        return Err(Diagnostics::whole_file(
            path,
            format!(
                "configuration file is not a regular file ({})",
                file_kind(meta.file_type())
            ),
        ));
    }
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(too_large(path));
    }
    let mut buf = Vec::new();
    // Bounded even if the file grows while being read.
    if let Err(e) = file.take(MAX_CONFIG_SIZE + 1).read_to_end(&mut buf) {
        return Err(cannot(e));
    }
    if buf.len() as u64 > MAX_CONFIG_SIZE {
        return Err(too_large(path));
    }
    match String::from_utf8(buf) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let prefix = std::str::from_utf8(bytes.get(..valid).unwrap_or(&[])).unwrap_or("");
            let (line, col) = line_col(prefix, valid);
            Err(Diagnostics(vec![Diagnostic {
                path: path.to_path_buf(),
                line,
                col,
                message: "configuration file is not valid UTF-8".into(),
            }]))
        }
    }
}

fn too_large(path: &Path) -> Diagnostics {
    Diagnostics::whole_file(
        path,
        format!("configuration file is larger than {MAX_CONFIG_SIZE} bytes"),
    )
}

/// What a file that is not a regular file is, for the error message (the configuration's
/// and PID 1's own refusals of a FIFO or a device where a file belongs say it alike).
pub fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Parses and validates configuration text. `path` is only used in diagnostics.
pub fn parse_str(src: &str, path: &Path) -> Result<Config, Diagnostics> {
    let mut cx = Ctx {
        src,
        path,
        lines: LineIndex::new(src),
        diags: Vec::new(),
    };
    let doc = match ImDocument::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            cx.err(e.span().map(|r| r.start), syntax_message(e.message()));
            return Err(cx.finish());
        }
    };
    let root = Section {
        path: String::new(),
        label: "the top level".into(),
        table: doc.as_table(),
        pos: Some(0),
    };
    let cfg = cx.config(&root);
    if cx.diags.is_empty() {
        Ok(cfg)
    } else {
        Err(cx.finish())
    }
}

/// toml_edit's messages span several lines ("invalid key\nexpected `=`"); make them one.
fn syntax_message(msg: &str) -> String {
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if parts.is_empty() {
        "TOML syntax error".into()
    } else {
        format!("TOML syntax error: {}", parts.join("; "))
    }
}

/// A byte offset into the source, when known.
type Pos = Option<usize>;

/// Anything a key can hold, as far as this walker cares.
#[derive(Clone, Copy)]
enum Node<'a> {
    Value(&'a Value),
    Table(&'a dyn TableLike, Pos),
    Tables(&'a ArrayOfTables),
}

impl<'a> Node<'a> {
    fn of(item: &'a Item) -> Option<Node<'a>> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(Node::Value(v)),
            Item::Table(t) => Some(Node::Table(t, t.span().map(|r| r.start))),
            Item::ArrayOfTables(a) => Some(Node::Tables(a)),
        }
    }

    fn pos(&self) -> Pos {
        match self {
            Node::Value(v) => v.span().map(|r| r.start),
            Node::Table(_, p) => *p,
            Node::Tables(a) => a.span().map(|r| r.start),
        }
    }

    /// "a string", "an integer", ... for "expected X, found Y".
    fn desc(&self) -> &'static str {
        match self {
            Node::Value(Value::String(_)) => "a string",
            Node::Value(Value::Integer(_)) => "an integer",
            Node::Value(Value::Float(_)) => "a float",
            Node::Value(Value::Boolean(_)) => "a boolean",
            Node::Value(Value::Datetime(_)) => "a date-time",
            Node::Value(Value::Array(_)) => "an array",
            Node::Value(Value::InlineTable(_)) | Node::Table(..) => "a table",
            Node::Tables(_) => "an array of tables",
        }
    }

    fn as_str(&self) -> Option<&'a str> {
        match self {
            Node::Value(v) => v.as_str(),
            _ => None,
        }
    }

    fn as_table(&self) -> Option<(&'a dyn TableLike, Pos)> {
        match *self {
            Node::Value(Value::InlineTable(t)) => Some((t as &dyn TableLike, self.pos())),
            Node::Table(t, p) => Some((t, p)),
            _ => None,
        }
    }
}

/// A table being walked, with its dotted path for messages ("" for the root).
struct Section<'a> {
    path: String,
    /// How the table is named in "unknown key" messages: "[x]", "[[x]]", "the top level"...
    label: String,
    table: &'a dyn TableLike,
    pos: Pos,
}

/// One key of a [`Section`].
struct Entry<'a> {
    key: &'a str,
    key_pos: Pos,
    node: Node<'a>,
}

impl<'a> Entry<'a> {
    /// Where a problem with the value is reported.
    fn pos(&self) -> Pos {
        self.node.pos().or(self.key_pos)
    }
}

impl<'a> Section<'a> {
    fn entries(&self) -> Vec<Entry<'a>> {
        let table: &'a dyn TableLike = self.table;
        table
            .iter()
            .filter_map(|(key, item)| {
                let node = Node::of(item)?;
                let key_pos = table.key(key).and_then(|k| k.span()).map(|r| r.start);
                Some(Entry { key, key_pos, node })
            })
            .collect()
    }

    /// `section.key`, for messages.
    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

struct Ctx<'s> {
    src: &'s str,
    path: &'s Path,
    lines: LineIndex,
    diags: Vec<(usize, String)>,
}

/// The top-level sections, in the order of interface.md section 3.
const SECTIONS: &[&str] = &[
    "session-manager",
    "boot-drivers",
    "volumes",
    "memory-management",
    "environment",
    "dos-devices",
    "pending-file-rename-operations",
    "subsystems",
    "sessions",
    "seats",
    "crash-control",
    "control",
    "shutdown",
    "container",
];

const SESSION_MANAGER_KEYS: &[&str] = &[
    "object-directories",
    "protection-mode",
    "boot-execute",
    "setup-execute",
    "execute",
    "dos-devices-directory",
];
const BOOT_DRIVERS_KEYS: &[&str] = &["modules", "coldplug"];
const VOLUME_KEYS: &[&str] = &[
    "device",
    "mountpoint",
    "fstype",
    "options",
    "device-timeout",
    "required",
];
const MEMORY_MANAGEMENT_KEYS: &[&str] = &["paging-files", "paging-file-volumes"];
const PENDING_RENAMES_KEYS: &[&str] = &["queue"];
/// The keys of [subsystems] that are not subsystem definitions.
const SUBSYSTEMS_LIST_KEYS: &[&str] = &["required", "optional", "kmode"];
const SESSIONS_KEYS: &[&str] = &[
    "initial-command",
    "session0-initial-command",
    "max-sessions",
    "parallel-session-creation",
    "session-subsystems",
];
const SEAT_KEYS: &[&str] = &["name", "tty"];
const CRASH_CONTROL_KEYS: &[&str] = &["auto-reboot", "action"];
const CONTROL_KEYS: &[&str] = &["socket", "allowed-group"];
const SHUTDOWN_KEYS: &[&str] = &["grace-period"];
const CONTAINER_KEYS: &[&str] = &["forward-signals-to"];

/// Each section (as written in a file) and its fixed keys, in SECTIONS' order; for saying
/// where a key found in the top level belongs. [environment] and [dos-devices] take any key.
const SECTION_KEYS: &[(&str, &[&str])] = &[
    ("[session-manager]", SESSION_MANAGER_KEYS),
    ("[boot-drivers]", BOOT_DRIVERS_KEYS),
    ("[[volumes]]", VOLUME_KEYS),
    ("[memory-management]", MEMORY_MANAGEMENT_KEYS),
    ("[pending-file-rename-operations]", PENDING_RENAMES_KEYS),
    ("[subsystems]", SUBSYSTEMS_LIST_KEYS),
    ("[sessions]", SESSIONS_KEYS),
    ("[[seats]]", SEAT_KEYS),
    ("[crash-control]", CRASH_CONTROL_KEYS),
    ("[control]", CONTROL_KEYS),
    ("[shutdown]", SHUTDOWN_KEYS),
    ("[container]", CONTAINER_KEYS),
];

impl<'s> Ctx<'s> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push((pos.unwrap_or(0), msg.into()));
    }

    fn finish(&mut self) -> Diagnostics {
        let mut diags = std::mem::take(&mut self.diags);
        diags.sort_by_key(|(off, _)| *off);
        // Sorted offsets: count columns incrementally, so many problems on one long line stay
        // linear in the file size.
        let mut last: Option<(usize, usize, usize)> = None; // (offset, line, col)
        Diagnostics(
            diags
                .into_iter()
                .map(|(off, message)| {
                    let (line, col) = match last {
                        Some((lo, ll, lc)) if off >= lo && self.lines.line(off) == ll => {
                            match self.src.get(lo..off) {
                                Some(t) => (ll, lc + t.chars().count()),
                                None => self.lines.line_col(self.src, off),
                            }
                        }
                        _ => self.lines.line_col(self.src, off),
                    };
                    last = Some((off, line, col));
                    Diagnostic {
                        path: self.path.to_path_buf(),
                        line,
                        col,
                        message,
                    }
                })
                .collect(),
        )
    }

    fn line_of(&self, pos: Pos) -> usize {
        self.lines.line(pos.unwrap_or(0))
    }

    /// The duplicate-key check of list entries (a volume's mountpoint, a seat's name and tty):
    /// records `key` at `pos` when it is new; otherwise reports it at `pos`, `taken` saying
    /// what the line of its first use holds, and returns false.
    fn first_use<K: std::hash::Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, Pos>,
        key: K,
        pos: Pos,
        taken: impl FnOnce(usize) -> String,
    ) -> bool {
        if let Some(first) = seen.get(&key) {
            let line = self.line_of(*first);
            self.err(pos, taken(line));
            false
        } else {
            seen.insert(key, pos);
            true
        }
    }

    fn unknown_key(&mut self, sec: &Section, e: &Entry, known: &[&str]) {
        // A value in the top level that is a key of some section: written above the first
        // `[section]` line, or with that line forgotten.
        if sec.path.is_empty() && matches!(e.node, Node::Value(v) if !v.is_inline_table()) {
            let homes: Vec<&str> = SECTION_KEYS
                .iter()
                .filter(|(_, keys)| keys.contains(&e.key))
                .map(|(s, _)| *s)
                .collect();
            if !homes.is_empty() {
                self.err(
                    e.key_pos.or(e.pos()),
                    format!(
                        "key `{}` is outside any section: it belongs in {}",
                        e.key,
                        homes.join(" or ")
                    ),
                );
                return;
            }
        }
        // Suggest the kebab-case key for `protection_mode`, `ProtectionMode`, `BootExecute`...
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| *c != '-' && *c != '_')
                .flat_map(char::to_lowercase)
                .collect()
        };
        let wanted = squash(e.key);
        let hint = match known.iter().find(|k| squash(k) == wanted) {
            Some(k) => format!("; did you mean `{k}`?"),
            None if known.is_empty() => String::new(),
            None => format!(" (expected one of: {})", known.join(", ")),
        };
        let what = if sec.path.is_empty() {
            "unknown section"
        } else {
            "unknown key"
        };
        self.err(
            e.key_pos.or(e.pos()),
            format!("{what} `{}` in {}{hint}", e.key, sec.label),
        );
    }

    // ---- typed accessors: report and return None on a wrong type ----

    fn section<'a>(&mut self, e: &Entry<'a>, path: String) -> Option<Section<'a>> {
        match e.node.as_table() {
            Some((table, pos)) => Some(Section {
                label: format!("[{path}]"),
                path,
                table,
                pos: pos.or(e.key_pos),
            }),
            None => {
                self.err(
                    e.pos(),
                    format!("`{path}`: expected a table, found {}", e.node.desc()),
                );
                None
            }
        }
    }

    fn string<'a>(&mut self, node: Node<'a>, what: &str) -> Option<&'a str> {
        let s = node.as_str();
        if s.is_none() {
            self.err(
                node.pos(),
                format!("`{what}`: expected a string, found {}", node.desc()),
            );
        }
        s
    }

    fn boolean(&mut self, node: Node, what: &str) -> Option<bool> {
        match node {
            Node::Value(Value::Boolean(b)) => Some(*b.value()),
            _ => {
                self.err(
                    node.pos(),
                    format!(
                        "`{what}`: expected a boolean (true or false), found {}",
                        node.desc()
                    ),
                );
                None
            }
        }
    }

    fn integer(&mut self, node: Node, what: &str) -> Option<i64> {
        match node {
            Node::Value(Value::Integer(i)) => Some(*i.value()),
            _ => {
                self.err(
                    node.pos(),
                    format!("`{what}`: expected an integer, found {}", node.desc()),
                );
                None
            }
        }
    }

    /// A positive `u32` (at least 1).
    fn count(&mut self, node: Node, what: &str) -> Option<u32> {
        let i = self.integer(node, what)?;
        if i < 1 {
            self.err(
                node.pos(),
                format!("`{what}`: must be at least 1, found {i}"),
            );
            return None;
        }
        match u32::try_from(i) {
            Ok(v) => Some(v),
            Err(_) => {
                self.err(
                    node.pos(),
                    format!("`{what}`: must be at most {}, found {i}", u32::MAX),
                );
                None
            }
        }
    }

    fn array<'a>(&mut self, node: Node<'a>, what: &str) -> Option<Vec<Node<'a>>> {
        match node {
            Node::Value(Value::Array(a)) => Some(a.iter().map(Node::Value).collect()),
            _ => {
                self.err(
                    node.pos(),
                    format!("`{what}`: expected an array, found {}", node.desc()),
                );
                None
            }
        }
    }

    /// An array of strings; elements of another type are reported and dropped.
    fn strings<'a>(&mut self, node: Node<'a>, what: &str) -> Vec<(&'a str, Pos)> {
        let Some(elems) = self.array(node, what) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for el in elems {
            match el.as_str() {
                Some(s) => out.push((s, el.pos())),
                None => self.err(
                    el.pos(),
                    format!("`{what}`: expected strings, found {}", el.desc()),
                ),
            }
        }
        out
    }

    /// Names (module, subsystem, group): non-empty, no whitespace or NUL.
    fn name(&mut self, s: &str, pos: Pos, what: &str, kind: &str) -> Option<String> {
        if s.is_empty() {
            self.err(pos, format!("`{what}`: {kind} is empty"));
            None
        } else if s.chars().any(|c| c <= ' ') {
            self.err(
                pos,
                format!("`{what}`: {kind} {s:?} contains whitespace or a control character"),
            );
            None
        } else {
            Some(s.to_owned())
        }
    }

    /// A `[[volumes]] device` the boot can wait for (init's `DeviceSpec`): an absolute path, or
    /// `LABEL=`, `UUID=`, `PARTUUID=`, `PARTLABEL=` with a value (optionally in double quotes).
    /// Labels and paths may hold spaces ("EFI System Partition"), not control characters.
    fn volume_device(&mut self, s: &str, pos: Pos, what: &str) -> Option<String> {
        if s.is_empty() {
            self.err(pos, format!("`{what}`: device is empty"));
            return None;
        }
        if s.chars().any(char::is_control) {
            self.err(
                pos,
                format!("`{what}`: device {s:?} contains a control character"),
            );
            return None;
        }
        for tag in ["LABEL=", "UUID=", "PARTUUID=", "PARTLABEL="] {
            if let Some(v) = s.strip_prefix(tag) {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                if v.is_empty() {
                    self.err(pos, format!("`{what}`: {tag} needs a value"));
                    return None;
                }
                return Some(s.to_owned());
            }
        }
        if !s.starts_with('/') {
            self.err(
                pos,
                format!("`{what}`: expected an absolute path, LABEL=, UUID=, PARTUUID= or PARTLABEL=, found {s:?}"),
            );
            return None;
        }
        Some(s.to_owned())
    }

    fn no_nul(&mut self, s: &str, pos: Pos, what: &str) -> bool {
        if s.contains('\0') {
            self.err(pos, format!("`{what}`: {s:?} contains a NUL character"));
            false
        } else {
            true
        }
    }

    fn abs_path(&mut self, s: &str, pos: Pos, what: &str) -> Option<PathBuf> {
        if !self.no_nul(s, pos, what) {
            return None;
        }
        if !s.starts_with('/') {
            let found = if s.is_empty() {
                "an empty string".to_string()
            } else {
                format!("{s:?}")
            };
            self.err(
                pos,
                format!("`{what}`: expected an absolute path, found {found}"),
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    fn abs_path_node(&mut self, node: Node, what: &str) -> Option<PathBuf> {
        let s = self.string(node, what)?;
        self.abs_path(s, node.pos(), what)
    }

    fn duration(&mut self, node: Node, what: &str) -> Option<Duration> {
        match node {
            Node::Value(Value::Integer(i)) => match u64::try_from(*i.value()) {
                Ok(secs) if Duration::from_secs(secs) > crate::duration::MAX_DURATION => {
                    self.err(
                        node.pos(),
                        format!("`{what}`: duration too long (at most 365 days)"),
                    );
                    None
                }
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => {
                    self.err(
                        node.pos(),
                        format!("`{what}`: a duration cannot be negative"),
                    );
                    None
                }
            },
            Node::Value(Value::String(s)) => match parse_duration(s.value()) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(
                        node.pos(),
                        format!("`{what}`: invalid duration {:?}: {e}", s.value()),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    node.pos(),
                    format!(
                        "`{what}`: expected a duration like \"10s\", found {}",
                        node.desc()
                    ),
                );
                None
            }
        }
    }

    // ---- commands ----

    /// A command: a string in smss grammar or a command table.
    fn command(&mut self, node: Node, what: &str) -> Option<CommandSpec> {
        if let Some(s) = node.as_str() {
            return match parse_command_line(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.err(node.pos(), format!("`{what}`: {e}"));
                    None
                }
            };
        }
        let Some((table, pos)) = node.as_table() else {
            self.err(
                node.pos(),
                format!(
                    "`{what}`: expected a command line string or a command table, found {}",
                    node.desc()
                ),
            );
            return None;
        };
        let sec = Section {
            path: what.to_owned(),
            label: format!("the command table of `{what}`"),
            table,
            pos,
        };
        const KNOWN: &[&str] = &[
            "command",
            "autocheck",
            "async",
            "debug",
            "ready",
            "ready-timeout",
            "critical",
            "fatal",
        ];
        let mut spec = CommandSpec::new(Vec::new());
        let mut have_command = false;
        let mut ok = true;
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "command" => {
                    have_command = true;
                    match self.argv(e.node, &kp) {
                        Some(c) => {
                            spec.argv = c.argv;
                            spec.autocheck |= c.autocheck;
                            spec.async_ |= c.async_;
                            spec.debug |= c.debug;
                        }
                        None => ok = false,
                    }
                }
                "autocheck" | "async" | "debug" | "critical" | "fatal" => {
                    let Some(b) = self.boolean(e.node, &kp) else {
                        ok = false;
                        continue;
                    };
                    match e.key {
                        "autocheck" => spec.autocheck |= b,
                        "async" => spec.async_ |= b,
                        "debug" => spec.debug |= b,
                        "critical" => spec.critical = Some(b),
                        _ => spec.fatal = b,
                    }
                }
                "ready" => match self.string(e.node, &kp) {
                    Some("exec") => spec.ready = Ready::Exec,
                    Some("notify") => spec.ready = Ready::Notify,
                    Some(other) => {
                        self.err(
                            e.pos(),
                            format!("`{kp}`: unknown readiness {other:?} (expected \"exec\" or \"notify\")"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                "ready-timeout" => match self.duration(e.node, &kp) {
                    Some(d) => spec.ready_timeout = Some(d),
                    None => ok = false,
                },
                _ => {
                    self.unknown_key(&sec, &e, KNOWN);
                    ok = false;
                }
            }
        }
        if !have_command {
            self.err(
                sec.pos,
                format!("`{what}`: missing key `command` in command table"),
            );
            return None;
        }
        ok.then_some(spec)
    }

    /// The `command` of a command table: an argv array, or a string in smss grammar.
    fn argv(&mut self, node: Node, what: &str) -> Option<CommandSpec> {
        if let Some(s) = node.as_str() {
            return match parse_command_line(s) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.err(node.pos(), format!("`{what}`: {e}"));
                    None
                }
            };
        }
        if !matches!(node, Node::Value(Value::Array(_))) {
            self.err(
                node.pos(),
                format!(
                    "`{what}`: expected an array of strings (program and arguments) or a command line string, found {}",
                    node.desc()
                ),
            );
            return None;
        }
        let elems = self.array(node, what)?;
        let n = elems.len();
        let strings = self.strings(node, what);
        if strings.len() != n {
            return None;
        }
        let Some(&(program, ppos)) = strings.first() else {
            self.err(node.pos(), format!("`{what}`: empty command"));
            return None;
        };
        if program.is_empty() {
            self.err(ppos, format!("`{what}`: the program name is empty"));
            return None;
        }
        let mut ok = true;
        for (s, p) in &strings {
            ok &= self.no_nul(s, *p, what);
        }
        ok.then(|| CommandSpec::new(strings.iter().map(|(s, _)| (*s).to_owned()).collect()))
    }

    fn command_list(&mut self, node: Node, what: &str) -> Vec<CommandSpec> {
        let Some(elems) = self.array(node, what) else {
            return Vec::new();
        };
        elems
            .into_iter()
            .filter_map(|el| self.command(el, what))
            .collect()
    }

    /// `initial-command` style: `""` (or blanks only) means none.
    fn optional_command(&mut self, node: Node, what: &str) -> Option<CommandSpec> {
        if let Some(s) = node.as_str() {
            if s.chars().all(|c| c <= ' ') {
                return None;
            }
        }
        self.command(node, what)
    }

    // ---- the sections ----

    fn config(&mut self, root: &Section) -> Config {
        let mut cfg = Config::default();
        let mut subsystem_refs = SubsystemRefs::default();
        for e in root.entries() {
            let path = e.key.to_owned();
            match e.key {
                "volumes" => cfg.volumes = self.volumes(&e),
                "seats" => cfg.seats = self.seats(&e),
                _ if SECTIONS.contains(&e.key) => {
                    let Some(sec) = self.section(&e, path) else {
                        continue;
                    };
                    match e.key {
                        "session-manager" => self.session_manager(&sec, &mut cfg),
                        "boot-drivers" => self.boot_drivers(&sec, &mut cfg),
                        "memory-management" => self.memory_management(&sec, &mut cfg),
                        "environment" => cfg.environment = self.environment(&sec),
                        "dos-devices" => cfg.dos_devices = self.dos_devices(&sec),
                        "pending-file-rename-operations" => self.pending_renames(&sec, &mut cfg),
                        "subsystems" => self.subsystems(&sec, &mut cfg, &mut subsystem_refs),
                        "sessions" => self.sessions(&sec, &mut cfg, &mut subsystem_refs),
                        "crash-control" => self.crash_control(&sec, &mut cfg),
                        "control" => self.control(&sec, &mut cfg),
                        "shutdown" => self.shutdown(&sec, &mut cfg),
                        _ => self.container(&sec, &mut cfg),
                    }
                }
                _ => self.unknown_key(root, &e, SECTIONS),
            }
        }
        self.check_subsystem_refs(&subsystem_refs);
        cfg
    }

    fn session_manager(&mut self, sec: &Section, cfg: &mut Config) {
        const KNOWN: &[&str] = SESSION_MANAGER_KEYS;
        let out = &mut cfg.session_manager;
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "object-directories" => {
                    let dirs = self.strings(e.node, &kp);
                    out.object_directories = dirs
                        .into_iter()
                        .filter_map(|(s, p)| self.abs_path(s, p, &kp))
                        .collect();
                }
                "protection-mode" => match self.integer(e.node, &kp) {
                    Some(i @ (0 | 1)) => out.protection_mode = i as u32,
                    Some(i) => self.err(
                        e.pos(),
                        format!("`{kp}`: expected 0 (liberal) or 1 (strict), found {i}"),
                    ),
                    None => {}
                },
                "boot-execute" => out.boot_execute = self.command_list(e.node, &kp),
                "setup-execute" => out.setup_execute = self.command_list(e.node, &kp),
                "execute" => out.execute = self.command_list(e.node, &kp),
                "dos-devices-directory" => {
                    if let Some(p) = self.abs_path_node(e.node, &kp) {
                        out.dos_devices_directory = p;
                    }
                }
                _ => self.unknown_key(sec, &e, KNOWN),
            }
        }
    }

    fn boot_drivers(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "modules" => {
                    let mods = self.strings(e.node, &kp);
                    cfg.boot_drivers.modules = mods
                        .into_iter()
                        .filter_map(|(s, p)| self.name(s, p, &kp, "module name"))
                        .collect();
                }
                "coldplug" => {
                    if let Some(b) = self.boolean(e.node, &kp) {
                        cfg.boot_drivers.coldplug = b;
                    }
                }
                _ => self.unknown_key(sec, &e, BOOT_DRIVERS_KEYS),
            }
        }
    }

    /// The tables of an array of tables (`[[x]]`) or of an inline array of tables.
    fn table_list<'a>(&mut self, e: &Entry<'a>) -> Vec<Section<'a>> {
        let path = e.key.to_owned();
        match e.node {
            Node::Tables(a) => a
                .iter()
                .map(|t| Section {
                    path: path.clone(),
                    label: format!("[[{path}]]"),
                    table: t,
                    pos: t.span().map(|r| r.start).or(e.key_pos),
                })
                .collect(),
            Node::Value(Value::Array(a)) => {
                let mut out = Vec::new();
                for v in a.iter() {
                    let node = Node::Value(v);
                    match node.as_table() {
                        Some((table, pos)) => out.push(Section {
                            path: path.clone(),
                            label: format!("[[{path}]]"),
                            table,
                            pos,
                        }),
                        None => self.err(
                            node.pos(),
                            format!("`{path}`: expected tables, found {}", node.desc()),
                        ),
                    }
                }
                out
            }
            other => {
                self.err(
                    e.pos(),
                    format!(
                        "`{path}`: expected an array of tables ([[{path}]]), found {}",
                        other.desc()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn volumes(&mut self, e: &Entry) -> Vec<Volume> {
        const KNOWN: &[&str] = VOLUME_KEYS;
        let mut out = Vec::new();
        let mut seen: HashMap<PathBuf, Pos> = HashMap::new();
        for sec in self.table_list(e) {
            let mut device = None;
            let mut mountpoint = None;
            let mut fstype = None;
            let mut options = Some(String::new());
            let mut device_timeout = crate::DEFAULT_DEVICE_TIMEOUT;
            let mut required = false;
            let mut ok = true;
            for e in sec.entries() {
                let kp = sec.key_path(e.key);
                match e.key {
                    "device" => {
                        device = self
                            .string(e.node, &kp)
                            .and_then(|s| self.volume_device(s, e.pos(), &kp));
                        ok &= device.is_some();
                    }
                    "mountpoint" => {
                        let p = self.abs_path_node(e.node, &kp);
                        if let Some(p) = &p {
                            ok &= self.first_use(&mut seen, p.clone(), e.pos(), |line| {
                                format!("`{kp}`: {:?} is already the mountpoint of the volume at line {line}", p.display().to_string())
                            });
                        }
                        ok &= p.is_some();
                        mountpoint = p;
                    }
                    "fstype" => {
                        fstype = self
                            .string(e.node, &kp)
                            .and_then(|s| self.name(s, e.pos(), &kp, "filesystem type"));
                        ok &= fstype.is_some();
                    }
                    "options" => {
                        options = self
                            .string(e.node, &kp)
                            .and_then(|s| self.no_nul(s, e.pos(), &kp).then(|| s.to_owned()));
                        ok &= options.is_some();
                    }
                    "device-timeout" => match self.duration(e.node, &kp) {
                        Some(d) => device_timeout = d,
                        None => ok = false,
                    },
                    "required" => match self.boolean(e.node, &kp) {
                        Some(b) => required = b,
                        None => ok = false,
                    },
                    _ => {
                        self.unknown_key(&sec, &e, KNOWN);
                        ok = false;
                    }
                }
            }
            for (key, present) in [
                ("device", sec.table.contains_key("device")),
                ("mountpoint", sec.table.contains_key("mountpoint")),
                ("fstype", sec.table.contains_key("fstype")),
            ] {
                if !present {
                    self.err(
                        sec.pos,
                        format!("`volumes`: missing key `{key}` in this [[volumes]] entry"),
                    );
                    ok = false;
                }
            }
            if let (true, Some(device), Some(mountpoint), Some(fstype), Some(options)) =
                (ok, device, mountpoint, fstype, options)
            {
                out.push(Volume {
                    device,
                    mountpoint,
                    fstype,
                    options,
                    device_timeout,
                    required,
                });
            }
        }
        out
    }

    fn memory_management(&mut self, sec: &Section, cfg: &mut Config) {
        const KNOWN: &[&str] = MEMORY_MANAGEMENT_KEYS;
        let mut any_volume_entry: Option<(Pos, String)> = None;
        let mut volumes_pos = None;
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "paging-files" => {
                    let mut files: Vec<PagingFile> = Vec::new();
                    for (i, (s, p)) in self.strings(e.node, &kp).into_iter().enumerate() {
                        if i == MAX_PAGING_FILES {
                            self.err(
                                p,
                                format!("`{kp}`: at most {MAX_PAGING_FILES} paging files are allowed, this is number {}", i + 1),
                            );
                        }
                        let Some(f) = self.paging_file(s, p, &kp) else {
                            continue;
                        };
                        if files
                            .iter()
                            .any(|g| g.path == f.path && g.any_volume == f.any_volume)
                        {
                            let shown = format!(
                                "{}{}",
                                if f.any_volume { "?:" } else { "" },
                                f.path.display()
                            );
                            self.err(p, format!("`{kp}`: paging file {shown:?} is listed twice"));
                            continue;
                        }
                        if f.any_volume && any_volume_entry.is_none() {
                            any_volume_entry = Some((p, kp.clone()));
                        }
                        if i < MAX_PAGING_FILES {
                            files.push(f);
                        }
                    }
                    cfg.memory_management.paging_files = files;
                }
                "paging-file-volumes" => {
                    volumes_pos = e.pos();
                    let vols = self.strings(e.node, &kp);
                    cfg.memory_management.paging_file_volumes = vols
                        .into_iter()
                        .filter_map(|(s, p)| self.abs_path(s, p, &kp))
                        .collect();
                }
                _ => self.unknown_key(sec, &e, KNOWN),
            }
        }
        if let Some((p, kp)) = any_volume_entry {
            if cfg.memory_management.paging_file_volumes.is_empty() && volumes_pos.is_some() {
                self.err(
                    p,
                    format!("`{kp}`: a `?:` paging file needs at least one entry in `memory-management.paging-file-volumes`"),
                );
            }
        }
    }

    /// `"[?:]path [minMB [maxMB]]"` (research §10).
    fn paging_file(&mut self, s: &str, pos: Pos, what: &str) -> Option<PagingFile> {
        let mut tokens = s.split(|c: char| c <= ' ').filter(|t| !t.is_empty());
        let Some(first) = tokens.next() else {
            self.err(pos, format!("`{what}`: empty paging file entry"));
            return None;
        };
        let (any_volume, path) = match first.strip_prefix("?:") {
            Some(rest) => (true, rest),
            None => (false, first),
        };
        if !path.starts_with('/') {
            let after = if any_volume { " after `?:`" } else { "" };
            self.err(
                pos,
                format!("`{what}`: paging file path{after} must be absolute, found {first:?}"),
            );
            return None;
        }
        let sizes: Vec<&str> = tokens.collect();
        if sizes.len() > 2 {
            self.err(
                pos,
                format!("`{what}`: too many numbers in {s:?} (expected \"path [minMB [maxMB]]\")"),
            );
            return None;
        }
        let mut nums = Vec::new();
        for t in &sizes {
            match t.parse::<u64>() {
                Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) => nums.push(n),
                _ => {
                    self.err(
                        pos,
                        format!(
                            "`{what}`: paging file size {t:?} is not a whole number of megabytes"
                        ),
                    );
                    return None;
                }
            }
        }
        let min_mb = nums.first().copied().unwrap_or(0);
        let max_mb = match nums.get(1).copied().unwrap_or(0) {
            0 => min_mb,
            m => m,
        };
        if max_mb < min_mb {
            self.err(
                pos,
                format!("`{what}`: maximum size {max_mb} MB is smaller than minimum size {min_mb} MB in {s:?}"),
            );
            return None;
        }
        Some(PagingFile {
            path: PathBuf::from(path),
            any_volume,
            min_mb,
            max_mb,
        })
    }

    fn environment(&mut self, sec: &Section) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        let mut positions: Vec<Pos> = Vec::new();
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            let name_ok = if e.key.is_empty() {
                self.err(e.key_pos, "`environment`: variable name is empty");
                false
            } else if e.key.contains('=') {
                self.err(
                    e.key_pos,
                    format!("`environment`: variable name {:?} contains `=`", e.key),
                );
                false
            } else {
                self.no_nul(e.key, e.key_pos, "environment")
            };
            let Some(value) = self.string(e.node, &kp) else {
                continue;
            };
            if self.no_nul(value, e.pos(), &kp) && name_ok {
                vars.push((e.key.to_owned(), value.to_owned()));
                positions.push(e.key_pos);
            }
        }
        if !vars.iter().any(|(n, _)| n == "PATH") {
            vars.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
            positions.insert(0, None);
        }
        // Expand as the boot will (from an empty environment here: what the kernel or the
        // container runtime passes is not known yet), so a value past execve's limits is
        // reported at its key instead of being left out at boot.
        let mut env = Environment::default();
        for ((name, value), pos) in vars.iter().zip(positions) {
            if let Err(e) = env.apply(name, value) {
                self.err(pos, format!("`{}`: {e}", sec.key_path(name)));
            }
        }
        vars
    }

    fn dos_devices(&mut self, sec: &Section) -> Vec<(String, String)> {
        let mut links = Vec::new();
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            let name = e.key;
            let name_ok = if name.is_empty() {
                self.err(e.key_pos, "`dos-devices`: device name is empty");
                false
            } else if !name.starts_with('/') && (name.contains('/') || name == "." || name == "..")
            {
                self.err(
                    e.key_pos,
                    format!("`dos-devices`: device name {name:?} must be a single file name or an absolute path"),
                );
                false
            } else if name.starts_with('/')
                && (name.trim_end_matches('/').is_empty() || name.split('/').any(|c| c == ".."))
            {
                self.err(
                    e.key_pos,
                    format!("`dos-devices`: absolute device name {name:?} must name a file below / without `..`"),
                );
                false
            } else {
                self.no_nul(name, e.key_pos, "dos-devices")
            };
            let Some(target) = self.string(e.node, &kp) else {
                continue;
            };
            if self.no_nul(target, e.pos(), &kp) && name_ok {
                links.push((name.to_owned(), target.to_owned()));
            }
        }
        links
    }

    fn pending_renames(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "queue" => {
                    if let Some(p) = self.abs_path_node(e.node, &kp) {
                        cfg.pending_file_rename_operations.queue = p;
                    }
                }
                _ => self.unknown_key(sec, &e, PENDING_RENAMES_KEYS),
            }
        }
    }

    fn subsystems(&mut self, sec: &Section, cfg: &mut Config, refs: &mut SubsystemRefs) {
        let out = &mut cfg.subsystems;
        // Lowercased name -> (name as written, position).
        let mut defined: HashMap<String, (String, Pos)> = HashMap::new();
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "required" | "optional" => {
                    let names: Vec<(String, Pos)> = self
                        .strings(e.node, &kp)
                        .into_iter()
                        .filter_map(|(s, p)| self.name(s, p, &kp, "subsystem name").map(|n| (n, p)))
                        .collect();
                    let names = self.no_duplicates(names, &kp);
                    let list = names.iter().map(|(n, _)| n.clone()).collect();
                    if e.key == "required" {
                        out.required = list;
                        refs.required = names;
                    } else {
                        out.optional = list;
                        refs.optional = names;
                    }
                }
                "kmode" => {
                    let mods = self.strings(e.node, &kp);
                    out.kmode = mods
                        .into_iter()
                        .filter_map(|(s, p)| self.name(s, p, &kp, "module name"))
                        .collect();
                }
                name => {
                    if name.is_empty() {
                        self.err(e.key_pos, "`subsystems`: subsystem name is empty");
                        continue;
                    }
                    if let Some((first, p)) = defined.get(&name.to_ascii_lowercase()) {
                        let line = self.line_of(*p);
                        self.err(
                            e.key_pos,
                            format!("`subsystems`: subsystem {name:?} is already defined as {first:?} at line {line} (names are case-insensitive)"),
                        );
                        continue;
                    }
                    defined.insert(name.to_ascii_lowercase(), (name.to_owned(), e.key_pos));
                    // A list is never a subsystem's command: most likely a misspelt
                    // `required`, `optional` or `kmode` (or Windows' `Required`).
                    if let (Node::Value(Value::Array(_)), Some(k)) =
                        (e.node, subsystems_list_key(name))
                    {
                        self.err(
                            e.node.pos(),
                            format!("`{kp}`: expected a command line string or a command table, found an array; did you mean `{k}`?"),
                        );
                        continue;
                    }
                    if let Some(spec) = self.command(e.node, &kp) {
                        out.definitions.push((name.to_owned(), spec));
                    }
                }
            }
        }
        refs.defined = defined;
    }

    /// Drops (and reports) a name listed twice in one list, case-insensitively.
    fn no_duplicates(&mut self, names: Vec<(String, Pos)>, what: &str) -> Vec<(String, Pos)> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<(String, Pos)> = Vec::new();
        for (n, p) in names {
            if seen.insert(n.to_ascii_lowercase()) {
                out.push((n, p));
            } else {
                self.err(p, format!("`{what}`: {n:?} is listed twice"));
            }
        }
        out
    }

    fn check_subsystem_refs(&mut self, refs: &SubsystemRefs) {
        // A name that failed to parse is still "defined": do not pile a second error on it.
        let defined = |n: &str| refs.defined.contains_key(&n.to_ascii_lowercase());
        let lists = [
            ("subsystems.required", &refs.required, true),
            ("subsystems.optional", &refs.optional, false),
            ("sessions.session-subsystems", &refs.session, true),
        ];
        for (what, names, debug_ok) in lists {
            for (n, p) in names.iter() {
                if debug_ok && Subsystems::is_debug(n) {
                    continue;
                }
                if !defined(n) {
                    self.err(
                        *p,
                        format!("`{what}`: subsystem {n:?} is not defined in [subsystems]"),
                    );
                }
            }
        }
        let required: HashMap<String, Pos> = refs
            .required
            .iter()
            .map(|(r, p)| (r.to_ascii_lowercase(), *p))
            .collect();
        for (n, p) in &refs.optional {
            if let Some(rp) = required.get(&n.to_ascii_lowercase()) {
                let line = self.line_of(*rp);
                self.err(
                    *p,
                    format!("`subsystems.optional`: subsystem {n:?} is also required (line {line}); a subsystem is either required or optional"),
                );
            }
        }
    }

    fn sessions(&mut self, sec: &Section, cfg: &mut Config, refs: &mut SubsystemRefs) {
        const KNOWN: &[&str] = SESSIONS_KEYS;
        let out = &mut cfg.sessions;
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "initial-command" => out.initial_command = self.optional_command(e.node, &kp),
                "session0-initial-command" => {
                    out.session0_initial_command = self.optional_command(e.node, &kp)
                }
                "max-sessions" => {
                    if let Some(n) = self.count(e.node, &kp) {
                        out.max_sessions = n;
                    }
                }
                "parallel-session-creation" => {
                    if let Some(n) = self.count(e.node, &kp) {
                        out.parallel_session_creation = n;
                    }
                }
                "session-subsystems" => {
                    let names: Vec<(String, Pos)> = self
                        .strings(e.node, &kp)
                        .into_iter()
                        .filter_map(|(s, p)| self.name(s, p, &kp, "subsystem name").map(|n| (n, p)))
                        .collect();
                    let names = self.no_duplicates(names, &kp);
                    out.session_subsystems = names.iter().map(|(n, _)| n.clone()).collect();
                    refs.session = names;
                }
                _ => self.unknown_key(sec, &e, KNOWN),
            }
        }
    }

    fn seats(&mut self, e: &Entry) -> Vec<Seat> {
        let mut out = Vec::new();
        let mut names: HashMap<String, Pos> = HashMap::new();
        let mut ttys: HashMap<PathBuf, Pos> = HashMap::new();
        for sec in self.table_list(e) {
            let mut name = None;
            let mut tty = None;
            let mut ok = true;
            for e in sec.entries() {
                let kp = sec.key_path(e.key);
                match e.key {
                    "name" => {
                        name = self
                            .string(e.node, &kp)
                            .and_then(|s| self.name(s, e.pos(), &kp, "seat name"));
                        if let Some(n) = &name {
                            ok &= self.first_use(&mut names, n.clone(), e.pos(), |line| {
                                format!(
                                    "`{kp}`: duplicate seat name {n:?} (first used at line {line})"
                                )
                            });
                        }
                        ok &= name.is_some();
                    }
                    "tty" => {
                        tty = self.abs_path_node(e.node, &kp);
                        if let Some(t) = &tty {
                            ok &= self.first_use(&mut ttys, t.clone(), e.pos(), |line| {
                                format!(
                                    "`{kp}`: tty {:?} is already used by the seat at line {line}",
                                    t.display().to_string()
                                )
                            });
                        }
                        ok &= tty.is_some();
                    }
                    _ => {
                        self.unknown_key(&sec, &e, SEAT_KEYS);
                        ok = false;
                    }
                }
            }
            for key in ["name", "tty"] {
                if !sec.table.contains_key(key) {
                    self.err(
                        sec.pos,
                        format!("`seats`: missing key `{key}` in this [[seats]] entry"),
                    );
                    ok = false;
                }
            }
            if let (true, Some(name), Some(tty)) = (ok, name, tty) {
                out.push(Seat { name, tty });
            }
        }
        out
    }

    fn crash_control(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "auto-reboot" => {
                    if let Some(b) = self.boolean(e.node, &kp) {
                        cfg.crash_control.auto_reboot = b;
                    }
                }
                "action" => {
                    if let Some(s) = self.string(e.node, &kp) {
                        match CrashAction::from_name(s) {
                            Some(a) => cfg.crash_control.action = Some(a),
                            None => self.err(
                                e.pos(),
                                format!("`{kp}`: unknown crash action {s:?} (expected \"panic\", \"reboot\", \"poweroff\" or \"halt\")"),
                            ),
                        }
                    }
                }
                _ => self.unknown_key(sec, &e, CRASH_CONTROL_KEYS),
            }
        }
    }

    fn control(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "socket" => {
                    if let Some(p) = self.abs_path_node(e.node, &kp) {
                        cfg.control.socket = p;
                    }
                }
                "allowed-group" => {
                    if let Some(s) = self.string(e.node, &kp) {
                        cfg.control.allowed_group = self.name(s, e.pos(), &kp, "group name");
                    }
                }
                _ => self.unknown_key(sec, &e, CONTROL_KEYS),
            }
        }
    }

    fn shutdown(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "grace-period" => {
                    if let Some(d) = self.duration(e.node, &kp) {
                        cfg.shutdown.grace_period = d;
                    }
                }
                _ => self.unknown_key(sec, &e, SHUTDOWN_KEYS),
            }
        }
    }

    fn container(&mut self, sec: &Section, cfg: &mut Config) {
        for e in sec.entries() {
            let kp = sec.key_path(e.key);
            match e.key {
                "forward-signals-to" => match self.string(e.node, &kp) {
                    Some("process") => cfg.container.forward_to = ForwardTo::Process,
                    Some("process-group") => cfg.container.forward_to = ForwardTo::ProcessGroup,
                    Some(other) => self.err(
                        e.pos(),
                        format!("`{kp}`: unknown value {other:?} (expected \"process\" or \"process-group\")"),
                    ),
                    None => {}
                },
                _ => self.unknown_key(sec, &e, CONTAINER_KEYS),
            }
        }
    }
}

/// Subsystem names with their positions, for the cross-checks done after the whole walk.
#[derive(Default)]
struct SubsystemRefs {
    /// Lowercased name -> (name as written, position).
    defined: HashMap<String, (String, Pos)>,
    required: Vec<(String, Pos)>,
    optional: Vec<(String, Pos)>,
    session: Vec<(String, Pos)>,
}

/// The list key of `[subsystems]` that `key` is most likely a misspelling of (any case, at
/// most two edits away).
fn subsystems_list_key(key: &str) -> Option<&'static str> {
    if key.len() > 32 {
        return None;
    }
    let key = key.to_ascii_lowercase();
    SUBSYSTEMS_LIST_KEYS
        .iter()
        .copied()
        .map(|k| (edit_distance(&key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance (insertions, deletions, substitutions), for short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .map_or(usize::MAX, |d| d.saturating_add(usize::from(ca != *cb)));
            let del = prev.get(j + 1).map_or(usize::MAX, |d| d.saturating_add(1));
            let ins = cur.last().map_or(usize::MAX, |d| d.saturating_add(1));
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(usize::MAX)
}
