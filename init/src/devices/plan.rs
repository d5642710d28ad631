//! The pure part of loading drivers: from the names asked for (`[boot-drivers] modules`,
//! Kmode) and the devices present (their `modalias`), the modules to load, in order, each with
//! what must load before it. No file or syscall here: the tables come in parsed.

use std::collections::BTreeSet;

use super::modindex::{AliasTable, SoftdepTable};
use crate::phases::modules::{normalize_name, DepTable};

/// Everything modprobe would read from /lib/modules/RELEASE.
#[derive(Debug, Default, Clone)]
pub struct ModuleDb {
    pub deps: DepTable,
    pub aliases: AliasTable,
    pub softdeps: SoftdepTable,
    /// modules.builtin, normalised names: nothing to load.
    pub builtin: BTreeSet<String>,
}

/// Why a module is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named in the configuration: a failure is reported (and fatal for Kmode).
    Explicit,
    /// Matched a device's modalias: a driver that declines the device (ENODEV) is normal.
    Matched,
}

/// One requested module with everything it needs, in load order (its `load` ends with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name asked for or matched (normalised).
    pub root: String,
    pub origin: Origin,
    /// Parameters for `root` only (`"loop max_loop=8"`).
    pub params: String,
    /// Modules in load order: soft pre-dependencies and modules.dep dependencies first
    /// (deepest first), `root` last.
    pub load: Vec<Load>,
}

/// One module of a [`Group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub name: String,
    /// Path relative to the modules directory (as in modules.dep).
    pub path: String,
    /// Set for a soft pre-dependency and what it needs: the number of that soft subtree in the
    /// group. Its failure skips the rest of the subtree, never the module that wanted it
    /// (`crypto-crc32c` names crc32c_intel too, which declines a CPU without SSE 4.2).
    pub soft: Option<usize>,
}

/// Something that cannot be planned; the executor turns it into a warning (or, for Kmode, a
/// fatal error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `name` is neither in modules.dep, nor built in, nor an alias of a module.
    NotFound { name: String, reason: String },
}

/// The plan: groups in load order. A module appears in as many groups as need it; the executor
/// loads it once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub problems: Vec<Problem>,
    /// Modaliases for which modules.alias names no module (built-in drivers, or none).
    pub unmatched: usize,
}

impl Plan {
    /// Every module once, in the order the executor first meets it.
    pub fn modules(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for g in &self.groups {
            for l in &g.load {
                if seen.insert(l.name.clone()) {
                    out.push(l.name.clone());
                }
            }
        }
        out
    }
}

/// Plan `explicit` (in their order, each `NAME [PARAMS]`) and then the modules matching
/// `modaliases` (each module once, in the order of the first device that needs it). Modules in
/// `skip` (loaded by an earlier plan) get no group of their own.
pub fn plan(
    db: &ModuleDb,
    explicit: &[String],
    modaliases: &[String],
    skip: &BTreeSet<String>,
) -> Plan {
    let mut out = Plan::default();
    let mut rooted: BTreeSet<String> = BTreeSet::new();
    for entry in explicit {
        let mut words = entry.split_whitespace();
        let Some(raw) = words.next() else {
            continue;
        };
        let params = words.collect::<Vec<_>>().join(" ");
        let name = normalize_name(raw);
        // A configured name may be an alias (`fs-ext4`); modules.dep names win.
        let targets = if db.deps.entries.contains_key(&name) || db.builtin.contains(&name) {
            vec![name.clone()]
        } else {
            let via = db.aliases.lookup(raw);
            if via.is_empty() {
                vec![name.clone()]
            } else {
                via
            }
        };
        for target in targets {
            if db.builtin.contains(&target) {
                log::debug!("module {target} is built into the kernel");
                continue;
            }
            let p = if target == name {
                params.clone()
            } else {
                String::new()
            };
            add_group(db, &mut out, &mut rooted, target, Origin::Explicit, p);
        }
    }
    for alias in modaliases {
        let mods = db.aliases.lookup(alias);
        if mods.is_empty() {
            out.unmatched += 1;
        }
        for m in mods {
            if skip.contains(&m) || db.builtin.contains(&m) {
                continue;
            }
            add_group(db, &mut out, &mut rooted, m, Origin::Matched, String::new());
        }
    }
    out
}

