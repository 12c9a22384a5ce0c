//! Reverse DNS names for devices (`devices.reverse_dns`): a fake PTR server on loopback names
//! two test clients and `report` shows those names with `rdns` as their source; a slow or dead
//! PTR server costs the blocked answer nothing and the record goes out with the address only.
//!
//! The devices sit behind a trusted relay (127.0.0.1) that names them by EDNS Client Subnet
//! (10.20.1.x): hickory-resolver answers every PTR under 127.in-addr.arpa itself with
//! "localhost" (RFC 6761 §6.3), so loopback client addresses cannot be named by a fake server.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::PTR},
};
use nxguard::{config::Config, evidence::devices::Source};

/// A PTR server on 127.0.0.1: 10.20.1.2 is laptop-0002.gemeente.example, 10.20.1.3
/// laptop-0003 and 10.20.1.4 laptop-0004, every other address NXDOMAIN; each answer after
/// `delay`.
async fn ptr_server(delay: Duration) -> SocketAddr {
    lookup_server(delay, |q, reply| {
        let owner = q.name().to_ascii().to_lowercase();
        let host = match owner.as_str() {
            "2.1.20.10.in-addr.arpa." => Some("laptop-0002.gemeente.example."),
            "3.1.20.10.in-addr.arpa." => Some("laptop-0003.gemeente.example."),
            "4.1.20.10.in-addr.arpa." => Some("laptop-0004.gemeente.example."),
            _ => None,
        };
        match (host, q.query_type()) {
            (Some(host), RecordType::PTR) => {
                let target = Name::from_ascii(host).unwrap();
                reply.add_answer(Record::from_rdata(q.name().clone(), 600, RData::PTR(PTR(target))));
            }
            _ => reply.metadata.response_code = ResponseCode::NXDomain,
        }
    })
    .await
}

/// The relay 127.0.0.1 is trusted; the inventory names 10.20.1.4 LT-0004.
fn rdns_config(upstream: SocketAddr, ptr: SocketAddr, dir: &std::path::Path) -> Config {
    let inventory = dir.join("devices.toml");
    std::fs::write(&inventory, "[[device]]\nname = \"LT-0004\"\nips = [\"10.20.1.4\"]\n").unwrap();
    let store = dir.join("attempts.sqlite");
    config_for(
        upstream,
        &format!(
            "[access]\ntrusted_relays = [\"127.0.0.1/32\"]\n[store]\npath = {store:?}\nflush_interval_ms = 50\n\
             [devices]\ninventory = {inventory:?}\nreverse_dns = [\"{ptr}\"]\nreverse_dns_timeout_ms = 300\n"
        ),
    )
}

/// Sends a blocked query through the relay for the device `device` (EDNS Client Subnet /32);
/// returns how long the answer took.
async fn blocked_from(server: SocketAddr, device: [u8; 4]) -> Duration {
    let mut packet = raw_query("www.tiktok.com", 1, false, false);
    packet[11] = 1;
    let subnet = [&[0, 8, 0, 8, 0, 1, 32, 0][..], &device].concat();
    nxguard::dns::wire::push_opt(&mut packet, false, 0, &subnet);
    let started = Instant::now();
    let reply = udp_exchange_raw(server, IpAddr::V4(Ipv4Addr::LOCALHOST), &packet, Duration::from_secs(5))
        .await
        .expect("no answer");
    let took = started.elapsed();
    assert_eq!(Message::from_vec(&reply).unwrap().metadata.response_code, ResponseCode::NXDomain);
    took
}

