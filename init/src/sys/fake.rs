//! A recording fake of [`Sys`] with a tiny in-memory filesystem and injectable errors, for
//! unit tests of the boot phases.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{FileLock, MountFlags, Sys};

/// One node of the fake filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(PathBuf),
}

/// (operation, path, files that appear once it succeeds).
pub type Appearing = (String, PathBuf, Vec<(PathBuf, Vec<u8>)>);

/// Records every call as a line ("rename /a /b") and keeps a path -> node map.
#[derive(Debug, Default)]
pub struct FakeSys {
    pub calls: RefCell<Vec<String>>,
    pub fs: RefCell<BTreeMap<PathBuf, Node>>,
    /// (operation, path) -> errno to fail with, e.g. ("swapon", "/swapfile") -> ENOSPC.
    pub errors: RefCell<Vec<(String, PathBuf, i32)>>,
    pub free: RefCell<BTreeMap<PathBuf, u64>>,
    pub mem_total: u64,
    /// `allocate_file` of more than this many bytes fails with ENOSPC (a full disk).
    pub allocate_limit: Cell<Option<u64>>,
    /// Logical sizes of files made by `allocate_file` (their data holds only what was written).
    pub sizes: RefCell<BTreeMap<PathBuf, u64>>,
    pub release: String,
    pub arch: String,
    pub cpus: usize,
    /// (operation, path) -> files that appear once it succeeds (a driver's devices in sysfs).
    pub appear: RefCell<Vec<Appearing>>,
}

impl FakeSys {
    pub fn new() -> Self {
        let s = Self {
            mem_total: 512 << 20,
            release: "6.6.0-test".to_string(),
            arch: "x86_64".to_string(),
            cpus: 2,
            ..Default::default()
        };
        s.fs.borrow_mut()
            .insert(PathBuf::from("/"), Node::Dir(0o755));
        s
    }

    /// Make `op` on `path` fail with `errno` (every time).
    pub fn fail(&self, op: &str, path: impl AsRef<Path>, errno: i32) {
        self.errors
            .borrow_mut()
            .push((op.to_string(), path.as_ref().to_path_buf(), errno));
    }

    /// Once `op` on `path` succeeds, `files` exist (e.g. loading a bus driver makes its
    /// devices appear under /sys).
    pub fn appear_after(&self, op: &str, path: impl AsRef<Path>, files: &[(&str, &[u8])]) {
        self.appear.borrow_mut().push((
            op.to_string(),
            path.as_ref().to_path_buf(),
            files
                .iter()
                .map(|(p, d)| (PathBuf::from(p), d.to_vec()))
                .collect(),
        ));
    }

    /// Add a file (and any missing parent directories), without recording a call.
    pub fn add_file(&self, path: impl AsRef<Path>, data: &[u8]) {
        self.add_parents(path.as_ref());
        self.fs.borrow_mut().insert(
            path.as_ref().to_path_buf(),
            Node::File(data.to_vec(), 0o644),
        );
    }

    /// Add a directory (and any missing parents), without recording a call.
    pub fn add_dir(&self, path: impl AsRef<Path>) {
        self.add_parents(path.as_ref());
        self.fs
            .borrow_mut()
            .insert(path.as_ref().to_path_buf(), Node::Dir(0o755));
    }

    fn add_parents(&self, path: &Path) {
        let mut fs = self.fs.borrow_mut();
        for a in path.ancestors().skip(1) {
            fs.entry(a.to_path_buf()).or_insert(Node::Dir(0o755));
        }
    }

    /// Free bytes reported by `free_bytes` for exactly `path` (default 1 TiB).
    pub fn set_free(&self, path: impl AsRef<Path>, bytes: u64) {
        self.free
            .borrow_mut()
            .insert(path.as_ref().to_path_buf(), bytes);
    }

