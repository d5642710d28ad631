//! Tier 3: GetStatus's times for boot commands, subsystems and session creations from a real
//! smss (PID 1 of a fresh PID namespace), and `smctl analyze blame|plot` on them.
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ns_control_common;

use common::TIMEOUT;
use ns_control_common::{start, Opts};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[session-manager]
boot-execute = [
  { command = ["sh", "-c", "sleep 0.2"] },
  { command = ["sh", "-c", "exit 3"] },
  "autocheck /no/such/autochk",
]
execute = [{ command = ["true"] }]

[subsystems]
required = ["debug", "waits", "plain"]
waits = { command = ["sh", "-c", "sleep 0.3; @SMCTL@ notify; exec sleep 1000"], ready = "notify", ready-timeout = "20s" }
plain = { command = ["sleep", "1000"] }

[sessions]
max-sessions = 8
session0-initial-command = { command = ["sleep", "1000"] }

[shutdown]
grace-period = "2s"
"#;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn getstatus_times_commands_subsystems_and_session_creations() {
    require_unshare!();
    let s = start("analyze", CONFIG, Opts::default());
    let id = s.ok(
        "CreateSession",
        json!({"command": ["sh", "-c", "exec sleep 1000"]}),
    )["id"]
        .as_u64()
        .unwrap();
    let st = s.ok("GetStatus", json!({}));
    let uptime = u(&st["uptime_us"]);

    // A container's init has no kernel boot before it.
    assert_eq!(st["kernel_us"], Value::Null, "{st}");
    assert_eq!(st["bugcheck"], Value::Null, "{st}");

    // The phases: on one clock, in order, none overlapping the next.
    let phases = st["phases"].as_array().unwrap();
    for w in phases.windows(2) {
        let end = u(&w[0]["start_us"]) + u(&w[0]["duration_us"]);
        assert!(end <= u(&w[1]["start_us"]), "{} overlaps {}", w[0], w[1]);
    }
    let phase = |name: &str| phases.iter().find(|p| p["name"] == name).unwrap().clone();
    let be = phase("boot-execute");
    let (be_start, be_end) = (
        u(&be["start_us"]),
        u(&be["start_us"]) + u(&be["duration_us"]),
    );

    // Commands: each inside its phase, with its result.
    let cmds = st["commands"].as_array().unwrap();
    assert_eq!(cmds.len(), 4, "{cmds:?}");
    let sleep = &cmds[0];
    assert_eq!(sleep["phase"], "boot-execute");
    assert_eq!(sleep["result"], "ok");
    let d = u(&sleep["end_us"]) - u(&sleep["start_us"]);
    assert!(d >= 200_000, "sleep 0.2 took {d} us");
    assert!(u(&sleep["start_us"]) >= be_start && u(&sleep["end_us"]) <= be_end);
    assert_eq!(cmds[1]["result"], "exited:3", "{}", cmds[1]);
    assert!(cmds[1]["pid"].is_number());
    assert_eq!(
        cmds[2]["result"], "skipped: program not found",
        "{}",
        cmds[2]
    );
    assert_eq!(cmds[2]["pid"], Value::Null);
    assert_eq!(cmds[3]["phase"], "execute");
    assert_eq!(cmds[3]["result"], "ok");

    // Subsystems: a notify one waited for READY=1 (0.3 s), an exec one was ready at once.
    let subs = st["subsystems"].as_array().unwrap();
    let sub = |name: &str| subs.iter().find(|x| x["name"] == name).unwrap().clone();
    let waits = sub("waits");
    assert_eq!(waits["ready"], "notify", "{waits}");
    assert_eq!(waits["result"], "running", "{waits}");
    assert_eq!(waits["end_us"], Value::Null);
    let wait = u(&waits["ready_us"]) - u(&waits["start_us"]);
    assert!(wait >= 300_000, "READY=1 after {wait} us");
    let plain = sub("plain");
    assert_eq!(plain["ready"], "exec");
    assert_eq!(plain["ready_us"], plain["start_us"]);
    // Each subsystem starts after the previous one is ready, inside required-subsystems.
    assert!(u(&plain["start_us"]) >= u(&waits["ready_us"]));
    let rs = phase("required-subsystems");
    assert!(u(&waits["start_us"]) >= u(&rs["start_us"]));
    assert!(u(&plain["start_us"]) <= u(&rs["start_us"]) + u(&rs["duration_us"]));

    // The session's creation: requested, then reported.
    let created = st["session_creations"].as_array().unwrap();
    let c = created.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(c["result"], "ok", "{c}");
    assert!(u(&c["created_us"]) <= u(&c["ready_us"]));
    assert!(u(&c["ready_us"]) <= uptime);
    let listed = st["sessions"].as_array().unwrap();
    let l = listed.iter().find(|x| x["id"] == id).unwrap();
    assert_eq!(l["created_us"], c["created_us"]);

    // `smctl analyze blame --json`: GetStatus's numbers, longest first.
    let o = s.smctl(&["analyze", "blame", "--json"]);
    assert!(o.status.success(), "{o:?}");
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let durations: Vec<u64> = rows.iter().map(|r| u(&r["duration_us"])).collect();
    assert!(durations.windows(2).all(|w| w[0] >= w[1]), "{durations:?}");
    let st2 = s.ok("GetStatus", json!({}));
    for p in st2["phases"].as_array().unwrap() {
        let r = rows
            .iter()
            .find(|r| r["kind"] == "phase" && r["name"] == p["name"])
            .unwrap_or_else(|| panic!("no blame row for {p}"));
        assert_eq!(
            (&r["start_us"], &r["duration_us"], &r["result"]),
            (&p["start_us"], &p["duration_us"], &p["result"])
        );
    }
    let row = |kind: &str, name: &str| {
        rows.iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no blame row {kind} {name}: {rows:?}"))
            .clone()
    };
    let w = row("subsystem", "waits");
    assert_eq!(w["start_us"], waits["start_us"]);
    assert_eq!(u(&w["duration_us"]), wait);
    let r = row("command", "boot-execute: sh -c \"sleep 0.2\"");
    assert_eq!(r["start_us"], sleep["start_us"]);
    assert_eq!(u(&r["duration_us"]), d);
    let r = row("session", &format!("session {id}"));
    assert_eq!(r["start_us"], c["created_us"]);
    assert_eq!(
        u(&r["duration_us"]),
        u(&c["ready_us"]) - u(&c["created_us"])
    );
    assert_eq!(rows.len(), phases.len() + cmds.len() + 2 + created.len());

    // The text form names them too.
    let o = s.smctl(&["analyze", "blame"]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("subsystem waits"), "{text}");
    assert!(text.contains("[exited:3]"), "{text}");

    // `smctl analyze plot`: XML, one row per phase of the status.
    let o = s.smctl(&["analyze", "plot"]);
    assert!(o.status.success(), "{o:?}");
    let svg = String::from_utf8(o.stdout).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let count = |kind: &str| {
        doc.descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with(&format!("row {kind} ")))
            })
            .count()
    };
    assert_eq!(count("phase"), st2["phases"].as_array().unwrap().len());
    assert_eq!(count("subsystem"), 2);
    assert_eq!(count("command"), 4);
    assert!(count("session") >= 1);
    // The failed command is drawn in the failure colour.
    let failed = doc
        .descendants()
        .find(|n| {
            n.attribute("class") == Some("row command failed")
                && n.descendants()
                    .any(|t| t.text() == Some("boot-execute: sh -c \"exit 3\""))
        })
        .expect("the failed command's row");
    assert!(failed
        .descendants()
        .any(|b| b.attribute("class") == Some("bar")
            && b.attribute("fill") == Some(smss::control::analyze::COLOUR_FAILED)));
    if let Some(out) = std::env::var_os("SMSS_ANALYZE_SVG") {
        std::fs::write(out, &svg).unwrap();
    }
    let _ = TIMEOUT;
    s.poweroff();
}

