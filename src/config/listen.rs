//! The listeners: `[server]`.

use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT) and runtime worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// A TCP connection without an answered query this long is closed (RFC 7766 §6.2.3 suggests
    /// seconds, not minutes); dropped, refused and malformed queries don't renew it. Also
    /// bounds writing an answer and idle DoT, DoH, DoQ and DoH3 connections (the handshakes
    /// have `limits.handshake_timeout_ms`).
    pub tcp_idle_timeout_ms: u64,
    /// Queries one TCP or DoT connection may have waiting for an upstream at once; they are
    /// answered out of order as each is ready (RFC 7766 §6.2.1.1), and the connection is not
    /// read further while this many are pending. Blocked and cached answers never wait. On DoQ
    /// and DoH3 it is the number of streams (queries) a client may have open at once.
    pub tcp_max_in_flight_per_connection: usize,
    /// DoQ and DoH3 handshakes from addresses that have not proved they receive our packets,
    /// in progress at once; past it each new one first gets a Retry (RFC 9000 §8.1.2), which a
    /// real client answers in one round trip and a replayed or spoofed Initial never does.
    /// 0 = a Retry for every unproven address. 32 keeps the extra round trip off ordinary
    /// traffic while a flood of Initials costs one Retry packet each (see benches/README.md).
    pub quic_unvalidated_handshakes_max: usize,
    /// DNS-over-TLS listen addresses for clients (RFC 7858), e.g. "0.0.0.0:853". Default none:
    /// encrypted listeners need a certificate the clients trust.
    pub tls: Vec<SocketAddr>,
    /// DNS-over-HTTPS listen addresses for clients (RFC 8484, HTTP/2), e.g. "0.0.0.0:443".
    pub https: Vec<SocketAddr>,
    /// DNS-over-QUIC listen addresses for clients (RFC 9250), e.g. "0.0.0.0:853" (UDP).
    pub quic: Vec<SocketAddr>,
    /// DNS-over-HTTPS over HTTP/3 listen addresses for clients, e.g. "0.0.0.0:443" (UDP).
    pub h3: Vec<SocketAddr>,
    /// PEM certificate chain for the `tls`, `https`, `quic` and `h3` listeners; re-read on reload.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key_file: Option<PathBuf>,
    /// URL path of DNS-over-HTTPS queries (RFC 8484 §3 suggests "/dns-query").
    pub https_path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let addr: SocketAddr = "127.0.0.1:5300".parse().expect("literal");
        ServerConfig {
            udp: vec![addr],
            tcp: vec![addr],
            workers: 0,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_in_flight_per_connection: 16,
            quic_unvalidated_handshakes_max: 32,
            tls: Vec::new(),
            https: Vec::new(),
            quic: Vec::new(),
            h3: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            https_path: "/dns-query".into(),
        }
    }
}
