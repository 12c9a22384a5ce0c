//! The zone's recent differences, for incremental transfers (IXFR, RFC 1995): what each
//! policy change deleted from the zone and what it added, between two serials.
//!
//! Owns: computing one change set from the policy served before and the one served after, and
//! the bounds on what is kept (the last `HISTORY` changes, none larger than
//! `CHANGE_RECORDS_MAX`). A secondary whose serial is older than what is kept, or across a
//! change too large to keep, gets the whole zone instead (RFC 1995 §4 allows it).
//! Does not own: the serials (`zone`) or sending the differences (`serve`, `contents`).

use std::collections::HashMap;

use hickory_proto::rr::{Name, Record, RecordType};

use crate::{
    policy::{Entry, Policy},
    zone::contents::{Action, action_of, apex, name_records},
};

/// Change sets kept: a secondary that missed up to this many policy changes (at a feed
/// refresh each, hours apart) still gets only the differences.
pub const HISTORY: usize = 8;

/// The largest change set kept, in records: beyond it the whole zone is hardly larger to send,
/// and the history's memory stays bounded (8 × 100 k records ≈ 100 MiB at most).
pub const CHANGE_RECORDS_MAX: usize = 100_000;

/// What one policy change did to the zone: from serial `from` to serial `to`.
#[derive(Debug)]
pub struct ChangeSet {
    pub from: u32,
    pub to: u32,
    pub deleted: Vec<Record>,
    pub added: Vec<Record>,
}

/// The zone's view of a policy: each name it holds, with its action and whether its
/// subdomains share it.
fn entries_of(policy: &Policy) -> HashMap<&str, (Action, bool)> {
    let mut entries = HashMap::with_capacity(policy.len());
    for entry in policy.entries() {
        if let Some(action) = action_of(policy, &entry) {
            let name = match entry {
                Entry::Allow { name } | Entry::Block { name, .. } => name,
            };
            entries.insert(name, action);
        }
    }
    entries
}

/// The records of `from` that `to` lacks (the same name with another action counts as gone).
fn missing<'p>(
    from: &HashMap<&'p str, (Action, bool)>,
    to: &HashMap<&'p str, (Action, bool)>,
    origin: &Name,
    ttl: u32,
    out: &mut Vec<Record>,
) -> bool {
    for (&name, &(action, subdomains)) in from {
        if to.get(name) != Some(&(action, subdomains)) {
            out.extend(name_records(origin, ttl, name, action, subdomains).into_iter().flatten());
            if out.len() > CHANGE_RECORDS_MAX {
                return false;
            }
        }
    }
    true
}

/// The apex records (TXT naming the policy and its apps) of `from` not in `to`; the SOA is
/// never part of a difference.
fn apex_missing(from: &[Record], to: &[Record], out: &mut Vec<Record>) {
    let gone = from.iter().filter(|r| r.record_type() != RecordType::SOA && !to.contains(r));
    out.extend(gone.cloned());
}

/// The change from `old` (served under `from`) to `new` (under `to`); None when it is larger
/// than `CHANGE_RECORDS_MAX` records.
pub fn diff(origin: &Name, ttl: u32, old: &Policy, new: &Policy, from: u32, to: u32) -> Option<ChangeSet> {
    let (old_entries, new_entries) = (entries_of(old), entries_of(new));
    let (old_apex, new_apex) = (apex(origin, from, ttl, old), apex(origin, to, ttl, new));
    let (mut deleted, mut added) = (Vec::new(), Vec::new());
    apex_missing(&old_apex, &new_apex, &mut deleted);
    apex_missing(&new_apex, &old_apex, &mut added);
    let small = missing(&old_entries, &new_entries, origin, ttl, &mut deleted)
        && missing(&new_entries, &old_entries, origin, ttl, &mut added)
        && deleted.len() + added.len() <= CHANGE_RECORDS_MAX;
    small.then_some(ChangeSet { from, to, deleted, added })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{App, PolicyBuilder, domains::Kind};

    fn policy(blocks: &[(&str, bool)], allows: &[&str]) -> Policy {
        let mut builder = PolicyBuilder::new();
        let app = builder.app(App::new("tiktok", "TikTok", "ByteDance"));
        for &(name, exact) in blocks {
            builder.block(name, app, Kind::Api, exact);
        }
        for name in allows {
            builder.allow(name);
        }
        builder.build()
    }

    fn texts(records: &[Record]) -> Vec<String> {
        let mut lines: Vec<String> =
            records.iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect();
        lines.sort();
        lines
    }

    #[test]
    fn a_change_deletes_and_adds_only_what_differs() {
        let origin = Name::from_ascii("rpz.test.").unwrap();
        let old = policy(&[("tiktok.com", false), ("gone.example", false), ("exact.example", false)], &[]);
        let new = policy(&[("tiktok.com", false), ("new.example", false), ("exact.example", true)], &["safe.example"]);
        let change = diff(&origin, 300, &old, &new, 1, 2).unwrap();
        assert_eq!((change.from, change.to), (1, 2));
        let deleted = texts(&change.deleted);
        let added = texts(&change.added);
        for line in
            ["*.exact.example.rpz.test. CNAME .", "*.gone.example.rpz.test. CNAME .", "gone.example.rpz.test. CNAME ."]
        {
            assert!(deleted.contains(&line.to_string()), "{line} not deleted: {deleted:?}");
        }
        for line in [
            "new.example.rpz.test. CNAME .",
            "safe.example.rpz.test. CNAME rpz-passthru.",
            "exact.example.rpz.test. CNAME .",
        ] {
            assert!(added.contains(&line.to_string()), "{line} not added: {added:?}");
        }
        assert!(
            !deleted.iter().chain(&added).any(|l| l.starts_with("tiktok.com") || l.contains(" SOA ")),
            "{deleted:?} {added:?}"
        );
        // The policy's version TXT changed with it.
        assert!(
            deleted.iter().any(|l| l.contains("TXT nxguard policy"))
                && added.iter().any(|l| l.contains("TXT nxguard policy"))
        );
    }

    #[test]
    fn a_change_too_large_to_keep_is_none() {
        let origin = Name::from_ascii("rpz.test.").unwrap();
        let names: Vec<String> = (0..CHANGE_RECORDS_MAX / 2 + 1).map(|i| format!("h{i}.example")).collect();
        let blocks: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), false)).collect();
        let new = policy(&blocks, &[]);
        assert!(diff(&origin, 300, &policy(&[], &[]), &new, 1, 2).is_none());
    }
}
