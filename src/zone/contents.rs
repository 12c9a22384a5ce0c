//! The zone's records, made from the policy: the apex (SOA, NS, one TXT per app and one
//! naming the policy version), then per entry `name CNAME .` and `*.name CNAME .` (RPZ's
//! NXDOMAIN action), `name CNAME rpz-passthru.` for exceptions. An entry only an allow entry
//! above it would exempt is left out, as nxguard itself never applies it (an allow entry
//! anywhere above a name wins); entries of log-only lists block nothing and are left out too.

use std::sync::Arc;

use hickory_proto::rr::{
    Name, RData, Record,
    rdata::{CNAME, NS, SOA, TXT},
};

use crate::{
    config::ListMode,
    policy::{Entry, Policy},
    zone::changes::ChangeSet,
};

/// The budget of one transfer message, counted without name compression (so the real
/// message is smaller), well under the 64 KiB a TCP message holds with a TSIG record.
const MESSAGE_BUDGET_BYTES: usize = 32_000;

/// How long a secondary keeps the zone without reaching nxguard: thirty days, because an
/// expired policy zone would silently unblock every banned app.
const EXPIRE_SECS: i32 = 30 * 86_400;

/// The action of an entry: NXDOMAIN (`CNAME .`) or pass through (`CNAME rpz-passthru.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    NxDomain,
    Passthru,
}

/// What the zone says for one policy entry: the action, and whether subdomains get it too.
pub fn action_of(policy: &Policy, entry: &Entry<'_>) -> Option<(Action, bool)> {
    match *entry {
        Entry::Allow { .. } => Some((Action::Passthru, true)),
        Entry::Block { mode: ListMode::LogOnly, .. } => None,
        Entry::Block { name, .. } if policy.allows(name.as_bytes()) => None,
        Entry::Block { exact, .. } => Some((Action::NxDomain, !exact)),
    }
}

pub fn soa(origin: &Name, serial: u32, refresh_secs: u32) -> Record {
    let refresh = i32::try_from(refresh_secs).unwrap_or(i32::MAX);
    let local = Name::from_ascii("localhost.").unwrap_or_else(|_| Name::root());
    let contact = Name::from_ascii("hostmaster.localhost.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(local, contact, serial, refresh, (refresh / 5).max(30), EXPIRE_SECS, 60);
    Record::from_rdata(origin.clone(), refresh_secs, RData::SOA(soa))
}

/// SOA, NS (RPZ zones need one; it is never used), and TXT naming the policy and each app,
/// so a secondary's operator can see from the zone what its entries mean.
pub fn apex(origin: &Name, serial: u32, refresh_secs: u32, policy: &Policy) -> Vec<Record> {
    let txt = |text: String| Record::from_rdata(origin.clone(), refresh_secs, RData::TXT(TXT::new(vec![text])));
    let local = Name::from_ascii("localhost.").unwrap_or_else(|_| Name::root());
    let mut records = vec![
        soa(origin, serial, refresh_secs),
        Record::from_rdata(origin.clone(), refresh_secs, RData::NS(NS(local))),
        txt(format!("nxguard policy {}: banned apps answer NXDOMAIN", policy.version())),
    ];
    for entry in policy.apps() {
        let app = &entry.app;
        records.push(txt(format!("nxguard app {}: {} ({})", app.id, app.name, app.vendor)));
    }
    records
}

/// The records of one entry (none, one, or the name and its wildcard).
pub fn entry_records(origin: &Name, ttl: u32, policy: &Policy, entry: &Entry<'_>) -> [Option<Record>; 2] {
    let Some((action, subdomains)) = action_of(policy, entry) else {
        return [None, None];
    };
    let name = match entry {
        Entry::Allow { name } | Entry::Block { name, .. } => name,
    };
    name_records(origin, ttl, name, action, subdomains)
}

/// `name CNAME target` and, for subdomains too, `*.name CNAME target`, in the zone.
pub fn name_records(origin: &Name, ttl: u32, name: &str, action: Action, subdomains: bool) -> [Option<Record>; 2] {
    let Ok(owner) = Name::from_ascii(name).and_then(|n| n.append_domain(origin)) else {
        // Too long once the zone's name is appended: no resolver could ask for it in the zone.
        return [None, None];
    };
    let target = match action {
        Action::NxDomain => Name::root(),
        Action::Passthru => Name::from_ascii("rpz-passthru.").unwrap_or_else(|_| Name::root()),
    };
    let wildcard = subdomains
        .then(|| owner.prepend_label("*").ok())
        .flatten()
        .map(|wildcard| Record::from_rdata(wildcard, ttl, RData::CNAME(CNAME(target.clone()))));
    [wildcard, Some(Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target))))]
}

/// A transfer's records cut into messages of about `MESSAGE_BUDGET_BYTES`, made as they are
/// asked for (a 1 M-entry zone is never held as records).
pub struct Messages<'s> {
    records: Box<dyn Iterator<Item = Record> + Send + 's>,
}

