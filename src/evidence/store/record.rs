//! The one record of an attempt that every output takes: identified and, where configured,
//! pseudonymised once by the dispatcher, then logged, streamed to the SIEM and stored (the same
//! row on both backends and in the spool), and the keyed hash that replaces a device's identity.
//!
//! Owns: `Record`, its columns (`Record::columns`: the one place the 24 stored columns are
//! named, in table order, with their values; the SQLite `INSERT`, the PostgreSQL `COPY` and
//! the SIEM line are all built from it), and `Pseudonymizer`.

use std::{
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::evidence::{
    attempt::{Attempt, Via},
    devices::address_text,
    store::{FileError, StoreError},
};

/// Milliseconds in a UTC day: rollups and reports count days as `ts_ms / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch.
pub fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An attempt as logged, streamed and stored. With pseudonymisation the identifying fields are
/// empty and `device_key` is the pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    pub ts_ms: i64,
    pub node: String,
    pub device_key: String,
    pub client_ip: Option<String>,
    pub client_port: Option<i32>,
    pub transport: String,
    pub device_ip: Option<String>,
    pub mac: Option<String>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub owner: Option<String>,
    pub identity_source: String,
    pub qname: String,
    pub qtype: String,
    pub app: String,
    pub app_name: String,
    pub vendor: String,
    pub domain: String,
    pub kind: String,
    pub matched_on: String,
    pub cname_alias: Option<String>,
    /// `enforce` or `log-only` (`attempt::Mode::as_str`).
    pub mode: String,
    pub policy_version: String,
    pub rule: String,
    /// The resolver that reported it over dnstap (also named in `node`); not a column, so not
    /// in the spool either: the log and the SIEM line carry it.
    #[serde(skip)]
    pub resolver: Option<Arc<str>>,
}

