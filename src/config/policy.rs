//! What is banned: `[policy]` and its `bypass` table.

use serde::Deserialize;
use std::path::PathBuf;

use super::BlockResponse;

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
