//! What is banned: `[policy]`, its `bypass` table, its feeds (`[[policy.feeds]]`) and its client
//! groups (`[[policy.groups]]`).

use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

use super::BlockResponse;
use crate::domain::Kind;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of list files; absent = the lists compiled into the binary.
    pub domains_dir: Option<PathBuf>,
    /// Enforced apps by list id (file stem); absent = every list.
    pub apps: Option<Vec<String>>,
    /// Apps matched but not blocked: `app_modes = { temu = "log-only" }` (shadow mode). Absent
    /// apps are enforced.
    pub app_modes: BTreeMap<String, ListMode>,
    /// Further domains to block (and their subdomains), logged as the "local" category.
    pub extra: Vec<String>,
    /// Exceptions: these domains and their subdomains are never blocked.
    pub allow: Vec<String>,
    /// Bypass resistance (`[policy.bypass]`).
    pub bypass: BypassConfig,
    /// Check the config file and the list files for changes this often and reload when they
    /// change (as on SIGHUP); 0 = only on SIGHUP.
    pub watch_secs: u64,
    /// Where feeds keep their last good copy and their status (`feeds.json`); required when a
    /// feed is configured.
    pub cache_dir: Option<PathBuf>,
    /// A feed version with more than this percentage fewer entries than the accepted one is
    /// refused until `nxguard lists accept NAME` (a truncated download must not unblock apps).
    pub shrink_max_percent: u8,
    /// Subscribed lists (`[[policy.feeds]]`).
    pub feeds: Vec<FeedConfig>,
    /// Client groups with their own mode per app (`[[policy.groups]]`); first match wins.
    pub groups: Vec<GroupConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            domains_dir: None,
            apps: None,
            app_modes: BTreeMap::new(),
            extra: Vec::new(),
            allow: Vec::new(),
            bypass: BypassConfig::default(),
            watch_secs: 0,
            cache_dir: None,
            shrink_max_percent: 50,
            feeds: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// Whether a list's matches are blocked or only recorded.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ListMode {
    #[default]
    Enforce,
    /// Shadow: the name resolves, the attempt is recorded as log-only.
    LogOnly,
}

/// The formats a feed may be in.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// One domain per line.
    #[default]
    Domains,
    /// `0.0.0.0 name …` lines (hosts file).
    Hosts,
    /// `||name^` blocks, `@@||name^` allows.
    Adblock,
    /// `*.name` lines.
    Wildcard,
}

/// One subscribed list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Its id: letters, digits, '-' and '_'; names the cached copy and appears in the evidence.
    pub name: String,
    /// `https://`, `http://` or `file://` URL.
    pub url: String,
    pub format: FeedFormat,
    /// A shipped app id the entries belong to (e.g. "tiktok"); or else `category`.
    pub app: Option<String>,
    /// A display name for a list of its own (recorded with app id = the feed's name).
    pub category: Option<String>,
    /// The kind given to every entry (api, telemetry, cdn, web, alias); default unspecified.
    pub kind: Kind,
    /// How often the feed is asked for a new version (conditional GET).
    pub refresh_secs: u64,
    /// A larger body is refused.
    pub max_bytes: u64,
    /// The whole download (connect to last byte) must finish within this.
    pub timeout_secs: u64,
    pub mode: ListMode,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            name: String::new(),
            url: String::new(),
            format: FeedFormat::Domains,
            app: None,
            category: None,
            kind: Kind::Unspecified,
            // Once a day: what list publishers expect from subscribers.
            refresh_secs: 86_400,
            // 64 MiB holds a multi-million-entry list; beyond it something is wrong.
            max_bytes: 64 << 20,
            timeout_secs: 120,
            mode: ListMode::Enforce,
        }
    }
}

/// What a group does with an app's matches.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum GroupMode {
    /// Blocked and recorded.
    #[default]
    Enforce,
    /// Answered normally, recorded with mode log-only.
    LogOnly,
    /// Answered normally, not recorded.
    Exempt,
}

/// A client group.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    pub name: String,
    /// Addresses or networks ("10.1.2.0/24"), inventory device names, or `owner:Department`.
    pub clients: Vec<String>,
    /// The mode for apps not named in `apps`.
    pub mode: GroupMode,
    /// Mode per app id: `apps = { tiktok = "exempt" }`.
    pub apps: BTreeMap<String, GroupMode>,
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

/// A group's client entry, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRef<'a> {
    Net(ipnet::IpNet),
    Owner(&'a str),
    Device(&'a str),
}

impl GroupConfig {
    /// The client entries, classified: an address or network, `owner:…`, or a device name.
    pub fn client_refs(&self) -> impl Iterator<Item = ClientRef<'_>> {
        self.clients.iter().map(|text| {
            let text = text.trim();
            if let Some(owner) = text.strip_prefix("owner:") {
                ClientRef::Owner(owner.trim())
            } else if let Ok(net) = text.parse::<ipnet::IpNet>() {
                ClientRef::Net(net)
            } else if let Ok(ip) = text.parse::<std::net::IpAddr>() {
                ClientRef::Net(ip.into())
            } else {
                ClientRef::Device(text)
            }
        })
    }
}

impl PolicyConfig {
    /// The problems of the feeds and groups tables (part of `Config::validate`).
    pub fn validate_feeds_and_groups(&self, p: &mut Vec<String>) {
        self.validate_feeds(p);
        self.validate_groups(p);
    }

