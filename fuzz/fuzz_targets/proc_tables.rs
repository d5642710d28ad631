//! Fuzz target: what PID 1 reads from /proc, where other processes choose bytes: a process's
//! name in /proc/PID/stat (prctl PR_SET_NAME takes anything but NUL) and the paths in
//! /proc/self/mounts and /proc/swaps (any bytes but the escaped few). Nothing may panic, and
//! whatever the name, the fields after it parse exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smss::phases::proc_table_paths;
use smss::shutdown;
use smss::os::procs::parse_stat;
use smss::sys::RebootCmd;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = parse_stat(data) {
        let _ = p.alive();
    }
    // Any name, even one with parentheses, spaces and newlines, between our fields.
    let name: Vec<u8> = data.iter().copied().filter(|&b| b != 0).collect();
    let mut line = b"42 (".to_vec();
    line.extend_from_slice(&name);
    line.extend_from_slice(b") S 1 7 9 34816 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0\n");
    let p = parse_stat(&line).expect("a well-formed stat line parses");
    assert_eq!(
        (p.pid, p.state, p.ppid, p.pgid, p.session, p.kernel_thread),
        (42, 'S', 1, 7, 9, false)
    );
    // The stop keys processes by start time and name, and HUPs those with a terminal.
    assert_eq!((p.tty_nr, p.start_time), (34816, 777));
    let n = name.len().min(16);
    assert_eq!(&p.comm[..n], &name[..n]);
    assert!(p.comm[n..].iter().all(|&b| b == 0));

    let paths = proc_table_paths(data, 0, 1);
    assert!(paths.iter().all(|p| !p.as_os_str().is_empty()));
    let plan = shutdown::plan(data, data, RebootCmd::Poweroff);
    assert!(plan.unmount.len() <= paths.len());
});
