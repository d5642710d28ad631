//! Kernel modules for `[boot-drivers]` and Kmode: resolve names through modules.dep, load
//! dependencies first, plain or compressed, with finit_module(2) (no modprobe on the image).
//!
//! Only module *names* are resolved (as in modules.dep and modules.builtin, `-` and `_` being the
//! same character); aliases from modules.alias (`fs-ext4`, `pci:v...`) are not. A name may carry
//! parameters for itself: `"loop max_loop=8"`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{errno, PhaseError};
use crate::devices::modindex::{self, Warnings};
use crate::sys::Sys;

/// `/lib/modules/<uname -r>`.
pub fn modules_dir(sys: &dyn Sys) -> PathBuf {
    match sys.kernel_release() {
        Ok(r) => Path::new("/lib/modules").join(r.trim()),
        Err(e) => {
            log::warn!("failed to read the kernel release: {e}");
            PathBuf::from("/lib/modules")
        }
    }
}

/// `virtio-blk`, `virtio_blk.ko.zst`, `kernel/drivers/block/virtio_blk.ko` -> `virtio_blk`.
pub fn normalize_name(s: &str) -> String {
    let base = s.rsplit('/').next().unwrap_or(s);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    stem.replace('-', "_")
}

/// True for .ko.xz/.ko.zst/.ko.gz: the kernel must decompress it (MODULE_INIT_COMPRESSED_FILE).
pub fn is_compressed(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.ends_with(".ko.xz") || s.ends_with(".ko.zst") || s.ends_with(".ko.gz")
}

/// modules.dep parsed: name -> (path relative to the modules dir, dependency paths).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DepTable {
    pub entries: BTreeMap<String, (String, Vec<String>)>,
}

impl DepTable {
    /// Parse modules.dep (`path: dep dep ...` per line, as written by depmod(8)).
    pub fn parse(text: &str) -> Self {
        Self::parse_checked(text).0
    }

    /// Parse modules.dep, tolerantly: a malformed or over-long line is one warning and is
    /// skipped; at most [`modindex::MAX_ENTRIES`] modules are kept.
    pub fn parse_checked(text: &str) -> (Self, Warnings) {
        let mut warnings = Warnings::default();
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() > modindex::MAX_LINE {
                warnings.add("modules.dep", n, "line too long, ignored");
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                warnings.add("modules.dep", n, "expected `PATH: DEPENDENCY...`, ignored");
                continue;
            };
            let path = path.trim();
            if path.is_empty() || path.contains(char::is_whitespace) {
                warnings.add("modules.dep", n, "expected `PATH: DEPENDENCY...`, ignored");
                continue;
            }
            if entries.len() >= modindex::MAX_ENTRIES {
                warnings.add("modules.dep", n, "too many modules, the rest ignored");
                break;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries
                .entry(normalize_name(path))
                .or_insert_with(|| (path.to_string(), deps));
        }
        (DepTable { entries }, warnings)
    }

    /// Module names in load order for `name`: dependencies first (deepest first), `name` last.
    /// Err(name) for a module missing from the table.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut visiting = BTreeSet::new();
        self.visit(&normalize_name(name), &mut order, &mut visiting)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<String>,
        visiting: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        if order.iter().any(|o| o == name) || !visiting.insert(name.to_string()) {
            // Done already, or a cycle (depmod refuses those; never loop on a corrupt file).
            return Ok(());
        }
        let (_, deps) = self.entries.get(name).ok_or_else(|| name.to_string())?;
        // depmod lists a module's dependencies so that modprobe loads them last to first.
        for dep in deps.iter().rev() {
            self.visit(&normalize_name(dep), order, visiting)?;
        }
        order.push(name.to_string());
        Ok(())
    }
}

/// Load each of `names` (with dependencies) from `dir` (see [`modules_dir`]). A module is loaded
/// once; one already loaded (EEXIST) or built into the kernel (modules.builtin) counts as
/// success. Returns the failures; the caller decides whether they are fatal.
pub fn load_modules(sys: &dyn Sys, dir: &Path, names: &[String]) -> Vec<PhaseError> {
    if names.is_empty() {
        return Vec::new();
    }
    let Some(db) = crate::devices::read_module_db(sys, dir) else {
        let builtin = crate::devices::read_builtin(sys, dir);
        return names
            .iter()
            .filter_map(|e| e.split_whitespace().next())
            .map(normalize_name)
            .filter(|n| !builtin.contains(n))
            .map(|name| PhaseError::ModuleNotFound {
                name,
                dir: dir.to_path_buf(),
                reason: "modules.dep is unreadable".to_string(),
            })
            .collect();
    };
    let plan = crate::devices::plan::plan(&db, names, &[], &BTreeSet::new());
    let mut loader = crate::devices::Loader::default();
    loader.run(sys, dir, &plan).errors
}

