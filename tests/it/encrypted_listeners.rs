//! DNS-over-TLS and DNS-over-HTTPS listeners for clients: a certificate generated in the test,
//! the server started in-process with DoT and DoH listeners on 127.0.0.1:0, and real TLS and
//! HTTP/2 clients that trust only that certificate.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use crate::common::*;
use bytes::Bytes;
use hickory_proto::{op::Message, rr::RecordType};
use nxguard::{
    config::Config,
    evidence::attempt::Attempt,
    listen::Listeners,
    resolve::Outcome,
    resolve::Transport,
    server::{self, Running},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

const TLS_NAME: &str = "dns.test";
const BLOCK_TTL: u32 = 300;
const TIKTOK: &str = "TikTok (ByteDance) is banned on this network";

/// A certificate and key written as PEM files in a temporary directory.
struct CertFiles {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new() -> CertFiles {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        CertFiles { dir, cert, key }
    }

    /// Writes a new self-signed certificate for `TLS_NAME`; returns its PEM, the client's trust.
    fn write_new(&self) -> String {
        let generated = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
        std::fs::write(&self.cert, generated.cert.pem()).unwrap();
        std::fs::write(&self.key, generated.signing_key.serialize_pem()).unwrap();
        generated.cert.pem()
    }

    fn config(&self, upstream: SocketAddr, extra: &str) -> Config {
        config_for(
            upstream,
            &format!("[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n{extra}", self.cert, self.key),
        )
    }
}

struct TlsServer {
    running: Running,
    udp: SocketAddr,
    dot: SocketAddr,
    doh: SocketAddr,
    attempts: mpsc::UnboundedReceiver<Attempt>,
}

fn start_tls_server(config: &Config) -> TlsServer {
    let listeners = Listeners::bind_loopback().unwrap().with_tls_loopback().unwrap();
    let (tx, attempts) = mpsc::unbounded_channel();
    let running = server::start(config, listeners, vec![tx]).unwrap();
    let (udp, dot, doh) = (running.udp_addrs[0], running.tls_addrs[0], running.https_addrs[0]);
    TlsServer { running, udp, dot, doh, attempts }
}

async fn tls_connect(addr: SocketAddr, trusted_pem: &str, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(trusted_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(TLS_NAME).unwrap();
    tokio::time::timeout(Duration::from_secs(5), TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("tls handshake timed out"))?
}

/// One query over an open DoT connection (RFC 7858: the TCP 2-byte length framing).
async fn dot_exchange(stream: &mut TlsStream<TcpStream>, query: &[u8]) -> Vec<u8> {
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.expect("no DoT answer").unwrap();
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.unwrap();
    reply
}

/// An HTTP/2 connection to the DoH listener.
async fn doh_connect(addr: SocketAddr, trusted_pem: &str) -> h2::client::SendRequest<Bytes> {
    let tls = tls_connect(addr, trusted_pem, &[b"h2"]).await.unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    client
}

struct HttpReply {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn doh_request(
    client: &mut h2::client::SendRequest<Bytes>,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> HttpReply {
    let mut request = http::Request::builder().method(method).uri(format!("https://{TLS_NAME}{path_and_query}"));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request.header("accept", "application/dns-message").body(()).unwrap();
    let (response, mut send) = client.send_request(request, body.is_none()).unwrap();
    if let Some(body) = body {
        send.send_data(Bytes::from(body), true).unwrap();
    }
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("no DoH answer").unwrap();
    let (head, mut stream) = response.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.unwrap();
        let _ = stream.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    HttpReply { status: head.status, headers: head.headers, body }
}

async fn doh_post(client: &mut h2::client::SendRequest<Bytes>, query: &Message) -> HttpReply {
    doh_request(client, "POST", "/dns-query", Some("application/dns-message"), Some(query.to_vec().unwrap())).await
}

async fn doh_get(client: &mut h2::client::SendRequest<Bytes>, query: &Message) -> HttpReply {
    let encoded = data_encoding::BASE64URL_NOPAD.encode(&query.to_vec().unwrap());
    doh_request(client, "GET", &format!("/dns-query?dns={encoded}"), None, None).await
}

fn dns_reply(reply: &HttpReply, query: &Message) -> Message {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.headers["content-type"], "application/dns-message");
    let message = Message::from_vec(&reply.body).unwrap();
    assert_eq!(message.metadata.id, query.metadata.id);
    message
}

fn max_age(reply: &HttpReply) -> u32 {
    let value = reply.headers["cache-control"].to_str().unwrap();
    value.strip_prefix("max-age=").unwrap().parse().unwrap()
}

#[tokio::test]
async fn dot_answers_blocked_names_exactly_as_udp_and_forwards_the_rest() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let mut server = start_tls_server(&certs.config(upstream.addr, ""));
    let mut stream = tls_connect(server.dot, &trusted, &[]).await.unwrap();

    let blocked = query("www.tiktok.com.", RecordType::AAAA, true);
    let over_dot = dot_exchange(&mut stream, &blocked.to_vec().unwrap()).await;
    assert_blocked(&Message::from_vec(&over_dot).unwrap(), TIKTOK, BLOCK_TTL, true);
    let over_udp = udp_exchange_raw(
        server.udp,
        std::net::Ipv4Addr::LOCALHOST.into(),
        &blocked.to_vec().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(over_dot, over_udp, "the blocked answer is the same bytes over DoT and UDP");

    // Several queries on one connection.
    for qtype in [RecordType::A, RecordType::MX] {
        let forwarded = query("example.org.", qtype, true);
        let reply = Message::from_vec(&dot_exchange(&mut stream, &forwarded.to_vec().unwrap()).await).unwrap();
        assert_eq!(reply.metadata.id, forwarded.metadata.id);
        assert_forwarded(&reply, qtype);
    }
    let stats = &server.running.resolver.stats;
    assert_eq!(stats.outcome_on(Transport::Tls, Outcome::Blocked), 1);
    assert_eq!(stats.outcome_on(Transport::Tls, Outcome::Forwarded), 2);
    let outcomes: u64 = Outcome::ALL.iter().map(|o| stats.outcome(*o)).sum();
    assert_eq!(outcomes, stats.total_received(), "every query counted once, by its outcome");
    assert_eq!(stats.total_received(), 4);
    let attempt = next_attempt(&mut server.attempts).await;
    assert_eq!((attempt.transport, attempt.qname.as_str()), (Transport::Tls, "www.tiktok.com"));
    assert_eq!(next_attempt(&mut server.attempts).await.transport, Transport::Udp);
}

#[tokio::test]
async fn doh_answers_post_and_get_with_cache_lifetimes() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let mut server = start_tls_server(&certs.config(upstream.addr, ""));
    let mut client = doh_connect(server.doh, &trusted).await;

    let blocked = query("api16-normal-c-useast1a.tiktokv.com.", RecordType::A, true);
    let reply = doh_post(&mut client, &blocked).await;
    assert_blocked(&dns_reply(&reply, &blocked), TIKTOK, BLOCK_TTL, true);
    assert_eq!(max_age(&reply), BLOCK_TTL, "a blocked answer may be cached for the block TTL");
    assert_eq!(next_attempt(&mut server.attempts).await.transport, Transport::Https);
    let without_edns = query("tiktok.com.", RecordType::HTTPS, false);
    let reply = doh_get(&mut client, &without_edns).await;
    assert_blocked(&dns_reply(&reply, &without_edns), TIKTOK, BLOCK_TTL, false);

    let forwarded = query("example.org.", RecordType::A, true);
    let reply = doh_get(&mut client, &forwarded).await;
    assert_forwarded(&dns_reply(&reply, &forwarded), RecordType::A);
    assert!(max_age(&reply) <= UPSTREAM_TTL);
    let reply = doh_post(&mut client, &forwarded).await;
    assert_forwarded(&dns_reply(&reply, &forwarded), RecordType::A);
    assert_eq!(upstream.calls(), 1, "the second answer came from the cache");

    let stats = &server.running.resolver.stats;
    assert_eq!(stats.outcome_on(Transport::Https, Outcome::Blocked), 2);
    assert_eq!(stats.outcome_on(Transport::Https, Outcome::Forwarded), 1);
    assert_eq!(stats.outcome_on(Transport::Https, Outcome::Cached), 1);
    let outcomes: u64 = Outcome::ALL.iter().map(|o| stats.outcome(*o)).sum();
    assert_eq!(outcomes, stats.total_received());
    let metrics = nxguard::ops::metrics::render(&server.running.resolver);
    assert!(metrics.contains("nxguard_queries_total{transport=\"https\",outcome=\"blocked\"} 2"), "{metrics}");
}

#[tokio::test]
async fn doh_requests_without_a_dns_query_get_http_errors() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, ""));
    let mut client = doh_connect(server.doh, &trusted).await;
    let body = Some(query("example.org.", RecordType::A, false).to_vec().unwrap());

    let wrong_path = doh_request(&mut client, "POST", "/other", Some("application/dns-message"), body.clone()).await;
    assert_eq!(wrong_path.status, 404);
    let wrong_type = doh_request(&mut client, "POST", "/dns-query", Some("text/plain"), body.clone()).await;
    assert_eq!(wrong_type.status, 415);
    let wrong_method = doh_request(&mut client, "PUT", "/dns-query", Some("application/dns-message"), body).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "GET, POST");
    let no_parameter = doh_request(&mut client, "GET", "/dns-query?name=example.org", None, None).await;
    assert_eq!(no_parameter.status, 400);
    let not_base64 = doh_request(&mut client, "GET", "/dns-query?dns=%%%", None, None).await;
    assert_eq!(not_base64.status, 400);
    // A DNS message that does not parse is a DNS error (FORMERR), not an HTTP one (§4.2.1).
    let garbage =
        doh_request(&mut client, "POST", "/dns-query", Some("application/dns-message"), Some(vec![0; 14])).await;
    assert_eq!(garbage.status, 200);
    assert_eq!(garbage.body[3] & 0x0f, 1, "FORMERR");
    assert_eq!(server.running.resolver.stats.total_received(), 1, "only the DNS message was a query");
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let first = certs.write_new();
    let config = certs.config(upstream.addr, "");
    let server = start_tls_server(&config);
    let mut open = tls_connect(server.dot, &first, &[]).await.unwrap();

    let second = certs.write_new();
    server.running.reload(&config).unwrap();
    assert!(tls_connect(server.dot, &first, &[]).await.is_err(), "new connections see the new certificate");
    assert!(tls_connect(server.doh, &first, &[b"h2"]).await.is_err());
    let mut fresh = tls_connect(server.dot, &second, &[]).await.unwrap();
    let mut client = doh_connect(server.doh, &second).await;

    let blocked = query("tiktok.com.", RecordType::A, true);
    for stream in [&mut open, &mut fresh] {
        let reply = Message::from_vec(&dot_exchange(stream, &blocked.to_vec().unwrap()).await).unwrap();
        assert_blocked(&reply, TIKTOK, BLOCK_TTL, true);
    }
    assert_blocked(&dns_reply(&doh_post(&mut client, &blocked).await, &blocked), TIKTOK, BLOCK_TTL, true);

    // A broken certificate file: the reload fails and the certificate in force stays.
    std::fs::write(&certs.cert, "not a certificate").unwrap();
    let error = server.running.reload(&config).unwrap_err().to_string();
    assert!(error.contains("cert.pem"), "{error}");
    assert!(tls_connect(server.dot, &second, &[]).await.is_ok());
    assert_eq!(server.running.resolver.stats.reloads(), (1, 1));
    drop(certs.dir);
}

