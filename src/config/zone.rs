//! The policy for other resolvers: `[rpz]` (the policy served as a Response Policy Zone) and
//! `[ingest]` (their evidence, received over dnstap).

use std::{net::SocketAddr, path::PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// The Response Policy Zone: off unless `listen` names an address. Only `allow` may transfer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RpzConfig {
    /// TCP (AXFR/IXFR and SOA) and UDP (SOA) addresses, e.g. ["192.0.2.10:5353"].
    pub listen: Vec<SocketAddr>,
    /// The zone's name; `.invalid` (RFC 6761) can never collide with a real name.
    pub zone: String,
    /// Networks of the secondaries; every other source is refused (and counted).
    pub allow: Vec<IpNet>,
    /// A BIND key file (`tsig-keygen -a hmac-sha256 NAME`); with it, a transfer must be signed
    /// unless its source is in `allow_unsigned`.
    pub tsig_key_file: Option<PathBuf>,
    /// Sources that may transfer unsigned although a key is set (Unbound cannot sign transfers).
    pub allow_unsigned: Vec<IpNet>,
    /// Secondaries told of each new serial (RFC 1996 NOTIFY over UDP), as address:port.
    pub notify: Vec<SocketAddr>,
    /// TTL of the zone's records and the SOA's refresh: secondaries re-check this often even if
    /// a NOTIFY is lost. Five minutes keeps a missed change short without polling hard.
    pub refresh_secs: u32,
}

impl Default for RpzConfig {
    fn default() -> Self {
        RpzConfig {
            listen: Vec::new(),
            zone: "rpz.nxguard.invalid".into(),
            allow: Vec::new(),
            tsig_key_file: None,
            allow_unsigned: Vec::new(),
            notify: Vec::new(),
            refresh_secs: 300,
        }
    }
}

/// Where dnstap arrives: `unix:/path` or `tcp:address:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnstapSocket {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Why an `ingest.dnstap` entry names no socket.
#[derive(Debug, thiserror::Error)]
pub enum DnstapSocketError {
    #[error("{0:?}: give unix:PATH or tcp:ADDRESS:PORT")]
    Scheme(String),
    #[error("{text:?}: {address:?} is not an address:port")]
    Address { text: String, address: String, source: std::net::AddrParseError },
}

impl DnstapSocket {
    pub fn parse(text: &str) -> Result<DnstapSocket, DnstapSocketError> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(DnstapSocket::Unix(path.into()));
        }
        let address = text.strip_prefix("tcp:").ok_or_else(|| DnstapSocketError::Scheme(text.to_string()))?;
        address.parse().map(DnstapSocket::Tcp).map_err(|source| DnstapSocketError::Address {
            text: text.to_string(),
            address: address.to_string(),
            source,
        })
    }
}

/// Evidence from other resolvers over dnstap: off unless `dnstap` lists a socket.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// e.g. ["unix:/run/nxguard/dnstap.sock", "tcp:127.0.0.1:6000"].
    pub dnstap: Vec<String>,
    /// Networks whose resolvers may send over TCP; others are closed at once (and counted).
    pub allow: Vec<IpNet>,
    /// Largest frame accepted; a dnstap message holds at most two DNS messages (64 KiB each).
    pub max_frame_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { dnstap: Vec::new(), allow: Vec::new(), max_frame_bytes: 256 * 1024 }
    }
}

impl IngestConfig {
    pub fn sockets(&self) -> Result<Vec<DnstapSocket>, DnstapSocketError> {
        self.dnstap.iter().map(|s| DnstapSocket::parse(s)).collect()
    }
}

/// The problems of `[rpz]` and `[ingest]`, each with its key.
pub fn zone_problems(rpz: &RpzConfig, ingest: &IngestConfig) -> Vec<String> {
    let mut p = Vec::new();
    if !rpz.listen.is_empty() {
        if rpz.zone.parse::<hickory_proto::rr::Name>().is_err() || rpz.zone.is_empty() {
            p.push(format!("rpz.zone: {:?} is not a zone name", rpz.zone));
        }
        if rpz.allow.is_empty() {
            p.push("rpz.allow: no secondaries listed; nobody could transfer the zone".to_string());
        }
        if rpz.refresh_secs == 0 {
            p.push("rpz.refresh_secs: must be above 0".to_string());
        }
    }
    if let Err(problem) = ingest.sockets() {
        p.push(format!("ingest.dnstap: {problem}"));
    }
    let tcp = ingest.sockets().unwrap_or_default().iter().any(|s| matches!(s, DnstapSocket::Tcp(_)));
    if tcp && ingest.allow.is_empty() {
        p.push("ingest.allow: required when ingest.dnstap lists a tcp: socket".to_string());
    }
    if ingest.max_frame_bytes < 1024 {
        p.push("ingest.max_frame_bytes: below 1024".to_string());
    }
    p
}
