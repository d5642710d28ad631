//! `smctl analyze`: a GetStatus reply turned into blame rows (what took longest) and an SVG
//! timeline of the boot (one row per phase, command, subsystem and session). Pure: a status
//! in, text out; the SVG is written by hand (no drawing crate in smctl).
//!
//! Everything is on GetStatus's clock: microseconds since smss started (`start_us` of the
//! phases); the kernel's time before smss (`kernel_us`) is drawn left of zero.

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{json, Value};

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kernel,
    Phase,
    Command,
    Subsystem,
    Session,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Phase => "phase",
            Kind::Command => "command",
            Kind::Subsystem => "subsystem",
            Kind::Session => "session",
        }
    }
}

/// How a row ended, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Still running or waiting when the status was taken.
    Open,
    /// Done, with problems (a phase's non-fatal errors, a command's non-zero exit).
    Problems,
    Skipped,
    /// Failed (fatal), killed, not ready in time, or the bugcheck's process.
    Failed,
}

/// Read a result string the way GetStatus writes them.
pub fn outcome_of(result: &str) -> Outcome {
    let r = result.trim();
    if r == "ok" || r == "running" || r == "exited:0" {
        Outcome::Ok
    } else if r == "waiting" || r == "creating" {
        Outcome::Open
    } else if r.starts_with("skipped") {
        Outcome::Skipped
    } else if r.starts_with("done with errors") {
        Outcome::Problems
    } else {
        Outcome::Failed
    }
}

/// One line of `blame` and one row of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub kind: Kind,
    pub name: String,
    /// Microseconds since smss started (negative: the kernel, before smss).
    pub start_us: i64,
    pub duration_us: u64,
    pub result: String,
    /// Still running/waiting when the status was taken: `duration_us` runs to then.
    pub open: bool,
    /// A subsystem's process ran on from `ready`: (ready_us, end_us or None = still running).
    pub after_ready: Option<(i64, Option<i64>)>,
    /// `ready = "notify"`: the bar's span is a readiness wait.
    pub notify: bool,
}

impl Row {
    pub fn end_us(&self) -> i64 {
        self.start_us.saturating_add(us(self.duration_us))
    }

    pub fn outcome(&self) -> Outcome {
        match outcome_of(&self.result) {
            // A subsystem that missed its readiness and runs on is still a failure.
            Outcome::Failed => Outcome::Failed,
            _ if self.open => Outcome::Open,
            o => o,
        }
    }
}

// What the analysis reads of GetStatus; everything optional, so an older smss's reply works.
#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    uptime_us: u64,
    #[serde(default)]
    kernel_us: Option<u64>,
    #[serde(default)]
    phases: Vec<PhaseIn>,
    #[serde(default)]
    commands: Vec<CommandIn>,
    #[serde(default)]
    subsystems: Vec<SubsystemIn>,
    #[serde(default)]
    session_creations: Vec<SessionIn>,
    #[serde(default)]
    bugcheck: Option<BugcheckIn>,
}

#[derive(Debug, Deserialize)]
struct PhaseIn {
    name: String,
    start_us: u64,
    duration_us: u64,
    #[serde(default)]
    result: String,
}

#[derive(Debug, Deserialize)]
struct CommandIn {
    #[serde(default)]
    phase: String,
    line: String,
    start_us: u64,
    #[serde(default)]
    end_us: Option<u64>,
    #[serde(default)]
    result: String,
}

#[derive(Debug, Deserialize)]
struct SubsystemIn {
    name: String,
    #[serde(default)]
    session: u64,
    #[serde(default)]
    ready: Option<String>,
    #[serde(default)]
    start_us: Option<u64>,
    #[serde(default)]
    ready_us: Option<u64>,
    #[serde(default)]
    end_us: Option<u64>,
    #[serde(default)]
    result: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionIn {
    id: u64,
    #[serde(default)]
    seat: Option<String>,
    created_us: u64,
    #[serde(default)]
    ready_us: Option<u64>,
    #[serde(default)]
    result: String,
}

#[derive(Debug, Clone, Deserialize)]
struct BugcheckIn {
    process: String,
    #[serde(default)]
    pid: i64,
    #[serde(default)]
    status: String,
    at_us: u64,
}

/// The analysis of one GetStatus reply.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub mode: String,
    pub uptime_us: u64,
    pub kernel_us: Option<u64>,
    /// In status order: kernel, phases, commands, subsystems, sessions.
    pub rows: Vec<Row>,
    /// (process, pid, status, at_us).
    pub bugcheck: Option<(String, i64, String, u64)>,
}

/// Times are capped at 2^52 us (142 years), so sums and differences of them cannot overflow.
const MAX_US: u64 = 1 << 52;

fn us(v: u64) -> i64 {
    v.min(MAX_US) as i64
}

