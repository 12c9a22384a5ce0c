//! Serve-stale (RFC 8767): when no upstream answers, or every upstream answers with an error
//! rcode (SERVFAIL, REFUSED, NOTIMP, lasting FORMERR), an expired cached answer is served with
//! TTL 30 and EDE 3 within 1.8 s; an uncached name gets SERVFAIL within the same bound (EDE 23
//! for silence, EDE 22 for error answers); a name the current policy bans is blocked, never
//! served stale.

use std::time::{Duration, Instant};

use crate::common::*;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use nxguard::config::Config;

/// Cache entries live 1 s, so the test can let them expire.
const SHORT_TTL: &str = "[cache]\nmax_ttl_secs = 1\n";

fn silent_upstream_config(silent: std::net::SocketAddr, extra: &str) -> Config {
    Config::from_toml(&format!(
        "[upstream]\ntimeout_ms = 3000\n[[upstream.servers]]\naddress = \"{silent}\"\n{SHORT_TTL}{extra}"
    ))
    .unwrap()
}

#[tokio::test]
async fn expired_answers_are_served_stale_when_no_upstream_answers() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, SHORT_TTL));
    let fresh = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert_eq!(fresh.answers[0].ttl, 1);
    assert_forwarded(&udp_ask(server.udp, &query("www.example.net.", RecordType::A, true)).await, RecordType::A);

    // The upstream goes silent (a socket that never answers; its timeout is 3 s).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.running.reload(&silent_upstream_config(silent.local_addr().unwrap(), "")).unwrap();
    // A sleep on purpose: the served path reads the real clock, so the 1 s TTL must run out.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    let stale = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    let took = started.elapsed();
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(stale.answers[0].ttl, 30);
    assert_eq!(extended_error(&stale).map(|e| e.0), Some(3), "EDE 3 Stale Answer");
    assert!(took < Duration::from_millis(2500), "stale answer after {took:?}");

    let started = Instant::now();
    let uncached = udp_ask(server.udp, &query("never-seen.example.org.", RecordType::A, true)).await;
    assert_eq!(uncached.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(extended_error(&uncached).map(|e| e.0), Some(23), "EDE 23 Network Error: nothing answered");
    assert!(started.elapsed() < Duration::from_millis(3600), "bounded by the upstream timeout");

    // The policy now bans example.net: its stale answer is never served.
    let banned = silent_upstream_config(silent.local_addr().unwrap(), "[policy]\nextra = [\"example.net\"]\n");
    server.running.reload(&banned).unwrap();
    let reply = udp_ask(server.udp, &query("www.example.net.", RecordType::A, true)).await;
    assert_blocked(&reply, "Local policy", 300, true);
    let stats = &server.running.resolver.stats;
    assert_eq!(stats.outcome(nxguard::resolve::Outcome::Stale), 1);
}

#[tokio::test]
async fn uncached_names_get_servfail_within_1_8_s_with_the_default_timeout() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = Config::from_toml(&format!(
        "[[upstream.servers]]\naddress = \"{}\"\n[[upstream.servers]]\naddress = \"{}\"\n",
        silent.local_addr().unwrap(),
        silent.local_addr().unwrap()
    ))
    .unwrap();
    let server = start_server(&config);
    let started = Instant::now();
    let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_millis(1800), "{:?}", started.elapsed());
}

#[tokio::test]
async fn expired_answers_are_served_stale_when_the_upstream_answers_with_an_error_rcode() {
    // (rcode every query gets, upstream calls per client query: FORMERR is asked again
    // without EDNS).
    let cases = [
        (ResponseCode::Refused, 1),
        (ResponseCode::ServFail, 1),
        (ResponseCode::NotImp, 1),
        (ResponseCode::FormErr, 2),
    ];
    let mut running = Vec::new();
    for (code, _) in cases {
        let healthy = FakeUpstream::start().await;
        let server = start_server(&config_for(healthy.addr, SHORT_TTL));
        assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await, RecordType::A);
        let failing = FakeUpstream::start_faulty(Faults { rcode: Some(code), ..Faults::default() }).await;
        server.running.reload(&config_for(failing.addr, SHORT_TTL)).unwrap();
        running.push((server, failing, healthy));
    }
    // A sleep on purpose: the served path reads the real clock, so the 1 s TTL must run out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for ((server, failing, _), (code, calls)) in running.iter().zip(cases) {
        let stale = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
        assert_eq!(stale.metadata.response_code, ResponseCode::NoError, "{code:?}");
        assert_forwarded(&stale, RecordType::A);
        assert_eq!(stale.answers[0].ttl, 30, "{code:?}");
        assert_eq!(extended_error(&stale).map(|e| e.0), Some(3), "{code:?}: EDE 3 Stale Answer");
        assert_eq!(failing.calls(), calls, "{code:?}");

        let uncached = udp_ask(server.udp, &query("never-seen.example.org.", RecordType::A, true)).await;
        assert_eq!(uncached.metadata.response_code, ResponseCode::ServFail, "{code:?}");
        assert!(uncached.answers.is_empty());
        assert_eq!(extended_error(&uncached).map(|e| e.0), Some(22), "{code:?}: EDE 22 No Reachable Authority");
        assert_eq!(failing.calls(), 2 * calls, "{code:?}");
        assert_eq!(server.running.resolver.stats.outcome(nxguard::resolve::Outcome::Stale), 1);
    }
}
