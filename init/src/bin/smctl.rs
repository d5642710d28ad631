//! `smctl`: the client of smss's control socket (interface.md section 5). Exit 0 on success,
//! 1 on an error reply or when smss cannot be reached (message on stderr), 2 on usage.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use smss::cli::{self, Arg::*, Parser, ValueExt};
use smss::control::client::{Client, ClientError};
use smss::control::wire::Reply;

const USAGE: &str = "\
usage: smctl [--socket PATH] COMMAND
  status [--json]                       boot phases, subsystems, sessions
  session create [--seat S] [--tty T] [--user U] [--env K=V].. [--shared-seat]
                 [--pids-max N] [-- CMD ARG..]
                                        create a session, print its id
  session list [--json]
  session terminate ID [--no-wait]      stop a session (waits until it is gone)
  subsystem start NAME [--session ID]   start an optional subsystem, print its pid
  rename SRC [DST] [--replace] [--offline] [--config PATH]
                                        queue a rename (no DST = delete) for the next boot;
                                        --offline (or no smss running) appends to the queue
                                        file that PATH (default /etc/smss/smss.toml) names,
                                        and refuses when that file is invalid
  reboot | poweroff | halt
  analyze blame [--json]                phases, commands, subsystems, sessions, longest first
  analyze plot                          SVG timeline of the boot on stdout
  notify [KEY=VALUE..]                  send READY=1 (or the given fields) to $NOTIFY_SOCKET
  call METHOD [JSON]                    call any varlink method, print the raw reply

The socket defaults to [control] socket of /etc/smss/smss.toml, else /run/smss/control.";

/// What went wrong, and the exit status it gives.
enum Failure {
    Usage(String),
    Error(String),
}

type Outcome = Result<(), Failure>;

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

