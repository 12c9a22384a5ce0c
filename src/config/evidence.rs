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

/// Which database keeps the attempts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// An embedded SQLite file (`store.path`) on this node.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`store.url`) shared by every node, with a local spool.
    Postgres,
}

/// TLS to PostgreSQL (rustls).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StoreTls {
    /// Plain TCP (a database on loopback or a Unix-trusted network only).
    Disable,
    /// Encrypted, the server certificate not checked (libpq's sslmode=require).
    Require,
    /// Encrypted, the certificate checked against `store.ca_file` (or the web roots) and the
    /// host name of `store.url`. The default: the evidence crosses the network.
    #[default]
    VerifyFull,
}

/// The durable attempt store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// SQLite database file; absent (with backend sqlite) = no store (attempts only go to the
    /// log and the SIEM stream).
    pub path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user@host:port/db`, without a password.
    pub url: Option<String>,
    /// PostgreSQL password file (one line); without it `PGPASSWORD` is used.
    pub password_file: Option<PathBuf>,
    pub tls: StoreTls,
    /// CA certificates (PEM) for `tls = "verify-full"`; absent = the web roots.
    pub ca_file: Option<PathBuf>,
    /// This node's name in every row; absent = the host name.
    pub node: Option<String>,
    /// PostgreSQL: directory of the local spool, where records wait while the database is
    /// unreachable, slow or read-only.
    pub spool_dir: Option<PathBuf>,
    /// Bound of the spool on disk; beyond it new records are dropped and counted.
    pub spool_max_bytes: u64,
    /// PostgreSQL: a statement or connection attempt taking longer fails (and is retried).
    pub timeout_ms: u64,
    /// Records are committed at least this often: a crash loses at most this much.
    pub flush_interval_ms: u64,
    /// Raw attempts (every query) are kept this long; the timeline reads them.
    pub raw_days: u32,
    /// Daily rollups (per device, app and day) are kept this long; the summaries read them
    /// (GDPR: no longer than needed; at most 183 days, half a year).
    pub retention_days: u32,
    /// Records waiting for the writer; beyond this they are dropped and counted.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            path: None,
            url: None,
            password_file: None,
            tls: StoreTls::VerifyFull,
            ca_file: None,
            node: None,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            timeout_ms: 5000,
            flush_interval_ms: 1000,
            raw_days: 14,
            retention_days: 90,
            queue: 65_536,
        }
    }
}

impl StoreConfig {
    /// This node's name: `node`, or the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().filter(|n| !n.is_empty()).unwrap_or_else(host_name)
    }

    /// Every problem of the `[store]` table.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=183).contains(&self.retention_days) {
            p.push(format!("store.retention_days: {} is outside 1..=183", self.retention_days));
        }
        if self.raw_days == 0 || self.raw_days > self.retention_days {
            p.push(format!(
                "store.raw_days: {} is outside 1..=retention_days ({})",
                self.raw_days, self.retention_days
            ));
        }
        if !(10..=60_000).contains(&self.flush_interval_ms) {
            p.push(format!("store.flush_interval_ms: {} is outside 10..=60000", self.flush_interval_ms));
        }
        if self.queue == 0 {
            p.push("store.queue: must be above 0".to_string());
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            p.push(format!("store.timeout_ms: {} is outside 100..=600000", self.timeout_ms));
        }
        if self.spool_max_bytes < 1 << 20 {
            p.push("store.spool_max_bytes: below 1 MiB".to_string());
        }
        match self.backend {
            StoreBackend::Sqlite => {
                if self.url.is_some() {
                    p.push("store.url: applies only to backend = \"postgres\"".to_string());
                }
            }
            StoreBackend::Postgres => {
                match self.url.as_deref() {
                    None => p.push("store.url: required with backend = \"postgres\"".to_string()),
                    Some(url) => p.extend(url_problem(url)),
                }
                if self.spool_dir.is_none() {
                    p.push("store.spool_dir: required with backend = \"postgres\"".to_string());
                }
                if self.path.is_some() {
                    p.push("store.path: applies only to backend = \"sqlite\"".to_string());
                }
            }
        }
        if self.ca_file.is_some() && self.tls != StoreTls::VerifyFull {
            p.push("store.ca_file: applies only to tls = \"verify-full\"".to_string());
        }
        if self.node.as_deref().is_some_and(|n| n.is_empty() || n.chars().any(|c| c.is_control() || c == ' ')) {
            p.push("store.node: must be a non-empty name without spaces".to_string());
        }
        p
    }
}

/// What is wrong with a PostgreSQL URL, if anything (the password never belongs in it).
fn url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) else {
        return Some(format!("store.url: {url:?} does not start with postgres://"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((user, _)) = authority.rsplit_once('@')
        && user.contains(':')
    {
        return Some("store.url: holds a password; use store.password_file or PGPASSWORD".to_string());
    }
    None
}

/// The host name (gethostname), or "nxguard" when it cannot be read.
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "nxguard".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_a_url_without_password_and_a_spool() {
        let mut store = StoreConfig { backend: StoreBackend::Postgres, ..StoreConfig::default() };
        let problems = store.problems();
        assert!(problems.iter().any(|p| p.starts_with("store.url: required")), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("store.spool_dir: required")), "{problems:?}");
        store.url = Some("postgres://nxguard:secret@db/nxguard".into());
        store.spool_dir = Some("/var/lib/nxguard/spool".into());
        assert_eq!(store.problems(), ["store.url: holds a password; use store.password_file or PGPASSWORD"]);
        store.url = Some("postgres://nxguard@db:5432/nxguard".into());
        assert!(store.problems().is_empty());
        store.raw_days = 91;
        assert!(store.problems()[0].starts_with("store.raw_days"));
    }

    #[test]
    fn the_node_defaults_to_the_host_name() {
        assert!(!StoreConfig::default().node_name().is_empty());
        assert_eq!(StoreConfig { node: Some("ns2".into()), ..StoreConfig::default() }.node_name(), "ns2");
    }
}
