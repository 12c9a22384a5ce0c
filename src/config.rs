//! Configuration: one TOML file, typed and strict.
//!
//! Owns: the config types, their defaults (each safe on its own), parsing, and `validate`, which
//! reports every problem at once with its location. Does not own: loading domain lists
//! (`policy::load`) or acting on the settings.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

/// The embedded default: loopback only, forwarding to Quad9 over DNS-over-TLS.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { origin: String, problems: Vec<String> },
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub access: AccessConfig,
    pub limits: LimitsConfig,
    pub upstream: UpstreamConfig,
    pub cache: CacheConfig,
    pub block: BlockConfig,
    pub policy: PolicyConfig,
    pub attempts: AttemptsConfig,
    pub store: StoreConfig,
    pub devices: DevicesConfig,
    pub privacy: PrivacyConfig,
    pub siem: SiemConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT) and runtime worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// A TCP connection idle this long is closed (RFC 7766 §6.2.3 suggests seconds, not minutes).
    /// Also bounds TLS handshakes and idle DoT and DoH connections.
    pub tcp_idle_timeout_ms: u64,
    /// DNS-over-TLS listen addresses for clients (RFC 7858), e.g. "0.0.0.0:853". Default none:
    /// encrypted listeners need a certificate the clients trust.
    pub tls: Vec<SocketAddr>,
    /// DNS-over-HTTPS listen addresses for clients (RFC 8484, HTTP/2), e.g. "0.0.0.0:443".
    pub https: Vec<SocketAddr>,
    /// PEM certificate chain for the `tls` and `https` listeners; re-read on reload.
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
            tls: Vec::new(),
            https: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            https_path: "/dns-query".into(),
        }
    }
}

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
        }
    }
}

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
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServer {
    pub address: SocketAddr,
    #[serde(default)]
    pub protocol: Protocol,
    /// Name in the server's certificate (tls, https).
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

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of list files; absent = the lists compiled into the binary.
    pub domains_dir: Option<PathBuf>,
    /// Enforced apps by list id (file stem); absent = every list.
    pub apps: Option<Vec<String>>,
    /// Further domains to block (and their subdomains), logged as the "local" category.
    pub extra: Vec<String>,
    /// Exceptions: these domains and their subdomains are never blocked.
    pub allow: Vec<String>,
    /// Bypass resistance (`[policy.bypass]`).
    pub bypass: BypassConfig,
    /// Check the config file and the list files for changes this often and reload when they
    /// change (as on SIGHUP); 0 = only on SIGHUP.
    pub watch_secs: u64,
}

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

/// Bypass resistance: names that make devices route around the network's resolver. Each
/// category is blocked like an app and recorded under its own id.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BypassConfig {
    /// NXDOMAIN for use-application-dns.net, so Firefox keeps the network's resolver.
    pub firefox_canary: bool,
    /// NXDOMAIN for mask.icloud.com and mask-h2.icloud.com (iCloud Private Relay), as Apple
    /// documents for networks that must see DNS.
    pub private_relay: bool,
    /// NODATA for _dns.resolver.arpa (RFC 9462), so clients do not upgrade to another resolver.
    pub ddr: bool,
    /// Block the names of well-known public DoH/DoT resolvers and consumer VPN services (off:
    /// some municipalities allow a VPN; pair it with a firewall rule for DNS by address).
    pub public_resolvers: bool,
}

impl Default for BypassConfig {
    fn default() -> Self {
        BypassConfig { firefox_canary: true, private_relay: true, ddr: true, public_resolvers: false }
    }
}

impl BypassConfig {
    /// The enabled categories, with the answer each one gets when it differs from
    /// `block.response`.
    pub fn enabled(&self) -> Vec<(&'static str, Option<BlockResponse>)> {
        [
            ("firefox-canary", self.firefox_canary, Some(BlockResponse::Nxdomain)),
            ("private-relay", self.private_relay, Some(BlockResponse::Nxdomain)),
            ("ddr", self.ddr, Some(BlockResponse::Nodata)),
            ("public-resolvers", self.public_resolvers, None),
        ]
        .into_iter()
        .filter(|(_, on, _)| *on)
        .map(|(id, _, response)| (id, response))
        .collect()
    }
}