/// Read a GetStatus reply.
pub fn analyze(status: &Value) -> Result<Analysis, String> {
    let st: Status = serde_json::from_value(status.clone())
        .map_err(|e| format!("unexpected GetStatus reply: {e}"))?;
    let now = st.uptime_us;
    let mut rows = Vec::new();
    if let Some(k) = st.kernel_us {
        rows.push(Row {
            kind: Kind::Kernel,
            name: "kernel (before smss)".into(),
            start_us: -us(k),
            duration_us: k,
            result: "ok".into(),
            open: false,
            after_ready: None,
            notify: false,
        });
    }
    for p in &st.phases {
        rows.push(Row {
            kind: Kind::Phase,
            name: p.name.clone(),
            start_us: us(p.start_us),
            duration_us: p.duration_us,
            result: p.result.clone(),
            open: false,
            after_ready: None,
            notify: false,
        });
    }
    for c in &st.commands {
        let end = c.end_us.unwrap_or(now.max(c.start_us));
        let name = if c.phase.is_empty() {
            c.line.clone()
        } else {
            format!("{}: {}", c.phase, c.line)
        };
        rows.push(Row {
            kind: Kind::Command,
            name,
            start_us: us(c.start_us),
            duration_us: end.saturating_sub(c.start_us),
            result: c.result.clone(),
            open: c.end_us.is_none(),
            after_ready: None,
            notify: false,
        });
    }
    for s in &st.subsystems {
        // Only what smss started itself has times (session subsystems are the instance's).
        let Some(start) = s.start_us.filter(|_| s.session == 0) else {
            continue;
        };
        let result = s.result.clone().unwrap_or_default();
        // Start to ready; never ready: start to its end (or to now, still waiting).
        let (end, open) = match (s.ready_us, s.end_us) {
            (Some(r), _) => (r, false),
            (None, Some(e)) => (e, false),
            (None, None) => (now.max(start), true),
        };
        let after_ready = s.ready_us.map(|r| (us(r), s.end_us.map(us)));
        rows.push(Row {
            kind: Kind::Subsystem,
            name: s.name.clone(),
            start_us: us(start),
            duration_us: end.saturating_sub(start),
            result,
            open,
            after_ready,
            notify: s.ready.as_deref() == Some("notify"),
        });
    }
    for s in &st.session_creations {
        let end = s.ready_us.unwrap_or(now.max(s.created_us));
        let name = match &s.seat {
            Some(seat) => format!("session {} ({seat})", s.id),
            None => format!("session {}", s.id),
        };
        rows.push(Row {
            kind: Kind::Session,
            name,
            start_us: us(s.created_us),
            duration_us: end.saturating_sub(s.created_us),
            result: s.result.clone(),
            open: s.ready_us.is_none(),
            after_ready: None,
            notify: false,
        });
    }
    Ok(Analysis {
        mode: st.mode.unwrap_or_default(),
        uptime_us: now,
        kernel_us: st.kernel_us,
        rows,
        bugcheck: st.bugcheck.map(|b| (b.process, b.pid, b.status, b.at_us)),
    })
}

/// `smctl analyze blame`: longest first (ties in status order).
pub fn blame(a: &Analysis) -> Vec<Row> {
    let mut rows = a.rows.clone();
    rows.sort_by_key(|r| std::cmp::Reverse(r.duration_us));
    rows
}

/// `smctl analyze blame --json`: the rows, each with GetStatus's own numbers.
pub fn blame_json(a: &Analysis) -> Value {
    Value::Array(
        blame(a)
            .iter()
            .map(|r| {
                json!({
                    "kind": r.kind.as_str(),
                    "name": r.name,
                    "start_us": r.start_us,
                    "duration_us": r.duration_us,
                    "result": r.result,
                })
            })
            .collect(),
    )
}

/// A duration for people: `850 us`, `12.3 ms`, `2.41 s`.
pub fn human(us: u64) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// `smctl analyze blame`'s text.
pub fn blame_text(a: &Analysis) -> String {
    let mut out = String::new();
    for r in blame(a) {
        let state = if r.open { " (still running)" } else { "" };
        let _ = writeln!(
            out,
            "{:>10}  {:<9} {}  [{}]{state}",
            human(r.duration_us),
            r.kind.as_str(),
            r.name,
            r.result
        );
    }
    out
}

// ---- the SVG ----

/// Colours (Tableau 10): a bar's fill says what it is, red says it failed.
pub const COLOUR_KERNEL: &str = "#9d9d9d";
pub const COLOUR_PHASE: &str = "#4c78a8";
pub const COLOUR_COMMAND: &str = "#72b7b2";
pub const COLOUR_SUBSYSTEM: &str = "#54a24b";
pub const COLOUR_READY_WAIT: &str = "#eeca3b";
pub const COLOUR_SESSION: &str = "#b279a2";
pub const COLOUR_PROBLEMS: &str = "#f58518";
pub const COLOUR_SKIPPED: &str = "#d9d9d9";
pub const COLOUR_FAILED: &str = "#e45756";

