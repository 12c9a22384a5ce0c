//! Configuration: one TOML file, typed and strict.
//!
//! Owns: the config types, their defaults (each safe on its own), parsing, and `validate`, which
//! reports every problem at once with its location. The tables live in one file per room that
//! reads them (`listen`, `resolve`, `upstream`, `policy`, `evidence`, `ops`, `review`); all are re-exported
//! here, so `config::StoreConfig` names a table wherever it lives.
//! Does not own: loading domain lists (`policy::load`) or acting on the settings. The ground
//! floor: imports no other room but `domain` (the syntax and kinds of listed names).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

mod evidence;
mod listen;
mod ops;
mod policy;
mod resolve;
mod restart;
mod review;
mod upstream;
mod zone;

pub use evidence::*;
pub use listen::*;
pub use ops::*;
pub use policy::*;
pub use resolve::*;
pub use review::*;
pub use upstream::*;
pub use zone::*;

/// Servers nxguard asks for its own lookups (PTR names, upstream host names): a list of
/// addresses (port 53 unless given), or the system's resolver configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameServers {
    /// /etc/resolv.conf, via hickory-resolver's system configuration.
    System,
    /// These servers, asked in this order.
    Listed(Vec<std::net::SocketAddr>),
}

impl NameServers {
    /// Reads a config list; None when it is empty (the feature is off).
    pub fn parse(list: &[String]) -> Result<Option<NameServers>, NameServersError> {
        if list.is_empty() {
            return Ok(None);
        }
        if list.iter().any(|s| s == "system") {
            return if list.len() == 1 {
                Ok(Some(NameServers::System))
            } else {
                Err(NameServersError::SystemWithAddresses)
            };
        }
        let parse = |text: &String| {
            text.parse::<std::net::SocketAddr>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                .map_err(|source| NameServersError::NotAnAddress { text: text.clone(), source })
        };
        Ok(Some(NameServers::Listed(list.iter().map(parse).collect::<Result<_, _>>()?)))
    }
}

/// Why a list of name servers (`upstream.bootstrap`, `devices.reverse_dns`) is unusable.
#[derive(Debug, Error)]
pub enum NameServersError {
    #[error("\"system\" cannot be combined with addresses")]
    SystemWithAddresses,
    #[error("{text:?} is not an address, address:port or \"system\"")]
    NotAnAddress {
        text: String,
        #[source]
        source: std::net::AddrParseError,
    },
}

