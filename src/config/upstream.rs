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
#[serde(try_from = "ServerTable")]
pub struct UpstreamServer {
    /// `IP:port`; for a server named by host, the unspecified address with its port until the
    /// name is resolved (`upstream::bootstrap`).
    pub address: SocketAddr,
    /// The host name when `address` was given as `host:port`, resolved through
    /// `upstream.bootstrap`.
    pub host: Option<String>,
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

/// `[[upstream.servers]]` as written: `address` is `IP:port` or `host:port`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerTable {
    address: String,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    tls_name: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

/// An `address` that is neither `IP:port` nor `host:port`.
#[derive(Debug, thiserror::Error)]
#[error("address {address:?}: not IP:port or host:port")]
pub struct ServerAddressError {
    pub address: String,
}

impl TryFrom<ServerTable> for UpstreamServer {
    type Error = ServerAddressError;

    fn try_from(table: ServerTable) -> Result<Self, ServerAddressError> {
        let (address, host) = match table.address.parse::<SocketAddr>() {
            Ok(address) => (address, None),
            Err(_) => {
                let bad = || ServerAddressError { address: table.address.clone() };
                let (host, port) = table.address.rsplit_once(':').ok_or_else(bad)?;
                let port: u16 = port.parse().map_err(|_| bad())?;
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host.split('.').all(|l| !l.is_empty() && l.len() <= 63)
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !valid {
                    return Err(bad());
                }
                (SocketAddr::from(([0, 0, 0, 0], port)), Some(host.to_ascii_lowercase()))
            }
        };
        Ok(UpstreamServer {
            address,
            host,
            protocol: table.protocol,
            tls_name: table.tls_name,
            path: table.path,
            ca_file: table.ca_file,
        })
    }
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
    /// Servers that resolve upstreams given as `host:port` ("9.9.9.9", "10.0.0.10:53"), or
    /// `["system"]` for /etc/resolv.conf; never nxguard itself. Required when a server has a
    /// host name.
    pub bootstrap: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            timeout_ms: 1500,
            strategy: Strategy::Ordered,
            zones: Vec::new(),
            bootstrap: Vec::new(),
        }
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