impl From<cli::Usage> for Failure {
    fn from(u: cli::Usage) -> Self {
        Failure::Usage(u.0)
    }
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

fn main() {
    // A reader that went away (`smctl session list | head -1`) ends smctl quietly, killed by
    // SIGPIPE as coreutils are, not with a panic on EPIPE (Rust's runtime ignores SIGPIPE).
    smss::sys::default_sigpipe();
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match run(argv) {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => cli::usage_error("smctl", &cli::Usage(m), USAGE),
        Err(Failure::Error(m)) => {
            eprintln!("smctl: {m}");
            1
        }
    };
    std::process::exit(code);
}

/// The arguments with `--socket PATH` (anywhere before `--`) taken out; the rest, each option
/// as one word again, for the command's own parser.
fn split_socket(argv: Vec<OsString>) -> Result<(Option<PathBuf>, Vec<OsString>), Failure> {
    let mut p = cli::parser(argv);
    let (mut socket, mut rest) = (None, Vec::new());
    loop {
        if let Some(after) = cli::after_double_dash(&mut p) {
            rest.push("--".into());
            rest.extend(after);
            break;
        }
        let Some(arg) = p.next()? else { break };
        match arg {
            Long("socket") => socket = Some(PathBuf::from(p.value()?)),
            Long(l) => {
                let mut w = OsString::from(format!("--{l}"));
                if let Some(v) = p.optional_value() {
                    w.push("=");
                    w.push(v);
                }
                rest.push(w);
            }
            Short(c) => rest.push(format!("-{c}").into()),
            Value(v) => rest.push(v),
        }
    }
    Ok((socket, rest))
}

fn configured_socket() -> PathBuf {
    match smss_config::load_optional(Path::new(smss_config::DEFAULT_CONFIG_PATH)) {
        Ok(Some(cfg)) => cfg.control.socket,
        _ => PathBuf::from(smss_config::DEFAULT_CONTROL_SOCKET),
    }
}

fn run(argv: Vec<OsString>) -> Outcome {
    let (socket, args) = split_socket(argv)?;
    // `--help`/`-h` anywhere before `--` (`smctl session create --help`), as smss and
    // smss-session take it after their subcommands; after `--` it is the command's.
    if args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
    {
        cli::help(USAGE);
        return Ok(());
    }
    let socket = socket.unwrap_or_else(configured_socket);
    let mut p = cli::parser(args);
    let command = match p.next()? {
        None => return Err(usage("no command")),
        Some(Short('h') | Long("help")) => {
            cli::help(USAGE);
            return Ok(());
        }
        Some(Short('V') | Long("version")) => {
            println!("smctl {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Some(Value(w)) => w.string()?,
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "help" => {
            no_more(&mut p)?;
            cli::help(USAGE);
            Ok(())
        }
        "status" => status(&socket, json_flag(&mut p)?),
        "session" => match word(&mut p)?.as_deref() {
            Some("create") => session_create(&socket, &mut p),
            Some("list") => session_list(&socket, json_flag(&mut p)?),
            Some("terminate") => session_terminate(&socket, &mut p),
            other => Err(unknown_sub("session", other, "create, list or terminate")),
        },
        "subsystem" => match word(&mut p)?.as_deref() {
            Some("start") => subsystem_start(&socket, &mut p),
            other => Err(unknown_sub("subsystem", other, "start")),
        },
        "rename" => rename(&socket, &mut p),
        action @ ("reboot" | "poweroff" | "halt") => {
            no_more(&mut p)?;
            call(
                &socket,
                "io.smss.Manager.Shutdown",
                json!({ "action": action }),
            )?;
            Ok(())
        }
        "analyze" => match word(&mut p)?.as_deref() {
            Some("blame") => analyze_blame(&socket, json_flag(&mut p)?),
            Some("plot") => {
                no_more(&mut p)?;
                analyze_plot(&socket)
            }
            other => Err(unknown_sub("analyze", other, "blame or plot")),
        },
        "notify" => notify(&values(&mut p)?),
        "call" => match values(&mut p)?.as_slice() {
            [method] => raw_call(&socket, method, "{}"),
            [method, params] => raw_call(&socket, method, params),
            _ => Err(usage("call needs METHOD [JSON]")),
        },
        other => Err(usage(format!("unknown command {other}"))),
    }
}

/// `COMMAND` followed by no subcommand, or by `word`, which is none of `expected`.
fn unknown_sub(command: &str, word: Option<&str>, expected: &str) -> Failure {
    match word {
        None => usage(format!("{command} needs {expected}")),
        Some(w) => usage(format!(
            "unknown {command} command {w} (expected {expected})"
        )),
    }
}

/// The next word when it is not an option (a subcommand's name).
fn word(p: &mut Parser) -> Result<Option<String>, Failure> {
    match p.next()? {
        Some(Value(w)) => Ok(Some(w.string()?)),
        None => Ok(None),
        Some(other) => Err(other.unexpected().into()),
    }
}

/// The remaining words, none of them an option.
fn values(p: &mut Parser) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    while let Some(w) = word(p)? {
        out.push(w);
    }
    Ok(out)
}

fn no_more(p: &mut Parser) -> Result<(), Failure> {
    match p.next()? {
        None => Ok(()),
        Some(other) => Err(other.unexpected().into()),
    }
}

fn json_flag(p: &mut Parser) -> Result<bool, Failure> {
    let mut json = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("json") => json = true,
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(json)
}

/// One call; an error reply becomes a readable message.
fn call(socket: &Path, method: &str, params: Value) -> Result<Value, Failure> {
    let mut client = Client::connect(socket).map_err(|e| Failure::Error(e.to_string()))?;
    match client.call(method, params) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Error { error, parameters }) => {
            Err(Failure::Error(describe_error(&error, &parameters)))
        }
        Err(e) => Err(Failure::Error(e.to_string())),
    }
}