/// One column's value, typed as both backends bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// BIGINT / INTEGER.
    Int8(i64),
    /// INT4 / INTEGER, nullable.
    Int4(Option<i32>),
    /// TEXT NOT NULL.
    Text(&'a str),
    /// TEXT, nullable.
    OptText(Option<&'a str>),
}

/// How many columns a stored attempt has (`id` aside).
pub const COLUMNS: usize = 24;

impl Record {
    /// The record of `attempt`: its device key worked out once, pseudonymised when a
    /// pseudonymizer is given (then nothing that identifies the device is kept), as `node`.
    pub fn of(attempt: &Attempt, pseudonymizer: Option<&Pseudonymizer>, node: &str) -> Record {
        let id = &attempt.identity;
        let identifying = pseudonymizer.is_none();
        // Each address is turned into text once: it is the key of an unknown device, and the
        // client's address is the device's unless a relay named another.
        let device_ip = address_text(id.ip);
        let client_ip = || match attempt.client.ip() {
            ip if ip == id.ip => device_ip.clone(),
            ip => address_text(ip),
        };
        let key = id.key_with_address(&device_ip);
        let device_key = match pseudonymizer {
            Some(p) => p.pseudonym(&key),
            None => key,
        };
        let keep = |v: &Option<String>| if identifying { v.clone() } else { None };
        let (matched_on, cname_alias) = match &attempt.via {
            Via::Query => ("query", None),
            Via::Cname { alias } => ("cname", Some(alias.clone())),
        };
        Record {
            ts_ms: millis(attempt.time),
            // Evidence another resolver sent over dnstap names that resolver as its source.
            node: attempt.resolver.as_deref().map_or_else(|| node.to_string(), |r| format!("{r} (dnstap)")),
            device_key,
            client_ip: identifying.then(client_ip),
            client_port: identifying.then(|| i32::from(attempt.client.port())),
            transport: attempt.transport.as_str().to_string(),
            device_ip: identifying.then_some(device_ip),
            mac: keep(&id.mac),
            hostname: keep(&id.hostname),
            device: keep(&id.device),
            owner: keep(&id.owner),
            identity_source: id.source.as_str().to_string(),
            qname: attempt.qname.clone(),
            qtype: attempt.qtype.clone(),
            app: attempt.app.app.id.clone(),
            app_name: attempt.app.app.name.clone(),
            vendor: attempt.app.app.vendor.clone(),
            domain: attempt.domain.clone(),
            kind: attempt.kind.as_str().to_string(),
            matched_on: matched_on.to_string(),
            cname_alias,
            mode: attempt.stamp.mode.as_str().to_string(),
            // `String::from`, not `to_string`: on an `Arc<str>` that goes through `fmt`.
            policy_version: String::from(&*attempt.stamp.policy_version),
            rule: String::from(&*attempt.stamp.rule),
            resolver: attempt.resolver.clone(),
        }
    }

    /// The stored columns in table order, each with its value: the one list of them.
    pub fn columns(&self) -> [(&'static str, Value<'_>); COLUMNS] {
        use Value::{Int4, Int8, OptText, Text};
        fn opt(v: &Option<String>) -> Value<'_> {
            OptText(v.as_deref())
        }
        [
            ("ts_ms", Int8(self.ts_ms)),
            ("node", Text(&self.node)),
            ("device_key", Text(&self.device_key)),
            ("client_ip", opt(&self.client_ip)),
            ("client_port", Int4(self.client_port)),
            ("transport", Text(&self.transport)),
            ("device_ip", opt(&self.device_ip)),
            ("mac", opt(&self.mac)),
            ("hostname", opt(&self.hostname)),
            ("device", opt(&self.device)),
            ("owner", opt(&self.owner)),
            ("identity_source", Text(&self.identity_source)),
            ("qname", Text(&self.qname)),
            ("qtype", Text(&self.qtype)),
            ("app", Text(&self.app)),
            ("app_name", Text(&self.app_name)),
            ("vendor", Text(&self.vendor)),
            ("domain", Text(&self.domain)),
            ("kind", Text(&self.kind)),
            ("matched_on", Text(&self.matched_on)),
            ("cname_alias", opt(&self.cname_alias)),
            ("mode", Text(&self.mode)),
            ("policy_version", Text(&self.policy_version)),
            ("rule", Text(&self.rule)),
        ]
    }

    pub fn day(&self) -> i64 {
        self.ts_ms.div_euclid(DAY_MS)
    }

    /// When it was recorded, as RFC 3339 UTC with milliseconds (the log and the SIEM line).
    pub fn time_text(&self) -> String {
        let ms = u64::try_from(self.ts_ms).unwrap_or(0);
        humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
    }
}

/// The column names in table order.
pub fn column_names() -> [&'static str; COLUMNS] {
    Record::default().columns().map(|(name, _)| name)
}

/// Keyed hash of a device identity (HMAC-SHA-256, first 16 hex digits), so that the store can
/// group a device's attempts without holding who it is.
pub struct Pseudonymizer {
    key: ring::hmac::Key,
}

impl Pseudonymizer {
    /// Reads the key file (at least 32 bytes of secret, kept apart from the database).
    pub fn from_file(path: &Path) -> Result<Pseudonymizer, StoreError> {
        let fail = |source: FileError| StoreError::Key { path: path.into(), source };
        let secret = std::fs::read(path).map_err(|e| fail(e.into()))?;
        if secret.len() < 32 {
            return Err(fail(FileError::ShortKey { bytes: secret.len() }));
        }
        Ok(Pseudonymizer { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret) })
    }

    /// Writes a new random key file (mode 0600).
    pub fn create_key(path: &Path) -> Result<(), StoreError> {
        use std::io::Write;
        let fail = |e: std::io::Error| StoreError::Key { path: path.into(), source: e.into() };
        let secret: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(&secret).map_err(fail)
    }

    pub fn pseudonym(&self, identity: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = ring::hmac::sign(&self.key, identity.as_bytes());
        let mut text = String::with_capacity(18);
        text.push_str("p-");
        for &b in &tag.as_ref()[..8] {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        text
    }
}
