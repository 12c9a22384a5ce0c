//! Client groups: which group a client is in, and the group's mode for an app.
//!
//! Owns: the compiled `[[policy.groups]]` (addresses and networks per group, modes per app).
//! Device names and `owner:` departments are turned into addresses by the caller when the
//! policy is built (at start and on reload), never per query: this module does not import the
//! inventory (`evidence::devices` imports `policy`).
//! Only matched names are looked up here; with no group configured nothing is.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

use crate::config::{ClientRef, GroupConfig, GroupMode};

/// One group's modes.
#[derive(Debug, Clone)]
struct Group {
    mode: GroupMode,
    apps: Vec<(Box<str>, GroupMode)>,
}

/// The compiled groups. The first group (in config order) that holds a client is its group.
#[derive(Debug, Default)]
pub struct Groups {
    groups: Vec<Group>,
    names: Vec<String>,
    /// Single addresses (device inventories give many), to their first group.
    hosts: HashMap<IpAddr, u16, foldhash::fast::RandomState>,
    /// Networks, in config order.
    nets: Vec<(IpNet, u16)>,
    fingerprint: u64,
}

/// Client entries that named no known device or department (warned about, not fatal: the
/// inventory changes more often than the config).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unresolved(pub Vec<(String, String)>);

impl Groups {
    /// Compiles `configs`; `addresses` turns a device name or `owner:` entry into the device's
    /// addresses and networks (empty when unknown).
    pub fn build(configs: &[GroupConfig], addresses: impl Fn(&ClientRef<'_>) -> Vec<IpNet>) -> (Groups, Unresolved) {
        let mut groups = Groups::default();
        let mut unresolved = Unresolved::default();
        let mut text = String::new();
        for (index, config) in configs.iter().enumerate() {
            let index = index as u16;
            let mut apps: Vec<(Box<str>, GroupMode)> =
                config.apps.iter().map(|(id, mode)| (Box::from(id.as_str()), *mode)).collect();
            apps.sort_by(|a, b| a.0.cmp(&b.0));
            groups.groups.push(Group { mode: config.mode, apps });
            groups.names.push(config.name.clone());
            text.push_str(&format!("{}|{:?}|{:?}\n", config.name, config.mode, config.apps));
            for client in config.client_refs() {
                let nets = match client {
                    ClientRef::Net(net) => vec![net],
                    _ => addresses(&client),
                };
                if nets.is_empty() {
                    let written = match client {
                        ClientRef::Owner(o) => format!("owner:{o}"),
                        ClientRef::Device(d) => d.to_string(),
                        ClientRef::Net(n) => n.to_string(),
                    };
                    unresolved.0.push((config.name.clone(), written));
                }
                for net in nets {
                    text.push_str(&format!("{net} "));
                    if net.prefix_len() == net.max_prefix_len() {
                        groups.hosts.entry(net.addr()).or_insert(index);
                    } else {
                        groups.nets.push((net, index));
                    }
                }
            }
        }
        groups.fingerprint =
            text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        (groups, unresolved)
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// A stable hash of the groups and their resolved addresses (part of the policy version).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The group `client` is in (its index), if any: the first in config order.
    pub fn group_of(&self, client: IpAddr) -> Option<u16> {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        let host = if self.hosts.is_empty() { None } else { self.hosts.get(&client).copied() };
        let net = self.nets.iter().filter(|(net, _)| net.contains(&client)).map(|&(_, g)| g).min();
        match (host, net) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn name(&self, group: u16) -> Option<&str> {
        self.names.get(usize::from(group)).map(String::as_str)
    }

    /// The mode for `app` of `client`'s group; enforce for clients in no group.
    pub fn mode(&self, client: IpAddr, app: &str) -> GroupMode {
        let Some(group) = self.group_of(client).and_then(|g| self.groups.get(usize::from(g))) else {
            return GroupMode::Enforce;
        };
        match group.apps.binary_search_by(|(id, _)| (**id).cmp(app)) {
            Ok(i) => group.apps[i].1,
            Err(_) => group.mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, clients: &[&str], mode: GroupMode, apps: &[(&str, GroupMode)]) -> GroupConfig {
        GroupConfig {
            name: name.into(),
            clients: clients.iter().map(std::string::ToString::to_string).collect(),
            mode,
            apps: apps.iter().map(|(a, m)| (a.to_string(), *m)).collect(),
        }
    }

    #[test]
    fn first_group_in_config_order_wins_and_apps_override_the_group_mode() {
        let configs = [
            group("comms", &["10.0.0.0/24", "comms-phone"], GroupMode::Enforce, &[("tiktok", GroupMode::Exempt)]),
            group("pilot", &["10.0.0.0/16", "owner:ICT"], GroupMode::LogOnly, &[]),
        ];
        let (groups, unresolved) = Groups::build(&configs, |client| match client {
            ClientRef::Device("comms-phone") => vec!["10.9.9.9/32".parse().unwrap()],
            ClientRef::Owner("ICT") => vec!["10.0.0.5/32".parse().unwrap()],
            _ => vec![],
        });
        assert!(unresolved.0.is_empty());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(groups.mode(ip("10.0.0.7"), "tiktok"), GroupMode::Exempt);
        assert_eq!(groups.mode(ip("10.0.0.7"), "wechat"), GroupMode::Enforce);
        // In both groups (ICT's device sits in comms' network): the first group decides.
        assert_eq!(groups.mode(ip("10.0.0.5"), "wechat"), GroupMode::Enforce);
        assert_eq!(groups.mode(ip("10.9.9.9"), "tiktok"), GroupMode::Exempt);
        assert_eq!(groups.mode(ip("10.0.1.1"), "tiktok"), GroupMode::LogOnly);
        assert_eq!(groups.mode(ip("::ffff:10.0.1.1"), "tiktok"), GroupMode::LogOnly);
        assert_eq!(groups.mode(ip("192.168.1.1"), "tiktok"), GroupMode::Enforce);
        assert_eq!(groups.group_of(ip("10.0.1.1")).and_then(|g| groups.name(g)), Some("pilot"));
    }

    #[test]
    fn unknown_devices_and_departments_are_reported() {
        let configs = [group("g", &["ghost", "owner:Nobody", "10.1.0.0/16"], GroupMode::Exempt, &[])];
        let (groups, unresolved) = Groups::build(&configs, |_| vec![]);
        assert_eq!(unresolved.0, vec![("g".into(), "ghost".into()), ("g".into(), "owner:Nobody".into())]);
        assert!(!groups.is_empty());
    }
}
