//! QUIC clients and attackers for the DoQ/DoH3 tests and the attack bench: a quinn client
//! trusting one certificate, captured real Initials (a client's first datagram, caught on a
//! socket that never answers), junk Initials, and a flood of both from 50 other loopback
//! addresses (127.0.0.2 to 127.0.0.51).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rustls::pki_types::{CertificateDer, pem::PemObject};
use tokio::{net::UdpSocket, task::JoinSet};

pub const TLS_NAME: &str = "dns.test";

/// TLS 1.3 for a client trusting only `trusted_pem`, offering `alpn`.
pub fn client_tls(trusted_pem: &str, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(trusted_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls
}

/// A quinn client endpoint on `from` (port chosen by the system).
pub fn quinn_client(trusted_pem: &str, alpn: &[u8], from: IpAddr) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(from, 0)).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(trusted_pem, alpn)).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Why a DoQ exchange failed.
#[derive(Debug)]
pub enum DoqError {
    Connect(quinn::ConnectionError),
    Stream(String),
}

/// Connects from `endpoint` to `server` (a fresh handshake).
pub async fn doq_connect(endpoint: &quinn::Endpoint, server: SocketAddr) -> Result<quinn::Connection, DoqError> {
    endpoint.connect(server, TLS_NAME).unwrap().await.map_err(DoqError::Connect)
}

/// Sends `stream` (the raw bytes of one DoQ stream) on a new stream and reads the answer's
/// whole stream.
pub async fn doq_stream(connection: &quinn::Connection, stream: &[u8]) -> Result<Vec<u8>, DoqError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(DoqError::Connect)?;
    send.write_all(stream).await.map_err(|e| DoqError::Stream(e.to_string()))?;
    send.finish().map_err(|e| DoqError::Stream(e.to_string()))?;
    recv.read_to_end(65_537).await.map_err(|e| DoqError::Stream(e.to_string()))
}

/// `message` with the DoQ length prefix.
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// A fresh handshake and one query: the answer's DNS message (without the prefix).
pub async fn doq_ask(endpoint: &quinn::Endpoint, server: SocketAddr, message: &[u8]) -> Result<Vec<u8>, DoqError> {
    let connection = doq_connect(endpoint, server).await?;
    let answer = doq_stream(&connection, &framed(message)).await?;
    connection.close(0u32.into(), b"");
    if answer.len() < 2 {
        return Err(DoqError::Stream("short answer".into()));
    }
    Ok(answer[2..].to_vec())
}

/// `n` real client Initials (each with its own connection IDs) offering `alpn`.
pub async fn capture_initials(n: usize, trusted_pem: &str, alpn: &[u8]) -> Vec<Vec<u8>> {
    let client = quinn_client(trusted_pem, alpn, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let initials = capture_initials_from(&client, n).await;
    client.close(0u32.into(), b"");
    initials
}

/// `n` first datagrams of connection attempts from `client`, which then abandons them.
pub async fn capture_initials_from(client: &quinn::Endpoint, n: usize) -> Vec<Vec<u8>> {
    let catcher = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = catcher.local_addr().unwrap();
    let mut initials = Vec::with_capacity(n);
    // Abandoned attempts send retransmissions and closes with the same connection ID: only the
    // first datagram of each ID is a first flight.
    let mut seen = std::collections::HashSet::new();
    let mut buf = vec![0u8; 65_535];
    let mut pending = Vec::new();
    while initials.len() < n {
        pending.push(client.connect(target, TLS_NAME).unwrap());
        let (len, _) =
            tokio::time::timeout(Duration::from_secs(5), catcher.recv_from(&mut buf)).await.unwrap().unwrap();
        let datagram = &buf[..len];
        let dcid = datagram.get(6..6 + usize::from(*datagram.get(5).unwrap_or(&0))).map(<[u8]>::to_vec);
        if packet_type(datagram) == Some(PacketType::Initial) && len >= 1_200 && dcid.is_some_and(|id| seen.insert(id))
        {
            initials.push(datagram.to_vec());
        }
    }
    drop(pending);
    initials
}

/// A datagram that looks like a 1,200-byte QUIC v1 Initial but whose payload is random: the
/// server must derive keys to find out, and then drops it.
pub fn junk_initial() -> Vec<u8> {
    let mut out = vec![0xc3, 0, 0, 0, 1, 8];
    out.extend_from_slice(&rand::random::<[u8; 8]>());
    out.push(8);
    out.extend_from_slice(&rand::random::<[u8; 8]>());
    out.push(0); // no token
    let length = 1_200 - out.len() - 2;
    out.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    let mut payload = vec![0u8; length];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut payload);
    out.extend_from_slice(&payload);
    out
}

