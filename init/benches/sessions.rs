//! Session creation cost: CreateSession + TerminateSession round trips per second against a
//! real smss (PID 1 of a fresh PID + mount namespace, like tier 3), the median
//! CreateSession latency next to a bare fork+exec of the same processes, and the median
//! TerminateSession latency next to a bare kill + reap of the command.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! sudo cargo bench -p smss --bench sessions          # SESSIONS_BENCH_N=500 for more rounds
//! ```
//! Not part of the default test run (it needs root for the namespace). `SMSS_BIN_DIR=DIR`
//! measures the `smss` and `smss-session` in DIR instead (scripts/bench: the static ones).
// Tests may fail loudly and use libc directly: the workspace lints guard what ships.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use smss::control::client::Client;
use smss::control::wire::Reply;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn call(socket: &Path, method: &str, params: serde_json::Value) -> serde_json::Value {
    let mut c = Client::connect(socket).expect("connect");
    c.set_timeout(Some(Duration::from_secs(30))).unwrap();
    match c
        .call(&format!("io.smss.Manager.{method}"), params)
        .expect("call")
    {
        Reply::Ok(v) => v,
        Reply::Error { error, parameters } => panic!("{method}: {error} {parameters}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "sessions")
    {
        return;
    }
    // SMSS_BIN_DIR: measure other builds of smss and smss-session (scripts/bench passes the
    // static binaries it ships); default: the release build cargo made for this bench.
    let smss = std::env::var_os("SMSS_BIN_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_BIN_EXE_smss")),
        |d| Path::new(&d).join("smss"),
    );
    let instance = smss.with_file_name("smss-session");
    assert!(
        instance.exists(),
        "{} is missing: cargo build --release --workspace --bins",
        instance.display()
    );
    let n: usize = std::env::var("SESSIONS_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("smss-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("control");
    let cfg = dir.join("smss.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\nsocket = \"{}\"\n[sessions]\nmax-sessions = 1000\n[shutdown]\ngrace-period = \"5s\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
        ])
        .arg("mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"")
        .arg(&smss)
        .arg("--config")
        .arg(&cfg)
        .env("container", "bench")
        .env("SMSS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (needs root)");
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while log.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains("boot complete") {
            break;
        }
        line.clear();
    }
    // Keep draining the log so smss never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while log.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });

    let command = json!(["sleep", "1000"]);
    for _ in 0..10 {
        let v = call(&socket, "CreateSession", json!({ "command": command }));
        call(&socket, "TerminateSession", json!({ "id": v["id"] }));
    }
    let mut create = Vec::with_capacity(n);
    let mut terminate = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let c = Instant::now();
        let v = call(&socket, "CreateSession", json!({ "command": command }));
        create.push(c.elapsed());
        let d = Instant::now();
        call(&socket, "TerminateSession", json!({ "id": v["id"] }));
        terminate.push(d.elapsed());
    }
    let total = t.elapsed();

    // TerminateSession's floor: any call costs a connection, a request and a reply; here
    // the smallest call there is (org.varlink.service.GetInfo), on a fresh connection as above.
    let mut trivial = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Instant::now();
        let mut cl = Client::connect(&socket).expect("connect");
        cl.set_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = cl
            .call("org.varlink.service.GetInfo", json!({}))
            .expect("call");
        assert!(matches!(r, Reply::Ok(_)), "GetInfo: {r:?}");
        trivial.push(c.elapsed());
    }

    // The same processes without smss: fork+exec of the instance binary and of the command
    // (std's spawn returns once exec succeeded, as smss's does), then kill and reap.
    let mut bare_cmd = Vec::with_capacity(n);
    let mut bare_both = Vec::with_capacity(n);
    let mut bare_kill = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Instant::now();
        let mut a = Command::new(&instance)
            .arg("--help")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let b0 = Instant::now();
        let mut b = Command::new("sleep").arg("1000").spawn().unwrap();
        bare_cmd.push(b0.elapsed());
        bare_both.push(c.elapsed());
        // TerminateSession's baseline: signal the command and reap it.
        let k = Instant::now();
        let _ = b.kill();
        let _ = b.wait();
        bare_kill.push(k.elapsed());
        let _ = a.wait();
    }

    let create_med = percentile(&mut create, 0.5);
    let create_p90 = percentile(&mut create, 0.9);
    let term_med = percentile(&mut terminate, 0.5);
    let cmd_med = percentile(&mut bare_cmd, 0.5);
    let both_med = percentile(&mut bare_both, 0.5);
    let kill_med = percentile(&mut bare_kill, 0.5);
    let trivial_med = percentile(&mut trivial, 0.5);
    println!(
        "sessions: {n} CreateSession+TerminateSession round trips in {:.3} s = {:.0} round trips/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "CreateSession latency: median {:.0} us, p90 {:.0} us; TerminateSession median {:.0} us",
        us(create_med),
        us(create_p90),
        us(term_med)
    );
    println!(
        "bare fork+exec: the command alone median {:.0} us (ratio {:.1}x), instance + command median {:.0} us (ratio {:.1}x)",
        us(cmd_med),
        us(create_med) / us(cmd_med),
        us(both_med),
        us(create_med) / us(both_med)
    );
    println!(
        "bare kill+reap of the command: median {:.0} us (TerminateSession ratio {:.1}x)",
        us(kill_med),
        us(term_med) / us(kill_med)
    );
    println!(
        "trivial call (GetInfo) round trip: median {:.0} us; with the kill+reap {:.0} us ({:.1}x the kill+reap): TerminateSession's floor",
        us(trivial_med),
        us(trivial_med + kill_med),
        us(trivial_med + kill_med) / us(kill_med)
    );
    call(&socket, "Shutdown", json!({"action": "poweroff"}));
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
