//! The security officer's console: `[console]`.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

/// Language of the console's pages.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Dutch: the municipalities' own language.
    #[default]
    Nl,
    En,
}

/// `nxguard console`: its address, its own database, sessions, lockout and case verification.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Where the console listens; loopback by default (put a TLS reverse proxy in front, or set
    /// the certificate files below).
    pub listen: SocketAddr,
    /// The console's own SQLite database (users, sessions, cases, audit log, API tokens); never
    /// the attempt store, which the console only reads.
    pub state_path: Option<PathBuf>,
    /// Certificate chain (PEM) for HTTPS; with `tls_key_file`, the console serves TLS itself and
    /// marks its session cookie Secure.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Page language: "nl" (default) or "en".
    pub language: Language,
    /// A session unused this long is ended.
    pub session_idle_mins: u64,
    /// Wrong passwords in a row that lock an account.
    pub lockout_failures: u32,
    /// How long a locked account stays locked.
    pub lockout_mins: u64,
    /// A removed app counts as verified after this many days without attempts.
    pub verify_days: u32,
    /// Audit rows older than this are deleted (its own retention, apart from the store's).
    pub audit_retention_days: u32,
    /// Each read of the attempt store (and each wait for one of its connections) is given up
    /// after this long, and the page answers 503 "evidence store unreachable": a slow or down
    /// database never holds a page open. 10 s is ten times the slowest page measured on a
    /// 90-day store of 50 M attempts (benches/README.md).
    pub store_timeout_ms: u64,
    /// Connections the console keeps to the attempt store and to its own database, each: pages
    /// beyond this wait their turn (bounded by `store_timeout_ms`). 4 serves a handful of
    /// officers at once without taking many of PostgreSQL's connections.
    pub store_connections: usize,
    /// The time zone (IANA name) of the times pages and the board report show, in the
    /// language's usual form (`3 dec 2026 08:07`). Exports and the JSON API keep UTC (RFC 3339).
    /// The zone rules are built into nxguard, so this works without /usr/share/zoneinfo.
    pub time_zone: String,
    /// Reverse proxies (CIDRs, e.g. "127.0.0.1/32") whose X-Forwarded-For and X-Forwarded-Proto
    /// are believed: the audit log then records the client's address, and the session cookie is
    /// Secure when the proxy was reached over HTTPS. Empty (the default): headers are ignored,
    /// since any client can send them.
    pub trust_proxy: Vec<ipnet::IpNet>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            state_path: None,
            tls_cert_file: None,
            tls_key_file: None,
            language: Language::Nl,
            session_idle_mins: 30,
            lockout_failures: 5,
            lockout_mins: 15,
            verify_days: 7,
            audit_retention_days: 730,
            store_timeout_ms: 10_000,
            store_connections: 4,
            time_zone: "Europe/Amsterdam".into(),
            trust_proxy: Vec::new(),
        }
    }
}

impl ConsoleConfig {
    /// Every problem with this table, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            p.push("console.tls_cert_file and console.tls_key_file: give both or neither".to_string());
        }
        if !(1..=1440).contains(&self.session_idle_mins) {
            p.push(format!("console.session_idle_mins: {} is outside 1..=1440", self.session_idle_mins));
        }
        if self.lockout_failures == 0 {
            p.push("console.lockout_failures: must be above 0".to_string());
        }
        if !(1..=90).contains(&self.verify_days) {
            p.push(format!("console.verify_days: {} is outside 1..=90", self.verify_days));
        }
        if !(30..=3650).contains(&self.audit_retention_days) {
            p.push(format!("console.audit_retention_days: {} is outside 30..=3650", self.audit_retention_days));
        }
        if !(100..=600_000).contains(&self.store_timeout_ms) {
            p.push(format!("console.store_timeout_ms: {} is outside 100..=600000", self.store_timeout_ms));
        }
        if let Err(error) = jiff::tz::TimeZone::get(&self.time_zone) {
            p.push(format!("console.time_zone: {:?} is not a time zone ({error})", self.time_zone));
        }
        if !(1..=64).contains(&self.store_connections) {
            p.push(format!("console.store_connections: {} is outside 1..=64", self.store_connections));
        }
        p
    }
}