/// The embedded default: loopback only, forwarding to Quad9 over DNS-over-TLS.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The TOML parser's text ends in a newline; the message stops before it.
    #[error("{origin}: {}", source.to_string().trim_end())]
    Parse { origin: String, source: toml::de::Error },
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
    pub console: ConsoleConfig,
    pub rpz: RpzConfig,
    pub ingest: IngestConfig,
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
        let config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { origin: origin.to_string(), source })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { origin: origin.to_string(), problems })
        }
    }

    /// Upstream servers given by host name, in any group.
    fn upstream_hosts(&self) -> impl Iterator<Item = &str> {
        let zoned = self.upstream.zones.iter().flat_map(|z| &z.servers);
        self.upstream.servers.iter().chain(zoned).filter_map(|s| s.host.as_deref())
    }

    /// Every problem, each with the key it concerns.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.validate_server(&mut p);
        self.validate_access_and_limits(&mut p);
        self.validate_upstream_zones(&mut p);
        self.validate_upstream_servers(&mut p);
        self.validate_upstream_lookups(&mut p);
        self.validate_answers_and_policy(&mut p);
        self.validate_evidence(&mut p);
        p.extend(zone_problems(&self.rpz, &self.ingest));
        p.extend(self.console.problems());
        p
    }

    /// `[server]`: listen addresses, TCP bounds, the certificate of the encrypted listeners.
    fn validate_server(&self, p: &mut Vec<String>) {
        let other_service = !self.rpz.listen.is_empty() || !self.ingest.dnstap.is_empty();
        if self.server.udp.is_empty() && self.server.tcp.is_empty() && !other_service {
            p.push("server: no udp or tcp listen address (nor rpz.listen or ingest.dnstap)".to_string());
        }
        if self.server.tcp_idle_timeout_ms == 0 {
            p.push("server.tcp_idle_timeout_ms: must be above 0".to_string());
        }
        if self.server.tcp_max_in_flight_per_connection == 0 {
            p.push("server.tcp_max_in_flight_per_connection: must be above 0".to_string());
        }
        let encrypted = !self.server.tls.is_empty()
            || !self.server.https.is_empty()
            || !self.server.quic.is_empty()
            || !self.server.h3.is_empty();
        for (key, file) in [("tls_cert_file", &self.server.tls_cert_file), ("tls_key_file", &self.server.tls_key_file)]
        {
            if encrypted && file.is_none() {
                p.push(format!("server.{key}: required when server.tls, https, quic or h3 lists an address"));
            }
        }
        if !self.server.https_path.starts_with('/') {
            p.push("server.https_path: must start with '/'".to_string());
        }
    }

    /// `[access]` and `[limits]`: never an open resolver, caps above 0.
    fn validate_access_and_limits(&self, p: &mut Vec<String>) {
        if self.access.allow.is_empty() {
            p.push("access.allow: no client networks listed; nxguard refuses to run as an open resolver".to_string());
        }
        if self.limits.max_in_flight == 0 {
            p.push("limits.max_in_flight: must be above 0".to_string());
        }
        if self.limits.tcp_max_connections == 0 || self.limits.tcp_max_connections_per_client == 0 {
            p.push("limits.tcp_max_connections*: must be above 0".to_string());
        }
        if !(100..=60_000).contains(&self.limits.handshake_timeout_ms) {
            p.push(format!("limits.handshake_timeout_ms: {} is outside 100..=60000", self.limits.handshake_timeout_ms));
        }
    }

    /// `upstream.servers` present, and each `[[upstream.zones]]` names zones and servers.
    fn validate_upstream_zones(&self, p: &mut Vec<String>) {
        if self.upstream.servers.is_empty() {
            p.push("upstream.servers: no upstream server".to_string());
        }
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
    }

    /// Each upstream server, main or zoned: TLS names and paths fit its protocol.
    fn validate_upstream_servers(&self, p: &mut Vec<String>) {
        let zone_servers = self.upstream.zones.iter().enumerate().flat_map(|(z, zone)| {
            zone.servers.iter().enumerate().map(move |(i, s)| (format!("upstream.zones[{z}].servers[{i}]"), s))
        });
        let main_servers = self.upstream.servers.iter().enumerate().map(|(i, s)| (format!("upstream.servers[{i}]"), s));
        for (at, s) in main_servers.chain(zone_servers) {
            let encrypted = matches!(s.protocol, Protocol::Tls | Protocol::Https | Protocol::Quic);
            if encrypted && s.tls_name.as_deref().is_none_or(str::is_empty) {
                p.push(format!("{at}.tls_name: required for protocol tls, https and quic"));
            }
            if !encrypted && (s.tls_name.is_some() || s.ca_file.is_some()) {
                p.push(format!("{at}: tls_name and ca_file apply only to tls, https and quic"));
            }
            if s.path.is_some() && s.protocol != Protocol::Https {
                p.push(format!("{at}.path: applies only to https"));
            }
            if s.path.as_deref().is_some_and(|path| !path.starts_with('/')) {
                p.push(format!("{at}.path: must start with '/'"));
            }
        }
    }

    /// `upstream.bootstrap` (needed for host names) and `upstream.timeout_ms`.
    fn validate_upstream_lookups(&self, p: &mut Vec<String>) {
        match NameServers::parse(&self.upstream.bootstrap) {
            Err(problem) => p.push(format!("upstream.bootstrap: {problem}")),
            Ok(None) if self.upstream_hosts().next().is_some() => {
                p.push("upstream.bootstrap: required when an upstream address is a host name".to_string());
            }
            Ok(_) => {}
        }
        if !(100..=30_000).contains(&self.upstream.timeout_ms) {
            p.push(format!("upstream.timeout_ms: {} is outside 100..=30000", self.upstream.timeout_ms));
        }
    }

    /// `[cache]`, `[block]` and `[policy]`: TTL bounds, listed names, feeds and groups.
    fn validate_answers_and_policy(&self, p: &mut Vec<String>) {
        if self.cache.min_ttl_secs > self.cache.max_ttl_secs {
            p.push("cache.min_ttl_secs: greater than cache.max_ttl_secs".to_string());
        }
        if self.block.ttl_secs > 86_400 {
            p.push("block.ttl_secs: above 86400 (a day); unblocking would take too long to reach clients".to_string());
        }
        for (key, names) in [("policy.extra", &self.policy.extra), ("policy.allow", &self.policy.allow)] {
            for name in names {
                if let Err(problem) = crate::domain::check_domain(name) {
                    p.push(format!("{key}: {problem}"));
                }
            }
        }
        self.policy.validate_feeds_and_groups(p);
    }

    /// `[store]`, `[privacy]`, `[devices]`, `[attempts]` and `[log]`.
    fn validate_evidence(&self, p: &mut Vec<String>) {
        p.extend(self.store.problems());
        if self.privacy.pseudonymize && self.privacy.key_file.is_none() {
            p.push("privacy.key_file: required when privacy.pseudonymize is true".to_string());
        }
        if self.devices.reread_secs == 0 {
            p.push("devices.reread_secs: must be above 0".to_string());
        }
        if let Err(problem) = NameServers::parse(&self.devices.reverse_dns) {
            p.push(format!("devices.reverse_dns: {problem}"));
        }
        if !(10..=5_000).contains(&self.devices.reverse_dns_timeout_ms) {
            p.push(format!(
                "devices.reverse_dns_timeout_ms: {} is outside 10..=5000",
                self.devices.reverse_dns_timeout_ms
            ));
        }
        if self.attempts.queue == 0 {
            p.push("attempts.queue: must be above 0".to_string());
        }
        if tracing_subscriber::EnvFilter::try_new(self.log.filter()).is_err() {
            p.push(format!("log.level: {:?} is not a valid filter", self.log.level));
        }
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
    fn a_handshake_timeout_outside_its_range_is_a_problem() {
        for bad in [0, 99, 60_001] {
            let text = format!("[limits]\nhandshake_timeout_ms = {bad}\n");
            let ConfigError::Invalid { problems, .. } = Config::from_toml(&text).unwrap_err() else {
                panic!("expected validation problems");
            };
            assert!(problems.iter().any(|p| p.starts_with("limits.handshake_timeout_ms")), "{bad}: {problems:?}");
        }
        assert_eq!(Config::embedded().limits.handshake_timeout_ms, 5_000);
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