fn describe_error(error: &str, p: &Value) -> String {
    let s = |k: &str| {
        p.get(k).map_or(String::new(), |v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    match error.rsplit('.').next().unwrap_or(error) {
        "PermissionDenied" => format!(
            "permission denied: {} needs root or membership of [control] allowed-group",
            s("method")
        ),
        "NoSuchSession" => format!("no session {}", s("id")),
        "NoSuchSubsystem" => format!("no optional subsystem {}", s("name")),
        "InvalidParameter" if p.get("reason").is_some() => {
            format!("invalid {}: {}", s("parameter"), s("reason"))
        }
        "InvalidParameter" => format!("invalid parameter {}", s("parameter")),
        "LimitReached" => format!("limit reached: {} ({})", s("limit"), s("value")),
        "Failed" => s("reason"),
        "MethodNotFound" => format!("smss does not know method {}", s("method")),
        _ => format!("{error} {p}"),
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn status(socket: &Path, as_json: bool) -> Outcome {
    let v = call(socket, "io.smss.Manager.GetStatus", json!({}))?;
    if as_json {
        print_json(&v);
        return Ok(());
    }
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    println!("mode:   {}", str_of(&v, "mode"));
    println!("uptime: {:.3} s", num(&v, "uptime_us") as f64 / 1e6);
    println!("phases:");
    for p in v
        .get("phases")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  {:<26} {:>10} us  {}",
            str_of(p, "name"),
            num(p, "duration_us"),
            str_of(p, "result")
        );
    }
    let subs = v
        .get("subsystems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !subs.is_empty() {
        println!("subsystems:");
        for s in &subs {
            let pid = s
                .get("pid")
                .and_then(Value::as_i64)
                .map_or("-".into(), |p| p.to_string());
            println!(
                "  {:<16} session {:<3} {:<9} {:<9} pid {pid}",
                str_of(s, "name"),
                num(s, "session"),
                str_of(s, "kind"),
                str_of(s, "state")
            );
        }
    }
    let sessions = v
        .get("sessions")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    println!("sessions:");
    print_sessions(&sessions);
    Ok(())
}

fn print_sessions(sessions: &Value) {
    let list = sessions.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (none)");
        return;
    }
    println!(
        "  {:<4} {:<10} {:<14} {:<10} {:<8} {:<12} pids",
        "id", "seat", "tty", "user", "leader", "state"
    );
    for s in &list {
        let field = |k: &str| match s.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "-".into(),
        };
        let pids: Vec<String> = s
            .get("pids")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default();
        println!(
            "  {:<4} {:<10} {:<14} {:<10} {:<8} {:<12} {}",
            field("id"),
            field("seat"),
            field("tty"),
            field("user"),
            field("leader_pid"),
            field("state"),
            pids.join(",")
        );
    }
}

