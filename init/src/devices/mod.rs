//! Devices: load the drivers for the hardware that is there (coldplug, hotplug) and wait for a
//! volume's disk — what the NT Plug and Play manager does before and while smss runs.
//!
//! Pure parts: [`modindex`] (modules.alias / modules.softdep and the glob matcher), [`plan`]
//! (devices' modaliases -> modules in load order), [`uevent`] (kernel uevent messages),
//! [`hotplug`] (one hotplug helper at a time, what waits for the next) and [`wait`] (which
//! awaited volume a new block device satisfies, and deadlines). The executors here and in
//! [`wait`] only touch the machine through [`Sys`] and the uevent socket.

pub mod hotplug;
pub mod modindex;
pub mod plan;
pub mod uevent;
pub mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use crate::phases::modules::{is_compressed, load_one, normalize_name, DepTable};
use crate::phases::{errno, PhaseError};
use crate::sys::Sys;
use modindex::{AliasTable, SoftdepTable, Warnings};
use plan::{ModuleDb, Origin, Plan};

/// At most this many devices are looked at in one sysfs scan.
pub const MAX_DEVICES: usize = 16_384;
/// A modalias longer than this is not a modalias (the kernel's own limit is a page).
pub const MAX_MODALIAS: usize = 4096;
/// Coldplug rescans while loading drivers makes new devices appear (a PCI virtio function,
/// then the virtio device on it); never more often than this.
pub const MAX_ROUNDS: usize = 8;

fn log_warnings(w: &Warnings) {
    for line in w.lines() {
        log::warn!("{line}");
    }
}