fn add_group(
    db: &ModuleDb,
    out: &mut Plan,
    rooted: &mut BTreeSet<String>,
    root: String,
    origin: Origin,
    params: String,
) {
    if origin == Origin::Matched && !rooted.insert(root.clone()) {
        return;
    }
    rooted.insert(root.clone());
    let mut load = Vec::new();
    let mut visiting = BTreeSet::new();
    let mut soft_ids = 0;
    match visit(db, &root, &mut load, &mut visiting, None, &mut soft_ids) {
        Ok(()) => out.groups.push(Group {
            root,
            origin,
            params,
            load,
        }),
        Err(missing) => {
            let reason = if missing == root {
                "not in modules.dep".to_string()
            } else {
                format!("its dependency {missing} is not in modules.dep")
            };
            out.problems.push(Problem::NotFound { name: root, reason });
        }
    }
}

/// Depth-first: soft pre-dependencies (best effort: one that cannot be resolved is skipped, as
/// modprobe does), then hard dependencies (an unknown one is an error), then the module.
fn visit(
    db: &ModuleDb,
    name: &str,
    load: &mut Vec<Load>,
    visiting: &mut BTreeSet<String>,
    soft: Option<usize>,
    soft_ids: &mut usize,
) -> Result<(), String> {
    if load.iter().any(|l| l.name == name) || !visiting.insert(name.to_string()) {
        // Done already, or a cycle (depmod refuses those; never loop on a corrupt file).
        return Ok(());
    }
    let Some((path, deps)) = db.deps.entries.get(name) else {
        return if db.builtin.contains(name) {
            Ok(())
        } else {
            Err(name.to_string())
        };
    };
    if let Some(pre) = db.softdeps.pre.get(name) {
        for wanted in pre {
            let n = normalize_name(wanted);
            let targets = if db.deps.entries.contains_key(&n) || db.builtin.contains(&n) {
                vec![n]
            } else {
                db.aliases.lookup(wanted)
            };
            for t in targets {
                let mut sub = visiting.clone();
                let mut tmp = load.clone();
                // Inside a soft subtree everything stays in it; otherwise a new one starts.
                let id = soft.unwrap_or_else(|| {
                    *soft_ids += 1;
                    *soft_ids
                });
                // A soft dependency that cannot be planned is dropped, never the module.
                if visit(db, &t, &mut tmp, &mut sub, Some(id), soft_ids).is_ok() {
                    *load = tmp;
                    *visiting = sub;
                }
            }
        }
    }
    // depmod lists a module's dependencies so that modprobe loads them last to first.
    for dep in deps.iter().rev() {
        visit(db, &normalize_name(dep), load, visiting, soft, soft_ids)?;
    }
    load.push(Load {
        name: name.to_string(),
        path: path.clone(),
        soft,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_common.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/net/broken.ko: kernel/drivers/net/gone.ko
";
    const ALIAS: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias virtio:d00000008v* virtio_scsi
alias scsi:t-0x00* sd_mod
alias fs-ext4 ext4
alias crypto-crc32c crc32c_generic
alias crypto-crc32c crc32c_intel
alias pci:v00008086d00002922sv*sd*bc*sc*i* broken
";
    const SOFTDEP: &str = "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n";

    pub(crate) fn db() -> ModuleDb {
        ModuleDb {
            deps: DepTable::parse(DEP),
            aliases: AliasTable::parse(ALIAS).0,
            softdeps: SoftdepTable::parse(SOFTDEP).0,
            builtin: ["crc32c_intel".to_string(), "loop".to_string()]
                .into_iter()
                .collect(),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const VIRTIO_NET_PCI: &str = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
    const VIRTIO_BLK_PCI: &str = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00";

    #[test]
    fn explicit_first_in_order_then_matched_once_each() {
        let p = plan(
            &db(),
            &s(&["ext4", "virtio_blk"]),
            &s(&[
                VIRTIO_NET_PCI,
                VIRTIO_BLK_PCI,
                "virtio:d00000002v00001AF4",
                "scsi:t-0x00",
                "acpi:PNP0A03:",
            ]),
            &BTreeSet::new(),
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let roots: Vec<_> = p
            .groups
            .iter()
            .map(|g| (g.root.as_str(), g.origin))
            .collect();
        assert_eq!(
            roots,
            [
                ("ext4", Origin::Explicit),
                ("virtio_blk", Origin::Explicit),
                ("virtio_pci", Origin::Matched),
                ("sd_mod", Origin::Matched),
            ]
        );
        // ext4's soft pre-dependency (an alias) before its hard ones; crc32c_intel is built in.
        assert_eq!(
            p.modules(),
            [
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4",
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "scsi_mod",
                "scsi_common",
                "sd_mod"
            ]
        );
        assert_eq!(
            p.groups[0].load[0],
            Load {
                name: "crc32c_generic".into(),
                path: "kernel/crypto/crc32c_generic.ko".into(),
                soft: Some(1)
            }
        );
        assert!(p.groups[0].load[1..].iter().all(|l| l.soft.is_none()));
        assert_eq!(p.unmatched, 1);
    }

    #[test]
    fn explicit_aliases_params_builtin_and_unknown() {
        let p = plan(
            &db(),
            &s(&["fs-ext4", "loop", "virtio-blk x=1", "nosuch", "broken"]),
            &[],
            &BTreeSet::new(),
        );
        assert_eq!(p.groups[0].root, "ext4");
        assert_eq!(p.groups[1].root, "virtio_blk");
        assert_eq!(p.groups[1].params, "x=1");
        assert_eq!(p.groups.len(), 2);
        assert_eq!(
            p.problems,
            [
                Problem::NotFound {
                    name: "nosuch".into(),
                    reason: "not in modules.dep".into()
                },
                Problem::NotFound {
                    name: "broken".into(),
                    reason: "its dependency gone is not in modules.dep".into()
                },
            ]
        );
    }

    #[test]
    fn skip_set_and_unmatched_devices() {
        let skip: BTreeSet<String> = ["virtio_pci".to_string()].into_iter().collect();
        let p = plan(
            &db(),
            &[],
            &s(&[
                VIRTIO_BLK_PCI,
                "virtio:d00000008v00001AF4",
                "pci:v00008086d00002922sv0sd0bc0sc0i0",
            ]),
            &skip,
        );
        let roots: Vec<_> = p.groups.iter().map(|g| g.root.as_str()).collect();
        assert_eq!(roots, ["virtio_scsi"]);
        // The broken driver's missing dependency is a problem, not a panic or a stop.
        assert_eq!(p.problems.len(), 1);
    }

    proptest! {
        /// Whatever the devices, every module appears once in `modules()`, after all of its
        /// modules.dep dependencies, and the explicit groups come first.
        #[test]
        fn dependencies_always_precede(picks in proptest::collection::vec(0usize..8, 0..12), explicit in proptest::collection::vec(0usize..5, 0..4)) {
            let aliases = [VIRTIO_NET_PCI, VIRTIO_BLK_PCI, "virtio:d00000002v1", "virtio:d00000008v1", "scsi:t-0x00", "scsi:t-0x05", "pci:v00008086d00002922sv0sd0bc0sc0i0", "x"];
            let names = ["ext4", "sd_mod", "virtio_pci", "nosuch", "fs-ext4"];
            let m: Vec<String> = picks.iter().map(|&i| aliases[i].to_string()).collect();
            let e: Vec<String> = explicit.iter().map(|&i| names[i].to_string()).collect();
            let d = db();
            let p = plan(&d, &e, &m, &BTreeSet::new());
            let order = p.modules();
            let unique: BTreeSet<_> = order.iter().collect();
            prop_assert_eq!(unique.len(), order.len());
            for (i, name) in order.iter().enumerate() {
                for dep in &d.deps.entries[name].1 {
                    let dep = normalize_name(dep);
                    let at = order.iter().position(|x| *x == dep);
                    prop_assert!(at.is_some_and(|j| j < i), "{} before {}", dep, name);
                }
            }
            let first_matched = p.groups.iter().position(|g| g.origin == Origin::Matched).unwrap_or(p.groups.len());
            prop_assert!(p.groups[first_matched..].iter().all(|g| g.origin == Origin::Matched));
            for g in &p.groups {
                prop_assert_eq!(&g.load.last().unwrap().name, &g.root);
                prop_assert_eq!(g.load.last().unwrap().soft, None);
            }
        }
    }
}
