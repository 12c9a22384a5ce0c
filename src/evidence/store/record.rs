//! One attempt as the store keeps it: the flat row (after pseudonymisation), the same on both
//! backends and in the spool, and the keyed hash that replaces a device's identity.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::evidence::{
    attempt::{Attempt, Via},
    store::StoreError,
};

/// Milliseconds in a UTC day: rollups and reports count days as `ts_ms / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch.
pub fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An attempt as stored. With pseudonymisation the identifying fields are empty and
/// `device_key` is the pseudonym.
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
}

impl Record {
    pub fn of(attempt: &Attempt, pseudonymizer: Option<&Pseudonymizer>, node: &str) -> Record {
        let id = &attempt.identity;
        let key = id.key();
        let (device_key, identifying) = match pseudonymizer {
            Some(p) => (p.pseudonym(&key), false),
            None => (key, true),
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
            client_ip: identifying.then(|| attempt.client.ip().to_string()),
            client_port: identifying.then(|| i32::from(attempt.client.port())),
            transport: attempt.transport.as_str().to_string(),
            device_ip: identifying.then(|| id.ip.to_string()),
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
            policy_version: attempt.stamp.policy_version.to_string(),
            rule: attempt.stamp.rule.to_string(),
        }
    }

    pub fn day(&self) -> i64 {
        self.ts_ms.div_euclid(DAY_MS)
    }
}

/// Keyed hash of a device identity (HMAC-SHA-256, first 16 hex digits), so that the store can
/// group a device's attempts without holding who it is.
pub struct Pseudonymizer {
    key: ring::hmac::Key,
}

impl Pseudonymizer {
    /// Reads the key file (at least 32 bytes of secret, kept apart from the database).
    pub fn from_file(path: &Path) -> Result<Pseudonymizer, StoreError> {
        let fail = |message: String| StoreError::Key { path: path.into(), message };
        let secret = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        if secret.len() < 32 {
            return Err(fail(format!("has {} bytes, needs at least 32", secret.len())));
        }
        Ok(Pseudonymizer { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret) })
    }

    /// Writes a new random key file (mode 0600).
    pub fn create_key(path: &Path) -> Result<(), StoreError> {
        use std::io::Write;
        let fail = |message: String| StoreError::Key { path: path.into(), message };
        let secret: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
        file.write_all(&secret).map_err(|e| fail(e.to_string()))
    }

    pub fn pseudonym(&self, identity: &str) -> String {
        let tag = ring::hmac::sign(&self.key, identity.as_bytes());
        let hex: String = tag.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("p-{hex}")
    }
}
