//! DNS-over-QUIC (RFC 9250) and DoH3 listeners on quinn: a certificate made in the test, the
//! server in-process with `server.quic` and `server.h3` on 127.0.0.1:0, hickory-net's QUIC and
//! HTTP/3 client streams and raw quinn and h3 clients trusting only that certificate, and
//! attackers on 127.0.0.2 to 127.0.0.51 sending real (replayed) and junk Initials.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::common::{quic::*, *};
use hickory_net::{
    h3::H3ClientStream,
    quic::QuicClientStream,
    xfer::{DnsExchange, DnsHandle, FirstAnswer},
};
use hickory_proto::{
    op::{DnsRequest, DnsRequestOptions, Message},
    rr::RecordType,
};
use nxguard::{
    config::Config,
    evidence::attempt::Attempt,
    listen::Listeners,
    listen::quic::Admission,
    resolve::Outcome,
    resolve::Transport,
    server::{self, Running},
};
use tokio::sync::mpsc;

const TIKTOK: &str = "TikTok (ByteDance) is banned on this network";

struct QuicServer {
    running: Running,
    udp: SocketAddr,
    quic: SocketAddr,
    h3: SocketAddr,
    attempts: mpsc::UnboundedReceiver<Attempt>,
    /// The certificate's PEM, which the clients trust.
    trusted: String,
    config: Config,
    dir: tempfile::TempDir,
}

/// A server with a fresh self-signed certificate for `TLS_NAME`, DoQ and DoH3 on loopback.
fn start_quic_server(upstream: SocketAddr, extra: &str) -> QuicServer {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let config: Config =
        config_for(upstream, &format!("[server]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n{extra}"));
    let listeners = Listeners::bind_loopback().unwrap().with_quic_loopback().unwrap();
    let (tx, attempts) = mpsc::unbounded_channel();
    let running = server::start(&config, listeners, vec![tx]).unwrap();
    let (udp, quic, h3) = (running.udp_addrs[0], running.quic_addrs[0], running.h3_addrs[0]);
    QuicServer { running, udp, quic, h3, attempts, trusted: generated.cert.pem(), config, dir }
}

/// hickory-net's clients set their own ALPN.
fn hickory_tls(trusted_pem: &str) -> rustls::ClientConfig {
    let mut tls = client_tls(trusted_pem, b"");
    tls.alpn_protocols.clear();
    tls
}

type Exchange = DnsExchange<hickory_net::runtime::TokioRuntimeProvider>;

async fn hickory_doq(server: &QuicServer) -> Exchange {
    let stream = QuicClientStream::builder()
        .crypto_config(hickory_tls(&server.trusted))
        .build(server.quic, TLS_NAME.into())
        .await
        .expect("DoQ connection");
    let (exchange, background) = DnsExchange::from_stream(stream);
    tokio::spawn(background);
    exchange
}

async fn hickory_h3(server: &QuicServer) -> Exchange {
    let stream = H3ClientStream::builder()
        .crypto_config(hickory_tls(&server.trusted))
        .build(server.h3, TLS_NAME.into(), "/dns-query".into())
        .await
        .expect("DoH3 connection");
    let (exchange, background) = DnsExchange::from_stream(stream);
    tokio::spawn(background);
    exchange
}

/// One query over an open connection; None when no answer came within 3 s.
async fn ask(exchange: &Exchange, message: &Message) -> Option<Message> {
    let mut options = DnsRequestOptions::default();
    options.use_edns = message.edns.is_some();
    let request = DnsRequest::new(message.clone(), options);
    let answer = tokio::time::timeout(Duration::from_secs(3), exchange.send(request).first_answer()).await;
    match answer {
        Ok(Ok(response)) => Some(Message::from_vec(&response.into_buffer()).unwrap()),
        _ => None,
    }
}

/// The message re-encoded with ID 0 (DoQ requires ID 0) and, with `ttls_zeroed`, every TTL 0
/// (a cached answer's TTLs count down between two reads).
fn normalized(message: &Message, ttls_zeroed: bool) -> Vec<u8> {
    let mut message = message.clone();
    message.metadata.id = 0;
    if ttls_zeroed {
        for record in message.answers.iter_mut().chain(message.authorities.iter_mut()) {
            record.ttl = 0;
        }
    }
    message.to_vec().unwrap()
}

