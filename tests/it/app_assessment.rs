//! The assessment per shipped app, through the real lists and matcher and a real store: an
//! installed app's pattern (backend hits on two days; or steady hits all day on many days
//! where no backend host is hit) reads "app likely installed", a clicked link or an embedded
//! video does not.

use crate::common;
use nxguard::{
    config::{Config, StoreConfig},
    evidence::{
        attempt::Attempt,
        store::{
            self,
            read::{Limits, Reader},
        },
    },
    policy::{self, Policy, domains::Kind},
    review::report::{self, Assessment, Filter, Summary},
};

/// 2026-11-20T00:00:00Z.
const DAY0: u64 = 1_795_132_800;

/// What a device asked for: (day, hour) and query name.
type Pattern = Vec<((u64, u64), String)>;

/// The attempt `policy` records for `qname` from the inventory device `device`.
fn attempt(policy: &Policy, device: &str, (day, hour): (u64, u64), qname: &str) -> Attempt {
    common::blocked_by(policy, qname)
        .device("10.20.1.1", device, "Burgerzaken")
        .at(DAY0 + day * 86_400 + hour * 3600)
        .rule("builtin")
        .build()
}

/// A name under `entry` (the entry itself when it is exact).
fn name_under(domain: &str, exact: bool, label: &str) -> String {
    if exact { domain.to_string() } else { format!("{label}.{domain}") }
}

/// Per app id: one backend name (API or telemetry) and one link name (web, else CDN), as the
/// matcher attributes them.
fn probe_names(policy: &Policy) -> Vec<(String, String, String)> {
    policy::domains::builtin()
        .iter()
        .map(|list| {
            let pick = |kinds: &[Kind]| {
                kinds.iter().find_map(|kind| {
                    list.entries.iter().find(|e| e.kind == *kind).map(|e| name_under(&e.domain, e.exact, "a1"))
                })
            };
            let backend =
                pick(&[Kind::Api, Kind::Telemetry]).unwrap_or_else(|| panic!("{}: no api or telemetry entry", list.id));
            let link = pick(&[Kind::Web, Kind::Cdn]).unwrap_or_else(|| panic!("{}: no web or cdn entry", list.id));
            for (name, backend_kind) in [(&backend, true), (&link, false)] {
                let kind = policy.lookup_text(name).map(|m| m.kind);
                let is_backend = matches!(kind, Some(Kind::Api | Kind::Telemetry));
                assert_eq!(is_backend, backend_kind, "{}: {name} matched as {kind:?}", list.id);
            }
            (list.id.clone(), backend, link)
        })
        .collect()
}

/// The four patterns of one app: installed (backend hits on two days), steady (link-kind hits
/// all day for 26 days, as the CISO trial's Temu phone), a clicked link, and an embedded video
/// on a page read every day (a few hits on each of 30 days).
fn patterns(backend: &str, link: &str) -> Vec<(&'static str, Pattern)> {
    let installed = vec![((0, 9), backend.to_string()), ((1, 10), backend.to_string())];
    let hits = |when: (u64, u64), n: usize| std::iter::repeat_n((when, link.to_string()), n);
    let steady = (0..26).flat_map(|day| (0..24).flat_map(move |hour| hits((day, hour), 4))).collect();
    let clicked = vec![((2, 14), link.to_string()), ((2, 15), link.to_string())];
    let embedded = (0..30).flat_map(|day| hits((day, 12), 3)).collect();
    vec![("installed", installed), ("steady", steady), ("clicked", clicked), ("embedded", embedded)]
}

fn summaries_of(policy: &Policy) -> Vec<Summary> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attempts.sqlite");
    let mut attempts = Vec::new();
    for (app, backend, link) in probe_names(policy) {
        for (scenario, pattern) in patterns(&backend, &link) {
            let device = format!("{app}-{scenario}");
            attempts.extend(pattern.iter().map(|(when, qname)| attempt(policy, &device, *when, qname)));
        }
    }
    store::insert_all(&path, &attempts, None, "ns1").unwrap();
    let mut db = Reader::open(&path.display().to_string(), &StoreConfig::default(), Limits::COMMAND_LINE).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(report::summaries(std::slice::from_mut(&mut db), &Filter::default(), None)).unwrap()
}

#[test]
fn every_app_installed_pattern_reads_likely_installed_and_a_link_does_not() {
    let policy = policy::load(&Config::embedded().policy).unwrap();
    let summaries = summaries_of(&policy);
    let lists = policy::domains::builtin();
    assert_eq!(lists.len(), 11, "the eleven banned apps");
    for list in &lists {
        for (scenario, expected) in [
            ("installed", Assessment::LikelyInstalled),
            ("steady", Assessment::LikelyInstalled),
            ("clicked", Assessment::LinkOrEmbedded),
            ("embedded", Assessment::LinkOrEmbedded),
        ] {
            let device = format!("{}-{scenario}", list.id);
            let found: Vec<&Summary> = summaries.iter().filter(|s| s.device == device).collect();
            assert_eq!(found.len(), 1, "{device}: one row for one app: {found:?}");
            assert_eq!(found[0].app, list.name, "{device}");
            assert_eq!(found[0].assessment, expected, "{device}: {:?}", found[0]);
        }
    }
}
