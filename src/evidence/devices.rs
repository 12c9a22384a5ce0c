//! Devices: who a client address is, resolved at query time (an address is reused within hours,
//! so the identity is stored with the attempt, not looked up later).
//!
//! Owns: the device inventory (TOML: name, owner, addresses and networks, MAC addresses), DHCP
//! lease files (dnsmasq, ISC Kea memfile CSV) giving address → MAC and hostname, the EDNS client
//! identity that trusted relays add (Client Subnet, RFC 7871; MAC address options 65001 binary
//! and 65073 text, as dnsmasq and Pi-hole send them), and re-reading the files when they change.
//! From clients that are not trusted relays, the EDNS identity options are ignored.
//! Does not own: deciding what is blocked, or storing records.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::DevicesConfig;

const OPTION_CLIENT_SUBNET: u16 = 8;
const OPTION_MAC_BINARY: u16 = 65001;
const OPTION_MAC_TEXT: u16 = 65073;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(text: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = text.trim().split([':', '-']);
        for byte in &mut out {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Where the device's identity came from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Inventory entry matched by MAC address.
    InventoryMac,
    /// Inventory entry matched by address or network.
    InventoryIp,
    /// A DHCP lease (MAC and hostname), no inventory entry.
    Dhcp,
    /// Only the EDNS identity a trusted relay sent.
    Edns,
    /// The address's PTR name (`devices.reverse_dns`), no inventory entry or lease.
    Rdns,
    /// Nothing but the address.
    Unknown,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::InventoryMac => "inventory-mac",
            Source::InventoryIp => "inventory-ip",
            Source::Dhcp => "dhcp",
            Source::Edns => "edns",
            Source::Rdns => "rdns",
            Source::Unknown => "unknown",
        }
    }
}

/// Who a client is, as far as nxguard can tell at query time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The device's own address: the client, or the address a trusted relay reported.
    pub ip: IpAddr,
    pub mac: Option<String>,
    pub hostname: Option<String>,
    /// Inventory name.
    pub device: Option<String>,
    pub owner: Option<String>,
    pub source: Source,
}

impl Identity {
    pub fn unknown(ip: IpAddr) -> Identity {
        Identity { ip, mac: None, hostname: None, device: None, owner: None, source: Source::Unknown }
    }

    /// The name a report groups by: inventory name, else MAC, else the PTR name (`rdns`, from
    /// the network's own DNS), else address. A DHCP hostname is never a key: the device picks it
    /// itself, so a phone calling itself `LT-0517` would be merged into that inventory device
    /// and change its owner's rating. The hostname stays in `hostname`, shown as the device's
    /// claim; the inventory matches by MAC or address only (`Snapshot::identify`).
    pub fn key(&self) -> String {
        self.key_or(|| address_text(self.ip))
    }

    /// `key`, with the device's address already in text (`address_text(self.ip)`), so that a
    /// record formats it once.
    pub fn key_with_address(&self, address: &str) -> String {
        self.key_or(|| address.to_string())
    }

    fn key_or(&self, address: impl FnOnce() -> String) -> String {
        if let Some(device) = &self.device {
            return device.clone();
        }
        if let Some(mac) = &self.mac {
            return mac.clone();
        }
        match (&self.hostname, self.source) {
            (Some(ptr_name), Source::Rdns) => ptr_name.clone(),
            _ => address(),
        }
    }
}

/// An address as text, as `IpAddr`'s `Display` writes it; IPv4 digit by digit, which costs a
/// tenth of going through `fmt` (the attempt record's write path formats two per record).
pub fn address_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// What a trusted relay said about the device behind it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdnsIdentity {
    pub ip: Option<IpAddr>,
    pub mac: Option<Mac>,
}

/// Reads Client Subnet (only a full-length prefix names one device) and MAC options.
pub fn edns_identity(options: &[u8]) -> EdnsIdentity {
    let mut found = EdnsIdentity::default();
    let mut rest = options;
    while rest.len() >= 4 {
        let code = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(data) = rest.get(4..4 + len) else { break };
        match code {
            OPTION_CLIENT_SUBNET if data.len() >= 4 => {
                let (family, prefix, address) = (u16::from_be_bytes([data[0], data[1]]), data[2], &data[4..]);
                found.ip = match (family, prefix) {
                    (1, 32) if address.len() == 4 => Some(IpAddr::from(<[u8; 4]>::try_from(address).expect("4 bytes"))),
                    (2, 128) if address.len() == 16 => {
                        Some(IpAddr::from(<[u8; 16]>::try_from(address).expect("16 bytes")))
                    }
                    _ => found.ip,
                };
            }
            OPTION_MAC_BINARY if data.len() == 6 => found.mac = Some(Mac(data.try_into().expect("6 bytes"))),
            OPTION_MAC_TEXT => found.mac = std::str::from_utf8(data).ok().and_then(Mac::parse).or(found.mac),
            _ => {}
        }
        rest = &rest[4 + len..];
    }
    found
}