#[tokio::test]
async fn doq_and_doh3_answer_like_udp_through_the_same_pipeline() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_quic_server(upstream.addr, "");
    let doq = hickory_doq(&server).await;
    let h3 = hickory_h3(&server).await;
    for (transport, exchange) in [(Transport::Quic, &doq), (Transport::H3, &h3)] {
        let mut blocked_query = query("www.tiktok.com.", RecordType::A, true);
        blocked_query.metadata.id = 0;
        let blocked = ask(exchange, &blocked_query).await.expect("blocked answer");
        assert_blocked(&blocked, TIKTOK, 300, true);
        let over_udp = udp_ask(server.udp, &blocked_query).await;
        assert_eq!(
            normalized(&blocked, false),
            normalized(&over_udp, false),
            "{transport:?}: the blocked answer differs from UDP's"
        );
        let attempt = next_attempt(&mut server.attempts).await;
        assert_eq!(attempt.transport, transport);
        next_attempt(&mut server.attempts).await;

        let name = format!("www.{}.example.org.", transport.as_str());
        let mut allowed_query = query(&name, RecordType::A, true);
        allowed_query.metadata.id = 0;
        let forwarded = ask(exchange, &allowed_query).await.expect("forwarded answer");
        assert_forwarded(&forwarded, RecordType::A);
        let over_udp = udp_ask(server.udp, &allowed_query).await;
        assert_eq!(normalized(&forwarded, true), normalized(&over_udp, true), "{transport:?}: forwarded differs");
        let stats = &server.running.resolver.stats;
        assert_eq!(stats.outcome_on(transport, Outcome::Blocked), 1);
        assert_eq!(stats.outcome_on(transport, Outcome::Forwarded), 1);
    }
    let metrics = nxguard::ops::metrics::render(&server.running.resolver);
    assert!(metrics.contains("nxguard_queries_received_total{transport=\"quic\"} 2"), "{metrics}");
    assert!(metrics.contains("nxguard_queries_received_total{transport=\"h3\"} 2"), "{metrics}");
}

#[tokio::test]
async fn doq_answers_a_cached_name_while_a_slow_upstream_answer_is_pending() {
    // Within the harness's upstream timeout of 400 ms.
    let slow = FakeUpstream::start_with_delay(Duration::from_millis(300)).await;
    let server = start_quic_server(slow.addr, "");
    let doq = hickory_doq(&server).await;
    let mut slow_query = query("slow.example.org.", RecordType::A, true);
    slow_query.metadata.id = 0;
    let mut blocked_query = query("www.tiktok.com.", RecordType::A, true);
    blocked_query.metadata.id = 0;
    let started = Instant::now();
    let (slow_done, blocked_done) = tokio::join!(
        async {
            ask(&doq, &slow_query).await.expect("slow answer");
            started.elapsed()
        },
        async {
            // Sent after the slow query, on the same connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
            ask(&doq, &blocked_query).await.expect("blocked answer");
            started.elapsed()
        }
    );
    println!("DoQ on one connection: slow upstream answer after {slow_done:?}, blocked answer after {blocked_done:?}");
    assert!(blocked_done < slow_done, "the blocked answer waited for the slow one");
}

