//! The upstream pool: failover when a server dies, background recovery, the lowest-latency
//! strategy, and conditional forwarding of internal zones.

use std::time::Duration;

use crate::common::*;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use nxguard::config::Config;

fn two_servers(first: &FakeUpstream, second: &FakeUpstream, extra: &str) -> Config {
    Config::from_toml(&format!(
        "[upstream]\ntimeout_ms = 600\n{extra}\n[[upstream.servers]]\naddress = \"{}\"\n[[upstream.servers]]\naddress = \"{}\"\n",
        first.addr, second.addr
    ))
    .unwrap()
}

#[tokio::test]
async fn a_dead_first_upstream_moves_traffic_to_the_second_without_failed_queries() {
    let mut first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let server = start_server(&two_servers(&first, &second, ""));
    for i in 0..3 {
        assert_forwarded(
            &udp_ask(server.udp, &query(&format!("a{i}.example.org."), RecordType::A, false)).await,
            RecordType::A,
        );
    }
    assert_eq!((first.calls(), second.calls()), (3, 0), "ordered: the first server while it answers");
    first.stop().await;
    for i in 0..20 {
        let reply = udp_ask(server.udp, &query(&format!("b{i}.example.org."), RecordType::A, false)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "query {i} failed");
    }
    assert_eq!(second.calls(), 20, "every query was answered by the second server");
}

#[tokio::test]
async fn a_dead_upstream_is_skipped_and_found_again_by_background_probes() {
    let mut first = FakeUpstream::start().await;
    let second = FakeUpstream::start().await;
    let server = start_server(&two_servers(&first, &second, ""));
    let addr = first.addr;
    first.stop().await;
    for i in 0..6 {
        assert_forwarded(
            &udp_ask(server.udp, &query(&format!("c{i}.example.org."), RecordType::A, false)).await,
            RecordType::A,
        );
    }
    let errors = || server.running.resolver.live().upstreams.servers().next().unwrap().1.errors();
    assert_eq!(errors(), 2, "two failures mark the first server down; later queries skip it");
    // The first server comes back: a background probe (at most every 2 s) notices, and the
    // ordered strategy sends traffic to it again.
    let back = FakeUpstream::start_on(addr).await;
    let mut returned = false;
    for i in 0..40 {
        udp_ask(server.udp, &query(&format!("e{i}.example.org."), RecordType::A, false)).await;
        if back.calls() >= 2 {
            returned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(returned, "the recovered server got no traffic");
}

#[tokio::test]
async fn the_fastest_strategy_prefers_the_quicker_upstream() {
    let slow = FakeUpstream::start_with_delay(Duration::from_millis(60)).await;
    let fast = FakeUpstream::start().await;
    let server = start_server(&two_servers(&slow, &fast, "strategy = \"fastest\""));
    for i in 0..30 {
        assert_forwarded(
            &udp_ask(server.udp, &query(&format!("d{i}.example.org."), RecordType::A, false)).await,
            RecordType::A,
        );
    }
    assert!(slow.calls() <= 2, "slow upstream asked {} times", slow.calls());
    assert!(fast.calls() >= 28);
}

#[tokio::test]
async fn internal_zones_reach_only_the_internal_server() {
    let public = FakeUpstream::start().await;
    let internal = FakeUpstream::start().await;
    let config = Config::from_toml(&format!(
        "[[upstream.servers]]\naddress = \"{}\"\n[[upstream.zones]]\nzones = [\"corp.example\", \"10.in-addr.arpa\"]\n\
         servers = [{{ address = \"{}\" }}]\n",
        public.addr, internal.addr
    ))
    .unwrap();
    let server = start_server(&config);
    for name in ["dc1.corp.example.", "corp.example.", "5.0.20.10.in-addr.arpa."] {
        udp_ask(server.udp, &query(name, RecordType::A, false)).await;
    }
    assert_eq!((internal.calls(), public.calls()), (3, 0));
    udp_ask(server.udp, &query("www.example.org.", RecordType::A, false)).await;
    assert_eq!((internal.calls(), public.calls()), (3, 1));
}