fn session_create(socket: &Path, p: &mut Parser) -> Outcome {
    let mut params = serde_json::Map::new();
    let mut env = Vec::new();
    loop {
        if let Some(cmd) = cli::command_after_double_dash(p)? {
            let cmd = cmd
                .into_iter()
                .map(|w| w.string())
                .collect::<Result<Vec<_>, _>>()?;
            params.insert("command".into(), json!(cmd));
            break;
        }
        let Some(arg) = p.next()? else { break };
        match arg {
            Long(key @ ("seat" | "tty" | "user")) => {
                let key = key.to_string();
                params.insert(key, json!(cli::string_value(p)?));
            }
            Long("env") => env.push(cli::string_value(p)?),
            Long("pids-max") => {
                let n: u64 = cli::parsed_value(p, "--pids-max")?;
                params.insert("pids_max".into(), json!(n));
            }
            Long("shared-seat") => {
                params.insert("allow_shared_seat".into(), json!(true));
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if !env.is_empty() {
        params.insert("environment".into(), json!(env));
    }
    let v = call(
        socket,
        "io.smss.Manager.CreateSession",
        Value::Object(params),
    )?;
    println!("{}", v.get("id").cloned().unwrap_or(Value::Null));
    Ok(())
}

fn session_list(socket: &Path, as_json: bool) -> Outcome {
    let v = call(socket, "io.smss.Manager.ListSessions", json!({}))?;
    let sessions = v
        .get("sessions")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    if as_json {
        print_json(&sessions);
    } else {
        print_sessions(&sessions);
    }
    Ok(())
}

fn session_terminate(socket: &Path, p: &mut Parser) -> Outcome {
    let (mut id, mut wait) = (None, true);
    while let Some(arg) = p.next()? {
        match arg {
            Long("no-wait") => wait = false,
            Value(v) if id.is_none() => id = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(id) = id else {
        return Err(usage("session terminate needs an ID"));
    };
    let id: u32 = id
        .parse()
        .map_err(|_| usage(format!("not a session id: {id}")))?;
    call(
        socket,
        "io.smss.Manager.TerminateSession",
        json!({"id": id, "wait": wait}),
    )?;
    Ok(())
}

fn subsystem_start(socket: &Path, p: &mut Parser) -> Outcome {
    let (mut name, mut session) = (None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Long("session") => session = Some(cli::parsed_value::<u32>(p, "--session")?),
            Value(v) if name.is_none() => name = Some(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(name) = name else {
        return Err(usage("subsystem start needs a NAME"));
    };
    let v = call(
        socket,
        "io.smss.Manager.LoadDeferredSubsystem",
        json!({"name": name, "session": session}),
    )?;
    println!("{}", v.get("pid").cloned().unwrap_or(Value::Null));
    Ok(())
}

fn rename(socket: &Path, p: &mut Parser) -> Outcome {
    let mut paths = Vec::new();
    let (mut replace, mut offline, mut config) = (false, false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Long("replace") => replace = true,
            Long("offline") => offline = true,
            Long("config") => config = Some(PathBuf::from(p.value()?)),
            Value(v) => paths.push(v.string()?),
            other => return Err(other.unexpected().into()),
        }
    }
    let config = config.as_deref();
    // `mv ''` fails; taken against the working directory, an empty SRC would queue that
    // directory's deletion and an empty DST (an unset shell variable) a rename onto it.
    if paths.iter().any(String::is_empty) {
        return Err(usage(
            "rename: empty path (leave DST out to queue a delete)",
        ));
    }
    // Relative paths are taken against our working directory, as `mv` takes them: the queue
    // is applied at the next boot, from `/`.
    let mut absolute = Vec::with_capacity(paths.len());
    for p in paths {
        if Path::new(&p).is_absolute() {
            absolute.push(p);
            continue;
        }
        let cwd = std::env::current_dir().map_err(|e| {
            Failure::Error(format!("failed to find the working directory for {p}: {e}"))
        })?;
        let full = against(&cwd, &p)
            .into_os_string()
            .into_string()
            .map_err(|_| {
                Failure::Error(format!(
                    "{p}: the working directory {} is not UTF-8: give the path in full",
                    cwd.display()
                ))
            })?;
        absolute.push(full);
    }
    let paths = absolute;
    let (src, dst) = match paths.as_slice() {
        [src] => (src.as_str(), None),
        [src, dst] => (src.as_str(), Some(dst.as_str())),
        _ => return Err(usage("rename needs SRC [DST]")),
    };
    if !offline {
        let params = json!({"source": src, "destination": dst, "replace_existing": replace});
        match Client::connect(socket) {
            Ok(mut c) => {
                return match c.call("io.smss.Manager.QueueFileRename", params) {
                    Ok(Reply::Ok(_)) => Ok(()),
                    Ok(Reply::Error { error, parameters }) => {
                        Err(Failure::Error(describe_error(&error, &parameters)))
                    }
                    Err(e) => Err(Failure::Error(e.to_string())),
                };
            }
            Err(ClientError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                eprintln!(
                    "smctl: smss does not serve {}: appending to the queue file directly",
                    socket.display()
                );
            }
            Err(e) => return Err(Failure::Error(e.to_string())),
        }
    }
    let queue = offline_queue(config)?;
    smss::rename_queue::append(&queue, Path::new(src), dst.map(Path::new), replace)
        .map_err(|e| Failure::Error(format!("failed to append to {}: {e}", queue.display())))
}

/// `rel` under `cwd`, with its `.` components and repeated slashes left out (`..` is kept:
/// the boot follows it, as the kernel would have).
fn against(cwd: &Path, rel: &str) -> PathBuf {
    let mut out = cwd.to_path_buf();
    for c in Path::new(rel).components() {
        if c != std::path::Component::CurDir {
            out.push(c);
        }
    }
    out
}

/// The queue a direct append goes to: the one `config` (default /etc/smss/smss.toml) names.
/// A broken configuration is refused rather than guessed around (issue 12: the default queue
/// was used, which smss does not read when its configuration names another); a missing one
/// means the built-in default, as for smss itself, unless it was named explicitly.
fn offline_queue(config: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = config.unwrap_or(Path::new(smss_config::DEFAULT_CONFIG_PATH));
    match smss_config::load_optional(path) {
        Ok(Some(cfg)) => Ok(cfg.pending_file_rename_operations.queue),
        Ok(None) if config.is_none() => Ok(PathBuf::from(smss_config::DEFAULT_RENAME_QUEUE)),
        Ok(None) => Err(Failure::Error(format!(
            "{} does not exist: cannot tell which rename queue to append to",
            path.display()
        ))),
        Err(d) => Err(Failure::Error(format!(
            "cannot tell which rename queue to append to: {} is invalid ({}); fix it or name \
             the configuration smss uses with --config PATH",
            path.display(),
            d.0.first().map(|d| d.to_string()).unwrap_or_default()
        ))),
    }
}

/// GetStatus, read for `analyze`.
fn analysis(socket: &Path) -> Result<smss::control::analyze::Analysis, Failure> {
    let v = call(socket, "io.smss.Manager.GetStatus", json!({}))?;
    smss::control::analyze::analyze(&v).map_err(Failure::Error)
}

fn analyze_blame(socket: &Path, as_json: bool) -> Outcome {
    let a = analysis(socket)?;
    if as_json {
        print_json(&smss::control::analyze::blame_json(&a));
    } else {
        print!("{}", smss::control::analyze::blame_text(&a));
    }
    Ok(())
}

fn analyze_plot(socket: &Path) -> Outcome {
    let a = analysis(socket)?;
    print!("{}", smss::control::analyze::plot(&a));
    Ok(())
}

/// sd_notify(3) from a shell: one datagram to $NOTIFY_SOCKET (`@name` = abstract), with
/// MAINPID=<our parent> so smss accepts it for the shell that runs us.
fn notify(rest: &[String]) -> Outcome {
    use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let mut fields: Vec<String> = rest.to_vec();
    if let Some(bad) = fields.iter().find(|f| !f.contains('=')) {
        return Err(usage(format!("notify fields are KEY=VALUE, not {bad}")));
    }
    if fields.is_empty() {
        fields.push("READY=1".into());
    }
    if !fields.iter().any(|f| f.starts_with("MAINPID=")) {
        fields.push(format!("MAINPID={}", nix::unistd::getppid()));
    }
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return Err(Failure::Error("$NOTIFY_SOCKET is not set".into()));
    };
    let addr = addr.to_string_lossy().to_string();
    let unix = match addr.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(Path::new(&addr)),
    }
    .map_err(|e| Failure::Error(format!("bad $NOTIFY_SOCKET {addr}: {e}")))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Failure::Error(format!("failed to create a socket: {e}")))?;
    let body = fields.join("\n");
    sendto(fd.as_raw_fd(), body.as_bytes(), &unix, MsgFlags::empty())
        .map_err(|e| Failure::Error(format!("failed to send to {addr}: {e}")))?;
    Ok(())
}

fn raw_call(socket: &Path, method: &str, params: &str) -> Outcome {
    let params: Value =
        serde_json::from_str(params).map_err(|e| usage(format!("parameters are not JSON: {e}")))?;
    let mut client = Client::connect(socket).map_err(|e| Failure::Error(e.to_string()))?;
    match client.call(method, params) {
        Ok(Reply::Ok(v)) => {
            print_json(&v);
            Ok(())
        }
        Ok(Reply::Error { error, parameters }) => {
            print_json(&json!({"error": error, "parameters": parameters}));
            Err(Failure::Error(describe_error(&error, &parameters)))
        }
        Err(e) => Err(Failure::Error(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn socket_anywhere_before_double_dash() {
        let (s, rest) = split_socket(v(&[
            "session", "--socket", "/x", "create", "--", "--socket",
        ]))
        .ok()
        .unwrap();
        assert_eq!(s, Some(PathBuf::from("/x")));
        assert_eq!(rest, v(&["session", "create", "--", "--socket"]));
        let (s, _) = split_socket(v(&["--socket=/y", "status"])).ok().unwrap();
        assert_eq!(s, Some(PathBuf::from("/y")));
        assert!(split_socket(v(&["--socket"])).is_err());
    }

    #[test]
    fn usage_errors() {
        for args in [
            vec![],
            v(&["bogus"]),
            v(&["session"]),
            v(&["session", "terminate"]),
            v(&["session", "terminate", "x"]),
            v(&["status", "--yaml"]),
            v(&["rename"]),
            v(&["rename", "a", "b", "c"]),
            v(&["rename", "/a", "--config"]),
            v(&["notify", "READY"]),
            v(&["session", "create", "--seat"]),
            v(&["session", "create", "--"]),
            v(&["analyze"]),
            v(&["analyze", "bogus"]),
            v(&["analyze", "blame", "--yaml"]),
            v(&["analyze", "plot", "x"]),
        ] {
            let mut a = v(&["--socket", "/nonexistent/socket"]);
            a.extend(args.clone());
            assert!(matches!(run(a), Err(Failure::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn offline_rename_uses_the_configured_queue_or_refuses() {
        let dir = std::env::temp_dir().join(format!("smctl-offline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("smss.toml");
        let queue = dir.join("other-queue");
        std::fs::write(
            &cfg,
            format!(
                "[pending-file-rename-operations]\nqueue = \"{}\"\n",
                queue.display()
            ),
        )
        .unwrap();
        let socket = dir.join("no-socket").display().to_string();
        let cfg_arg = cfg.display().to_string();
        let args = v(&[
            "--socket", &socket, "rename", "/a", "/b", "--config", &cfg_arg,
        ]);
        assert!(run(args).is_ok());
        assert_eq!(std::fs::read(&queue).unwrap(), b"/a\0/b\0");

        // An invalid configuration: refused, nothing written anywhere.
        std::fs::write(&cfg, "[pending-file-rename-operations]\nqueue = 3\n").unwrap();
        let args = v(&["--socket", &socket, "rename", "/c", "--config", &cfg_arg]);
        let Err(Failure::Error(m)) = run(args) else {
            panic!("accepted an invalid configuration")
        };
        assert!(m.contains("cannot tell which rename queue"), "{m}");
        assert!(m.contains("is invalid"), "{m}");
        assert_eq!(std::fs::read(&queue).unwrap(), b"/a\0/b\0");

        // A named configuration that does not exist: refused too.
        let missing = dir.join("missing.toml").display().to_string();
        let args = v(&[
            "--socket",
            &socket,
            "rename",
            "/c",
            "--offline",
            "--config",
            &missing,
        ]);
        assert!(matches!(run(args), Err(Failure::Error(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            describe_error("io.smss.Manager.NoSuchSession", &json!({"id": 4})),
            "no session 4"
        );
        assert_eq!(
            describe_error(
                "io.smss.Manager.InvalidParameter",
                &json!({"parameter": "seat", "reason": "no seat x"})
            ),
            "invalid seat: no seat x"
        );
    }
}