pub(crate) fn load_one(
    sys: &dyn Sys,
    name: &str,
    path: &Path,
    params: &str,
) -> Result<bool, PhaseError> {
    let compressed = is_compressed(path);
    match sys.finit_module(path, params, compressed) {
        Ok(()) => {
            log::info!("loaded kernel module {name}");
            Ok(true)
        }
        Err(e) if errno(&e) == libc::EEXIST => {
            log::debug!("kernel module {name} was already loaded");
            Ok(false)
        }
        // Kernels before 6.3 reject the unknown flag with EINVAL; without
        // CONFIG_MODULE_DECOMPRESS (or for an algorithm it was not built with) the answer is
        // EOPNOTSUPP; ENOSYS would be a kernel without module support at all.
        Err(source)
            if compressed
                && matches!(
                    errno(&source),
                    libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS
                ) =>
        {
            Err(PhaseError::CompressedModule {
                name: name.to_string(),
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(PhaseError::LoadModule {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    const DIR: &str = "/lib/modules/6.6.0-test";
    const DEP: &str = "\
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_pci.ko.zst: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio.ko.xz:
kernel/fs/ext4/ext4.ko.gz: kernel/fs/jbd2/jbd2.ko.gz kernel/fs/mbcache.ko
kernel/fs/jbd2/jbd2.ko.gz:
kernel/fs/mbcache.ko:
kernel/drivers/block/loop.ko:
kernel/fs/fuse/fuse.ko: kernel/fs/missing.ko
";

    fn sys() -> FakeSys {
        let s = FakeSys::new();
        s.add_file(format!("{DIR}/modules.dep"), DEP.as_bytes());
        s.add_file(
            format!("{DIR}/modules.builtin"),
            b"kernel/drivers/tty/serial/8250/8250.ko\nkernel/crypto/crc32c_generic.ko\n",
        );
        s
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn loaded(s: &FakeSys) -> Vec<String> {
        s.calls_of("finit_module")
            .iter()
            .map(|c| {
                c.split(' ')
                    .nth(1)
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn modules_dir_uses_the_release() {
        assert_eq!(modules_dir(&FakeSys::new()), Path::new(DIR));
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalize_name("virtio-blk"), "virtio_blk");
        assert_eq!(normalize_name("kernel/a/virtio-pci.ko.zst"), "virtio_pci");
        assert_eq!(normalize_name("ext4.ko"), "ext4");
    }

    #[test]
    fn dependencies_load_first_deepest_first_and_once() {
        let s = sys();
        let errs = load_modules(&s, Path::new(DIR), &names(&["virtio-pci", "virtio_blk"]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            loaded(&s),
            [
                "virtio.ko.xz",
                "virtio_ring.ko.xz",
                "virtio_pci_modern_dev.ko",
                "virtio_pci.ko.zst",
                "virtio_blk.ko.xz"
            ]
        );
        let calls = s.calls_of("finit_module");
        assert!(calls[0].ends_with("virtio.ko.xz compressed"), "{calls:?}");
        assert!(calls[2].ends_with("virtio_pci_modern_dev.ko"), "{calls:?}");
    }

    #[test]
    fn parameters_go_to_the_named_module_only() {
        let s = sys();
        assert!(load_modules(&s, Path::new(DIR), &names(&["ext4 debug=1"])).is_empty());
        let calls = s.calls_of("finit_module");
        assert_eq!(calls.len(), 3);
        assert!(calls[0].ends_with("mbcache.ko"), "{calls:?}");
        assert!(calls[1].ends_with("jbd2.ko.gz compressed"), "{calls:?}");
        assert!(
            calls[2].ends_with("ext4.ko.gz debug=1 compressed"),
            "{calls:?}"
        );
    }

    #[test]
    fn eexist_and_builtin_are_success() {
        let s = sys();
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/drivers/block/loop.ko"),
            libc::EEXIST,
        );
        let errs = load_modules(
            &s,
            Path::new(DIR),
            &names(&["loop", "8250", "crc32c-generic"]),
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(loaded(&s), ["loop.ko"]);
    }

    #[test]
    fn unknown_module_and_missing_dependency_are_reported() {
        let s = sys();
        let errs = load_modules(&s, Path::new(DIR), &names(&["nosuch", "fuse", "loop"]));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            format!("failed to find kernel module nosuch in {DIR}: not in modules.dep")
        );
        assert!(errs[1]
            .to_string()
            .contains("its dependency missing is not in modules.dep"));
        assert_eq!(loaded(&s), ["loop.ko"]);
    }

    #[test]
    fn enoent_file_fails_and_dependents_are_skipped() {
        let s = sys();
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/drivers/virtio/virtio.ko.xz"),
            libc::ENOENT,
        );
        let errs = load_modules(
            &s,
            Path::new(DIR),
            &names(&["virtio_blk", "virtio_pci", "loop"]),
        );
        assert!(matches!(&errs[0], PhaseError::LoadModule { name, .. } if name == "virtio"));
        assert!(
            matches!(&errs[1], PhaseError::ModuleDependency { name, dependency } if name == "virtio_blk" && dependency == "virtio")
        );
        assert!(
            matches!(&errs[2], PhaseError::ModuleDependency { name, .. } if name == "virtio_pci")
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        // virtio is tried once; nothing depending on it is tried; loop still loads.
        assert_eq!(loaded(&s), ["virtio.ko.xz", "loop.ko"]);
    }

    #[test]
    fn compressed_rejection_is_explained() {
        let s = sys();
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/drivers/virtio/virtio.ko.xz"),
            libc::EINVAL,
        );
        let errs = load_modules(&s, Path::new(DIR), &names(&["virtio"]));
        assert!(
            matches!(&errs[0], PhaseError::CompressedModule { .. }),
            "{errs:?}"
        );
        assert!(errs[0].to_string().contains("MODULE_INIT_COMPRESSED_FILE"));
    }

    #[test]
    fn missing_modules_dep_fails_each_name_but_builtin() {
        let s = FakeSys::new();
        let errs = load_modules(&s, Path::new(DIR), &names(&["ext4", "loop"]));
        assert_eq!(errs.len(), 2);
        assert!(errs[0].to_string().contains("modules.dep is unreadable"));
    }

    #[test]
    fn cycles_do_not_loop() {
        let t = DepTable::parse("a.ko: b.ko\nb.ko: a.ko\n");
        assert_eq!(t.load_order("a").unwrap(), ["b", "a"]);
    }
}
