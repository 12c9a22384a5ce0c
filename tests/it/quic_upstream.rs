//! Forwarding over DNS-over-QUIC (RFC 9250, `protocol = "quic"`) to a fake DoQ server on
//! loopback written on quinn, with a certificate made in the test and trusted through
//! `ca_file`: answers pass through, one connection carries every query, and a dead DoQ server
//! is failed over like any other upstream.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::common::*;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use nxguard::config::Config;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const TLS_NAME: &str = "dns.test";

/// A DoQ server: each query on a stream of its own, 2-byte length framing (RFC 9250 §4.2).
/// Returns its address, the CA to trust and the count of QUIC connections it accepted.
fn fake_doq() -> (SocketAddr, String, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![b"doq".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(framed) = recv.read_to_end(65_537).await else { return };
                        let Some(query) = framed.get(2..).and_then(|q| Message::from_vec(q).ok()) else { return };
                        let Some(reply) = respond(&query, true) else { return };
                        let reply = reply.to_vec().unwrap();
                        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&reply);
                        let _ = send.write_all(&out).await;
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    (addr, cert.cert.pem(), connections)
}

fn doq_config(servers: &[SocketAddr], ca_pem: &str, dir: &tempfile::TempDir) -> Config {
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut text = String::from("[upstream]\ntimeout_ms = 3000\n");
    for addr in servers {
        text.push_str(&format!(
            "[[upstream.servers]]\naddress = \"{addr}\"\nprotocol = \"quic\"\ntls_name = \"{TLS_NAME}\"\nca_file = {ca_file:?}\n"
        ));
    }
    Config::from_toml(&text).unwrap()
}

#[tokio::test]
async fn dns_over_quic_upstream_forwards_over_one_connection() {
    let (addr, ca, connections) = fake_doq();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&doq_config(&[addr], &ca, &dir));
    for i in 0..3 {
        let name = format!("www{i}.example.org.");
        assert_forwarded(&udp_ask(server.udp, &query(&name, RecordType::A, true)).await, RecordType::A);
    }
    assert_forwarded(&tcp_ask(server.tcp, &query("mx.example.org.", RecordType::MX, false)).await, RecordType::MX);
    let reply = udp_ask(server.udp, &query("nx.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "negative answers pass through");
    assert_blocked(
        &udp_ask(server.udp, &query("alias-to-tiktok.example.net.", RecordType::A, true)).await,
        "TikTok",
        300,
        true,
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one QUIC connection carries every query");
}

#[tokio::test]
async fn a_dead_doq_upstream_is_failed_over() {
    let (addr, ca, _) = fake_doq();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&doq_config(&[dead.local_addr().unwrap(), addr], &ca, &dir));
    for i in 0..3 {
        let name = format!("www{i}.example.org.");
        assert_forwarded(&udp_ask(server.udp, &query(&name, RecordType::A, true)).await, RecordType::A);
    }
}

#[tokio::test]
async fn an_untrusted_doq_certificate_gives_servfail() {
    let (addr, _their_ca, _) = fake_doq();
    let other = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&doq_config(&[addr], &other.cert.pem(), &dir));
    let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}
