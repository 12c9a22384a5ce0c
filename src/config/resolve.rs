//! Read by the pipeline (`resolve`) and its answers (`dns::blocked`): `[access]`, `[limits]`,
//! `[cache]`, `[block]`.

use ipnet::IpNet;
use serde::Deserialize;

/// Which clients get answers. Everything not listed is dropped without a reply, so a spoofed
/// flood gets no reflection.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Client networks that are served.
    pub allow: Vec<IpNet>,
    /// Networks inside `allow` that get REFUSED instead of an answer.
    pub refuse: Vec<IpNet>,
    /// Relays that forward many devices' queries (Wi-Fi controllers, DNS forwarders): they get
    /// `limits.relay_qps`, and their EDNS client identity (Client Subnet, MAC options) is
    /// believed; from anyone else those options are ignored.
    pub trusted_relays: Vec<IpNet>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            allow: vec!["127.0.0.0/8".parse().expect("literal"), "::1/128".parse().expect("literal")],
            refuse: Vec::new(),
            trusted_relays: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    /// Answer with TC=1 and nothing else: a real client retries over TCP (not rate limited),
    /// a spoofed source gets a reply no larger than its query.
    #[default]
    Truncate,
    /// Send nothing.
    Drop,
}

/// Limits that keep a flood from taking the resolver down.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// UDP queries per second per client (IPv4 address or IPv6 /64); 0 = no limit. A device
    /// rarely sends more than a few dozen, even while a page loads.
    pub client_qps: u32,
    /// Queries a client may send at once before the rate applies.
    pub client_burst: u32,
    /// Rate for `access.trusted_relays`, which carry many devices.
    pub relay_qps: u32,
    pub relay_burst: u32,
    pub over_limit: OverLimit,
    /// Queries waiting for an upstream at once; beyond it new ones get SERVFAIL at once.
    pub max_in_flight: usize,
    /// Open TCP connections in total, and per client (RFC 7766 §6.2.2).
    pub tcp_max_connections: usize,
    pub tcp_max_connections_per_client: usize,
    /// How long a TLS (DoT, DoH) or QUIC (DoQ, DoH3) handshake may take once started; then the
    /// connection is dropped and its place freed. 5 s: a real client needs one or two round
    /// trips, and even one whose first flight was lost twice (QUIC resends after about 1 s and
    /// 2 s) is done well within it, while a stalled or replayed handshake holds its place for no
    /// longer.
    pub handshake_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            client_qps: 200,
            client_burst: 400,
            relay_qps: 5_000,
            relay_burst: 10_000,
            over_limit: OverLimit::Truncate,
            max_in_flight: 10_000,
            tcp_max_connections: 1_024,
            tcp_max_connections_per_client: 16,
            handshake_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Maximum cached answers; 0 disables the cache.
    pub max_entries: u64,
    /// Memory the cached answers may take, in bytes (answer, key and bookkeeping counted); the
    /// cache holds at most `max_entries` answers and at most this many bytes. Default 96 MiB:
    /// room for the 100 000 default entries of typical size (about 700 bytes each), while large
    /// answers (DNSSEC, long TXT) cannot grow the cache past it. 0 also disables the cache.
    pub max_bytes: u64,
    /// Floor for record TTLs (0 keeps the authoritative TTLs).
    pub min_ttl_secs: u32,
    /// Ceiling for record TTLs: bounds how long a changed record stays wrong.
    pub max_ttl_secs: u32,
    /// Ceiling for negative answers (RFC 2308 §5 suggests 1–3 hours at most).
    pub negative_max_ttl_secs: u32,
    /// Serve-stale (RFC 8767): when no upstream answers within 1.8 s, an answer expired at most
    /// this long ago is served (TTL 30, EDE 3); 0 = off. RFC 8767 suggests 1 to 3 days.
    pub serve_stale_secs: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_bytes: 96 << 20,
            min_ttl_secs: 0,
            max_ttl_secs: 86_400,
            negative_max_ttl_secs: 3_600,
            serve_stale_secs: 86_400,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockResponse {
    /// NXDOMAIN with an SOA: the name does not exist (RFC 2308 §2.1).
    #[default]
    Nxdomain,
    /// NOERROR with no records and an SOA (RFC 2308 §2.2).
    Nodata,
    /// REFUSED.
    Refused,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    pub response: BlockResponse,
    /// SOA minimum and TTL of blocked answers: how long clients cache them. Short, so that an
    /// unblocked name works again within minutes.
    pub ttl_secs: u32,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig { response: BlockResponse::Nxdomain, ttl_secs: 300 }
    }
}