#[derive(Debug, Error)]
pub enum DevicesError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Boxed: the parser's error is large, and start-up errors carry this one.
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{path}: device {device:?}: {mac:?} is not a MAC address")]
    Mac { path: PathBuf, device: String, mac: String },
    #[error("{path}: device {device:?}: {text:?} is not an address or network")]
    Address { path: PathBuf, device: String, text: String },
}

/// One inventory entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    /// Addresses ("10.20.1.23") and networks ("10.30.0.0/24").
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub macs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    device: Vec<Device>,
}

#[derive(Debug, Clone)]
struct Lease {
    mac: Option<Mac>,
    hostname: Option<String>,
}

/// A consistent view of the inventory and the leases.
#[derive(Debug, Default)]
pub struct Snapshot {
    devices: Vec<Device>,
    by_mac: HashMap<Mac, usize>,
    /// Exact addresses (host routes) first, then networks, most specific first.
    by_ip: HashMap<IpAddr, usize>,
    networks: Vec<(IpNet, usize)>,
    leases: HashMap<IpAddr, Lease>,
}

impl Snapshot {
    /// Builds a snapshot from an inventory and lease tables.
    fn build(devices: Vec<Device>, leases: HashMap<IpAddr, Lease>, path: &Path) -> Result<Snapshot, DevicesError> {
        let mut snapshot = Snapshot { leases, ..Snapshot::default() };
        for (index, device) in devices.iter().enumerate() {
            for mac in &device.macs {
                let parsed = Mac::parse(mac).ok_or_else(|| DevicesError::Mac {
                    path: path.into(),
                    device: device.name.clone(),
                    mac: mac.clone(),
                })?;
                snapshot.by_mac.insert(parsed, index);
            }
            for text in &device.ips {
                let net = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                    DevicesError::Address { path: path.into(), device: device.name.clone(), text: text.clone() }
                })?;
                if net.prefix_len() == net.max_prefix_len() {
                    snapshot.by_ip.insert(net.addr(), index);
                } else {
                    snapshot.networks.push((net, index));
                }
            }
        }
        snapshot.networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        snapshot.devices = devices;
        Ok(snapshot)
    }

    /// The addresses and networks of the inventory device named `device` or of every device of
    /// `owner` (case-insensitive), with the current DHCP leases of their MACs. Client groups use
    /// this when the policy is built, never per query.
    pub fn addresses_of(&self, device: Option<&str>, owner: Option<&str>) -> Vec<IpNet> {
        let chosen = |d: &Device| {
            device.is_some_and(|n| d.name.eq_ignore_ascii_case(n))
                || owner.is_some_and(|o| d.owner.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(o)))
        };
        let indices: Vec<usize> = self.devices.iter().enumerate().filter(|(_, d)| chosen(d)).map(|(i, _)| i).collect();
        let mut out: Vec<IpNet> = Vec::new();
        out.extend(self.by_ip.iter().filter(|(_, i)| indices.contains(i)).map(|(ip, _)| IpNet::from(*ip)));
        out.extend(self.networks.iter().filter(|(_, i)| indices.contains(i)).map(|(net, _)| *net));
        let macs: Vec<Mac> = self.by_mac.iter().filter(|(_, i)| indices.contains(i)).map(|(m, _)| *m).collect();
        out.extend(
            self.leases
                .iter()
                .filter(|(_, l)| l.mac.is_some_and(|m| macs.contains(&m)))
                .map(|(ip, _)| IpNet::from(*ip)),
        );
        out.sort();
        out.dedup();
        out
    }

    /// The identity of `client`, using what a trusted relay reported when there is any.
    pub fn identify(&self, client: IpAddr, edns: EdnsIdentity) -> Identity {
        let ip = edns.ip.unwrap_or(client);
        let lease = self.leases.get(&ip);
        let mac = edns.mac.or(lease.and_then(|l| l.mac));
        let hostname = lease.and_then(|l| l.hostname.clone());
        let by_mac = mac.and_then(|m| self.by_mac.get(&m)).map(|&i| (i, Source::InventoryMac));
        let by_ip = || {
            self.by_ip
                .get(&ip)
                .copied()
                .or_else(|| self.networks.iter().find(|(net, _)| net.contains(&ip)).map(|(_, i)| *i))
                .map(|i| (i, Source::InventoryIp))
        };
        let found = by_mac.or_else(by_ip);
        let source = match found {
            Some((_, source)) => source,
            None if lease.is_some() => Source::Dhcp,
            None if edns != EdnsIdentity::default() => Source::Edns,
            None => Source::Unknown,
        };
        let device = found.map(|(i, _)| &self.devices[i]);
        Identity {
            ip,
            mac: mac.map(|m| m.to_string()),
            hostname,
            device: device.map(|d| d.name.clone()),
            owner: device.and_then(|d| d.owner.clone()),
            source,
        }
    }
}

