//! Users and groups from /etc/passwd, /etc/group and /proc/PID/status, read directly: PID 1 is
//! a static binary, and glibc's static getgrnam needs NSS modules an initramfs does not have.

use std::path::Path;

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(User {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
                shell: f.get(6).unwrap_or(&"/bin/sh").to_string(),
            })
        })
        .collect()
}

pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The most of /etc/passwd or /etc/group read (PID 1 reads them for a connecting peer of
/// `allowed-group` and for a session's user): far above any local file.
pub const MAX_DATABASE_SIZE: u64 = 8 << 20;

/// Lossy: one entry with a Latin-1 comment field must not hide every user. Bounded, and
/// opened non-blocking as a regular file only: a FIFO must not hold PID 1's loop in open(2).
fn read(path: &str) -> String {
    use std::io::Read;
    let mut b = Vec::new();
    if let Ok(f) = crate::sys::open_regular_file(Path::new(path), false) {
        let _ = f.take(MAX_DATABASE_SIZE).read_to_end(&mut b);
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// A user by name, or by number when `name` is all digits.
pub fn find_user(name: &str) -> Option<User> {
    let users = parse_passwd(&read("/etc/passwd"));
    if let Ok(uid) = name.parse::<u32>() {
        if let Some(u) = users.iter().find(|u| u.uid == uid) {
            return Some(u.clone());
        }
    }
    users.into_iter().find(|u| u.name == name)
}

pub fn find_group(name: &str) -> Option<Group> {
    let groups = parse_group(&read("/etc/group"));
    if let Ok(gid) = name.parse::<u32>() {
        return Some(
            groups
                .iter()
                .find(|g| g.gid == gid)
                .cloned()
                .unwrap_or(Group {
                    name: name.to_string(),
                    gid,
                    members: Vec::new(),
                }),
        );
    }
    groups.into_iter().find(|g| g.name == name)
}

/// The supplementary groups of `user` (initgroups(3) semantics: every group listing them,
/// plus their primary group).
pub fn supplementary_groups(user: &User) -> Vec<u32> {
    let mut gids = vec![user.gid];
    for g in parse_group(&read("/etc/group")) {
        if g.members.contains(&user.name) && !gids.contains(&g.gid) {
            gids.push(g.gid);
        }
    }
    gids
}

/// Peer credentials as SO_PEERCRED (and SO_PEERGROUPS) report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups at connect time; None when the kernel could not say.
    pub groups: Option<Vec<u32>>,
}

/// May `peer` call privileged methods? Root always; otherwise membership of `allowed_group`
/// as primary group, as a supplementary group of the connecting process (SO_PEERGROUPS, taken
/// by the kernel at connect time), or as a listed member in /etc/group (D-Bus policy's rule).
/// /proc/PID is never consulted: the pid may have been reused since the connect.
pub fn is_privileged(peer: &Peer, allowed_group: Option<&str>) -> bool {
    if peer.uid == 0 {
        return true;
    }
    let Some(group) = allowed_group.and_then(find_group) else {
        return false;
    };
    if peer.gid == group.gid {
        return true;
    }
    if peer.groups.as_ref().is_some_and(|g| g.contains(&group.gid)) {
        return true;
    }
    let users = parse_passwd(&read("/etc/passwd"));
    users
        .iter()
        .find(|u| u.uid == peer.uid)
        .is_some_and(|u| group.members.contains(&u.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_in_place_of_a_database_is_not_waited_on() {
        let dir = std::env::temp_dir().join(format!("smss-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("group");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = fifo.display().to_string();
        std::thread::spawn(move || {
            let _ = tx.send(read(&p));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        if got.is_err() {
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(got.as_deref(), Ok(""), "the read waited on a FIFO");
        std::fs::write(dir.join("passwd"), "a:x:1:1::/:/bin/sh\n").unwrap();
        assert!(read(&dir.join("passwd").display().to_string()).starts_with("a:x:1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_passwd_and_group() {
        let u = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\n# c\nbad\nalice:x:1000:100::/home/alice:/bin/bash\n",
        );
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "alice");
        assert_eq!((u[1].uid, u[1].gid), (1000, 100));
        assert_eq!(u[1].home, "/home/alice");
        let g = parse_group("smss:x:990:alice,bob\nwheel:x:10:\nbroken:x:zz:\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, vec!["alice", "bob"]);
        assert!(g[1].members.is_empty());
    }

    #[test]
    fn root_is_always_privileged() {
        let p = Peer {
            pid: 1,
            uid: 0,
            gid: 0,
            groups: None,
        };
        assert!(is_privileged(&p, None));
        let p = Peer {
            pid: 1,
            uid: 65534,
            gid: 65534,
            groups: Some(Vec::new()),
        };
        assert!(!is_privileged(&p, None));
        assert!(!is_privileged(&p, Some("no-such-group-anywhere")));
        // A numeric group needs no /etc/group entry.
        assert!(!is_privileged(&p, Some("4242")));
        let member = Peer {
            groups: Some(vec![7, 4242]),
            ..p.clone()
        };
        assert!(is_privileged(&member, Some("4242")));
        let primary = Peer { gid: 4242, ..p };
        assert!(is_privileged(&primary, Some("4242")));
    }
}
