//! Upstreams named by host (`address = "host:port"`): the name is resolved through a fake
//! bootstrap server on loopback (`upstream.bootstrap`), a changed address is picked up once the
//! record's TTL ran out, and the last good address is kept while the bootstrap server fails.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::*;
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, Record, RecordType, rdata::A},
};
use nxguard::config::Config;

const UPSTREAM_NAME: &str = "upstream.example.net";

/// What the fake bootstrap server answers for `UPSTREAM_NAME`: an address (TTL 1), or
/// SERVFAIL when None.
type Answer = Arc<Mutex<Option<Ipv4Addr>>>;

async fn bootstrap_server(answer: Answer) -> SocketAddr {
    lookup_server(Duration::ZERO, move |q, reply| {
        let ours = q.name().to_ascii().trim_end_matches('.').eq_ignore_ascii_case(UPSTREAM_NAME);
        let current = *answer.lock().unwrap();
        match (ours, q.query_type(), current) {
            (true, RecordType::A, Some(ip)) => {
                reply.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(A(ip))));
            }
            (true, _, Some(_)) => {}
            (true, _, None) => reply.metadata.response_code = ResponseCode::ServFail,
            (false, _, _) => reply.metadata.response_code = ResponseCode::NXDomain,
        }
    })
    .await
}

/// Queries fresh names until `upstream` has been asked, for at most ~5 s.
async fn until_asked(server: SocketAddr, upstream: &FakeUpstream, round: &mut u32) {
    for _ in 0..100 {
        *round += 1;
        let reply = udp_ask(server, &query(&format!("www{round}.example.org."), RecordType::A, true)).await;
        assert_forwarded(&reply, RecordType::A);
        if upstream.calls() > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upstream at {} was never asked", upstream.addr);
}

#[tokio::test]
async fn an_upstream_named_by_host_follows_its_address_after_the_ttl() {
    let first = FakeUpstream::start().await;
    let port = first.addr.port();
    let mut second = FakeUpstream::start_on(SocketAddr::from(([127, 0, 0, 2], port))).await;
    let answer: Answer = Arc::new(Mutex::new(Some(Ipv4Addr::new(127, 0, 0, 1))));
    let bootstrap = bootstrap_server(Arc::clone(&answer)).await;
    let config = Config::from_toml(&format!(
        "[upstream]\ntimeout_ms = 2000\nbootstrap = [\"{bootstrap}\"]\n\
         [[upstream.servers]]\naddress = \"{UPSTREAM_NAME}:{port}\"\nprotocol = \"udp\"\n"
    ))
    .unwrap();
    let server = start_server(&config);
    let mut round = 0;
    until_asked(server.udp, &first, &mut round).await;
    assert_eq!(second.calls(), 0);

    // The name now points at 127.0.0.2: picked up once the 1 s TTL ran out.
    *answer.lock().unwrap() = Some(Ipv4Addr::new(127, 0, 0, 2));
    until_asked(server.udp, &second, &mut round).await;
    println!("moved to the new address after {round} queries");

    // The bootstrap server fails: the last good address stays in use.
    *answer.lock().unwrap() = None;
    // A sleep on purpose: the bootstrap answer's 1 s TTL must run out on the real clock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = second.calls();
    for i in 0..5 {
        let reply = udp_ask(server.udp, &query(&format!("kept{i}.example.org."), RecordType::A, true)).await;
        assert_forwarded(&reply, RecordType::A);
    }
    assert_eq!(second.calls(), before + 5, "the last good address answered");
    second.stop().await;
}

#[test]
fn a_host_name_needs_a_bootstrap_and_bad_addresses_are_rejected() {
    let err = Config::from_toml("[[upstream.servers]]\naddress = \"dns.example.net:53\"\n").unwrap_err().to_string();
    assert!(err.contains("upstream.bootstrap: required"), "{err}");
    let err = Config::from_toml("[[upstream.servers]]\naddress = \"dns example:53\"\n").unwrap_err().to_string();
    assert!(err.contains("not IP:port or host:port"), "{err}");
    let ok = Config::from_toml(
        "[upstream]\nbootstrap = [\"system\"]\n[[upstream.servers]]\naddress = \"dns.quad9.net:853\"\n\
         protocol = \"tls\"\ntls_name = \"dns.quad9.net\"\n",
    )
    .unwrap();
    assert_eq!(ok.upstream.servers[0].host.as_deref(), Some("dns.quad9.net"));
}