/// modules.builtin as normalised names (empty when unreadable).
pub fn read_builtin(sys: &dyn Sys, dir: &Path) -> BTreeSet<String> {
    sys.read_file(&dir.join("modules.builtin"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(normalize_name)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Read modules.dep (None when unreadable: nothing can be loaded), modules.alias,
/// modules.softdep and modules.builtin (each optional). Malformed lines are logged.
pub fn read_module_db(sys: &dyn Sys, dir: &Path) -> Option<ModuleDb> {
    let text = |name: &str| {
        sys.read_file(&dir.join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let deps = match text("modules.dep") {
        Ok(t) => {
            let (d, w) = DepTable::parse_checked(&t);
            log_warnings(&w);
            d
        }
        Err(e) => {
            log::warn!("failed to read {}: {e}", dir.join("modules.dep").display());
            return None;
        }
    };
    let aliases = text("modules.alias")
        .map(|t| {
            let (a, w) = AliasTable::parse(&t);
            log_warnings(&w);
            a
        })
        .unwrap_or_default();
    let softdeps = text("modules.softdep")
        .map(|t| {
            let (s, w) = SoftdepTable::parse(&t);
            log_warnings(&w);
            s
        })
        .unwrap_or_default();
    Some(ModuleDb {
        deps,
        aliases,
        softdeps,
        builtin: read_builtin(sys, dir),
    })
}

/// What one [`Loader::run`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Failures to report (for Kmode: fatal).
    pub errors: Vec<PhaseError>,
    /// Modules newly loaded (not those already loaded: EEXIST), in order.
    pub loaded: Vec<String>,
    /// Matched drivers that declined their device (ENODEV/ENXIO): normal, logged at debug.
    pub declined: Vec<String>,
}

/// Loads planned modules once each across any number of plans (boot-drivers, coldplug rounds,
/// the volume wait's uevents, Kmode).
#[derive(Debug, Default)]
pub struct Loader {
    done: BTreeSet<String>,
    /// Modules that failed to load, each with the module whose failure is the cause.
    failed: BTreeMap<String, String>,
    /// The kernel refused MODULE_INIT_COMPRESSED_FILE once: later compressed modules are not
    /// tried, they are listed in one line instead of one warning each.
    compressed_refused: bool,
}

impl Loader {
    /// Modules loaded (or already loaded) by this loader.
    pub fn done(&self) -> &BTreeSet<String> {
        &self.done
    }

    pub fn run(&mut self, sys: &dyn Sys, dir: &Path, plan: &Plan) -> Outcome {
        let mut out = Outcome::default();
        for p in &plan.problems {
            let plan::Problem::NotFound { name, reason } = p;
            out.errors.push(PhaseError::ModuleNotFound {
                name: name.clone(),
                dir: dir.to_path_buf(),
                reason: reason.clone(),
            });
        }
        let mut compressed_skipped = Vec::new();
        for g in &plan.groups {
            // Soft subtrees of this group that failed: the rest of each is skipped.
            let mut dead: BTreeSet<usize> = BTreeSet::new();
            for l in &g.load {
                let module = &l.name;
                if self.done.contains(module) || l.soft.is_some_and(|id| dead.contains(&id)) {
                    continue;
                }
                if let Some(cause) = self.failed.get(module) {
                    if let Some(id) = l.soft {
                        dead.insert(id);
                        continue;
                    }
                    if *module != g.root {
                        out.errors.push(PhaseError::ModuleDependency {
                            name: g.root.clone(),
                            dependency: cause.clone(),
                        });
                    }
                    break;
                }
                let path = if Path::new(&l.path).is_absolute() {
                    std::path::PathBuf::from(&l.path)
                } else {
                    dir.join(&l.path)
                };
                if self.compressed_refused && is_compressed(&path) {
                    compressed_skipped.push(module.clone());
                    self.failed.insert(module.clone(), module.clone());
                    if let Some(id) = l.soft {
                        dead.insert(id);
                        continue;
                    }
                    break;
                }
                // Parameters belong to the named module only, never to its dependencies.
                let params = if *module == g.root {
                    g.params.as_str()
                } else {
                    ""
                };
                match load_one(sys, module, &path, params) {
                    Ok(fresh) => {
                        self.done.insert(module.clone());
                        // Already loaded (EEXIST) counts as success, not as news.
                        if fresh {
                            out.loaded.push(module.clone());
                        }
                    }
                    Err(e) => {
                        self.failed.insert(module.clone(), module.clone());
                        let declined = matches!(&e, PhaseError::LoadModule { source, .. }
                                if matches!(errno(source), libc::ENODEV | libc::ENXIO));
                        if matches!(e, PhaseError::CompressedModule { .. }) {
                            self.compressed_refused = true;
                        }
                        if let Some(id) = l.soft {
                            // A soft pre-dependency is best effort, as in modprobe.
                            dead.insert(id);
                            if declined {
                                out.declined.push(module.clone());
                            } else {
                                log::warn!("{e} (a soft dependency of {})", g.root);
                            }
                            continue;
                        }
                        if declined && g.origin == Origin::Matched {
                            out.declined.push(module.clone());
                        } else {
                            out.errors.push(e);
                        }
                        if *module != g.root {
                            out.errors.push(PhaseError::ModuleDependency {
                                name: g.root.clone(),
                                dependency: module.clone(),
                            });
                        }
                        break;
                    }
                }
            }
        }
        if !compressed_skipped.is_empty() {
            out.errors.push(PhaseError::CompressedSkipped {
                names: compressed_skipped.join(", "),
            });
        }
        out
    }
}

/// The modaliases of the devices present: `/sys/bus/*/devices/*/modalias` (every device on a
/// bus; class devices have none). Returns (devices with a modalias, distinct modaliases in
/// scan order).
pub fn scan_modaliases(sys: &dyn Sys) -> (usize, Vec<String>) {
    let bus = Path::new("/sys/bus");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut devices = 0;
    for b in sys.list_dir(bus).unwrap_or_default() {
        let dir = bus.join(&b).join("devices");
        for d in sys.list_dir(&dir).unwrap_or_default() {
            if devices >= MAX_DEVICES {
                log::warn!("coldplug: more than {MAX_DEVICES} devices, the rest ignored");
                return (devices, out);
            }
            let Ok(bytes) = sys.read_file(&dir.join(&d).join("modalias")) else {
                continue;
            };
            let alias = String::from_utf8_lossy(&bytes).trim().to_string();
            if alias.is_empty() || alias.len() > MAX_MODALIAS {
                continue;
            }
            devices += 1;
            if seen.insert(alias.clone()) {
                out.push(alias);
            }
        }
    }
    (devices, out)
}

/// What coldplug did, for its log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ColdplugReport {
    pub devices: usize,
    pub loaded: Vec<String>,
    pub micros: u128,
}

impl std::fmt::Display for ColdplugReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coldplug: {} devices, {} modules loaded ({}) in {} us",
            self.devices,
            self.loaded.len(),
            if self.loaded.is_empty() {
                "none".to_string()
            } else {
                self.loaded.join(" ")
            },
            self.micros
        )
    }
}

