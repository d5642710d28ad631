//! Fuzz target: what coldplug reads from /lib/modules (modules.alias, modules.dep,
//! modules.softdep: a corrupt or hostile image's files) and the kernel uevents it receives.
//! Nothing may panic; the planner's output stays consistent (each module once in the load
//! order, each group ending with the module it was planned for).
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use smss::devices::modindex::{glob_match, AliasTable, SoftdepTable};
use smss::devices::plan::{plan, ModuleDb};
use smss::devices::uevent;
use smss::phases::modules::DepTable;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One input feeds all three parsers: split it in thirds at line boundaries.
    let lines: Vec<&str> = text.lines().collect();
    let third = lines.len() / 3;
    let (a, rest) = lines.split_at(third);
    let (d, s) = rest.split_at(third.min(rest.len()));
    let (aliases, _) = AliasTable::parse(&a.join("\n"));
    let (deps, _) = DepTable::parse_checked(&d.join("\n"));
    let (softdeps, _) = SoftdepTable::parse(&s.join("\n"));
    let db = ModuleDb {
        deps,
        aliases,
        softdeps,
        builtin: BTreeSet::new(),
    };
    let names: Vec<String> = lines
        .iter()
        .take(8)
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    let p = plan(&db, &names, &names, &BTreeSet::new());
    let order = p.modules();
    let unique: BTreeSet<&String> = order.iter().collect();
    assert_eq!(unique.len(), order.len());
    for g in &p.groups {
        assert_eq!(g.load.last().map(|l| &l.name), Some(&g.root));
    }
    if let Some((p, t)) = text.split_once('\n') {
        let _ = glob_match(p, t);
    }
    let _ = uevent::parse(data);
});
