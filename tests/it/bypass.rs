//! Bypass resistance: the Firefox canary, iCloud Private Relay, DDR (RFC 9462) and the optional
//! public-resolver category get their specified answers and appear in the attempt log under
//! their own category; each can be switched off.

use crate::common::*;
use hickory_proto::{op::ResponseCode, rr::RecordType};

#[tokio::test]
async fn canary_private_relay_and_ddr_by_default() {
    let upstream = FakeUpstream::start().await;
    // Even with REFUSED as the block response, these names get what clients expect.
    let mut server = start_server(&config_for(upstream.addr, "[block]\nresponse = \"refused\"\n"));
    let canary = udp_ask(server.udp, &query("use-application-dns.net.", RecordType::A, true)).await;
    assert_blocked(&canary, "Firefox DoH canary (Mozilla)", 300, true);
    for name in ["mask.icloud.com.", "mask-h2.icloud.com."] {
        let reply = udp_ask(server.udp, &query(name, RecordType::AAAA, true)).await;
        assert_blocked(&reply, "iCloud Private Relay (Apple)", 300, true);
    }
    let ddr = udp_ask(server.udp, &query("_dns.resolver.arpa.", RecordType::SVCB, true)).await;
    assert_eq!(ddr.metadata.response_code, ResponseCode::NoError);
    assert!(ddr.answers.is_empty());
    assert_eq!(ddr.authorities.len(), 1, "NODATA with an SOA");
    // Other iCloud names and the public resolvers (off by default) are forwarded.
    assert_forwarded(&udp_ask(server.udp, &query("www.icloud.com.", RecordType::A, true)).await, RecordType::A);
    assert_forwarded(&udp_ask(server.udp, &query("dns.google.", RecordType::A, true)).await, RecordType::A);
    let mut categories = Vec::new();
    for _ in 0..4 {
        categories.push(server.attempts.recv().await.unwrap().app_id().to_string());
    }
    assert_eq!(categories, ["firefox-canary", "private-relay", "private-relay", "ddr"]);
}

#[tokio::test]
async fn each_category_can_be_switched() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(
        upstream.addr,
        "[policy.bypass]\nfirefox_canary = false\nprivate_relay = false\nddr = false\npublic_resolvers = true\n",
    );
    let server = start_server(&config);
    for name in ["use-application-dns.net.", "mask.icloud.com."] {
        assert_forwarded(&udp_ask(server.udp, &query(name, RecordType::A, true)).await, RecordType::A);
    }
    for name in ["dns.google.", "mozilla.cloudflare-dns.com.", "nordvpn.com."] {
        let reply = udp_ask(server.udp, &query(name, RecordType::A, true)).await;
        assert_blocked(&reply, "Public DNS and VPN services (various)", 300, true);
    }
}
