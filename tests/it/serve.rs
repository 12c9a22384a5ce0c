//! End-to-end behaviour of `nxguard serve`: real sockets on 127.0.0.1:0, a fake upstream that
//! counts its calls, and a DNS client built on hickory-proto.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::{
    evidence::attempt::Via,
    resolve::Transport,
    resolve::{Client, Outcome, Step},
};

const BLOCK_TTL: u32 = 300;

#[tokio::test]
async fn blocked_names_get_nxdomain_soa_and_ede_over_udp_and_tcp() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let types = [RecordType::A, RecordType::AAAA, RecordType::HTTPS, RecordType::MX, RecordType::TXT, RecordType::ANY];
    for name in ["tiktok.com.", "a.b.c.d.e.f.tiktokv.com.", "WWW.TikTok.COM."] {
        for qtype in types {
            for edns in [true, false] {
                let q = query(name, qtype, edns);
                assert_blocked(&udp_ask(server.udp, &q).await, "TikTok (ByteDance) is banned", BLOCK_TTL, edns);
                assert_blocked(&tcp_ask(server.tcp, &q).await, "TikTok (ByteDance) is banned", BLOCK_TTL, edns);
            }
        }
    }
    assert_eq!(upstream.calls(), 0, "blocked names never reach the upstream");
}

#[tokio::test]
async fn blocked_answer_echoes_the_question_case_and_do_bit() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let q = raw_query("Api.TikTokV.com", 1, true, true);
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let raw = udp_exchange_raw(server.udp, local, &q, Duration::from_secs(5)).await.unwrap();
    assert_eq!(raw_question_name(&raw), "Api.TikTokV.com");
    let reply = Message::from_vec(&raw).unwrap();
    assert!(reply.edns.as_ref().unwrap().flags().dnssec_ok);
    assert!(reply.metadata.recursion_available);
}

#[tokio::test]
async fn every_app_of_the_ban_is_blocked() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let samples = [
        ("tiktokcdn.com.", "TikTok"),
        ("lemon8-app.com.", "Lemon8"),
        ("capcut.com.", "CapCut"),
        ("pinduoduo.com.", "Pinduoduo"),
        ("temu.com.", "Temu"),
        ("camscanner.com.", "CamScanner"),
        ("shein.com.", "Shein"),
        ("turbovpn.com.", "TurboVPN"),
        ("weixin.qq.com.", "WeChat"),
        ("ucweb.com.", "UC Browser"),
        ("ushareit.com.", "SHAREit"),
    ];
    for (name, app) in samples {
        let reply = udp_ask(server.udp, &query(&format!("x.{name}"), RecordType::A, true)).await;
        assert_blocked(&reply, app, BLOCK_TTL, true);
    }
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn near_misses_and_shared_parents_are_forwarded() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let names = ["nottiktok.com.", "tiktok.com.example.org.", "qq.com.", "mail.qq.com.", "qpic.cn.", "zendesk.com."];
    for name in names {
        assert_forwarded(&udp_ask(server.udp, &query(name, RecordType::A, true)).await, RecordType::A);
    }
    assert_eq!(upstream.calls(), names.len());
}

#[tokio::test]
async fn allowed_answers_are_cached_and_their_ttl_counts_down() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let q = query("www.example.org.", RecordType::AAAA, true);
    let first = udp_ask(server.udp, &q).await;
    assert_forwarded(&first, RecordType::AAAA);
    assert_eq!(first.answers[0].ttl, UPSTREAM_TTL);
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mixed_case = raw_query("WWW.Example.ORG", 28, true, false);
    let raw = udp_exchange_raw(server.udp, local, &mixed_case, Duration::from_secs(5)).await.unwrap();
    assert_eq!(raw_question_name(&raw), "WWW.Example.ORG", "0x20 case echoed from the cache");
    let second = Message::from_vec(&raw).unwrap();
    assert_forwarded(&second, RecordType::AAAA);
    assert_eq!(upstream.calls(), 1, "second ask served from the cache");
    assert!(second.answers[0].ttl <= UPSTREAM_TTL);

    // The same cache, asked 100 s later (time is passed in): the TTL is 100 lower.
    let resolver = &server.running.resolver;
    let client = Client { addr: "127.0.0.1:5353".parse().unwrap(), transport: Transport::Udp };
    let mut out = Vec::new();
    let step =
        resolver.answer_locally(&q.to_vec().unwrap(), client, &mut out, Instant::now() + Duration::from_secs(100));
    assert_eq!(step.outcome(), Some(Outcome::Cached));
    let aged = Message::from_vec(&out).unwrap();
    assert!((UPSTREAM_TTL - 101..=UPSTREAM_TTL - 100).contains(&aged.answers[0].ttl), "{}", aged.answers[0].ttl);
    assert_eq!(upstream.calls(), 1);
    assert_eq!(resolver.stats.outcome(Outcome::Cached), 2);
}

