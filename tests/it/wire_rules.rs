//! Wire hygiene (RFC 1035, 6891, 7766, 8482, 8906), access control and limits, checked with raw
//! packets against the running server.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use crate::common::*;
use hickory_proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{RData, RecordType},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SHORT: Duration = Duration::from_millis(300);

async fn raw_ask(server: SocketAddr, packet: &[u8]) -> Message {
    let reply = udp_exchange_raw(server, LOCAL, packet, Duration::from_secs(5)).await.expect("an answer");
    Message::from_vec(&reply).unwrap()
}

fn with_payload(mut message: Message, size: u16) -> Message {
    message.edns.as_mut().unwrap().set_max_payload(size);
    message
}

#[tokio::test]
async fn udp_answers_respect_512_and_the_client_size_capped_at_1232() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    // Fill the cache over TCP (100 A records, about 1.6 kB).
    assert_eq!(tcp_ask(server.tcp, &query("big.example.org.", RecordType::A, false)).await.answers.len(), 100);
    let cases = [(None, 512), (Some(600), 600), (Some(4096), 1232), (Some(100), 512)];
    for (size, limit) in cases {
        let q = match size {
            None => query("big.example.org.", RecordType::A, false),
            Some(size) => with_payload(query("big.example.org.", RecordType::A, true), size),
        };
        let raw = udp_exchange_raw(server.udp, LOCAL, &q.to_vec().unwrap(), Duration::from_secs(5)).await.unwrap();
        assert!(raw.len() <= limit, "{} > {limit} for {size:?}", raw.len());
        let reply = Message::from_vec(&raw).unwrap();
        assert!(reply.metadata.truncation, "TC set for {size:?}");
        assert_eq!(reply.edns.is_some(), size.is_some(), "OPT kept on truncation when the query had one");
    }
}

#[tokio::test]
async fn do_bit_is_echoed_and_never_set_for_do0() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let mut with_do = query("www.example.org.", RecordType::A, true);
    with_do.edns.as_mut().unwrap().set_dnssec_ok(true);
    assert!(udp_ask(server.udp, &with_do).await.edns.unwrap().flags().dnssec_ok);
    let without = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert!(!without.edns.unwrap().flags().dnssec_ok);
}

#[tokio::test]
async fn edns_version_above_0_gets_badvers_and_unknown_opcodes_notimp() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let mut q = query("www.example.org.", RecordType::A, true);
    q.edns.as_mut().unwrap().set_version(1);
    let reply = udp_ask(server.udp, &q).await;
    // 16 is BADVERS for OPT (RFC 6891); hickory names the shared code BADSIG.
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.unwrap().version(), 0);
    let mut status = query("www.example.org.", RecordType::A, false);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(udp_ask(server.udp, &status).await.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test]
async fn any_over_udp_is_minimal_and_over_tcp_forwarded() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::ANY, true)).await;
    assert_eq!(reply.answers.len(), 1);
    let RData::HINFO(hinfo) = &reply.answers[0].data else { panic!("not HINFO: {reply:?}") };
    assert_eq!(hinfo.cpu.as_ref(), b"RFC8482");
    assert_eq!(upstream.calls(), 0);
    let reply = tcp_ask(server.tcp, &query("www.example.org.", RecordType::ANY, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test]
async fn records_off_the_chain_are_stripped_before_client_and_cache() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    for _ in 0..2 {
        let reply = udp_ask(server.udp, &query("inject.example.org.", RecordType::A, true)).await;
        assert_eq!(reply.answers.len(), 1, "{reply:?}");
        assert_eq!(reply.answers[0].name.to_ascii(), "inject.example.org.");
        assert!(reply.additionals.is_empty());
    }
    assert_eq!(upstream.calls(), 1, "the scrubbed answer was cached");
    let victim = udp_ask(server.udp, &query("victim.example.com.", RecordType::A, true)).await;
    assert_eq!(
        victim.answers[0].data,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 1))),
        "not the injected address"
    );
}

