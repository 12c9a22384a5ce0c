//! Who asked, and how: a query's client address and the transport it came over.
//!
//! Owns: `Client` and `Transport`, which the listeners fill in, the pipeline decides on (rate
//! limits and ANY over UDP), the counters count by and the attempt record keeps. They live here,
//! at the bottom of the rooms, so that `resolve` (which re-exports both) and `evidence` can name
//! them without importing each other.

use std::net::SocketAddr;

use serde::Serialize;

/// Who asked, and how.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS-over-TLS (RFC 7858).
    Tls,
    /// DNS-over-HTTPS (RFC 8484).
    Https,
    /// DNS-over-QUIC (RFC 9250).
    Quic,
    /// DNS-over-HTTPS over HTTP/3 (RFC 8484 on RFC 9114).
    H3,
}

impl Transport {
    pub const ALL: [Transport; 6] =
        [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Https, Transport::Quic, Transport::H3];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Https => "https",
            Transport::Quic => "quic",
            Transport::H3 => "h3",
        }
    }
}