#[tokio::test]
async fn negative_answers_are_cached_per_rfc2308() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    for _ in 0..3 {
        let reply = udp_ask(server.udp, &query("nx.example.org.", RecordType::A, false)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(reply.authorities.len(), 1, "upstream SOA passed through");
    }
    assert_eq!(upstream.calls(), 1);
    let client = Client { addr: "127.0.0.1:5353".parse().unwrap(), transport: Transport::Udp };
    let mut out = Vec::new();
    let q = query("nx.example.org.", RecordType::A, false).to_vec().unwrap();
    let later = Instant::now() + Duration::from_secs(61);
    let step = server.running.resolver.answer_locally(&q, client, &mut out, later);
    assert!(matches!(step, Step::Upstream(_)), "negative TTL was min(SOA TTL, MINIMUM) = 60 s");
}

#[tokio::test]
async fn cname_into_a_banned_domain_is_blocked() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_server(&config_for(upstream.addr, ""));
    let q = query("alias-to-tiktok.example.net.", RecordType::A, true);
    assert_blocked(&udp_ask(server.udp, &q).await, "TikTok", BLOCK_TTL, true);
    // From the cache too.
    assert_blocked(&tcp_ask(server.tcp, &q).await, "TikTok", BLOCK_TTL, true);
    assert_eq!(upstream.calls(), 1);
    let attempt = server.attempts.recv().await.unwrap();
    assert_eq!(attempt.qname, "alias-to-tiktok.example.net");
    assert_eq!(attempt.domain, "tiktokcdn.com");
    assert_eq!(attempt.via, Via::Cname { alias: "v16.tiktokcdn.com".into() });
}