/// Coldplug: load the modules matching the devices present, rescanning while that makes new
/// devices appear. `seen` holds the modaliases already handled (also by later uevents).
pub fn coldplug(
    sys: &dyn Sys,
    dir: &Path,
    db: &ModuleDb,
    loader: &mut Loader,
    seen: &mut BTreeSet<String>,
) -> (ColdplugReport, Vec<PhaseError>) {
    let start = Instant::now();
    let mut report = ColdplugReport::default();
    let mut errors = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let (devices, aliases) = scan_modaliases(sys);
        report.devices = report.devices.max(devices);
        let new: Vec<String> = aliases
            .into_iter()
            .filter(|a| seen.insert(a.clone()))
            .collect();
        if new.is_empty() {
            break;
        }
        let p = plan::plan(db, &[], &new, loader.done());
        let out = loader.run(sys, dir, &p);
        for m in &out.declined {
            log::debug!("coldplug: {m} declined its device");
        }
        errors.extend(out.errors);
        let loaded_any = !out.loaded.is_empty();
        report.loaded.extend(out.loaded);
        if !loaded_any {
            break;
        }
    }
    report.micros = start.elapsed().as_micros();
    (report, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    const DIR: &str = "/lib/modules/6.6.0-test";

    fn machine() -> FakeSys {
        let s = FakeSys::new();
        s.add_file(
            format!("{DIR}/modules.dep"),
            b"kernel/drivers/virtio/virtio.ko:\n\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/net/e1000.ko:\n\
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/crypto/crc32c_generic.ko.zst:\n\
garbage line without colon\n",
        );
        s.add_file(
            format!("{DIR}/modules.alias"),
            b"alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
alias virtio:d00000002v* virtio_blk\n\
alias virtio:d00000001v* virtio_net\n\
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n\
alias crypto-crc32c crc32c_generic\n\
malformed\n",
        );
        s.add_file(
            format!("{DIR}/modules.softdep"),
            b"softdep ext4 pre: crypto-crc32c\n",
        );
        s.add_file(
            "/sys/bus/pci/devices/0000:00:01.0/modalias",
            b"pci:v00008086d00007000sv0000sd0000bc06sc01i00\n",
        );
        s.add_file(
            "/sys/bus/pci/devices/0000:00:02.0/modalias",
            b"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n",
        );
        s.add_file(
            "/sys/bus/pci/devices/0000:00:03.0/modalias",
            b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        );
        s.add_file(
            "/sys/bus/pci/devices/0000:00:04.0/modalias",
            b"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\n",
        );
        s.add_dir("/sys/bus/pci/devices/0000:00:05.0");
        s
    }

    fn loaded(s: &FakeSys) -> Vec<String> {
        s.calls_of("finit_module")
            .iter()
            .filter_map(|c| c.split(' ').nth(1))
            .filter_map(|p| p.rsplit('/').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn explicit_then_devices_then_new_devices_each_module_once() {
        let s = machine();
        let dir = Path::new(DIR);
        let db = read_module_db(&s, dir).unwrap();
        let mut loader = Loader::default();
        let explicit = plan::plan(&db, &["ext4".to_string()], &[], &BTreeSet::new());
        assert!(loader.run(&s, dir, &explicit).errors.is_empty());
        // virtio_pci's devices only appear once it is loaded: the second round finds them.
        s.appear_after(
            "finit_module",
            format!("{DIR}/kernel/drivers/virtio/virtio_pci.ko"),
            &[
                (
                    "/sys/bus/virtio/devices/virtio0/modalias",
                    b"virtio:d00000002v00001AF4\n",
                ),
                (
                    "/sys/bus/virtio/devices/virtio1/modalias",
                    b"virtio:d00000001v00001AF4\n",
                ),
            ],
        );
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/drivers/net/e1000.ko"),
            libc::ENODEV,
        );
        let mut seen = BTreeSet::new();
        let (report, errors) = coldplug(&s, dir, &db, &mut loader, &mut seen);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            loaded(&s),
            [
                "crc32c_generic.ko.zst",
                "jbd2.ko",
                "ext4.ko",
                "virtio.ko",
                "virtio_pci.ko",
                "e1000.ko",
                "virtio_blk.ko",
                "virtio_net.ko.xz"
            ]
        );
        assert_eq!(report.devices, 6);
        assert_eq!(
            report.loaded,
            ["virtio", "virtio_pci", "virtio_blk", "virtio_net"]
        );
        assert!(report.to_string().starts_with(
            "coldplug: 6 devices, 4 modules loaded (virtio virtio_pci virtio_blk virtio_net) in "
        ));
        // Already loaded (EEXIST) is success but not news.
        for m in ["virtio/virtio.ko", "block/virtio_blk.ko"] {
            s.fail(
                "finit_module",
                format!("{DIR}/kernel/drivers/{m}"),
                libc::EEXIST,
            );
        }
        let mut fresh = Loader::default();
        let again = plan::plan(&db, &["virtio_blk".to_string()], &[], &BTreeSet::new());
        let out = fresh.run(&s, dir, &again);
        assert!(out.errors.is_empty() && out.loaded.is_empty(), "{out:?}");
        assert!(fresh.done().contains("virtio_blk"));
        // A second pass finds nothing new and loads nothing.
        let before = s.calls_of("finit_module").len();
        let (again, _) = coldplug(&s, dir, &db, &mut loader, &mut seen);
        assert!(again.loaded.is_empty());
        assert_eq!(s.calls_of("finit_module").len(), before);
    }

    #[test]
    fn compressed_refusal_is_one_warning_and_the_rest_listed() {
        let s = machine();
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/crypto/crc32c_generic.ko.zst"),
            libc::EINVAL,
        );
        let dir = Path::new(DIR);
        let db = read_module_db(&s, dir).unwrap();
        let mut loader = Loader::default();
        let p = plan::plan(
            &db,
            &[
                "crc32c_generic".to_string(),
                "virtio_net".to_string(),
                "virtio_blk".to_string(),
            ],
            &[],
            &BTreeSet::new(),
        );
        let out = loader.run(&s, dir, &p);
        let text: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("MODULE_INIT_COMPRESSED_FILE"), "{text:?}");
        assert_eq!(
            text[1],
            "skipped compressed kernel modules virtio_net: the kernel refused MODULE_INIT_COMPRESSED_FILE (see above)"
        );
        assert_eq!(out.loaded, ["virtio", "virtio_blk"]);
    }

    #[test]
    fn a_failing_driver_is_a_warning_and_the_others_load() {
        let s = machine();
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/drivers/net/e1000.ko"),
            libc::EIO,
        );
        let dir = Path::new(DIR);
        let db = read_module_db(&s, dir).unwrap();
        let (report, errors) = coldplug(&s, dir, &db, &mut Loader::default(), &mut BTreeSet::new());
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .to_string()
            .starts_with("failed to load kernel module e1000 from "));
        assert_eq!(report.loaded, ["virtio", "virtio_pci"]);
    }

    #[test]
    fn volume_file_systems_load_through_their_fs_alias() {
        let s = machine();
        s.add_file(
            format!("{DIR}/modules.alias"),
            b"alias fs-ext4 ext4\nalias crypto-crc32c crc32c_generic\nalias virtio:d00000002v* virtio_blk\n",
        );
        let dir = Path::new(DIR);
        let mut boot = DeviceBoot {
            dir: dir.to_path_buf(),
            db: read_module_db(&s, dir),
            ..DeviceBoot::default()
        };
        boot.load_filesystems(&s, &["ext4".to_string(), "tmpfs".to_string()]);
        assert_eq!(loaded(&s), ["crc32c_generic.ko.zst", "jbd2.ko", "ext4.ko"]);
        // Without coldplug a uevent loads nothing.
        let ev = uevent::parse(b"add@/devices/v\0MODALIAS=virtio:d00000002v1\0").unwrap();
        boot.on_driver_event(&s, &ev);
        assert_eq!(loaded(&s).len(), 3);
        boot.coldplug = true;
        boot.on_driver_event(&s, &ev);
        assert_eq!(loaded(&s)[3..], ["virtio.ko", "virtio_blk.ko"]);
    }

    /// Found in QEMU: `crypto-crc32c` names crc32c_intel too, which declines a CPU without
    /// SSE 4.2 (ENODEV); ext4 must load anyway, and say nothing about it.
    #[test]
    fn a_failing_soft_dependency_never_stops_its_module() {
        let s = machine();
        s.add_file(
            format!("{DIR}/modules.dep"),
            b"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/crypto/crc32c_generic.ko:\n\
kernel/arch/x86/crypto/crc32c-intel.ko: kernel/lib/helper.ko\n\
kernel/lib/helper.ko:\n",
        );
        s.add_file(
            format!("{DIR}/modules.alias"),
            b"alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n",
        );
        s.add_file(
            format!("{DIR}/modules.softdep"),
            b"softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n",
        );
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/lib/helper.ko"),
            libc::EIO,
        );
        s.fail(
            "finit_module",
            format!("{DIR}/kernel/crypto/crc32c_generic.ko"),
            libc::ENODEV,
        );
        let dir = Path::new(DIR);
        let db = read_module_db(&s, dir).unwrap();
        let mut loader = Loader::default();
        let p = plan::plan(
            &db,
            &["ext4".to_string(), "jbd2".to_string()],
            &[],
            &BTreeSet::new(),
        );
        let out = loader.run(&s, dir, &p);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.loaded, ["jbd2", "ext4"]);
        assert_eq!(out.declined, ["crc32c_generic"]);
        // crc32c_intel is never tried once its own dependency failed; nothing is tried twice.
        assert_eq!(
            loaded(&s),
            ["helper.ko", "crc32c_generic.ko", "jbd2.ko", "ext4.ko"]
        );
    }

    #[test]
    fn no_sysfs_is_zero_devices() {
        let s = FakeSys::new();
        s.add_file(format!("{DIR}/modules.dep"), b"");
        let db = read_module_db(&s, Path::new(DIR)).unwrap();
        let (report, errors) = coldplug(
            &s,
            Path::new(DIR),
            &db,
            &mut Loader::default(),
            &mut BTreeSet::new(),
        );
        assert_eq!(
            (report.devices, report.loaded.len(), errors.len()),
            (0, 0, 0)
        );
    }
}