/// A 1,200-byte QUIC v1 Initial with a 4-byte destination connection ID, which RFC 9000 §7.2
/// forbids: quinn answers it with a CONNECTION_CLOSE (no handshake), so a reply shows that
/// quinn derived the Initial keys for it.
pub fn initial_with_short_cid() -> Vec<u8> {
    let mut out = junk_initial();
    // Byte 5 is the DCID length: 8 becomes 4, and the 4 bytes fewer are padding at the end.
    out[5] = 4;
    out.drain(6..10);
    out.extend_from_slice(&[0; 4]);
    out
}

/// The long-header packet types of QUIC v1 (RFC 9000 §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// The type of the first packet in `datagram`, None for a short header.
pub fn packet_type(datagram: &[u8]) -> Option<PacketType> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    Some(match (first >> 4) & 0x3 {
        0 => PacketType::Initial,
        1 => PacketType::ZeroRtt,
        2 => PacketType::Handshake,
        _ => PacketType::Retry,
    })
}

/// The attacker's addresses: 127.0.0.2 to 127.0.0.51.
pub fn attacker_addresses() -> Vec<IpAddr> {
    (2..=51).map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))).collect()
}

/// What the flood sent and got back.
#[derive(Debug, Default)]
pub struct FloodCounts {
    pub sent: AtomicU64,
    pub replies: AtomicU64,
    pub retries: AtomicU64,
}

/// From each attacker address, `rate` datagrams per second for `duration`, alternately a
/// replayed `initials` entry (round robin over all addresses) and a junk Initial; the replies
/// are counted, never answered. Ends when `duration` is over.
pub async fn flood(target: SocketAddr, initials: Arc<Vec<Vec<u8>>>, rate: u32, duration: Duration) -> Arc<FloodCounts> {
    let counts = Arc::new(FloodCounts::default());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Made ahead: the attacker's own cost must not slow the run down.
    let junk: Arc<Vec<Vec<u8>>> = Arc::new((0..256).map(|_| junk_initial()).collect());
    let mut tasks = JoinSet::new();
    for (n, from) in attacker_addresses().into_iter().enumerate() {
        let socket =
            UdpSocket::bind(SocketAddr::new(from, 0)).await.expect("bind 127.0.0.x (Linux routes 127/8 to lo)");
        let (initials, counts, next) = (Arc::clone(&initials), Arc::clone(&counts), Arc::clone(&next));
        let junk = Arc::clone(&junk);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            let end = Instant::now() + duration;
            let mut buf = vec![0u8; 2_048];
            let mut i = n;
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        let datagram = if i % 2 == 0 {
                            initials[next.fetch_add(1, Ordering::Relaxed) % initials.len()].clone()
                        } else {
                            junk[i % junk.len()].clone()
                        };
                        if socket.send_to(&datagram, target).await.is_ok() {
                            counts.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                    Ok((len, _)) = socket.recv_from(&mut buf) => {
                        counts.replies.fetch_add(1, Ordering::Relaxed);
                        if packet_type(&buf[..len]) == Some(PacketType::Retry) {
                            counts.retries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    counts
}