#[tokio::test]
async fn cname_loop_gives_servfail() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = udp_ask(server.udp, &query("loop.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn formerr_to_edns_is_retried_once_without_edns() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let reply = udp_ask(server.udp, &query("noedns.example.org.", RecordType::A, true)).await;
    assert_forwarded(&reply, RecordType::A);
    assert!(reply.edns.is_some(), "the client still gets its OPT from nxguard");
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn access_list_answers_refuses_or_drops_over_udp_and_tcp() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(
        upstream.addr,
        "[access]\nallow = [\"127.0.0.1/32\", \"127.0.0.2/32\"]\nrefuse = [\"127.0.0.2/32\"]\n",
    );
    let server = start_server(&config);
    let packet = query("www.example.org.", RecordType::A, false).to_vec().unwrap();
    let ask = |from: [u8; 4]| udp_exchange_raw(server.udp, IpAddr::from(from), &packet, SHORT);
    let allowed = Message::from_vec(&ask([127, 0, 0, 1]).await.unwrap()).unwrap();
    assert_eq!(allowed.metadata.response_code, ResponseCode::NoError);
    let refused = Message::from_vec(&ask([127, 0, 0, 2]).await.unwrap()).unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(ask([127, 0, 0, 3]).await.is_none(), "unlisted clients get no reply at all");

    let tcp_from = |from: [u8; 4]| {
        let packet = packet.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((from, 0))).unwrap();
            let mut stream = socket.connect(server.tcp).await.unwrap();
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&packet);
            stream.write_all(&framed).await.unwrap();
            let mut len = [0u8; 2];
            tokio::time::timeout(SHORT, stream.read_exact(&mut len)).await.ok().and_then(Result::ok).map(|_| len)
        }
    };
    assert!(tcp_from([127, 0, 0, 2]).await.is_some(), "REFUSED over TCP");
    assert!(tcp_from([127, 0, 0, 3]).await.is_none(), "nothing over TCP");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_tc_while_others_are_answered() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(upstream.addr, "[limits]\nclient_qps = 1\nclient_burst = 5\n");
    let server = start_server(&config);
    let packet = query("tiktok.com.", RecordType::A, false).to_vec().unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    for _ in 0..20 {
        socket.send_to(&packet, server.udp).await.unwrap();
    }
    let mut truncated = 0;
    let mut blocked = 0;
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.unwrap().unwrap();
        let reply = Message::from_vec(&buf[..n]).unwrap();
        if reply.metadata.truncation {
            truncated += 1;
        } else if reply.metadata.response_code == ResponseCode::NXDomain {
            blocked += 1;
        }
    }
    assert!((5..=7).contains(&blocked), "burst of 5 answered ({blocked})");
    assert_eq!(truncated + blocked, 20);
    let other =
        udp_exchange_raw(server.udp, IpAddr::from([127, 0, 0, 3]), &packet, Duration::from_secs(5)).await.unwrap();
    assert_eq!(Message::from_vec(&other).unwrap().metadata.response_code, ResponseCode::NXDomain);
    // Over TCP (where a truncated client goes) the same client is answered.
    assert_blocked(&tcp_ask(server.tcp, &query("tiktok.com.", RecordType::A, false)).await, "TikTok", 300, false);
    assert!(server.running.resolver.stats.outcome(nxguard::resolve::Outcome::RateLimited) >= 13);
}

#[tokio::test]
async fn tcp_connections_per_client_are_capped() {
    let upstream = FakeUpstream::start().await;
    let config = config_for(upstream.addr, "[limits]\ntcp_max_connections_per_client = 2\n");
    let server = start_server(&config);
    let first = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let second = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    // A sleep on purpose: the server must have accepted both before the third arrives, and an
    // accepted-but-idle connection shows nothing a test could poll for.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "third connection closed by the server");
    drop((first, second));
}

/// Packets a parser must survive; after each, the server still answers.
#[tokio::test]
async fn malformed_packets_never_stop_the_server() {
    let upstream = FakeUpstream::start().await;
    let server = start_server(&config_for(upstream.addr, ""));
    let good = query("www.example.org.", RecordType::A, false).to_vec().unwrap();
    let header = |qd: u8| vec![0x12, 0x34, 0x01, 0x00, 0, qd, 0, 0, 0, 0, 0, 0];
    let with = |qd: u8, body: &[u8]| [header(qd), body.to_vec()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad label type 0x40", with(1, &[0x41, b'a', 0, 0, 1, 0, 1])),
        ("bad label type 0x80", with(1, &[0x81, b'a', 0, 0, 1, 0, 1])),
        ("compression loop", with(1, &[0xc0, 12, 0, 1, 0, 1])),
        ("pointer out of range", with(1, &[0xc3, 0xff, 0, 1, 0, 1])),
        ("truncated header", vec![0x12, 0x34, 0x01]),
        ("question count 0", header(0)),
        (
            "question count 2",
            [good.clone(), good[12..].to_vec()]
                .concat()
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 5 { 2 } else { *b })
                .collect(),
        ),
        ("answer count beyond the data", good.iter().enumerate().map(|(i, b)| if i == 7 { 5 } else { *b }).collect()),
        ("label longer than the packet", with(1, &[0x3f, b'a', b'b'])),
        ("oversized datagram", [good.clone(), vec![0u8; 8000]].concat()),
        ("empty", vec![]),
    ];
    for (what, packet) in cases {
        if let Some(reply) = udp_exchange_raw(server.udp, LOCAL, &packet, SHORT).await {
            let reply = Message::from_vec(&reply).unwrap_or_else(|e| panic!("{what}: unparseable reply {e}"));
            assert_eq!(reply.metadata.response_code, ResponseCode::FormErr, "{what}");
        }
        assert_forwarded(&raw_ask(server.udp, &good).await, RecordType::A);
    }
}
