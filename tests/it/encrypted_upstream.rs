//! Forwarding over DNS-over-TLS and DNS-over-HTTPS to fake upstreams on loopback, with a
//! certificate generated in the test and trusted through `ca_file`.

use std::{net::SocketAddr, sync::Arc};

use crate::common::*;
use bytes::Bytes;
use hickory_proto::{op::Message, rr::RecordType};
use nxguard::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    },
};

const TLS_NAME: &str = "dns.test";

struct Tls {
    acceptor: TlsAcceptor,
    ca_pem: String,
}

fn tls(alpn: &[&[u8]]) -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    let ca_pem = cert.cert.pem();
    let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Tls { acceptor: TlsAcceptor::from(Arc::new(config)), ca_pem }
}

/// A DoT server (RFC 7858): TLS, then TCP framing.
async fn fake_dot() -> (SocketAddr, String) {
    let Tls { acceptor, ca_pem } = tls(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Ok(len) = stream.read_u16().await {
                    let mut buf = vec![0u8; usize::from(len)];
                    stream.read_exact(&mut buf).await.unwrap();
                    let reply = respond(&Message::from_vec(&buf).unwrap(), true).unwrap().to_vec().unwrap();
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    stream.write_all(&framed).await.unwrap();
                }
            });
        }
    });
    (addr, ca_pem)
}

/// A DoH server (RFC 8484): HTTP/2 over TLS, POST /dns-query with application/dns-message.
async fn fake_doh() -> (SocketAddr, String) {
    let Tls { acceptor, ca_pem } = tls(&[b"h2"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut h2 = h2::server::handshake(tls).await.unwrap();
                while let Some(Ok((request, mut respond_to))) = h2.accept().await {
                    assert_eq!(request.uri().path(), "/dns-query");
                    let mut body = request.into_body();
                    let mut query = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        let _ = body.flow_control().release_capacity(chunk.len());
                        query.extend_from_slice(&chunk);
                    }
                    let reply = respond(&Message::from_vec(&query).unwrap(), true).unwrap().to_vec().unwrap();
                    let response = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/dns-message")
                        .header("content-length", reply.len())
                        .body(())
                        .unwrap();
                    let mut send = respond_to.send_response(response, false).unwrap();
                    send.send_data(Bytes::from(reply), true).unwrap();
                }
            });
        }
    });
    (addr, ca_pem)
}

fn encrypted_config(addr: SocketAddr, protocol: &str, ca_pem: &str, dir: &tempfile::TempDir) -> Config {
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let path = if protocol == "https" { "path = \"/dns-query\"\n" } else { "" };
    Config::from_toml(&format!(
        "[upstream]\ntimeout_ms = 3000\n[[upstream.servers]]\naddress = \"{addr}\"\nprotocol = \"{protocol}\"\n\
         tls_name = \"{TLS_NAME}\"\nca_file = {ca_file:?}\n{path}"
    ))
    .unwrap()
}

async fn forwards_and_blocks(config: &Config) {
    let server = start_server(config);
    for _ in 0..2 {
        assert_forwarded(&udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await, RecordType::A);
        assert_forwarded(&tcp_ask(server.tcp, &query("mx.example.org.", RecordType::MX, false)).await, RecordType::MX);
    }
    let reply = udp_ask(server.udp, &query("nx.example.org.", RecordType::A, true)).await;
    assert_eq!(
        reply.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain,
        "negative answers pass through"
    );
    assert_blocked(
        &udp_ask(server.udp, &query("alias-to-tiktok.example.net.", RecordType::A, true)).await,
        "TikTok",
        300,
        true,
    );
    assert_blocked(&udp_ask(server.udp, &query("tiktok.com.", RecordType::A, true)).await, "TikTok", 300, true);
}

#[tokio::test]
async fn dns_over_tls_upstream() {
    let (addr, ca) = fake_dot().await;
    let dir = tempfile::tempdir().unwrap();
    forwards_and_blocks(&encrypted_config(addr, "tls", &ca, &dir)).await;
}

#[tokio::test]
async fn dns_over_https_upstream() {
    let (addr, ca) = fake_doh().await;
    let dir = tempfile::tempdir().unwrap();
    forwards_and_blocks(&encrypted_config(addr, "https", &ca, &dir)).await;
}

#[tokio::test]
async fn untrusted_certificate_gives_servfail() {
    let (addr, _their_ca) = fake_dot().await;
    let other = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = encrypted_config(addr, "tls", &other.cert.pem(), &dir);
    let server = start_server(&config);
    let reply = udp_ask(server.udp, &query("www.example.org.", RecordType::A, true)).await;
    assert_eq!(reply.metadata.response_code, hickory_proto::op::ResponseCode::ServFail);
}
