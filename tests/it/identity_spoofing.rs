//! Identity spoofing: a device whose DHCP hostname is an inventory name (`LT-0517`) stays a
//! device of its own, keyed by its MAC, with the hostname kept as its claim; the inventory
//! device and its owner's rating do not change. Real inventory and lease files, the real
//! identity lookup, a real store and the report's summaries.

use std::net::IpAddr;

use crate::common;
use nxguard::{
    config::{Config, DevicesConfig, StoreConfig},
    evidence::{
        attempt::Attempt,
        devices::{Devices, EdnsIdentity, Identity, Source},
        store::{
            self,
            read::{Limits, Reader},
        },
    },
    policy::{self, Policy},
    review::report::{self, Filter, Summary},
};

/// 2026-11-20T00:00:00Z.
const DAY0: u64 = 1_795_132_800;
const OWNER: &str = "E. de Vries, Financiën";

const INVENTORY: &str = r#"
[[device]]
name = "LT-0517"
owner = "E. de Vries, Financiën"
ips = ["10.20.5.17"]
macs = ["02:00:00:00:05:17"]
"#;

/// A phone on the Wi-Fi that calls itself LT-0517 in its DHCP request.
const LEASES: &str = "1999999999 02:00:00:00:66:66 10.20.9.66 LT-0517 *\n";

fn attempt(policy: &Policy, identity: &Identity, day: u64, qname: &str) -> Attempt {
    common::blocked_by(policy, qname).from(identity.clone()).at(DAY0 + day * 86_400 + 9 * 3600).rule("builtin").build()
}

fn devices(dir: &std::path::Path) -> Devices {
    let (inventory, leases) = (dir.join("devices.toml"), dir.join("dnsmasq.leases"));
    std::fs::write(&inventory, INVENTORY).unwrap();
    std::fs::write(&leases, LEASES).unwrap();
    let config = DevicesConfig { inventory: Some(inventory), dnsmasq_leases: vec![leases], ..DevicesConfig::default() };
    Devices::load(&config).unwrap()
}

#[test]
fn a_dhcp_hostname_equal_to_an_inventory_name_is_not_merged_into_that_device() {
    let dir = tempfile::tempdir().unwrap();
    let devices = devices(dir.path());
    let policy = policy::load(&Config::embedded().policy).unwrap();
    let laptop = devices.identify("10.20.5.17".parse::<IpAddr>().unwrap(), EdnsIdentity::default());
    let phone = devices.identify("10.20.9.66".parse::<IpAddr>().unwrap(), EdnsIdentity::default());
    assert_eq!((laptop.device.as_deref(), laptop.source), (Some("LT-0517"), Source::InventoryIp));
    assert_eq!((phone.device.as_deref(), phone.owner.as_deref(), phone.source), (None, None, Source::Dhcp));
    assert_eq!(phone.hostname.as_deref(), Some("LT-0517"), "the hostname is kept, as the phone's claim");

    // The laptop followed one TikTok link; the phone runs TikTok on three days.
    let mut attempts = vec![attempt(&policy, &laptop, 0, "www.tiktok.com")];
    attempts.extend((0..3).map(|day| attempt(&policy, &phone, day, "api16-normal-c.tiktokv.com")));
    let path = dir.path().join("attempts.sqlite");
    store::insert_all(&path, &attempts, None, "ns1").unwrap();
    let mut db = Reader::open(&path.display().to_string(), &StoreConfig::default(), Limits::COMMAND_LINE).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut summaries =
        |filter: Filter| runtime.block_on(report::summaries(std::slice::from_mut(&mut db), &filter, None)).unwrap();

    let owners = summaries(Filter { owner: Some(OWNER.into()), ..Filter::default() });
    let rows: Vec<(&str, &str, u64)> =
        owners.iter().map(|s| (s.device.as_str(), s.assessment.as_str(), s.attempts)).collect();
    assert_eq!(rows, [("LT-0517", "link or embedded content", 1)], "the owner's rating is the laptop's own");

    let all = summaries(Filter::default());
    let phone_row: Vec<&Summary> = all.iter().filter(|s| s.device != "LT-0517").collect();
    assert_eq!(phone_row.len(), 1, "{all:?}");
    let p = phone_row[0];
    assert_eq!((p.device.as_str(), p.owner.as_str(), p.source.as_str()), ("02:00:00:00:66:66", "", "dhcp"));
    assert_eq!((p.attempts, p.assessment.as_str()), (3, "app likely installed"));
}