/// `nxguard report` on `db`, run again until its text shows `wanted` (the store writes in the
/// background), or the last text after 100 tries.
async fn report_once_it_shows(db: &std::path::Path, wanted: &str) -> String {
    let report = || {
        let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
            .args(["report", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let mut text = String::new();
    for _ in 0..100 {
        text = report();
        if text.contains(wanted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

#[tokio::test]
async fn report_names_devices_by_their_ptr_name_with_rdns_as_source() {
    let upstream = FakeUpstream::start().await;
    let ptr = ptr_server(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("attempts.sqlite");
    let mut server = start_server(&rdns_config(upstream.addr, ptr, dir.path()));
    for (from, name) in
        [([10, 20, 1, 2], "laptop-0002.gemeente.example"), ([10, 20, 1, 3], "laptop-0003.gemeente.example")]
    {
        // The first record goes out while the PTR lookup runs; a later one carries the name.
        let mut named = None;
        for _ in 0..50 {
            blocked_from(server.udp, from).await;
            let attempt = next_attempt(&mut server.attempts).await;
            if attempt.identity.source == Source::Rdns {
                named = Some(attempt);
                break;
            }
            assert_eq!(attempt.identity.source, Source::Edns);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attempt = named.expect("the PTR name never arrived");
        assert_eq!(attempt.identity.hostname.as_deref(), Some(name));
        assert_eq!(attempt.identity.key(), name);
    }
    // The inventory wins over a PTR name; a device the PTR server does not know stays an address.
    for device in [[10, 20, 1, 4], [10, 20, 1, 5]] {
        blocked_from(server.udp, device).await;
        next_attempt(&mut server.attempts).await;
    }
    // A sleep on purpose: the PTR lookups (answered at once) get time to land, so that the
    // next record shows the inventory winning over a name that did arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocked_from(server.udp, [10, 20, 1, 4]).await;
    let inventory = next_attempt(&mut server.attempts).await.identity;
    assert_eq!((inventory.key().as_str(), inventory.source), ("LT-0004", Source::InventoryIp));
    blocked_from(server.udp, [10, 20, 1, 5]).await;
    let unknown = next_attempt(&mut server.attempts).await.identity;
    assert_eq!((unknown.key().as_str(), unknown.source), ("10.20.1.5", Source::Edns));

    // A relay that reports only the device's MAC: the address at hand is the relay's, so its
    // PTR name ("localhost" here) must not name the device.
    let mac_only = || {
        let mut packet = raw_query("www.tiktok.com", 1, false, false);
        packet[11] = 1;
        nxguard::dns::wire::push_opt(&mut packet, false, 0, &[0xfd, 0xe9, 0, 6, 2, 0, 0, 0, 0, 7]);
        packet
    };
    for _ in 0..2 {
        udp_exchange_raw(server.udp, IpAddr::V4(Ipv4Addr::LOCALHOST), &mac_only(), Duration::from_secs(5))
            .await
            .unwrap();
        let identity = next_attempt(&mut server.attempts).await.identity;
        assert_eq!((identity.key().as_str(), identity.source), ("02:00:00:00:00:07", Source::Edns));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let text = report_once_it_shows(&db, "laptop-0003").await;
    println!("{text}");
    for name in ["laptop-0002.gemeente.example", "laptop-0003.gemeente.example"] {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} not in:\n{text}"));
        assert!(line.split_whitespace().any(|cell| cell == "rdns"), "{line}");
    }
}

#[tokio::test]
async fn a_slow_or_dead_ptr_server_costs_the_blocked_answer_nothing() {
    let upstream = FakeUpstream::start().await;
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let slow = ptr_server(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    for (what, ptr) in [("dead", dead.local_addr().unwrap()), ("slow", slow)] {
        let dir = dir.path().join(what);
        std::fs::create_dir(&dir).unwrap();
        let mut server = start_server(&rdns_config(upstream.addr, ptr, &dir));
        // Warm up the path (first packet), then measure for a device the PTR server knows.
        blocked_from(server.udp, [10, 20, 1, 9]).await;
        next_attempt(&mut server.attempts).await;
        let mut latencies = Vec::new();
        for _ in 0..5 {
            latencies.push(blocked_from(server.udp, [10, 20, 1, 2]).await);
            let attempt = next_attempt(&mut server.attempts).await;
            assert_eq!(attempt.identity.source, Source::Edns, "{what}: no name without a PTR answer");
            assert_eq!(attempt.identity.hostname, None);
            assert_eq!(attempt.identity.key(), "10.20.1.2");
        }
        println!("blocked answer latency with a {what} PTR server: {latencies:?}");
    }
}
