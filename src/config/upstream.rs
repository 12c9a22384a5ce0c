//! Upstreams: `[upstream]` with its servers and zones.

use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// UDP, retried over TCP when the answer is truncated.
    #[default]
    Udp,
    Tcp,
    /// DNS-over-TLS (RFC 7858).
    Tls,
    /// DNS-over-HTTPS (RFC 8484).
    Https,
    /// DNS-over-QUIC (RFC 9250).
    Quic,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServer {
    pub address: SocketAddr,
    #[serde(default)]
    pub protocol: Protocol,
    /// Name in the server's certificate (tls, https, quic).
    #[serde(default)]
    pub tls_name: Option<String>,
    /// URL path for https (default /dns-query).
    #[serde(default)]
    pub path: Option<String>,
    /// PEM file with the CA certificates to trust instead of the built-in web roots (an
    /// internal resolver with its own CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The servers everything is forwarded to (but the `zones` below).
    pub servers: Vec<UpstreamServer>,
    /// Total time for one client query across all servers; then SERVFAIL.
    pub timeout_ms: u64,
    pub strategy: Strategy,
    /// Conditional forwarding: names under these zones go only to their own servers.
    pub zones: Vec<ZoneForward>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig { servers: Vec::new(), timeout_ms: 1500, strategy: Strategy::Ordered, zones: Vec::new() }
    }
}

/// How the next server is chosen.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// In configured order; a failing server is skipped until a background probe finds it back.
    #[default]
    Ordered,
    /// The healthy server with the lowest smoothed round-trip time first.
    Fastest,
}

/// Internal zones (the municipality's AD domain, reverse zones) and the servers that answer
/// for them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneForward {
    pub zones: Vec<String>,
    pub servers: Vec<UpstreamServer>,
}