/// What the boot-drivers phase hands to the volumes phase: the module tables, what is loaded,
/// and the uevent socket opened before the first driver loaded (so no device announced while
/// drivers load is missed by the volume wait).
#[derive(Debug, Default)]
pub struct DeviceBoot {
    pub dir: std::path::PathBuf,
    /// None when modules.dep is unreadable.
    pub db: Option<ModuleDb>,
    /// Uevents announcing a device load its modules.
    pub coldplug: bool,
    pub loader: Loader,
    /// Modaliases handled so far.
    pub seen: BTreeSet<String>,
    pub socket: Option<crate::sys::uevent::UeventSocket>,
}

/// The boot-drivers phase: `modules` in order, then (when `coldplug`) the devices' modules.
/// Returns the state for the volumes phase and the problems to log.
pub fn boot_drivers(
    sys: &dyn Sys,
    modules: &[String],
    coldplug_on: bool,
) -> (DeviceBoot, Vec<PhaseError>) {
    let dir = crate::phases::modules::modules_dir(sys);
    let socket = match crate::sys::uevent::UeventSocket::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "failed to open the uevent socket: {e}; volumes will not wait for their devices"
            );
            None
        }
    };
    let mut boot = DeviceBoot {
        dir: dir.clone(),
        socket,
        coldplug: coldplug_on,
        ..DeviceBoot::default()
    };
    let Some(db) = read_module_db(sys, &dir) else {
        // Same report as without coldplug: each configured name is unloadable.
        return (
            boot,
            crate::phases::modules::load_modules(sys, &dir, modules),
        );
    };
    let explicit = plan::plan(&db, modules, &[], &BTreeSet::new());
    let mut errors = boot.loader.run(sys, &dir, &explicit).errors;
    if coldplug_on {
        let (report, more) = coldplug(sys, &dir, &db, &mut boot.loader, &mut boot.seen);
        log::info!("{report}");
        errors.extend(more);
    }
    boot.db = Some(db);
    (boot, errors)
}