/// The DoT certificate's reload reaches the QUIC listeners: new connections get the new one.
#[tokio::test]
async fn a_reload_swaps_the_certificate_for_new_quic_connections() {
    let upstream = FakeUpstream::start().await;
    let mut server = start_quic_server(upstream.addr, "");
    let old = server.trusted.clone();
    let generated = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    std::fs::write(server.dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(server.dir.path().join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    server.running.reload(&server.config).unwrap();
    server.trusted = generated.cert.pem();
    let mut message = query("www.example.org.", RecordType::A, true);
    message.metadata.id = 0;
    assert_forwarded(&ask(&hickory_doq(&server).await, &message).await.expect("an answer"), RecordType::A);
    assert_forwarded(&ask(&hickory_h3(&server).await, &message).await.expect("an answer"), RecordType::A);
    let stale = QuicClientStream::builder().crypto_config(hickory_tls(&old)).build(server.quic, TLS_NAME.into()).await;
    assert!(stale.is_err(), "a client trusting only the old certificate must fail");
}

const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Polls `done` until it holds, for at most 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `datagram` from a fresh socket on `from` and returns the first reply within `wait`.
async fn first_reply(from: std::net::IpAddr, target: SocketAddr, datagram: &[u8], wait: Duration) -> Option<Vec<u8>> {
    udp_exchange_raw(target, from, datagram, wait).await
}

fn doq_query(name: &str, id: u16) -> Vec<u8> {
    let mut message = query(name, RecordType::A, true);
    message.metadata.id = id;
    message.to_vec().unwrap()
}

#[tokio::test]
async fn a_source_outside_access_allow_gets_no_handshake() {
    let upstream = FakeUpstream::start().await;
    let server = start_quic_server(upstream.addr, "[access]\nallow = [\"10.0.0.0/8\"]\n");
    for (transport, target, alpn) in [(Transport::Quic, server.quic, &b"doq"[..]), (Transport::H3, server.h3, b"h3")] {
        let initial = capture_initials(1, &server.trusted, alpn).await.remove(0);
        let reply = first_reply(LOCALHOST, target, &initial, Duration::from_millis(500)).await;
        assert!(reply.is_none(), "{transport:?}: a source outside access.allow got {:?}", reply.map(|r| r.len()));
        let handshakes = &server.running.handshakes;
        eventually("the attempt is counted", || handshakes.get(transport, Admission::OutsideAllow) == 1).await;
        assert_eq!(handshakes.get(transport, Admission::Established), 0);
        let client = quinn_client(&server.trusted, alpn, LOCALHOST);
        let connect = tokio::time::timeout(Duration::from_millis(500), doq_connect(&client, target)).await;
        assert!(!matches!(connect, Ok(Ok(_))), "{transport:?}: an outside client completed a handshake");
        assert_eq!(server.running.resolver.stats.received_on(transport), 0);
    }
    assert_eq!(upstream.calls(), 0);
    // quinn answers this Initial without a handshake, after deriving its keys; from outside
    // access.allow it must not get that far.
    let short_cid = initial_with_short_cid();
    let inside = start_quic_server(upstream.addr, "");
    let reply = first_reply(LOCALHOST, inside.quic, &short_cid, Duration::from_secs(3)).await;
    assert_eq!(reply.as_deref().and_then(packet_type), Some(PacketType::Initial), "inside: quinn's close");
    let reply = first_reply(LOCALHOST, server.quic, &short_cid, Duration::from_millis(500)).await;
    assert!(reply.is_none(), "outside access.allow, quinn read the Initial and answered");
}

#[tokio::test]
async fn unproven_sources_get_a_retry_past_the_threshold_and_real_clients_follow_it() {
    let upstream = FakeUpstream::start().await;
    let always = start_quic_server(upstream.addr, "quic_unvalidated_handshakes_max = 0\n");
    let initial = capture_initials(1, &always.trusted, b"doq").await.remove(0);
    let reply = first_reply(LOCALHOST, always.quic, &initial, Duration::from_secs(3)).await.expect("a reply");
    assert_eq!(packet_type(&reply), Some(PacketType::Retry), "over the threshold an Initial gets a Retry");
    let handshakes = &always.running.handshakes;
    eventually("the Retry is counted", || handshakes.get(Transport::Quic, Admission::Retry) == 1).await;
    let client = quinn_client(&always.trusted, b"doq", LOCALHOST);
    let answer = doq_ask(&client, always.quic, &doq_query("www.example.org.", 0)).await.expect("an answer");
    assert_forwarded(&Message::from_vec(&answer).unwrap(), RecordType::A);
    assert_eq!(handshakes.get(Transport::Quic, Admission::Retry), 2, "the real client was asked too");
    assert_eq!(handshakes.get(Transport::Quic, Admission::Established), 1, "and proved its address");

    let below = start_quic_server(upstream.addr, "");
    let initial = capture_initials(1, &below.trusted, b"doq").await.remove(0);
    let reply = first_reply(LOCALHOST, below.quic, &initial, Duration::from_secs(3)).await.expect("a reply");
    assert_eq!(packet_type(&reply), Some(PacketType::Initial), "below the threshold the handshake starts at once");
    assert_eq!(below.running.handshakes.get(Transport::Quic, Admission::Retry), 0);
}

#[tokio::test]
async fn a_stalled_quic_handshake_is_dropped_at_the_handshake_timeout_and_frees_its_place() {
    let upstream = FakeUpstream::start().await;
    // One place for an unproven handshake; the idle bound far beyond the test, so only
    // limits.handshake_timeout_ms can end the stalled one.
    let extra =
        "quic_unvalidated_handshakes_max = 1\ntcp_idle_timeout_ms = 60000\n[limits]\nhandshake_timeout_ms = 1000\n";
    let server = start_quic_server(upstream.addr, extra);
    let initials = capture_initials(2, &server.trusted, b"doq").await;
    let from = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    let wait = Duration::from_secs(3);
    let reply = first_reply(from(2), server.quic, &initials[0], wait).await.expect("a first flight");
    assert_eq!(packet_type(&reply), Some(PacketType::Initial), "the stalled handshake started");
    let reply = first_reply(from(3), server.quic, &initials[1], wait).await.expect("a reply");
    assert_eq!(packet_type(&reply), Some(PacketType::Retry), "while it stalls, it holds the one place");
    let handshakes = &server.running.handshakes;
    eventually("the stalled handshake is dropped", || handshakes.get(Transport::Quic, Admission::TimedOut) == 1).await;
    let reply = first_reply(from(4), server.quic, &initials[1], wait).await.expect("a reply");
    assert_eq!(packet_type(&reply), Some(PacketType::Initial), "its place is free again");
}

#[tokio::test]
async fn over_the_connection_caps_an_attempt_is_refused_and_counted() {
    let upstream = FakeUpstream::start().await;
    let server = start_quic_server(upstream.addr, "[limits]\ntcp_max_connections_per_client = 1\n");
    let client = quinn_client(&server.trusted, b"doq", LOCALHOST);
    let first = doq_connect(&client, server.quic).await.expect("the first connection");
    let handshakes = &server.running.handshakes;
    eventually("the first is established", || handshakes.get(Transport::Quic, Admission::Established) == 1).await;
    let second = doq_connect(&client, server.quic).await;
    let Err(DoqError::Connect(quinn::ConnectionError::ConnectionClosed(close))) = second else {
        panic!("the second connection from the same source was not refused: {second:?}");
    };
    assert_eq!(close.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED);
    assert_eq!(handshakes.get(Transport::Quic, Admission::Refused), 1);
    let other = quinn_client(&server.trusted, b"doq", "127.0.0.2".parse().unwrap());
    let answer = doq_ask(&other, server.quic, &doq_query("www.example.org.", 0)).await.expect("another source");
    assert_forwarded(&Message::from_vec(&answer).unwrap(), RecordType::A);
    let answer = doq_stream(&first, &framed(&doq_query("www.example.org.", 0))).await.expect("the first still works");
    assert_forwarded(&Message::from_vec(&answer[2..]).unwrap(), RecordType::A);
    let metrics = nxguard::ops::metrics::render_handshakes(handshakes);
    assert!(
        metrics.contains("nxguard_quic_connection_attempts_total{transport=\"quic\",result=\"refused\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_rfc_9250_closes_the_connection_with_doq_protocol_error() {
    let upstream = FakeUpstream::start().await;
    let server = start_quic_server(upstream.addr, "");
    let client = quinn_client(&server.trusted, b"doq", LOCALHOST);
    let mut two_queries = framed(&doq_query("www.example.org.", 0));
    two_queries.extend_from_slice(&framed(&doq_query("www.example.org.", 0)));
    let mut cut_short = framed(&doq_query("www.example.org.", 0));
    cut_short.pop();
    for (what, stream) in [
        ("message ID 7", framed(&doq_query("www.example.org.", 7))),
        ("two queries", two_queries),
        ("cut short", cut_short),
    ] {
        let connection = doq_connect(&client, server.quic).await.expect("connection");
        let answer = doq_stream(&connection, &stream).await;
        assert!(answer.is_err(), "{what}: answered {answer:?}");
        match connection.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(0x2), "{what}: DOQ_PROTOCOL_ERROR");
            }
            other => panic!("{what}: closed with {other:?}"),
        }
    }
    let connection = doq_connect(&client, server.quic).await.expect("connection");
    let answer = doq_stream(&connection, &framed(&doq_query("www.example.org.", 0))).await.expect("a good stream");
    let message = Message::from_vec(&answer[2..]).unwrap();
    assert_eq!(message.metadata.id, 0, "the answer's ID is 0");
    assert_eq!(usize::from(u16::from_be_bytes([answer[0], answer[1]])), answer.len() - 2, "length prefix");
}

/// One HTTP/3 request: the status, the content type and the body.
async fn h3_request(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    request: http::Request<()>,
    body: Option<Vec<u8>>,
) -> (http::StatusCode, Option<String>, Vec<u8>) {
    use bytes::Buf;
    let mut stream = send.send_request(request).await.unwrap();
    if let Some(body) = body {
        stream.send_data(bytes::Bytes::from(body)).await.unwrap();
    }
    stream.finish().await.unwrap();
    let response = stream.recv_response().await.unwrap();
    let content_type = response.headers().get(http::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
    let mut out = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        while chunk.has_remaining() {
            let part = chunk.chunk().to_vec();
            chunk.advance(part.len());
            out.extend_from_slice(&part);
        }
    }
    (response.status(), content_type, out)
}

#[tokio::test]
async fn doh3_serves_get_and_post_on_the_https_path_only_with_the_doh2_error_codes() {
    let upstream = FakeUpstream::start().await;
    let server = start_quic_server(upstream.addr, "");
    let client = quinn_client(&server.trusted, b"h3", LOCALHOST);
    let connection = doq_connect(&client, server.h3).await.expect("connection");
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(connection)).await.unwrap();
    tokio::spawn(async move { driver.wait_idle().await });
    let message = doq_query("www.example.org.", 0);
    let uri = |path: &str| format!("https://{TLS_NAME}{path}");
    let request = |method: &str, path: &str, content_type: Option<&str>| {
        let mut builder = http::Request::builder().method(method).uri(uri(path));
        if let Some(content_type) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        builder.body(()).unwrap()
    };
    let encoded = data_encoding::BASE64URL_NOPAD.encode(&message);
    let get = request("GET", &format!("/dns-query?dns={encoded}"), None);
    let (status, content_type, body) = h3_request(&mut send, get, None).await;
    assert_eq!((status, content_type.as_deref()), (http::StatusCode::OK, Some("application/dns-message")));
    assert_forwarded(&Message::from_vec(&body).unwrap(), RecordType::A);
    let post = request("POST", "/dns-query", Some("application/dns-message"));
    let (status, _, body) = h3_request(&mut send, post, Some(message.clone())).await;
    assert_eq!(status, http::StatusCode::OK);
    assert_forwarded(&Message::from_vec(&body).unwrap(), RecordType::A);
    let cases = [
        ("POST", "/not-dns-query", Some("application/dns-message"), http::StatusCode::NOT_FOUND),
        ("PUT", "/dns-query", Some("application/dns-message"), http::StatusCode::METHOD_NOT_ALLOWED),
        ("POST", "/dns-query", Some("text/plain"), http::StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("GET", "/dns-query", None, http::StatusCode::BAD_REQUEST),
    ];
    for (method, path, content_type, expected) in cases {
        let body = (method != "GET").then(|| message.clone());
        let (status, _, _) = h3_request(&mut send, request(method, path, content_type), body).await;
        assert_eq!(status, expected, "{method} {path} {content_type:?}");
    }
    assert_eq!(server.running.resolver.stats.received_on(Transport::H3), 2, "only the two DNS requests");
}

#[tokio::test]
async fn a_real_client_is_answered_while_50_sources_flood_replayed_and_junk_initials() {
    let upstream = FakeUpstream::start().await;
    let server = start_quic_server(upstream.addr, "quic_unvalidated_handshakes_max = 4\n");
    let initials = Arc::new(capture_initials(40, &server.trusted, b"doq").await);
    let flooding = tokio::spawn(flood(server.quic, initials, 20, Duration::from_secs(2)));
    let client = quinn_client(&server.trusted, b"doq", LOCALHOST);
    for n in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = doq_ask(&client, server.quic, &doq_query(&format!("www.{n}.example.org."), 0)).await;
        assert_forwarded(&Message::from_vec(&answer.expect("answered during the flood")).unwrap(), RecordType::A);
    }
    let counts = flooding.await.unwrap();
    let handshakes = &server.running.handshakes;
    assert!(counts.retries.load(std::sync::atomic::Ordering::Relaxed) > 0, "the replays got Retries: {counts:?}");
    assert!(handshakes.get(Transport::Quic, Admission::Retry) > 0);
    assert!(handshakes.get(Transport::Quic, Admission::Established) >= 5);
    assert_eq!(server.running.resolver.stats.received_on(Transport::Quic), 5, "only the real client's queries");
}

#[test]
fn check_explains_what_each_encrypted_listener_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("nxguard.toml");
    let text = format!(
        "[server]\nquic = [\"127.0.0.1:8853\"]\ntls_cert_file = {cert:?}\ntls_key_file = {key:?}\n[[upstream.servers]]\naddress = \"127.0.0.1:9\"\nprotocol = \"udp\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line =
        |name: &str| stdout.lines().find(|l| l.starts_with(&format!("listener {name}:"))).unwrap_or("").to_string();
    let doq = line("doq");
    assert!(doq.contains("on 127.0.0.1:8853/udp") && doq.contains(&cert.display().to_string()), "{stdout}");
    assert!(doq.contains("0-RTT off") && doq.contains("quic_unvalidated_handshakes_max"), "{doq}");
    assert!(line("doh3").contains("off (server.h3 = [])") && line("dot").contains("tcp port"), "{stdout}");
}