const ROW_H: i64 = 18;
const BAR_H: i64 = 12;
const LABEL_W: i64 = 300;
const CHART_W: i64 = 1000;
const RIGHT_W: i64 = 110;
const TOP: i64 = 110;
/// Labels longer than this are cut (the full text is in the row's tooltip).
const LABEL_CHARS: usize = 44;

/// Text for an XML text node or attribute value: the five special characters escaped, and
/// characters XML 1.0 forbids (most C0 controls, U+FFFE/U+FFFF) replaced by U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn fill_of(r: &Row) -> &'static str {
    match r.outcome() {
        Outcome::Failed => COLOUR_FAILED,
        Outcome::Problems => COLOUR_PROBLEMS,
        Outcome::Skipped => COLOUR_SKIPPED,
        Outcome::Ok | Outcome::Open => match r.kind {
            Kind::Kernel => COLOUR_KERNEL,
            Kind::Phase => COLOUR_PHASE,
            Kind::Command => COLOUR_COMMAND,
            Kind::Subsystem if r.notify => COLOUR_READY_WAIT,
            Kind::Subsystem => COLOUR_SUBSYSTEM,
            Kind::Session => COLOUR_SESSION,
        },
    }
}

/// Where a time goes on the chart. When the kernel's time before smss is more than a third of
/// smss's own, it is compressed into the first sixth of the chart (an axis break), so a fast
/// smss boot after a slow kernel is not squeezed into a sliver.
struct Scale {
    t0: i64,
    t1: i64,
    broken: bool,
}

/// The kernel's part of a broken axis, in pixels, and the gap at the break.
const KERNEL_W: f64 = CHART_W as f64 / 6.0;
const BREAK_GAP: f64 = 8.0;

impl Scale {
    fn new(t0: i64, t1: i64) -> Scale {
        let t1 = t1.max(t0.saturating_add(1));
        let broken = t0 < 0 && t1 > 0 && -t0 > t1 / 3;
        Scale { t0, t1, broken }
    }

    fn x_break(&self) -> f64 {
        LABEL_W as f64 + KERNEL_W - BREAK_GAP / 2.0
    }