/// The inventory and lease files, re-read when they change.
pub struct Devices {
    config: DevicesConfig,
    snapshot: ArcSwap<Snapshot>,
    seen: std::sync::Mutex<Vec<Option<SystemTime>>>,
}

impl Devices {
    /// Reads every configured file; a broken inventory is an error (at start and in `check`).
    pub fn load(config: &DevicesConfig) -> Result<Devices, DevicesError> {
        let snapshot = read_all(config)?;
        Ok(Devices {
            config: config.clone(),
            snapshot: ArcSwap::from_pointee(snapshot),
            seen: std::sync::Mutex::new(modification_times(config)),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn identify(&self, client: IpAddr, edns: EdnsIdentity) -> Identity {
        self.snapshot.load().identify(client, edns)
    }

    /// Re-reads the files if any changed since the last read. On an error the previous view
    /// stays in force and the error is returned (logged by the caller).
    pub fn refresh(&self) -> Result<bool, DevicesError> {
        let now = modification_times(&self.config);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == now {
            return Ok(false);
        }
        *seen = now;
        self.snapshot.store(Arc::new(read_all(&self.config)?));
        Ok(true)
    }

    pub fn files(&self) -> Vec<PathBuf> {
        files(&self.config)
    }
}

fn files(config: &DevicesConfig) -> Vec<PathBuf> {
    config.inventory.iter().chain(&config.dnsmasq_leases).chain(&config.kea_leases).cloned().collect()
}

fn modification_times(config: &DevicesConfig) -> Vec<Option<SystemTime>> {
    files(config).iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn read_all(config: &DevicesConfig) -> Result<Snapshot, DevicesError> {
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|source| DevicesError::Read { path: path.into(), source });
    let devices = match &config.inventory {
        Some(path) => {
            let file: InventoryFile = toml::from_str(&read(path)?)
                .map_err(|source| DevicesError::Parse { path: path.into(), source: Box::new(source) })?;
            file.device
        }
        None => Vec::new(),
    };
    let mut leases = HashMap::new();
    // Lease files belong to the DHCP server and may be briefly absent while it rewrites them.
    for path in &config.dnsmasq_leases {
        if let Ok(text) = std::fs::read_to_string(path) {
            leases.extend(parse_dnsmasq_leases(&text));
        }
    }
    for path in &config.kea_leases {
        if let Ok(text) = std::fs::read_to_string(path) {
            leases.extend(parse_kea_leases(&text));
        }
    }
    let inventory_path = config.inventory.clone().unwrap_or_default();
    Snapshot::build(devices, leases, &inventory_path)
}

/// dnsmasq: `<expiry> <mac> <ip> <hostname|*> <client-id|*>` per line.
fn parse_dnsmasq_leases(text: &str) -> Vec<(IpAddr, Lease)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let ip: IpAddr = fields.get(2)?.parse().ok()?;
            let hostname = fields.get(3).filter(|h| **h != "*").map(std::string::ToString::to_string);
            Some((ip, Lease { mac: fields.get(1).and_then(|m| Mac::parse(m)), hostname }))
        })
        .collect()
}