#[tokio::test]
async fn allow_exception_inside_a_banned_domain_is_forwarded() {
    let upstream = FakeUpstream::start().await;
    let config =
        config_for(upstream.addr, "[policy]\nallow = [\"support.tiktok.com\", \"alias-to-tiktok.example.net\"]\n");
    let server = start_server(&config);
    assert_forwarded(&udp_ask(server.udp, &query("support.tiktok.com.", RecordType::A, true)).await, RecordType::A);
    assert_forwarded(&udp_ask(server.udp, &query("eu.support.tiktok.com.", RecordType::A, true)).await, RecordType::A);
    assert_blocked(
        &udp_ask(server.udp, &query("www.tiktok.com.", RecordType::A, true)).await,
        "TikTok",
        BLOCK_TTL,
        true,
    );
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn apps_extra_domains_and_response_mode_follow_the_config() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(
        upstream.addr,
        "[policy]\napps = [\"temu\"]\nextra = [\"banned.example\"]\n[block]\nresponse = \"nodata\"\nttl_secs = 60\n",
    );
    let server = start_server(&config);
    let reply = udp_ask(server.udp, &query("temu.com.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities[0].ttl, 60);
    let reply = udp_ask(server.udp, &query("x.banned.example.", RecordType::A, true)).await;
    assert_eq!(extended_error(&reply).unwrap().1, "Local policy (the network operator) is banned on this network");
    assert_forwarded(&udp_ask(server.udp, &query("tiktok.com.", RecordType::A, true)).await, RecordType::A);
}

#[tokio::test]
async fn silent_upstream_gives_servfail_within_the_timeout() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let started = Instant::now();
    let reply = udp_ask(server.udp, &query("silent.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by upstream.timeout_ms (400 ms)");
    let reply = tcp_ask(server.tcp, &query("silent2.example.org.", RecordType::A, false)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn dead_upstream_gives_servfail() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = start_server(&config_for(dead, ""));
    let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn truncated_upstream_answer_is_retried_over_tcp() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = tcp_ask(server.tcp, &query("big.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.answers.len(), 100);
    assert!(!reply.metadata.truncation);
    // Over UDP the client gets TC=1 (its 1232-byte limit) and retries over TCP itself.
    let reply = udp_ask(server.udp, &query("big.example.org.", RecordType::A, true)).await;
    assert!(reply.metadata.truncation);
    assert!(reply.edns.is_some(), "OPT kept on truncation");
}

#[tokio::test]
async fn oversized_upstream_datagram_is_asked_again_over_tcp() {
    // An upstream that ignores the advertised 1232 bytes and sends 6 KB over UDP: the answer
    // does not fit the receive buffer, so it is not trusted cut short but fetched over TCP.
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = tcp_ask(server.tcp, &query("huge.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 3, "the TCP answer, not a cut UDP one");
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing_and_serving_goes_on() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let wait = Duration::from_millis(300);
    // A header announcing a question that is not there.
    let garbage = [0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x3f, b'a'];
    let reply = udp_exchange_raw(server.udp, local, &garbage, Duration::from_secs(2)).await.expect("FORMERR");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Too short for a header: nothing to answer.
    assert!(udp_exchange_raw(server.udp, local, &[1, 2, 3], wait).await.is_none());
    // A response packet (QR=1) is never answered.
    let mut response = query("www.example.org.", RecordType::A, false).to_vec().unwrap();
    response[2] |= 0x80;
    assert!(udp_exchange_raw(server.udp, local, &response, wait).await.is_none());
    assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, false)).await, RecordType::A);
    assert_eq!(server.running.resolver.stats.outcome(Outcome::Malformed), 2);
}

#[tokio::test]
async fn every_blocked_query_produces_exactly_one_attempt_record() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_server(&config_for(upstream.addr, ""));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    for name in ["a.tiktokv.com.", "temu.com.", "www.example.org."] {
        socket.send_to(&query(name, RecordType::AAAA, true).to_vec().unwrap(), server.udp).await.unwrap();
        let mut buf = [0u8; 1500];
        socket.recv_from(&mut buf).await.unwrap();
    }
    let first = server.attempts.recv().await.unwrap();
    assert_eq!(first.client, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    assert_eq!(first.transport, Transport::Udp);
    assert_eq!(first.qname, "a.tiktokv.com");
    assert_eq!(first.qtype, "AAAA");
    assert_eq!(first.app_id(), "tiktok");
    assert_eq!(first.app.app.vendor, "ByteDance");
    assert_eq!(first.domain, "tiktokv.com");
    assert_eq!(first.via, Via::Query);
    let second = server.attempts.recv().await.unwrap();
    assert_eq!((second.app_id(), second.domain.as_str()), ("temu", "temu.com"));
    let more = tokio::time::timeout(Duration::from_millis(200), server.attempts.recv()).await;
    assert!(more.is_err(), "the forwarded query made no record");
}

#[tokio::test]
async fn outcome_counters_add_up_to_the_queries_received() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    for name in ["tiktok.com.", "www.example.org.", "www.example.org.", "silent.example.org."] {
        udp_ask(server.udp, &query(name, RecordType::A, false)).await;
    }
    tcp_ask(server.tcp, &query("nx.example.org.", RecordType::A, false)).await;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    udp_exchange_raw(server.udp, local, &[0xab, 0xcd, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0], Duration::from_secs(2)).await;
    let stats = &server.running.resolver.stats;
    let sum: u64 = Outcome::ALL.iter().map(|o| stats.outcome(*o)).sum();
    assert_eq!(stats.total_received(), 6);
    assert_eq!(sum, 6);
    assert_eq!(stats.outcome(Outcome::Blocked), 1);
    assert_eq!(stats.outcome(Outcome::Cached), 1);
    assert_eq!(stats.outcome(Outcome::Forwarded), 2);
    assert_eq!(stats.outcome(Outcome::UpstreamFailed), 1);
    assert_eq!(stats.outcome(Outcome::Malformed), 1);
}