impl<'s> Messages<'s> {
    /// The whole zone (RFC 5936): the apex with the SOA first, the entries, the SOA again.
    pub fn axfr(origin: &'s Name, serial: u32, ttl: u32, policy: &'s Policy) -> Messages<'s> {
        let apex = apex(origin, serial, ttl, policy).into_iter();
        let entries = policy.entries().flat_map(move |entry| entry_records(origin, ttl, policy, &entry)).flatten();
        let records = apex.chain(entries).chain(std::iter::once(soa(origin, serial, ttl)));
        Messages { records: Box::new(records) }
    }

    /// The differences from `changes[0].from` to `serial` (RFC 1995 §4): the current SOA, then
    /// per change the old SOA, what it deleted, the new SOA, what it added; the current SOA last.
    pub fn ixfr(origin: &'s Name, serial: u32, ttl: u32, changes: &'s [Arc<ChangeSet>]) -> Messages<'s> {
        let steps = changes.iter().flat_map(move |change| {
            std::iter::once(soa(origin, change.from, ttl))
                .chain(change.deleted.iter().cloned())
                .chain(std::iter::once(soa(origin, change.to, ttl)))
                .chain(change.added.iter().cloned())
        });
        let current = soa(origin, serial, ttl);
        let records = std::iter::once(current.clone()).chain(steps).chain(std::iter::once(current));
        Messages { records: Box::new(records) }
    }

    /// Just these records (an IXFR's answer when the secondary is up to date).
    pub fn records(records: Vec<Record>) -> Messages<'static> {
        Messages { records: Box::new(records.into_iter()) }
    }

    /// The next message's records; None once all are out.
    pub fn next_message(&mut self) -> Option<Vec<Record>> {
        let mut records = Vec::new();
        let mut budget = 0usize;
        while budget < MESSAGE_BUDGET_BYTES {
            let Some(record) = self.records.next() else {
                break;
            };
            budget += record_bytes(&record);
            records.push(record);
        }
        (!records.is_empty()).then_some(records)
    }
}

/// A record's size on the wire, over-estimated: its name uncompressed, the fixed fields, and
/// its data (a CNAME target is at most `rpz-passthru.`; TXT as long as its text).
fn record_bytes(record: &Record) -> usize {
    let data = match &record.data {
        RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
        _ => 16,
    };
    record.name.len() + 12 + data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{App, PolicyBuilder, domains::Kind};

    fn policy() -> Policy {
        let mut builder = PolicyBuilder::new();
        let tiktok = builder.app(App::new("tiktok", "TikTok", "ByteDance"));
        builder.block("tiktok.com", tiktok, Kind::Api, false);
        builder.block("exact.example", tiktok, Kind::Web, true);
        builder.block("ads.okay.example", tiktok, Kind::Web, false);
        builder.allow("okay.example");
        builder.allow("safe.tiktok.com");
        builder.build()
    }

    fn zone_text(policy: &Policy) -> Vec<String> {
        let origin = Name::from_ascii("rpz.test.").unwrap();
        let mut transfer = Messages::axfr(&origin, 7, 300, policy);
        let mut lines = Vec::new();
        while let Some(records) = transfer.next_message() {
            lines.extend(records.iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)));
        }
        lines
    }

    #[test]
    fn blocks_exceptions_and_the_apex() {
        let lines = zone_text(&policy());
        assert!(lines[0].starts_with("rpz.test. SOA localhost. hostmaster.localhost. 7 "), "{lines:?}");
        assert!(lines.last().unwrap().starts_with("rpz.test. SOA"), "closing SOA: {lines:?}");
        for line in [
            "tiktok.com.rpz.test. CNAME .",
            "*.tiktok.com.rpz.test. CNAME .",
            "exact.example.rpz.test. CNAME .",
            "safe.tiktok.com.rpz.test. CNAME rpz-passthru.",
            "*.safe.tiktok.com.rpz.test. CNAME rpz-passthru.",
            "rpz.test. TXT nxguard app tiktok: TikTok (ByteDance)",
        ] {
            assert!(lines.iter().any(|l| l == line), "{line} missing from {lines:?}");
        }
        assert!(!lines.iter().any(|l| l.starts_with("*.exact.example")), "exact entries get no wildcard");
        assert!(!lines.iter().any(|l| l.contains("ads.okay.example")), "a block under an allow is left out");
    }

    #[test]
    fn a_large_policy_is_cut_into_messages() {
        let mut builder = PolicyBuilder::new();
        let app = builder.app(App::new("feed", "Feed", "Feed"));
        for i in 0..20_000 {
            builder.block(&format!("host-{i}.example.com"), app, Kind::Unspecified, false);
        }
        let policy = builder.build();
        let origin = Name::from_ascii("rpz.test.").unwrap();
        let mut transfer = Messages::axfr(&origin, 1, 300, &policy);
        let mut messages = 0;
        let mut records = 0;
        while let Some(message) = transfer.next_message() {
            messages += 1;
            records += message.len();
        }
        assert!(messages > 10, "{messages} messages");
        assert_eq!(records, 40_000 + 2 + 1 + 1 + 1, "every entry twice, SOA twice, NS, two TXT");
    }
}