/// ISC Kea memfile (lease4 CSV): columns by header name `address`, `hwaddr`, `hostname`; the
/// last line for an address wins (Kea appends updates).
fn parse_kea_leases(text: &str) -> Vec<(IpAddr, Lease)> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let Ok(headers) = reader.headers().cloned() else { return Vec::new() };
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(address), hwaddr, hostname) = (column("address"), column("hwaddr"), column("hostname")) else {
        return Vec::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|row| {
            let ip: IpAddr = row.get(address)?.parse().ok()?;
            let mac = hwaddr.and_then(|i| row.get(i)).and_then(Mac::parse);
            let hostname = hostname
                .and_then(|i| row.get(i))
                .filter(|h| !h.is_empty())
                .map(|h| h.trim_end_matches('.').to_string());
            Some((ip, Lease { mac, hostname }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVENTORY: &str = r#"
[[device]]
name = "LT-0423"
owner = "J. Jansen, Burgerzaken"
ips = ["10.20.1.23"]
macs = ["AA:BB:CC:00:00:01"]

[[device]]
name = "VPN pool Sociaal Domein"
owner = "Sociaal Domein"
ips = ["10.30.0.0/24"]
"#;

    fn snapshot(leases: &[(IpAddr, Lease)]) -> Snapshot {
        let file: InventoryFile = toml::from_str(INVENTORY).unwrap();
        Snapshot::build(file.device, leases.iter().cloned().collect(), Path::new("devices.toml")).unwrap()
    }

    #[test]
    fn inventory_by_address_network_and_mac() {
        let s = snapshot(&parse_dnsmasq_leases("1700000000 aa:bb:cc:00:00:01 10.20.9.9 laptop-x *\n"));
        let id = s.identify("10.20.1.23".parse().unwrap(), EdnsIdentity::default());
        assert_eq!((id.device.as_deref(), id.source), (Some("LT-0423"), Source::InventoryIp));
        let id = s.identify("10.30.0.77".parse().unwrap(), EdnsIdentity::default());
        assert_eq!(id.owner.as_deref(), Some("Sociaal Domein"));
        // A new address from DHCP, same MAC: still the inventory device.
        let id = s.identify("10.20.9.9".parse().unwrap(), EdnsIdentity::default());
        assert_eq!((id.device.as_deref(), id.source), (Some("LT-0423"), Source::InventoryMac));
        assert_eq!(id.hostname.as_deref(), Some("laptop-x"));
        let id = s.identify("192.0.2.1".parse().unwrap(), EdnsIdentity::default());
        assert_eq!((id.source, id.key()), (Source::Unknown, "192.0.2.1".to_string()));
    }

    #[test]
    fn a_dhcp_hostname_is_a_claim_never_the_inventory_device_or_its_key() {
        // A device not in the inventory names itself after one that is.
        let s = snapshot(&parse_dnsmasq_leases("1700000000 02:00:00:00:00:66 10.20.9.66 LT-0423 *\n"));
        let id = s.identify("10.20.9.66".parse().unwrap(), EdnsIdentity::default());
        assert_eq!((id.device.as_deref(), id.owner.as_deref(), id.source), (None, None, Source::Dhcp));
        assert_eq!(id.hostname.as_deref(), Some("LT-0423"), "kept, as the device's claim");
        assert_eq!(id.key(), "02:00:00:00:00:66");
        // Without a MAC in the lease, the address is the key.
        let s = snapshot(&[("10.20.9.67".parse().unwrap(), Lease { mac: None, hostname: Some("LT-0423".into()) })]);
        assert_eq!(s.identify("10.20.9.67".parse().unwrap(), EdnsIdentity::default()).key(), "10.20.9.67");
    }

    #[test]
    fn kea_csv_by_header() {
        let csv = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state\n\
                   10.20.5.5,de:ad:be:ef:00:01,,3600,1700000000,1,0,0,phone-7.,0\n";
        let s = snapshot(&parse_kea_leases(csv));
        let id = s.identify("10.20.5.5".parse().unwrap(), EdnsIdentity::default());
        assert_eq!(
            (id.mac.as_deref(), id.hostname.as_deref(), id.source),
            (Some("de:ad:be:ef:00:01"), Some("phone-7"), Source::Dhcp)
        );
    }

    #[test]
    fn edns_options_give_device_address_and_mac() {
        let mut options = Vec::new();
        options.extend_from_slice(&[0, 8, 0, 8, 0, 1, 32, 0, 10, 20, 1, 23]);
        options.extend_from_slice(&[0xfd, 0xe9, 0, 6, 0xaa, 0xbb, 0xcc, 0, 0, 1]);
        let edns = edns_identity(&options);
        assert_eq!(edns.ip, Some("10.20.1.23".parse().unwrap()));
        assert_eq!(edns.mac, Mac::parse("aa:bb:cc:00:00:01"));
        let text = [&[0xfe, 0x31, 0, 17][..], b"aa:bb:cc:00:00:02"].concat();
        assert_eq!(edns_identity(&text).mac, Mac::parse("aa:bb:cc:00:00:02"));
        let short_prefix = [0, 8, 0, 7, 0, 1, 24, 0, 10, 20, 1];
        assert_eq!(edns_identity(&short_prefix).ip, None, "a /24 does not name one device");
    }

    #[test]
    fn bad_mac_in_inventory_is_an_error() {
        let file: InventoryFile = toml::from_str("[[device]]\nname = \"x\"\nmacs = [\"zz\"]\n").unwrap();
        let err = Snapshot::build(file.device, HashMap::new(), Path::new("d.toml")).unwrap_err();
        assert!(err.to_string().contains("\"zz\" is not a MAC address"));
    }

    #[test]
    fn address_text_is_display() {
        for ip in [
            "0.0.0.0",
            "10.20.1.23",
            "192.168.100.255",
            "255.255.255.255",
            "1.0.10.100",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(address_text(ip), ip.to_string());
        }
        for n in [0u32, 1, 9, 10, 99, 100, 199, 200, 255, 256, 0x0a0b_0c0d, u32::MAX] {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(n));
            assert_eq!(address_text(ip), ip.to_string());
        }
    }
}