    /// Calls whose line starts with `prefix` (e.g. "swapon").
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.split(' ').next() == Some(prefix))
            .cloned()
            .collect()
    }

    pub fn node(&self, path: impl AsRef<Path>) -> Option<Node> {
        self.fs.borrow().get(path.as_ref()).cloned()
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, op: &str, paths: &[&Path], extra: &str) -> io::Result<()> {
        let mut line = op.to_string();
        for p in paths {
            line.push(' ');
            line.push_str(&p.display().to_string());
        }
        if !extra.is_empty() {
            line.push(' ');
            line.push_str(extra);
        }
        self.calls.borrow_mut().push(line);
        let errors = self.errors.borrow();
        for (eop, epath, errno) in errors.iter() {
            if eop == op && paths.first().is_some_and(|p| *p == epath) {
                return Err(io::Error::from_raw_os_error(*errno));
            }
        }
        let appearing: Vec<(PathBuf, Vec<u8>)> = self
            .appear
            .borrow()
            .iter()
            .filter(|(aop, apath, _)| aop == op && paths.first().is_some_and(|p| *p == apath))
            .flat_map(|(_, _, files)| files.clone())
            .collect();
        for (path, data) in appearing {
            self.add_file(path, &data);
        }
        Ok(())
    }

    fn is_dir_with_children(&self, path: &Path) -> bool {
        self.fs
            .borrow()
            .keys()
            .any(|k| k != path && k.starts_with(path))
    }
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl Sys for FakeSys {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record("mkdir", &[path], &format!("{mode:o}"))?;
        let mut fs = self.fs.borrow_mut();
        for a in path.ancestors() {
            fs.entry(a.to_path_buf()).or_insert(Node::Dir(mode));
        }
        Ok(())
    }

    fn set_umask(&self, mask: u32) {
        let _ = self.record("umask", &[], &format!("{mask:03o}"));
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record("symlink", &[link, target], "")?;
        let mut fs = self.fs.borrow_mut();
        if fs.contains_key(link) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        fs.insert(link.to_path_buf(), Node::Symlink(target.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record("rename", &[from, to], "")?;
        let mut fs = self.fs.borrow_mut();
        let node = fs.remove(from).ok_or_else(enoent)?;
        fs.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn rename_noreplace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record("rename_noreplace", &[from, to], "")?;
        let mut fs = self.fs.borrow_mut();
        if !fs.contains_key(from) {
            return Err(enoent());
        }
        if fs.contains_key(to) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let node = fs.remove(from).ok_or_else(enoent)?;
        fs.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record("unlink", &[path], "")?;
        let mut fs = self.fs.borrow_mut();
        match fs.get(path) {
            None => Err(enoent()),
            Some(Node::Dir(_)) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            Some(_) => {
                fs.remove(path);
                Ok(())
            }
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.record("rmdir", &[path], "")?;
        if self.is_dir_with_children(path) {
            return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
        }
        let mut fs = self.fs.borrow_mut();
        match fs.get(path) {
            None => Err(enoent()),
            Some(Node::Dir(_)) => {
                fs.remove(path);
                Ok(())
            }
            Some(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
    }

    /// Like `rename`/`rename_noreplace` (and recorded as them): the fake has no symlinks.
    fn safe_rename(&self, from: &Path, to: &Path, noreplace: bool) -> io::Result<()> {
        if noreplace {
            self.rename_noreplace(from, to)
        } else {
            self.rename(from, to)
        }
    }

    /// Recorded as `unlink`, then `rmdir` when unlink says EISDIR.
    fn safe_remove(&self, path: &Path) -> io::Result<()> {
        match self.remove_file(path) {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => self.remove_dir(path),
            r => r,
        }
    }

    /// Recorded as `read`; the whole file, as a stream.
    fn open_regular(&self, path: &Path) -> io::Result<(Box<dyn io::Read>, u64)> {
        let data = self.read_file(path)?;
        let len = data.len() as u64;
        Ok((Box::new(io::Cursor::new(data)), len))
    }

    fn exists(&self, path: &Path) -> bool {
        self.fs.borrow().contains_key(path)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.record("read", &[path], "")?;
        match self.fs.borrow().get(path) {
            Some(Node::File(d, _)) => Ok(d.clone()),
            Some(_) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            None => Err(enoent()),
        }
    }

    fn write_file(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        self.record("write", &[path], &format!("{} bytes", data.len()))?;
        self.fs
            .borrow_mut()
            .insert(path.to_path_buf(), Node::File(data.to_vec(), mode));
        Ok(())
    }

    fn fsync_dir(&self, path: &Path) -> io::Result<()> {
        self.record("fsync", &[path], "")
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let mut opts = vec![if flags.read_only { "ro" } else { "rw" }];
        for (on, name) in [
            (flags.remount, "remount"),
            (flags.nosuid, "nosuid"),
            (flags.nodev, "nodev"),
            (flags.noexec, "noexec"),
            (flags.noatime, "noatime"),
            (flags.nodiratime, "nodiratime"),
            (flags.relatime, "relatime"),
            (flags.strictatime, "strictatime"),
            (flags.lazytime, "lazytime"),
            (flags.sync, "sync"),
            (flags.dirsync, "dirsync"),
        ] {
            if on {
                opts.push(name);
            }
        }
        if !data.is_empty() {
            opts.push(data);
        }
        self.record(
            "mount",
            &[target],
            &format!("{source} {fstype} {}", opts.join(",")),
        )
    }

    fn allocate_file(&self, path: &Path, size: u64, mode: u32) -> io::Result<()> {
        self.record("allocate", &[path], &format!("{size} {mode:o}"))?;
        if self.allocate_limit.get().is_some_and(|l| size > l) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.fs
            .borrow_mut()
            .insert(path.to_path_buf(), Node::File(Vec::new(), mode));
        // Sizes are kept aside: a fake 4 GiB swap file must not cost 4 GiB of test memory.
        self.sizes.borrow_mut().insert(path.to_path_buf(), size);
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.record(
            "write_at",
            &[path],
            &format!("{offset} {} bytes", data.len()),
        )?;
        let mut fs = self.fs.borrow_mut();
        match fs.get_mut(path) {
            Some(Node::File(d, _)) => {
                let end = offset as usize + data.len();
                if d.len() < end {
                    d.resize(end, 0);
                }
                if let Some(dst) = d.get_mut(offset as usize..end) {
                    dst.copy_from_slice(data);
                }
                Ok(())
            }
            _ => Err(enoent()),
        }
    }

    fn swapon(&self, path: &Path, priority: i32) -> io::Result<()> {
        self.record("swapon", &[path], &priority.to_string())
    }

    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        self.record("statvfs", &[path], "")?;
        Ok(self.free.borrow().get(path).copied().unwrap_or(1 << 40))
    }

    fn mem_total_bytes(&self) -> u64 {
        self.mem_total
    }

    fn page_size(&self) -> usize {
        4096
    }

    fn finit_module(&self, path: &Path, params: &str, compressed: bool) -> io::Result<()> {
        let extra = format!("{params}{}", if compressed { " compressed" } else { "" });
        self.record("finit_module", &[path], extra.trim())
    }

    fn random_bytes(&self, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.record("read_at", &[path], &format!("{offset} {len}"))?;
        match self.fs.borrow().get(path) {
            Some(Node::File(d, _)) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(len).min(d.len());
                Ok(d.get(start..end).unwrap_or_default().to_vec())
            }
            Some(_) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            None => Err(enoent()),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.record("list", &[path], "")?;
        let fs = self.fs.borrow();
        match fs.get(path) {
            Some(Node::Dir(_)) => {}
            Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            None => return Err(enoent()),
        }
        Ok(fs
            .keys()
            .filter(|k| k.parent() == Some(path))
            .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.record("stat", &[path], "")?;
        if let Some(size) = self.sizes.borrow().get(path) {
            if self.fs.borrow().contains_key(path) {
                return Ok(*size);
            }
        }
        match self.fs.borrow().get(path) {
            Some(Node::File(d, _)) => Ok(d.len() as u64),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "exists and is not a regular file",
            )),
            None => Err(enoent()),
        }
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record("chmod", &[path], &format!("{mode:o}"))?;
        match self.fs.borrow_mut().get_mut(path) {
            Some(Node::File(_, m)) | Some(Node::Dir(m)) => {
                *m = mode;
                Ok(())
            }
            Some(Node::Symlink(_)) => Ok(()),
            None => Err(enoent()),
        }
    }

    fn lock_file(&self, path: &Path) -> io::Result<FileLock> {
        self.record("flock", &[path], "")?;
        if self.fs.borrow().contains_key(path) {
            Ok(FileLock::none())
        } else {
            Err(enoent())
        }
    }

    fn kernel_release(&self) -> io::Result<String> {
        Ok(self.release.clone())
    }

    fn machine(&self) -> io::Result<String> {
        Ok(self.arch.clone())
    }

    fn online_cpus(&self) -> usize {
        self.cpus
    }
}
