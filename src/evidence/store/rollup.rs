//! Daily rollups: per (device, app, UTC day, node, mode) the counts by kind, first and last
//! seen, and the distinct listed domains. The writer adds each batch's records to them in the
//! batch's own transaction, so a rollup always equals a recount of the raw rows it was made of.

use std::collections::{BTreeSet, HashMap};

use crate::evidence::store::record::Record;

/// The kinds counted in their own column, in column order (`attempt::Kind::as_str`).
pub const KINDS: [&str; 6] = ["api", "telemetry", "cdn", "web", "alias", "unspecified"];

/// The key of one rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub device_key: String,
    pub app: String,
    pub day: i64,
    pub node: String,
    pub mode: String,
}

/// The values of one rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    /// The greatest owner seen (as `MAX(owner)` over the raw rows).
    pub owner: Option<String>,
    pub app_name: String,
    pub attempts: i64,
    /// Per kind, in `KINDS` order.
    pub kinds: [i64; 6],
    pub first_ms: i64,
    pub last_ms: i64,
    pub domains: BTreeSet<String>,
}

impl Counts {
    fn of(record: &Record) -> Counts {
        let mut counts = Counts {
            owner: record.owner.clone(),
            app_name: record.app_name.clone(),
            attempts: 1,
            kinds: [0; 6],
            first_ms: record.ts_ms,
            last_ms: record.ts_ms,
            domains: BTreeSet::from([record.domain.clone()]),
        };
        counts.kinds[kind_index(&record.kind)] = 1;
        counts
    }

    /// Adds `other` (rows of the same key) into these counts.
    pub fn merge(&mut self, other: &Counts) {
        self.owner = self.owner.clone().max(other.owner.clone());
        if other.app_name > self.app_name {
            self.app_name = other.app_name.clone();
        }
        self.attempts += other.attempts;
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            *mine += theirs;
        }
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
        self.domains.extend(other.domains.iter().cloned());
    }

    /// The domains as stored: sorted, one space between.
    pub fn domains_text(&self) -> String {
        self.domains.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
    }
}

fn kind_index(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len() - 1)
}

/// The rollup deltas of a batch of records.
#[derive(Debug, Default)]
pub struct Rollups {
    pub rows: HashMap<Key, Counts>,
}

impl Rollups {
    pub fn of(records: &[Record]) -> Rollups {
        let mut rollups = Rollups::default();
        for record in records {
            rollups.add(record);
        }
        rollups
    }

    pub fn add(&mut self, record: &Record) {
        let key = Key {
            device_key: record.device_key.clone(),
            app: record.app.clone(),
            day: record.day(),
            node: record.node.clone(),
            mode: record.mode.clone(),
        };
        let counts = Counts::of(record);
        self.rows.entry(key).and_modify(|c| c.merge(&counts)).or_insert(counts);
    }

    /// The rows in key order (so two writers lock rows in the same order).
    pub fn sorted(&self) -> Vec<(&Key, &Counts)> {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_count_as_unspecified() {
        assert_eq!(kind_index("api"), 0);
        assert_eq!(kind_index("something-new"), 5);
    }
}
