//! DOS Devices: `NAME = TARGET` symbolic links, created before boot-execute so its commands can
//! use them (SmpInitializeDosDevices). The first failure stops the phase and is returned: on
//! Windows it fails SmpInit and the machine crashes, so the caller bugchecks.

use std::path::{Component, Path, PathBuf};

use super::{errno, PhaseError};
use crate::sys::Sys;

/// Where the link for `name` lives: `dir/NAME`, or `NAME` itself when absolute.
pub fn link_path(dir: &Path, name: &str) -> Result<PathBuf, PhaseError> {
    let invalid = |reason: &str| PhaseError::InvalidLinkName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let p = Path::new(name);
    if p.is_absolute() {
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(invalid("contains a '..' component"));
        }
        if p.parent().is_none() {
            return Err(invalid("is the root directory"));
        }
        return Ok(p.to_path_buf());
    }
    if name.contains('/') {
        return Err(invalid("contains '/' but is not absolute"));
    }
    if name == "." || name == ".." {
        return Err(invalid("is '.' or '..'"));
    }
    Ok(dir.join(name))
}

/// Create `dir`, then each link in order. A non-empty target replaces any existing link
/// atomically (a symlink at a temporary name, renamed over); an empty target removes the link
/// (absent is fine). Returns the first failure.
pub fn run(sys: &dyn Sys, dir: &Path, links: &[(String, String)]) -> Result<(), PhaseError> {
    sys.create_dir_all(dir, 0o755)
        .map_err(|source| PhaseError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    for (name, target) in links {
        let link = link_path(dir, name)?;
        if target.is_empty() {
            remove_link(sys, &link)?;
        } else {
            replace_link(sys, &link, target)?;
        }
    }
    Ok(())
}

fn remove_link(sys: &dyn Sys, link: &Path) -> Result<(), PhaseError> {
    match sys.remove_file(link) {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == libc::ENOENT => Ok(()),
        Err(source) => Err(PhaseError::RemoveLink {
            link: link.to_path_buf(),
            source,
        }),
    }
}

fn replace_link(sys: &dyn Sys, link: &Path, target: &str) -> Result<(), PhaseError> {
    let err = |source| PhaseError::Link {
        link: link.to_path_buf(),
        target: target.to_string(),
        source,
    };
    let parent = link.parent().unwrap_or(Path::new("/"));
    let base = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // An absolute name may live in a directory nobody made yet (/dev/disk/by-smss/x).
    sys.create_dir_all(parent, 0o755).map_err(err)?;
    let tmp = parent.join(format!(".{base}.smss-new"));
    // A leftover from a boot that died between symlink and rename.
    match sys.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if errno(&e) == libc::ENOENT => {}
        Err(e) => return Err(err(e)),
    }
    sys.symlink(Path::new(target), &tmp).map_err(err)?;
    if let Err(e) = sys.rename(&tmp, link) {
        let _ = sys.remove_file(&tmp);
        return Err(err(e));
    }
    log::debug!("{} -> {target}", link.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{FakeSys, Node};

    const DIR: &str = "/run/smss/dosdevices";

    fn links(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn creates_links_atomically() {
        let s = FakeSys::new();
        run(
            &s,
            Path::new(DIR),
            &links(&[("C:", "/"), ("NUL", "/dev/null")]),
        )
        .unwrap();
        assert_eq!(s.node(format!("{DIR}/C:")), Some(Node::Symlink("/".into())));
        assert_eq!(
            s.node(format!("{DIR}/NUL")),
            Some(Node::Symlink("/dev/null".into()))
        );
        let calls = s.calls();
        assert!(calls.contains(&format!("symlink {DIR}/.C:.smss-new /")));
        assert!(calls.contains(&format!("rename {DIR}/.C:.smss-new {DIR}/C:")));
        assert!(s.node(format!("{DIR}/.C:.smss-new")).is_none());
    }

    #[test]
    fn existing_link_is_replaced_by_rename_over() {
        let s = FakeSys::new();
        s.add_dir(DIR);
        s.fs.borrow_mut()
            .insert(format!("{DIR}/P:").into(), Node::Symlink("/old".into()));
        // A leftover temporary from a crashed boot would make symlink fail EEXIST.
        s.fs.borrow_mut().insert(
            format!("{DIR}/.P:.smss-new").into(),
            Node::Symlink("/junk".into()),
        );
        run(&s, Path::new(DIR), &links(&[("P:", "/srv/emulators")])).unwrap();
        assert_eq!(
            s.node(format!("{DIR}/P:")),
            Some(Node::Symlink("/srv/emulators".into()))
        );
    }

    #[test]
    fn empty_target_deletes_and_absent_is_fine() {
        let s = FakeSys::new();
        s.fs.borrow_mut().insert(
            format!("{DIR}/AUX").into(),
            Node::Symlink("/dev/ttyS0".into()),
        );
        run(&s, Path::new(DIR), &links(&[("AUX", ""), ("PRN", "")])).unwrap();
        assert!(s.node(format!("{DIR}/AUX")).is_none());
    }

    #[test]
    fn absolute_names_make_that_link() {
        let s = FakeSys::new();
        run(&s, Path::new(DIR), &links(&[("/dev/cdrom", "/dev/sr0")])).unwrap();
        assert_eq!(s.node("/dev/cdrom"), Some(Node::Symlink("/dev/sr0".into())));
        assert!(s
            .calls()
            .contains(&"rename /dev/.cdrom.smss-new /dev/cdrom".to_string()));
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", "a/b", "..", ".", "/a/../b", "/"] {
            assert!(link_path(Path::new(DIR), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn first_failure_stops_the_phase() {
        let s = FakeSys::new();
        s.fail("symlink", format!("{DIR}/.B:.smss-new"), libc::EROFS);
        let e = run(
            &s,
            Path::new(DIR),
            &links(&[("A:", "/a"), ("B:", "/b"), ("C:", "/c")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("failed to link {DIR}/B: -> /b: Read-only file system (os error 30)")
        );
        assert!(s.node(format!("{DIR}/A:")).is_some());
        assert!(s.node(format!("{DIR}/C:")).is_none());
        let e = run(&s, Path::new(DIR), &links(&[("x/y", "/a")])).unwrap_err();
        assert!(matches!(e, PhaseError::InvalidLinkName { .. }));
    }
}