    fn x(&self, t: i64) -> f64 {
        let t = t.clamp(self.t0, self.t1);
        let left = LABEL_W as f64;
        if !self.broken {
            return left + (t - self.t0) as f64 * CHART_W as f64 / (self.t1 - self.t0) as f64;
        }
        if t < 0 {
            left + (t - self.t0) as f64 * (KERNEL_W - BREAK_GAP) / (-self.t0) as f64
        } else {
            left + KERNEL_W + t as f64 * (CHART_W as f64 - KERNEL_W) / self.t1 as f64
        }
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about `n` ticks.
fn tick_step(span_us: i64, n: i64) -> i64 {
    let raw = (span_us / n.max(1)).max(1);
    let mut p = 1i64;
    while p.saturating_mul(10) <= raw {
        p = p.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= raw {
            return p.saturating_mul(m);
        }
    }
    p.saturating_mul(10)
}

fn tick_label(t: i64, step: i64) -> String {
    if step >= 100_000 {
        format!("{:.1} s", t as f64 / 1e6)
    } else if step >= 1_000 {
        format!("{} ms", t / 1_000)
    } else {
        format!("{t} us")
    }
}

/// The SVG timeline.
pub fn plot(a: &Analysis) -> String {
    // The window: from the kernel's start (or smss's) to the last thing the boot did. A
    // process still running at the end is drawn to the window's edge, not to `uptime_us`
    // (an hour after the boot that would squash the boot into a sliver).
    let t0 = a
        .rows
        .iter()
        .map(|r| r.start_us)
        .chain(std::iter::once(0))
        .min()
        .unwrap_or(0);
    let mut t1 = a
        .rows
        .iter()
        .filter(|r| !r.open)
        .map(Row::end_us)
        .chain(a.rows.iter().map(|r| r.start_us))
        .chain(a.rows.iter().filter_map(|r| r.after_ready?.1))
        .chain(a.bugcheck.iter().map(|b| us(b.3)))
        .max()
        .unwrap_or(0);
    let runs_on = a
        .rows
        .iter()
        .any(|r| r.open || matches!(r.after_ready, Some((_, None))));
    if runs_on || t1 <= t0 {
        // Something runs on: leave room to show it does.
        t1 = t1.saturating_add(((t1 - t0) / 20).max(1_000));
    }
    let scale = Scale::new(t0, t1);
    let x_of = |t: i64| scale.x(t);

    // Rows grouped by kind, a heading before each group.
    let mut groups: Vec<(Kind, Vec<&Row>)> = Vec::new();
    for r in &a.rows {
        match groups.last_mut() {
            Some((k, v)) if *k == r.kind => v.push(r),
            _ => groups.push((r.kind, vec![r])),
        }
    }
    let n_lines: i64 = groups.iter().map(|(_, v)| v.len() as i64 + 1).sum();
    let chart_h = n_lines * ROW_H;
    let width = LABEL_W + CHART_W + RIGHT_W;
    let height = TOP + chart_h + 40;

    let mut s = String::new();
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans, Verdana, sans-serif\" \
font-size=\"11\">\n\
<rect class=\"background\" x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n"
    );
    // Title and summary.
    let boot_end = a
        .rows
        .iter()
        .filter(|r| r.kind == Kind::Phase)
        .map(Row::end_us)
        .max()
        .unwrap_or(0);
    let mut summary = format!(
        "smss boot ({} mode): phases done at {}",
        a.mode,
        human(boot_end.max(0) as u64)
    );
    if let Some(k) = a.kernel_us {
        let _ = write!(
            summary,
            " after smss started; the kernel ran {} before it ({} in all)",
            human(k),
            human(k.saturating_add(boot_end.max(0) as u64))
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        escape(&summary)
    );
    // Legend.
    let legend: [(&str, &str); 9] = [
        (COLOUR_KERNEL, "kernel"),
        (COLOUR_PHASE, "phase"),
        (COLOUR_COMMAND, "command"),
        (COLOUR_SUBSYSTEM, "subsystem (running)"),
        (COLOUR_READY_WAIT, "readiness wait (notify)"),
        (COLOUR_SESSION, "session creation"),
        (COLOUR_PROBLEMS, "done with problems"),
        (COLOUR_SKIPPED, "skipped"),
        (COLOUR_FAILED, "failed / bugcheck"),
    ];
    let _ = writeln!(s, "<g class=\"legend\">");
    let mut lx = 10i64;
    for (colour, label) in legend {
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"38\" width=\"14\" height=\"{BAR_H}\" fill=\"{colour}\" stroke=\"#555\" stroke-width=\"0.5\"/>\
<text x=\"{}\" y=\"48\">{}</text>",
            lx + 18,
            escape(label)
        );
        lx += 32 + 7 * label.chars().count() as i64;
    }
    let _ = writeln!(s, "</g>");

    // Time axis: grid lines, labels top and bottom, times since smss started. With the
    // kernel's time compressed, ticks count from smss's start, and the kernel's start has one.
    let from = if scale.broken { 0 } else { t0 };
    let step = tick_step((t1 - from).max(1), 12);
    let first = from.div_euclid(step) * step;
    let _ = writeln!(s, "<g class=\"axis\" font-size=\"10\" fill=\"#444\">");
    let tick = |s: &mut String, t: i64, label: &str| {
        let x = x_of(t);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#e3e3e3\"/>\
<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\
<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            TOP - 6,
            TOP + chart_h,
            TOP - 10,
            TOP + chart_h + 14,
        );
    };
    if scale.broken {
        tick(&mut s, t0, &format!("{:.2} s", t0 as f64 / 1e6));
        // The break: the kernel's part is not to scale with the rest.
        let xb = scale.x_break();
        for yb in [TOP - 2, TOP + chart_h + 2] {
            let _ = writeln!(
                s,
                "<path class=\"axis-break\" d=\"M{:.1},{} l4,-8 M{:.1},{} l4,-8\" stroke=\"#444\" fill=\"none\"/>",
                xb - 4.0,
                yb + 4,
                xb,
                yb + 4
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-style=\"italic\">kernel: not to scale</text>",
            (LABEL_W as f64 + xb) / 2.0,
            TOP + chart_h + 28
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">time since smss started</text>",
        LABEL_W - 40,
        TOP - 10
    );
    let mut t = first;
    while t <= t1 {
        if t >= from {
            tick(&mut s, t, &tick_label(t, step));
        }
        t = t.saturating_add(step);
        if step <= 0 {
            break;
        }
    }
    let _ = writeln!(s, "</g>");
    // smss's start.
    let x0 = x_of(0);
    let _ = writeln!(
        s,
        "<g class=\"smss-start\"><line x1=\"{x0:.1}\" y1=\"{}\" x2=\"{x0:.1}\" y2=\"{}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\
<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">smss starts</text></g>",
        TOP - 22,
        TOP + chart_h,
        x0 + 3.0,
        TOP - 22
    );

    // Rows.
    let mut y = TOP;
    for (kind, rows) in &groups {
        let heading = match kind {
            Kind::Kernel => "kernel",
            Kind::Phase => "phases",
            Kind::Command => "commands (BootExecute, SetupExecute, Execute)",
            Kind::Subsystem => "subsystems (start to ready)",
            Kind::Session => "session creations",
        };
        let _ = writeln!(
            s,
            "<text class=\"heading\" x=\"10\" y=\"{}\" font-weight=\"bold\" fill=\"#222\">{}</text>\
<line x1=\"10\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#bbb\"/>",
            y + ROW_H - 5,
            escape(heading),
            y + ROW_H - 1,
            width - 10,
            y + ROW_H - 1
        );
        y += ROW_H;
        for r in rows {
            draw_row(&mut s, r, y, &x_of, t1);
            y += ROW_H;
        }
    }

    // The bugcheck: a red line across the chart at its time.
    if let Some((process, pid, status, at)) = &a.bugcheck {
        let x = x_of(us(*at));
        let text = format!("*** STOP 0xC000021A: {process} (pid {pid}) {status}");
        let _ = writeln!(
            s,
            "<g class=\"bugcheck\"><line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{COLOUR_FAILED}\" stroke-width=\"2\"/>\
<text x=\"{:.1}\" y=\"{}\" fill=\"{COLOUR_FAILED}\" font-weight=\"bold\" text-anchor=\"end\">{}</text></g>",
            TOP - 4,
            TOP + chart_h,
            x - 4.0,
            TOP + chart_h + 28,
            escape(&text)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn draw_row(s: &mut String, r: &Row, y: i64, x_of: &dyn Fn(i64) -> f64, t1: i64) {
    let outcome = r.outcome();
    let class = match outcome {
        Outcome::Failed => "failed",
        Outcome::Problems => "problems",
        Outcome::Skipped => "skipped",
        Outcome::Open => "open",
        Outcome::Ok => "ok",
    };
    let tip = format!(
        "{} {}: start {} us, {} ({} us), {}{}",
        r.kind.as_str(),
        r.name,
        r.start_us,
        human(r.duration_us),
        r.duration_us,
        r.result,
        if r.open { ", still running" } else { "" }
    );
    let _ = writeln!(
        s,
        "<g class=\"row {} {class}\"><title>{}</title>",
        r.kind.as_str(),
        escape(&tip)
    );
    let by = y + (ROW_H - BAR_H) / 2;
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
        20,
        y + ROW_H - 5,
        if outcome == Outcome::Failed {
            COLOUR_FAILED
        } else {
            "#222"
        },
        escape(&cut(&r.name, LABEL_CHARS))
    );
    let xa = x_of(r.start_us);
    // The kernel ends where smss starts; 1 us before keeps it left of an axis break.
    let end = match r.kind {
        Kind::Kernel => r.end_us().saturating_sub(1),
        _ => r.end_us(),
    };
    let xb = x_of(end).max(xa + 1.5);
    // A subsystem's life after it became ready: a thin band behind, to its end or the edge.
    if let Some((ready, end)) = r.after_ready {
        let xr = x_of(ready);
        let xe = x_of(end.unwrap_or(t1));
        if xe > xr {
            let _ = write!(
                s,
                "<rect class=\"alive\" x=\"{xr:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\" opacity=\"0.45\"/>",
                by + 3,
                xe - xr,
                BAR_H - 6,
                if outcome == Outcome::Failed {
                    COLOUR_FAILED
                } else {
                    COLOUR_SUBSYSTEM
                }
            );
        }
    }
    // A notify subsystem's bar is its readiness wait, drawn inside a frame in the subsystem's
    // colour: the process had started, smss waited for READY=1.
    let fill = fill_of(r);
    let stroke = if r.kind == Kind::Subsystem && r.notify {
        COLOUR_SUBSYSTEM
    } else {
        "none"
    };
    let dash = if r.open {
        " stroke-dasharray=\"3 2\""
    } else {
        ""
    };
    let _ = write!(
        s,
        "<rect class=\"bar\" x=\"{xa:.1}\" y=\"{by}\" width=\"{:.1}\" height=\"{BAR_H}\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"1.5\"{dash}/>",
        xb - xa,
        if r.open { "#555" } else { stroke },
    );
    let mut label = human(r.duration_us);
    if r.notify {
        label.push_str(" to READY=1");
    }
    if outcome == Outcome::Failed || outcome == Outcome::Problems {
        label = format!("{label} {}", cut(&r.result, 40));
    }
    if r.open {
        label.push_str(" …");
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"#333\">{}</text></g>",
        xb + 4.0,
        y + ROW_H - 5,
        escape(&label)
    );
}

/// A GetStatus-shaped reply for tests and demos: `phases` phases, `commands` commands,
/// `subsystems` subsystems (every third `notify`), `sessions` session creations, the first
/// failure at phase `failed_phase` if given.
pub fn sample_status(
    phases: usize,
    commands: usize,
    subsystems: usize,
    sessions: usize,
    failed_phase: Option<usize>,
) -> Value {
    let mut t = 1_000u64;
    let mut ps = Vec::new();
    for i in 0..phases {
        let d = 200 + (i as u64 * 7_919) % 40_000;
        let result = if Some(i) == failed_phase {
            "failed: something broke".to_string()
        } else {
            "ok".to_string()
        };
        ps.push(json!({"name": format!("phase-{i}"), "start_us": t, "duration_us": d, "result": result}));
        t += d + 50;
    }
    let mut cs = Vec::new();
    for i in 0..commands {
        let d = 1_000 + (i as u64 * 3_001) % 20_000;
        cs.push(
            json!({"phase": "boot-execute", "line": format!("cmd-{i} --flag <&>"), "pid": 100 + i,
            "start_us": t, "end_us": t + d, "result": if i % 5 == 4 { "exited:1" } else { "ok" }}),
        );
        t += d + 10;
    }
    let mut ss = Vec::new();
    for i in 0..subsystems {
        let notify = i % 3 == 0;
        let d = if notify {
            5_000 + (i as u64 * 1_013) % 30_000
        } else {
            0
        };
        ss.push(
            json!({"name": format!("subsystem-{i}"), "session": 0, "kind": "required",
            "pid": 200 + i, "state": "running", "ready": if notify { "notify" } else { "exec" },
            "start_us": t, "ready_us": t + d, "end_us": null, "result": "running"}),
        );
        t += d + 100;
    }
    let mut ns = Vec::new();
    for i in 0..sessions {
        let d = 20_000 + (i as u64 * 2_003) % 50_000;
        ns.push(
            json!({"id": i + 1, "seat": format!("seat{i}"), "created_us": t,
            "ready_us": t + d, "result": "ok"}),
        );
        t += 500;
    }
    json!({
        "mode": "system",
        "uptime_us": t + 100_000,
        "kernel_us": 2_500_000,
        "phases": ps,
        "commands": cs,
        "subsystems": ss,
        "sessions": [],
        "session_creations": ns,
        "bugcheck": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        match roxmltree::Document::parse(svg) {
            Ok(d) => d,
            Err(e) => panic!("not XML: {e}\n{svg}"),
        }
    }

    /// The `<g class="row KIND ...">` elements of a plot.
    fn rows<'a>(doc: &'a roxmltree::Document<'a>, kind: &str) -> Vec<roxmltree::Node<'a, 'a>> {
        doc.descendants()
            .filter(|n| {
                n.has_tag_name("g")
                    && n.attribute("class").is_some_and(|c| {
                        let mut w = c.split_whitespace();
                        w.next() == Some("row") && w.next() == Some(kind)
                    })
            })
            .collect()
    }

    fn bar_fill<'a>(row: roxmltree::Node<'a, 'a>) -> &'a str {
        row.children()
            .find(|n| n.attribute("class") == Some("bar"))
            .and_then(|n| n.attribute("fill"))
            .unwrap_or("")
    }

    #[test]
    fn the_plot_is_xml_with_one_row_per_phase() {
        let status = sample_status(17, 3, 4, 2, None);
        let a = analyze(&status).unwrap();
        let svg = plot(&a);
        let doc = parse(&svg);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let phases = rows(&doc, "phase");
        assert_eq!(phases.len(), 17);
        // In status order, each labelled with its name.
        for (i, r) in phases.iter().enumerate() {
            let label = r.children().find(|n| n.has_tag_name("text")).unwrap();
            assert_eq!(label.text(), Some(format!("phase-{i}").as_str()));
            assert_eq!(bar_fill(*r), COLOUR_PHASE);
        }
        assert_eq!(rows(&doc, "command").len(), 3);
        assert_eq!(rows(&doc, "subsystem").len(), 4);
        assert_eq!(rows(&doc, "session").len(), 2);
        assert_eq!(rows(&doc, "kernel").len(), 1);
        // A legend and an axis.
        assert!(doc
            .descendants()
            .any(|n| n.attribute("class") == Some("legend")));
        assert!(doc
            .descendants()
            .any(|n| n.attribute("class") == Some("axis")
                && n.children().filter(|c| c.has_tag_name("line")).count() >= 3));
    }

    #[test]
    fn a_failed_phase_is_drawn_in_the_failure_colour() {
        let a = analyze(&sample_status(17, 0, 0, 0, Some(5))).unwrap();
        let svg = plot(&a);
        let doc = parse(&svg);
        let phases = rows(&doc, "phase");
        for (i, r) in phases.iter().enumerate() {
            if i == 5 {
                assert_eq!(bar_fill(*r), COLOUR_FAILED, "phase {i}");
            } else {
                assert_ne!(bar_fill(*r), COLOUR_FAILED, "phase {i}");
            }
        }
        // The legend says what the colour means.
        assert!(svg.contains(&format!("fill=\"{COLOUR_FAILED}\"")));
    }

    #[test]
    fn a_bugcheck_and_failed_subsystem_are_red() {
        let mut st = sample_status(3, 0, 0, 0, None);
        st["subsystems"] = json!([
            {"name": "windows", "session": 0, "kind": "required", "pid": 57, "state": "stopped",
             "ready": "notify", "start_us": 40_000, "ready_us": 60_000, "end_us": 2_060_000,
             "result": "exited:3"},
        ]);
        st["bugcheck"] =
            json!({"process": "windows", "pid": 57, "status": "exited:3", "at_us": 2_060_000});
        let svg = plot(&analyze(&st).unwrap());
        let doc = parse(&svg);
        let subs = rows(&doc, "subsystem");
        assert_eq!(bar_fill(subs[0]), COLOUR_FAILED);
        let bug = doc
            .descendants()
            .find(|n| n.attribute("class") == Some("bugcheck"))
            .expect("a bugcheck mark");
        assert!(bug
            .descendants()
            .any(|n| n.attribute("stroke") == Some(COLOUR_FAILED)));
        assert!(svg.contains("0xC000021A"));
    }

    #[test]
    fn a_readiness_wait_is_drawn_inside_its_subsystem() {
        let mut st = sample_status(1, 0, 0, 0, None);
        st["subsystems"] = json!([
            {"name": "demo", "session": 0, "kind": "required", "pid": 9, "state": "running",
             "ready": "notify", "start_us": 10_000, "ready_us": 30_000, "end_us": null,
             "result": "running"},
            {"name": "posix", "session": 0, "kind": "optional", "pid": null, "state": "deferred"},
            {"name": "windows", "session": 1, "kind": "session", "pid": 70, "state": "running"},
        ]);
        let a = analyze(&st).unwrap();
        // Only what smss started, with times, is a row.
        let subs: Vec<&Row> = a
            .rows
            .iter()
            .filter(|r| r.kind == Kind::Subsystem)
            .collect();
        assert_eq!(subs.len(), 1);
        assert_eq!((subs[0].start_us, subs[0].duration_us), (10_000, 20_000));
        let svg = plot(&a);
        let doc = parse(&svg);
        let row = rows(&doc, "subsystem")[0];
        let bar = row
            .children()
            .find(|n| n.attribute("class") == Some("bar"))
            .unwrap();
        assert_eq!(bar.attribute("fill"), Some(COLOUR_READY_WAIT));
        assert_eq!(bar.attribute("stroke"), Some(COLOUR_SUBSYSTEM));
        // It runs on after READY=1: the band starts where the wait ends.
        let alive = row
            .children()
            .find(|n| n.attribute("class") == Some("alive"))
            .expect("the running band");
        let bx: f64 = bar.attribute("x").unwrap().parse().unwrap();
        let bw: f64 = bar.attribute("width").unwrap().parse().unwrap();
        let ax: f64 = alive.attribute("x").unwrap().parse().unwrap();
        assert!((bx + bw - ax).abs() < 0.2, "{bx} + {bw} vs {ax}");
    }

    #[test]
    fn blame_is_longest_first_with_getstatus_numbers() {
        let st = sample_status(17, 6, 9, 5, Some(2));
        let a = analyze(&st).unwrap();
        let j = blame_json(&a);
        let rows = j.as_array().unwrap();
        let n = 1 + 17 + 6 + 9 + 5;
        assert_eq!(rows.len(), n);
        let d: Vec<u64> = rows
            .iter()
            .map(|r| r["duration_us"].as_u64().unwrap())
            .collect();
        assert!(d.windows(2).all(|w| w[0] >= w[1]), "{d:?}");
        // Each phase is there with GetStatus's own numbers.
        for p in st["phases"].as_array().unwrap() {
            let r = rows
                .iter()
                .find(|r| r["kind"] == "phase" && r["name"] == p["name"])
                .unwrap();
            assert_eq!(r["start_us"], p["start_us"]);
            assert_eq!(r["duration_us"], p["duration_us"]);
            assert_eq!(r["result"], p["result"]);
        }
        // The kernel first: 2.5 s is the longest.
        assert_eq!(rows[0]["kind"], "kernel");
        assert_eq!(rows[0]["start_us"], -2_500_000);
    }

    #[test]
    fn readable_at_17_phases_and_tens_of_subsystems_and_sessions() {
        let a = analyze(&sample_status(17, 12, 40, 40, Some(3))).unwrap();
        let svg = plot(&a);
        // To look at it: SMSS_SAMPLE_SVG=/tmp/sample.svg cargo test -p smss --lib readable
        if let Some(out) = std::env::var_os("SMSS_SAMPLE_SVG") {
            std::fs::write(out, &svg).unwrap();
        }
        let doc = parse(&svg);
        let all: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("row ")))
            .collect();
        assert_eq!(all.len(), 1 + 17 + 12 + 40 + 40);
        // Every row on a line of its own, labels at least a row apart (no overlap).
        let mut ys: Vec<f64> = all
            .iter()
            .map(|r| {
                r.children()
                    .find(|n| n.has_tag_name("text"))
                    .and_then(|t| t.attribute("y"))
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        ys.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!(ys.windows(2).all(|w| w[1] - w[0] >= ROW_H as f64), "{ys:?}");
        // Every bar inside the chart.
        let h: f64 = doc
            .root_element()
            .attribute("height")
            .unwrap()
            .parse()
            .unwrap();
        let w: f64 = doc
            .root_element()
            .attribute("width")
            .unwrap()
            .parse()
            .unwrap();
        for b in doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("bar"))
        {
            let x: f64 = b.attribute("x").unwrap().parse().unwrap();
            let bw: f64 = b.attribute("width").unwrap().parse().unwrap();
            let y: f64 = b.attribute("y").unwrap().parse().unwrap();
            assert!(
                x >= LABEL_W as f64 && x + bw <= (LABEL_W + CHART_W) as f64 + 2.0,
                "{x} {bw}"
            );
            assert!(y > 0.0 && y < h);
            assert!(x + bw < w);
        }
    }

    #[test]
    fn names_are_escaped() {
        let mut st = sample_status(2, 0, 0, 0, None);
        st["phases"][0]["name"] = json!("a<b>&\"c'\u{1}\u{7}d");
        st["commands"] = json!([{"phase": "execute", "line": "sh -c 'echo </x>'", "pid": 3,
            "start_us": 5, "end_us": null, "result": "running"}]);
        let svg = plot(&analyze(&st).unwrap());
        let doc = parse(&svg);
        let label = rows(&doc, "phase")[0]
            .children()
            .find(|n| n.has_tag_name("text"))
            .unwrap();
        assert_eq!(label.text(), Some("a<b>&\"c'\u{fffd}\u{fffd}d"));
        assert!(rows(&doc, "command")[0]
            .attribute("class")
            .unwrap()
            .contains("open"));
    }

    #[test]
    fn an_old_or_empty_status_still_plots() {
        for st in [
            json!({}),
            json!({"mode": "container", "uptime_us": 5, "phases": [], "subsystems": [], "sessions": []}),
        ] {
            let a = analyze(&st).unwrap();
            parse(&plot(&a));
            assert!(blame_text(&a).is_empty());
        }
        assert!(analyze(&json!({"phases": 3})).is_err());
    }

    #[test]
    fn a_long_kernel_time_is_compressed_behind_an_axis_break() {
        // 2.5 s of kernel, 0.4 s of smss: smss still gets most of the width.
        let st = sample_status(17, 0, 0, 0, None);
        let svg = plot(&analyze(&st).unwrap());
        let doc = parse(&svg);
        assert!(doc
            .descendants()
            .any(|n| n.attribute("class") == Some("axis-break")));
        let bar_x = |r: roxmltree::Node| -> (f64, f64) {
            let b = r
                .children()
                .find(|n| n.attribute("class") == Some("bar"))
                .unwrap();
            let x: f64 = b.attribute("x").unwrap().parse().unwrap();
            let w: f64 = b.attribute("width").unwrap().parse().unwrap();
            (x, x + w)
        };
        let phases = rows(&doc, "phase");
        let (first, _) = bar_x(phases[0]);
        let (_, last) = bar_x(*phases.last().unwrap());
        assert!(last - first > CHART_W as f64 * 0.6, "{first}..{last}");
        let (k0, k1) = bar_x(rows(&doc, "kernel")[0]);
        assert!(k1 - k0 <= KERNEL_W, "{k0}..{k1}");
        assert!(k1 <= first);
        // A short kernel time stays to scale, without a break.
        let mut st = st;
        st["kernel_us"] = json!(100_000);
        let svg = plot(&analyze(&st).unwrap());
        assert!(!svg.contains("axis-break"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1_000_000, 10), 100_000);
        assert_eq!(tick_step(3_000_000, 12), 500_000);
        assert_eq!(tick_step(7, 12), 1);
        assert_eq!(tick_label(1_500_000, 500_000), "1.5 s");
        assert_eq!(tick_label(20_000, 5_000), "20 ms");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_names_and_times_give_xml(
                names in proptest::collection::vec(any::<String>(), 0..8),
                times in proptest::collection::vec((0u64..u64::MAX / 4, 0u64..u64::MAX / 4), 8),
                kernel in proptest::option::of(0u64..u64::MAX / 4),
            ) {
                let phases: Vec<Value> = names.iter().zip(&times).map(|(n, (s, d))| {
                    json!({"name": n, "start_us": s, "duration_us": d, "result": n})
                }).collect();
                let st = json!({"mode": "system", "uptime_us": 10, "kernel_us": kernel,
                    "phases": phases, "session_creations": [{"id": 1, "seat": names.first(),
                    "created_us": times[0].0, "ready_us": null, "result": "creating"}]});
                let a = analyze(&st).unwrap();
                let svg = plot(&a);
                let doc = roxmltree::Document::parse(&svg);
                prop_assert!(doc.is_ok(), "{:?}", doc.err());
                let doc = doc.unwrap();
                prop_assert_eq!(rows(&doc, "phase").len(), names.len());
            }
        }
    }
}