#[tokio::test]
async fn idle_dot_connections_are_closed() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, "tcp_idle_timeout_ms = 200\n"));
    let mut stream = tls_connect(server.dot, &trusted, &[]).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_at_the_handshake_timeout() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    certs.write_new();
    // The idle bound is far beyond the test: only limits.handshake_timeout_ms can end it.
    let extra = "tcp_idle_timeout_ms = 60000\n[limits]\nhandshake_timeout_ms = 300\n";
    let server = start_tls_server(&certs.config(upstream.addr, extra));
    for (what, addr) in [("dot", server.dot), ("doh", server.doh)] {
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{what}: a handshake without a ClientHello stayed open: {read:?}");
    }
}

#[tokio::test]
async fn clients_outside_access_allow_get_no_handshake() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, "[access]\nallow = [\"192.0.2.0/24\"]\n"));
    assert!(tls_connect(server.dot, &trusted, &[]).await.is_err());
    assert!(tls_connect(server.doh, &trusted, &[b"h2"]).await.is_err());
    assert_eq!(server.running.resolver.stats.total_received(), 0);
}

#[test]
fn encrypted_listeners_need_certificate_files() {
    let text = "[server]\ntls = [\"127.0.0.1:853\"]\nhttps_path = \"dns\"\n\
                [[upstream.servers]]\naddress = \"127.0.0.1:53\"\n";
    let error = Config::from_toml(text).unwrap_err().to_string();
    assert!(error.contains("server.tls_cert_file: required"), "{error}");
    assert!(error.contains("server.tls_key_file: required"), "{error}");
    assert!(error.contains("server.https_path: must start with '/'"), "{error}");
}