/// The durable attempt store (SQLite, in-process).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Database file; absent = no store (attempts only go to the log and the SIEM stream).
    pub path: Option<PathBuf>,
    /// Records are committed at least this often: a crash loses at most this much.
    pub flush_interval_ms: u64,
    /// Attempts older than this are deleted by the server itself (GDPR: no longer than needed;
    /// at most 183 days, half a year).
    pub retention_days: u32,
    /// Records waiting for the writer; beyond this they are dropped and counted.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: None, flush_interval_ms: 1000, retention_days: 90, queue: 65_536 }
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
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig { inventory: None, dnsmasq_leases: Vec::new(), kea_leases: Vec::new(), reread_secs: 5 }
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

/// The Prometheus and health endpoint: off unless a listen address is given, and meant for a
/// management network (it has no authentication).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// e.g. "127.0.0.1:9153"; serves GET /metrics and GET /health.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "info,nxguard=debug". debug logs every query: not for
    /// production (personal data).
    pub level: String,
    pub format: LogFormat,
}

impl LogConfig {
    /// The tracing filter: `level`'s first word applies to nxguard only; other crates stay at
    /// warn (none of them may log queries with client addresses) unless named explicitly.
    pub fn filter(&self) -> String {
        let (first, rest) = self.level.split_once(',').unwrap_or((&self.level, ""));
        let mut filter = if first.contains('=') { format!("warn,{first}") } else { format!("warn,nxguard={first}") };
        if !rest.is_empty() {
            filter.push(',');
            filter.push_str(rest);
        }
        filter
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

impl Config {
    /// The embedded default configuration (`nxguard serve` without `--config`).
    pub fn embedded() -> Config {
        Config::parse_named(DEFAULT_TOML, "embedded default config")
            .expect("the embedded default config is tested to parse")
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::parse_named(text, "config")
    }

    /// Reads, parses and validates a file; errors name the file.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse_named(&text, &path.display().to_string())
    }

    fn parse_named(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { origin: origin.to_string(), problems })
        }
    }

    /// Every problem, each with the key it concerns.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.server.udp.is_empty() && self.server.tcp.is_empty() {
            p.push("server: no udp or tcp listen address".to_string());
        }
        if self.server.tcp_idle_timeout_ms == 0 {
            p.push("server.tcp_idle_timeout_ms: must be above 0".to_string());
        }
        let encrypted = !self.server.tls.is_empty() || !self.server.https.is_empty();
        for (key, file) in [("tls_cert_file", &self.server.tls_cert_file), ("tls_key_file", &self.server.tls_key_file)]
        {
            if encrypted && file.is_none() {
                p.push(format!("server.{key}: required when server.tls or server.https lists an address"));
            }
        }
        if !self.server.https_path.starts_with('/') {
            p.push("server.https_path: must start with '/'".to_string());
        }
        if self.access.allow.is_empty() {
            p.push("access.allow: no client networks listed; nxguard refuses to run as an open resolver".to_string());
        }
        if self.limits.max_in_flight == 0 {
            p.push("limits.max_in_flight: must be above 0".to_string());
        }
        if self.limits.tcp_max_connections == 0 || self.limits.tcp_max_connections_per_client == 0 {
            p.push("limits.tcp_max_connections*: must be above 0".to_string());
        }
        if self.upstream.servers.is_empty() {
            p.push("upstream.servers: no upstream server".to_string());
        }
        let zone_servers = self.upstream.zones.iter().enumerate().flat_map(|(z, zone)| {
            zone.servers.iter().enumerate().map(move |(i, s)| (format!("upstream.zones[{z}].servers[{i}]"), s))
        });
        for (z, zone) in self.upstream.zones.iter().enumerate() {
            if zone.zones.is_empty() || zone.servers.is_empty() {
                p.push(format!("upstream.zones[{z}]: needs at least one zone and one server"));
            }
            for name in &zone.zones {
                let valid = name.split('.').all(|l| !l.is_empty() && l.len() <= 63) && name.len() <= 253;
                if !valid || name != &name.to_ascii_lowercase() {
                    p.push(format!("upstream.zones[{z}]: {name:?} is not a lowercase zone name"));
                }
            }
        }
        let main_servers = self.upstream.servers.iter().enumerate().map(|(i, s)| (format!("upstream.servers[{i}]"), s));
        for (at, s) in main_servers.chain(zone_servers) {
            let encrypted = matches!(s.protocol, Protocol::Tls | Protocol::Https);
            if encrypted && s.tls_name.as_deref().is_none_or(str::is_empty) {
                p.push(format!("{at}.tls_name: required for protocol tls and https"));
            }
            if !encrypted && (s.tls_name.is_some() || s.ca_file.is_some()) {
                p.push(format!("{at}: tls_name and ca_file apply only to tls and https"));
            }
            if s.path.is_some() && s.protocol != Protocol::Https {
                p.push(format!("{at}.path: applies only to https"));
            }
            if s.path.as_deref().is_some_and(|path| !path.starts_with('/')) {
                p.push(format!("{at}.path: must start with '/'"));
            }
        }
        if !(100..=30_000).contains(&self.upstream.timeout_ms) {
            p.push(format!("upstream.timeout_ms: {} is outside 100..=30000", self.upstream.timeout_ms));
        }
        if self.cache.min_ttl_secs > self.cache.max_ttl_secs {
            p.push("cache.min_ttl_secs: greater than cache.max_ttl_secs".to_string());
        }
        if self.block.ttl_secs > 86_400 {
            p.push("block.ttl_secs: above 86400 (a day); unblocking would take too long to reach clients".to_string());
        }
        for (key, names) in [("policy.extra", &self.policy.extra), ("policy.allow", &self.policy.allow)] {
            for name in names {
                if let Err(problem) = crate::domains::check_domain(name) {
                    p.push(format!("{key}: {problem}"));
                }
            }
        }
        if !(1..=183).contains(&self.store.retention_days) {
            p.push(format!("store.retention_days: {} is outside 1..=183", self.store.retention_days));
        }
        if !(10..=60_000).contains(&self.store.flush_interval_ms) {
            p.push(format!("store.flush_interval_ms: {} is outside 10..=60000", self.store.flush_interval_ms));
        }
        if self.store.queue == 0 {
            p.push("store.queue: must be above 0".to_string());
        }
        if self.privacy.pseudonymize && self.privacy.key_file.is_none() {
            p.push("privacy.key_file: required when privacy.pseudonymize is true".to_string());
        }
        if self.devices.reread_secs == 0 {
            p.push("devices.reread_secs: must be above 0".to_string());
        }
        if self.attempts.queue == 0 {
            p.push("attempts.queue: must be above 0".to_string());
        }
        if tracing_subscriber::EnvFilter::try_new(self.log.filter()).is_err() {
            p.push(format!("log.level: {:?} is not a valid filter", self.log.level));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_is_loopback_only() {
        let c = Config::embedded();
        assert!(c.server.udp.iter().all(|a| a.ip().is_loopback()));
        assert!(c.access.allow.iter().all(|n| n.addr().is_loopback()));
        assert_eq!(c.upstream.servers[0].protocol, Protocol::Tls);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_location() {
        let err = Config::from_toml("[cache]\nmax_entrys = 5\n").unwrap_err().to_string();
        assert!(err.contains("max_entrys"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "[access]\nallow = []\n[upstream]\ntimeout_ms = 5\n\
                    [[upstream.servers]]\naddress = \"127.0.0.1:53\"\nprotocol = \"tls\"\n";
        let ConfigError::Invalid { problems, .. } = Config::from_toml(text).unwrap_err() else {
            panic!("expected validation problems");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("access.allow"));
        assert!(problems[1].starts_with("upstream.servers[0].tls_name"));
        assert!(problems[2].starts_with("upstream.timeout_ms"));
    }

    #[test]
    fn log_level_applies_to_nxguard_and_keeps_libraries_at_warn() {
        let filter = |level: &str| LogConfig { level: level.into(), format: LogFormat::Text }.filter();
        assert_eq!(filter("info"), "warn,nxguard=info");
        assert_eq!(filter("debug,hickory_net=info"), "warn,nxguard=debug,hickory_net=info");
        assert_eq!(filter("nxguard::attempt=off"), "warn,nxguard::attempt=off");
    }

    #[test]
    fn block_response_modes_parse() {
        let base = "[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n";
        for (word, mode) in [("nodata", BlockResponse::Nodata), ("refused", BlockResponse::Refused)] {
            let c = Config::from_toml(&format!("{base}[block]\nresponse = \"{word}\"\n")).unwrap();
            assert_eq!(c.block.response, mode);
        }
    }
}