impl DeviceBoot {
    /// A device announced by a uevent: load its modules (once each) if coldplug is on.
    pub fn on_driver_event(&mut self, sys: &dyn Sys, ev: &uevent::Uevent) {
        let (Some(db), true) = (&self.db, self.coldplug) else {
            return;
        };
        if !self.seen.insert(ev.modalias.clone()) {
            return;
        }
        let p = plan::plan(
            db,
            &[],
            std::slice::from_ref(&ev.modalias),
            self.loader.done(),
        );
        let out = self.loader.run(sys, &self.dir, &p);
        if !out.loaded.is_empty() {
            log::info!("{}: loaded {}", ev.devpath, out.loaded.join(" "));
        }
        for e in out.errors {
            log::warn!("{e}");
        }
    }
}

impl DeviceBoot {
    /// Load the modules of the volumes' file systems (`fs-ext4` in modules.alias), so mounting
    /// does not depend on the kernel calling a modprobe the image may not have. A file system
    /// that is built in or unknown is left to mount(2) to judge.
    pub fn load_filesystems(&mut self, sys: &dyn Sys, fstypes: &[String]) {
        let Some(db) = &self.db else {
            return;
        };
        let t = std::time::Instant::now();
        let names: Vec<String> = fstypes.iter().map(|t| format!("fs-{t}")).collect();
        let p = plan::plan(db, &names, &[], &BTreeSet::new());
        for pr in &p.problems {
            log::debug!("file system module: {pr:?}");
        }
        let p = Plan {
            problems: Vec::new(),
            ..p
        };
        let out = self.loader.run(sys, &self.dir, &p);
        if !out.loaded.is_empty() {
            log::info!(
                "file systems: loaded {} in {} us",
                out.loaded.join(" "),
                t.elapsed().as_micros()
            );
        }
        for e in out.errors {
            log::warn!("{e}");
        }
    }
}