#[tokio::test]
async fn start_fails_clearly_without_a_certificate() {
    let upstream = FakeUpstream::start().await;
    let listeners = Listeners::bind_loopback().unwrap().with_tls_loopback().unwrap();
    let Err(error) = server::start(&config_for(upstream.addr, ""), listeners, Vec::new()) else {
        panic!("started without a certificate");
    };
    assert!(error.to_string().contains("tls_cert_file"), "{error}");
}

/// hickory-net's DoT and DoH clients (what nxguard itself uses upstream) get the blocked answer:
/// a second, independent client implementation.
#[tokio::test]
async fn hickory_clients_get_blocked_answers() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, ""));
    for (addr, protocol) in [(server.dot, "tls"), (server.doh, "https")] {
        let config = Config::from_toml(&format!(
            "[upstream]\ntimeout_ms = 3000\n[[upstream.servers]]\naddress = \"{addr}\"\nprotocol = \"{protocol}\"\n\
             tls_name = \"{TLS_NAME}\"\nca_file = {:?}\n",
            certs.cert
        ))
        .unwrap();
        let client = nxguard::upstream::pool::Upstreams::new(&config.upstream).unwrap();
        let blocked = query("tiktok.com.", RecordType::A, true);
        let reply = client
            .exchange(&blocked.to_vec().unwrap(), b"tiktok.com")
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_blocked(&Message::from_vec(&reply).unwrap(), TIKTOK, BLOCK_TTL, true);
    }
    let stats = &server.running.resolver.stats;
    assert_eq!(stats.outcome_on(Transport::Tls, Outcome::Blocked), 1);
    assert_eq!(stats.outcome_on(Transport::Https, Outcome::Blocked), 1);
}

#[tokio::test]
async fn a_doh_body_that_never_arrives_times_out() {
    let upstream = FakeUpstream::start().await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, "tcp_idle_timeout_ms = 200\n"));
    let mut client = doh_connect(server.doh, &trusted).await;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://{TLS_NAME}/dns-query"))
        .header("content-type", "application/dns-message")
        .body(())
        .unwrap();
    // Headers only; the body stream stays open and empty.
    let (response, _body) = client.send_request(request, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("no answer").unwrap();
    assert_eq!(response.status(), 408);
}

#[tokio::test]
async fn dot_answers_pipelined_queries_as_each_is_ready() {
    let upstream = FakeUpstream::start_with_delay(Duration::from_millis(250)).await;
    let certs = CertFiles::new();
    let trusted = certs.write_new();
    let server = start_tls_server(&certs.config(upstream.addr, ""));
    udp_ask(server.udp, &query("cached.example.org.", RecordType::A, false)).await;
    let mut stream = tls_connect(server.dot, &trusted, &[]).await.unwrap();
    let (order, [slow, cached, blocked]) = pipelined_order(&mut stream).await;
    let expected = vec![cached, blocked, slow];
    assert_eq!(order, expected, "the cached and blocked answers waited for the slow one");
}
