//! Attempt records and where they go: `[attempts]`, `[store]`, `[devices]`, `[privacy]`, `[siem]`.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttemptsConfig {
    /// Attempt records waiting to be written; beyond this they are dropped and counted, so the
    /// query path never waits.
    pub queue: usize,
}

impl Default for AttemptsConfig {
    fn default() -> Self {
        AttemptsConfig { queue: 65_536 }
    }
}

/// The durable attempt store (SQLite, in-process).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database file; absent = no store (attempts only go to the log and the SIEM stream).
    pub path: Option<PathBuf>,
    /// Records are committed at least this often: a crash loses at most this much.
    pub flush_interval_ms: u64,
    /// Attempts older than this are deleted by the server itself (GDPR: no longer than needed;
    /// at most 183 days, half a year).
    pub retention_days: u32,
    /// Records waiting for the writer; beyond this they are dropped and counted.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: None, flush_interval_ms: 1000, retention_days: 90, queue: 65_536 }
    }
}

/// Where device identities come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Device inventory (TOML, `[[device]]` tables with name, owner, ips, macs).
    pub inventory: Option<PathBuf>,
    /// dnsmasq lease files.
    pub dnsmasq_leases: Vec<PathBuf>,
    /// ISC Kea memfile lease files (lease4 CSV).
    pub kea_leases: Vec<PathBuf>,
    /// How often the files are checked for changes.
    pub reread_secs: u64,
    /// DNS servers asked for the PTR name of a client address ("10.0.0.10", "10.0.0.10:5353"),
    /// tried in this order, or `["system"]` for /etc/resolv.conf; empty = no reverse DNS.
    pub reverse_dns: Vec<String>,
    /// How long one PTR lookup may wait for each server.
    pub reverse_dns_timeout_ms: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            inventory: None,
            dnsmasq_leases: Vec::new(),
            kea_leases: Vec::new(),
            reread_secs: 5,
            // Off: a PTR lookup sends client addresses to a server, which the operator chooses.
            reverse_dns: Vec::new(),
            // A LAN's AD DNS answers in a few ms; the lookup runs off the query path anyway.
            reverse_dns_timeout_ms: 300,
        }
    }
}

/// Pseudonymisation: store a keyed hash of the device identity instead of addresses and names.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    pub pseudonymize: bool,
    /// The secret key (≥ 32 bytes), kept apart from the database; `nxguard pseudonym --new-key`
    /// creates one.
    pub key_file: Option<PathBuf>,
}

/// The JSON Lines stream of attempts for a SIEM.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SiemConfig {
    /// File to append to, or "-" for standard output; absent = off.
    pub path: Option<String>,
}