#[test]
fn a_readiness_timeout_is_recorded_as_a_failure() {
    require_unshare!();
    // A non-critical subsystem that never says READY=1: the boot goes on without it.
    let cfg = r#"
[subsystems]
required = ["mute"]
mute = { command = ["sleep", "1000"], ready = "notify", ready-timeout = "300ms", critical = false }
[shutdown]
grace-period = "2s"
"#;
    let s = start("analyze-fail", cfg, Opts::default());
    let st = s.ok("GetStatus", json!({}));
    let mute = st["subsystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "mute")
        .unwrap()
        .clone();
    assert_eq!(mute["result"], "failed: not ready in time", "{mute}");
    assert_eq!(mute["ready_us"], Value::Null);
    // Not critical: the boot went on without it, and it runs on.
    assert_eq!(mute["end_us"], Value::Null, "{mute}");
    assert_eq!(mute["state"], "running", "{mute}");
    let boot_end = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| u(&p["start_us"]) + u(&p["duration_us"]))
        .max()
        .unwrap();
    let waited = boot_end - u(&mute["start_us"]);
    assert!(waited >= 300_000, "the boot waited {waited} us");
    let o = s.smctl(&["analyze", "plot"]);
    assert!(o.status.success(), "{o:?}");
    let svg = String::from_utf8(o.stdout).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert!(doc
        .descendants()
        .any(|n| n.attribute("class") == Some("row subsystem failed")));
}