    /// `[[policy.feeds]]`: names unique and plain, URLs, one of app and category, limits.
    fn validate_feeds(&self, p: &mut Vec<String>) {
        if !self.feeds.is_empty() && self.cache_dir.is_none() {
            p.push("policy.cache_dir: required when policy.feeds lists a feed".to_string());
        }
        if self.shrink_max_percent > 100 {
            p.push(format!("policy.shrink_max_percent: {} is above 100", self.shrink_max_percent));
        }
        let valid_name = |n: &str| {
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let mut names = std::collections::HashSet::new();
        for (i, feed) in self.feeds.iter().enumerate() {
            let at = format!("policy.feeds[{i}]");
            if !valid_name(&feed.name) {
                p.push(format!("{at}.name: {:?} must be 1-64 letters, digits, '-' or '_'", feed.name));
            } else if !names.insert(feed.name.as_str()) {
                p.push(format!("{at}.name: {:?} is used twice", feed.name));
            }
            if !["https://", "http://", "file://"].iter().any(|s| feed.url.starts_with(s)) {
                p.push(format!("{at}.url: {:?} must start with https://, http:// or file://", feed.url));
            }
            match (&feed.app, &feed.category) {
                (Some(_), Some(_)) | (None, None) => p.push(format!("{at}: give exactly one of app and category")),
                (_, Some(c)) if c.trim().is_empty() => p.push(format!("{at}.category: empty")),
                _ => {}
            }
            if feed.refresh_secs == 0 || feed.max_bytes == 0 || feed.timeout_secs == 0 {
                p.push(format!("{at}: refresh_secs, max_bytes and timeout_secs must be above 0"));
            }
        }
    }

    /// `[[policy.groups]]`: names unique, clients listed once and reachable (first match wins).
    fn validate_groups(&self, p: &mut Vec<String>) {
        let mut group_names = std::collections::HashSet::new();
        let mut devices: BTreeMap<String, &str> = BTreeMap::new();
        let mut earlier: Vec<(ipnet::IpNet, &str)> = Vec::new();
        for (i, group) in self.groups.iter().enumerate() {
            let at = format!("policy.groups[{i}]");
            if group.name.trim().is_empty() {
                p.push(format!("{at}.name: empty"));
            } else if !group_names.insert(group.name.as_str()) {
                p.push(format!("{at}.name: {:?} is used twice", group.name));
            }
            if group.clients.is_empty() {
                p.push(format!("{at}.clients: empty; the group would never match"));
            }
            let mut nets = Vec::new();
            for client in group.client_refs() {
                match client {
                    // First match wins: an entry inside an earlier group's network never applies.
                    ClientRef::Net(net) => match earlier.iter().find(|(e, _)| e.contains(&net)) {
                        Some((e, owner)) => p.push(format!(
                            "{at}.clients: {net} never applies: group {owner:?} lists {e} earlier (first match wins)"
                        )),
                        None => nets.push(net),
                    },
                    ClientRef::Owner("") | ClientRef::Device("") => p.push(format!("{at}.clients: empty entry")),
                    ClientRef::Owner(name) | ClientRef::Device(name) => {
                        let key = client_key(&client, name);
                        if let Some(first) = devices.insert(key.clone(), &group.name) {
                            p.push(format!(
                                "{at}.clients: {key:?} is listed by group {first:?} too; a client gets the first match only"
                            ));
                        }
                    }
                }
            }
            earlier.extend(nets.into_iter().map(|n| (n, group.name.as_str())));
        }
    }
}

fn client_key(client: &ClientRef<'_>, name: &str) -> String {
    match client {
        ClientRef::Owner(_) => format!("owner:{name}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn problems(extra: &str) -> Vec<String> {
        let text = format!("[[upstream.servers]]\naddress = \"127.0.0.1:53\"\n{extra}");
        match Config::from_toml(&text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn feeds_are_validated() {
        let p = problems(
            "[[policy.feeds]]\nname = \"a b\"\nurl = \"ftp://x\"\n\
             [[policy.feeds]]\nname = \"ok\"\nurl = \"https://x\"\napp = \"tiktok\"\ncategory = \"Both\"\nrefresh_secs = 0\n",
        );
        let expected = [
            "policy.cache_dir",
            "policy.feeds[0].name",
            "policy.feeds[0].url",
            "policy.feeds[0]: give",
            "policy.feeds[1]: give",
            "policy.feeds[1]: refresh_secs",
        ];
        assert_eq!(p.len(), expected.len(), "{p:?}");
        for (problem, start) in p.iter().zip(expected) {
            assert!(problem.starts_with(start), "{problem} / {start}");
        }
        let ok = "[policy]\ncache_dir = \"/tmp/x\"\n[[policy.feeds]]\nname = \"f\"\nurl = \"file:///l\"\ncategory = \"C\"\nformat = \"hosts\"\n";
        assert_eq!(problems(ok), Vec::<String>::new());
    }

    #[test]
    fn group_entries_that_could_never_apply_are_refused() {
        let p = problems(
            "[[policy.groups]]\nname = \"first\"\nclients = [\"10.0.0.0/16\", \"laptop-1\", \"owner:ICT\"]\n\
             [[policy.groups]]\nname = \"second\"\nclients = [\"10.0.5.0/24\", \"10.1.0.0/16\", \"laptop-1\", \"owner:ICT\"]\nmode = \"exempt\"\n\
             [[policy.groups]]\nname = \"first\"\nclients = []\n",
        );
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].contains("10.0.5.0/24 never applies: group \"first\""), "{p:?}");
        assert!(p[1].contains("\"laptop-1\" is listed by group \"first\""), "{p:?}");
        assert!(p[2].contains("\"owner:ICT\" is listed by group \"first\""), "{p:?}");
        assert!(p[3].starts_with("policy.groups[2].name"), "{p:?}");
        assert!(p[4].starts_with("policy.groups[2].clients"), "{p:?}");
    }
}