/// The outcome of waiting for the volumes' devices, one entry per volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeDevice {
    Found(std::path::PathBuf),
    /// The spec is not a device name (logged as a problem).
    Invalid(String),
    /// Not there within its device-timeout.
    Missing,
}

/// Wait for every volume's device at once (each with its own `device-timeout`), loading
/// drivers for devices announced meanwhile.
pub fn wait_for_volumes(
    sys: &dyn Sys,
    boot: &mut DeviceBoot,
    volumes: &[smss_config::Volume],
) -> Vec<VolumeDevice> {
    let start = Instant::now();
    let mut out: Vec<VolumeDevice> = Vec::new();
    let mut specs = Vec::new();
    let mut index = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        match wait::DeviceSpec::parse(&v.device) {
            Ok(s) => {
                index.push(i);
                specs.push((s, v.device_timeout));
                out.push(VolumeDevice::Missing);
            }
            Err(e) => out.push(VolumeDevice::Invalid(e)),
        }
    }
    if specs.is_empty() {
        return out;
    }
    let mut waiter = wait::Waiter::new(specs);
    let mut socket = boot.socket.take();
    {
        let events: Option<&mut dyn wait::UeventSource> =
            socket.as_mut().map(|s| s as &mut dyn wait::UeventSource);
        wait::wait_for_devices(sys, &mut waiter, events, &mut |ev| {
            boot.on_driver_event(sys, ev)
        });
    }
    boot.socket = socket;
    for (k, a) in waiter.items.into_iter().enumerate() {
        if let Some(dev) = a.found {
            if let Some(slot) = index.get(k).and_then(|&i| out.get_mut(i)) {
                *slot = VolumeDevice::Found(dev);
            }
        }
    }
    log::debug!(
        "volume devices settled in {} us",
        start.elapsed().as_micros()
    );
    out
}
