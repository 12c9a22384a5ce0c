//! QUIC for clients: the endpoints of DNS-over-QUIC (RFC 9250, `server.quic`) and DoH3 (RFC 9114
//! with RFC 8484, `server.h3`) on quinn, and deciding which handshakes happen at all.
//!
//! Owns: one quinn endpoint per socket (TLS 1.3 with ALPN "doq" or "h3", the DoT certificate
//! through `tls::Certificates` so a reload reaches new handshakes, 0-RTT off, no migration), the
//! admission of each connection attempt before any handshake work, the handshake (each in its
//! own task, bounded by `limits.handshake_timeout_ms`, as DoT), and the counters of what became of
//! each attempt (`HandshakeStats`). Once a connection is established it goes to `doq` or `h3`.
//! Does not own: the DNS framing on a stream (`doq`), HTTP/3 (`h3`), or the answer (`resolve`).
//!
//! Admission, in order:
//! 1. A source outside `access.allow` is ignored: no packet back, no crypto (as UDP drops it).
//!    The socket under the endpoint (`gate`) drops its datagrams before quinn reads them; the
//!    same check on each attempt covers a reload that narrowed the list meanwhile.
//!
//! Then for each Initial that passes quinn's checks (its length, the Initial keys derived from
//! its connection ID, header protection removed, the reserved bits 0; the payload is only
//! decrypted once the attempt is accepted, so about a quarter of random junk gets this far):
//! 2. A source that has not proved its address (no Retry token) takes one of
//!    `server.quic_unvalidated_handshakes_max` places for the length of its handshake; when
//!    none is free it gets a Retry (RFC 9000 §8.1.2) instead, which a real client answers within
//!    one round trip and a replayed or spoofed Initial never does.
//! 3. The TCP/DoT connection caps (`limits.tcp_max_connections`, `..._per_client`), shared with
//!    those listeners: over them, the attempt is refused (CONNECTION_REFUSED, no handshake). A
//!    validated source takes its place now; an unvalidated one only once its handshake has
//!    proved the address, so a spoofed Initial can never use up a real client's places.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use quinn::{Connecting, Connection, Endpoint, EndpointConfig, Incoming, ServerConfig, TransportConfig, VarInt};
use rustls::version::TLS13;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::{
    config::Config,
    listen::{doq, gate::Gate, h3, tls::Certificates},
    resolve::Transport,
    resolve::{
        Client, Resolver,
        access::Verdict,
        limits::{ConnectionLimits, ConnectionSlot},
    },
};

/// Datagrams quinn keeps for one connection attempt before it is admitted (the rest of a
/// client's first flight: a ClientHello rarely needs more than two).
const INCOMING_BUFFER_BYTES: u64 = 16 << 10;
/// All connection attempts together: with `INCOMING_BUFFER_BYTES` this bounds memory of attempts
/// waiting for admission; admission is synchronous, so the queue is short.
const INCOMING_BUFFER_TOTAL_BYTES: u64 = 4 << 20;
/// Connection attempts waiting for admission; past it quinn drops new Initials unread.
const MAX_INCOMING: usize = 4_096;

/// What became of one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Source outside `access.allow`: ignored, nothing sent.
    OutsideAllow,
    /// Sent a Retry: too many handshakes from unproven addresses in progress.
    Retry,
    /// Over the connection caps: refused.
    Refused,
    /// The handshake did not complete in time.
    TimedOut,
    /// The handshake failed (bad TLS, wrong ALPN, closed by the client).
    Failed,
    /// Established and served.
    Established,
}

impl Admission {
    pub const ALL: [Admission; 6] = [
        Admission::OutsideAllow,
        Admission::Retry,
        Admission::Refused,
        Admission::TimedOut,
        Admission::Failed,
        Admission::Established,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Admission::OutsideAllow => "outside_allow",
            Admission::Retry => "retry",
            Admission::Refused => "refused",
            Admission::TimedOut => "timed_out",
            Admission::Failed => "failed",
            Admission::Established => "established",
        }
    }
}

/// Connection attempts on the DoQ and DoH3 listeners, by transport and what became of them.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    counts: [[AtomicU64; Admission::ALL.len()]; 2],
}

impl HandshakeStats {
    fn slot(transport: Transport) -> usize {
        usize::from(transport == Transport::H3)
    }

    pub fn count(&self, transport: Transport, admission: Admission) {
        self.counts[Self::slot(transport)][admission as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, transport: Transport, admission: Admission) -> u64 {
        self.counts[Self::slot(transport)][admission as usize].load(Ordering::Relaxed)
    }
}

/// What every QUIC listener shares.
pub(crate) struct Shared {
    pub resolver: Arc<Resolver>,
    pub connections: Arc<ConnectionLimits>,
    pub in_flight: TaskTracker,
    pub stats: Arc<HandshakeStats>,
    /// Places for handshakes from addresses not yet proven (`server.quic_unvalidated_handshakes_max`).
    unvalidated: Arc<Semaphore>,
    handshake_timeout: Duration,
    /// `server.tcp_idle_timeout_ms`: also how long a DoH3 request may take to arrive.
    pub idle: Duration,
    pub https_path: Arc<str>,
}

/// The running DoQ and DoH3 listeners' addresses.
pub(crate) struct Started {
    pub quic_addrs: Vec<SocketAddr>,
    pub h3_addrs: Vec<SocketAddr>,
}

/// What the QUIC listeners are given to start.
pub(crate) struct Sockets {
    pub quic: Vec<std::net::UdpSocket>,
    pub h3: Vec<std::net::UdpSocket>,
}

/// Starts an accept loop in `tasks` for each DoQ and DoH3 socket.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    config: &Config,
    sockets: Sockets,
    resolver: &Arc<Resolver>,
    certificates: &Arc<Certificates>,
    connections: Arc<ConnectionLimits>,
    stats: Arc<HandshakeStats>,
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> std::io::Result<Started> {
    let idle = Duration::from_millis(config.server.tcp_idle_timeout_ms);
    let shared = Arc::new(Shared {
        resolver: Arc::clone(resolver),
        connections,
        in_flight: in_flight.clone(),
        stats,
        unvalidated: Arc::new(Semaphore::new(config.server.quic_unvalidated_handshakes_max)),
        handshake_timeout: Duration::from_millis(config.limits.handshake_timeout_ms),
        idle,
        https_path: config.server.https_path.as_str().into(),
    });
    let mut started = Started { quic_addrs: Vec::new(), h3_addrs: Vec::new() };
    let streams = config.server.tcp_max_in_flight_per_connection;
    for (transport, sockets) in [(Transport::Quic, sockets.quic), (Transport::H3, sockets.h3)] {
        let server_config = server_config(transport, certificates, idle, streams)?;
        for socket in sockets {
            let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
            let socket = runtime.wrap_udp_socket(socket)?;
            let gate = Gate::new(socket, Arc::clone(resolver), Arc::clone(&shared.stats), transport);
            let config = Some(server_config.clone());
            let endpoint =
                Endpoint::new_with_abstract_socket(EndpointConfig::default(), config, Arc::new(gate), runtime)?;
            let addr = endpoint.local_addr()?;
            if transport == Transport::Quic { &mut started.quic_addrs } else { &mut started.h3_addrs }.push(addr);
            tasks.spawn(accept_loop(endpoint, transport, Arc::clone(&shared)));
        }
    }
    Ok(started)
}

/// The quinn server configuration of one listener kind: TLS 1.3 only with the listener's ALPN
/// ("doq", RFC 9250 §4.1.1; "h3", RFC 9114 §3.1), 0-RTT off (RFC 9250 §4.5: every query here
/// is recorded as an attempt, so a replayed 0-RTT query would be a false record), no migration
/// (the access check and the per-source cap were made for the handshake's address), at most
/// `streams` requests open at once per connection, idle connections closed after `idle`.
pub(crate) fn server_config(
    transport: Transport,
    certificates: &Arc<Certificates>,
    idle: Duration,
    streams: usize,
) -> std::io::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(certificates) as Arc<dyn rustls::server::ResolvesServerCert>);
    tls.alpn_protocols = vec![if transport == Transport::Quic { b"doq".to_vec() } else { b"h3".to_vec() }];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(std::io::Error::other)?;
    let mut transport_config = TransportConfig::default();
    let streams = VarInt::from_u32(u32::try_from(streams).unwrap_or(u32::MAX).max(1));
    transport_config
        .max_concurrent_bidi_streams(streams)
        // DoQ forbids unidirectional streams (RFC 9250 §4.2); HTTP/3 needs its control stream,
        // the two QPACK streams and room for one grease stream (RFC 9114 §6.2).
        .max_concurrent_uni_streams(VarInt::from_u32(if transport == Transport::Quic { 0 } else { 4 }))
        .max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle).map_err(std::io::Error::other)?))
        .datagram_receive_buffer_size(None);
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(Arc::new(transport_config))
        .migration(false)
        .max_incoming(MAX_INCOMING)
        .incoming_buffer_size(INCOMING_BUFFER_BYTES)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_BYTES);
    Ok(config)
}

async fn accept_loop(endpoint: Endpoint, transport: Transport, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        admit(&shared, transport, incoming);
    }
}

/// Decides about one connection attempt (see the module docs) and starts its handshake.
fn admit(shared: &Arc<Shared>, transport: Transport, incoming: Incoming) {
    let peer = incoming.remote_address();
    let decided = |admission: Admission| {
        debug!(client = %peer.ip(), transport = transport.as_str(), admission = admission.as_str(), "quic attempt");
        shared.stats.count(transport, admission);
    };
    if shared.resolver.live().access.check(peer.ip()) == Verdict::Drop {
        incoming.ignore();
        return decided(Admission::OutsideAllow);
    }
    let validated = incoming.remote_address_validated();
    let unproven = if validated {
        None
    } else {
        match Arc::clone(&shared.unvalidated).try_acquire_owned() {
            Ok(place) => Some(place),
            Err(_) => {
                // Unvalidated always means a Retry is allowed; should quinn still decline, the
                // client gets nothing, as if the Initial was lost.
                if let Err(declined) = incoming.retry() {
                    declined.into_incoming().ignore();
                }
                return decided(Admission::Retry);
            }
        }
    };
    let Some(slot) = shared.connections.admit(peer.ip()) else {
        incoming.refuse();
        return decided(Admission::Refused);
    };
    // An unproven address holds no place until its handshake proves it (see the module docs).
    let slot = if validated { Some(slot) } else { None };
    match incoming.accept() {
        Ok(connecting) => {
            let shared = Arc::clone(shared);
            shared.in_flight.clone().spawn(handshake_and_serve(shared, transport, connecting, slot, unproven));
        }
        Err(_) => decided(Admission::Failed),
    }
}

async fn handshake_and_serve(
    shared: Arc<Shared>,
    transport: Transport,
    connecting: Connecting,
    slot: Option<ConnectionSlot>,
    unproven: Option<OwnedSemaphorePermit>,
) {
    let peer = connecting.remote_address();
    let Some(connection) = handshake(&shared, transport, connecting).await else { return };
    drop(unproven);
    let Some(slot) = slot.or_else(|| shared.connections.admit(peer.ip())) else {
        // Filled up while the handshake ran: RFC 9250 §4.3 DOQ_EXCESSIVE_LOAD, RFC 9114 §8.1
        // H3_EXCESSIVE_LOAD.
        let code = if transport == Transport::Quic { doq::EXCESSIVE_LOAD } else { h3::EXCESSIVE_LOAD };
        connection.close(code, b"too many connections");
        shared.stats.count(transport, Admission::Refused);
        return;
    };
    shared.stats.count(transport, Admission::Established);
    let client = Client { addr: peer, transport };
    if transport == Transport::Quic {
        doq::serve_connection(&shared, connection, client).await;
    } else {
        h3::serve_connection(&shared, connection, client).await;
    }
    drop(slot);
}

async fn handshake(shared: &Shared, transport: Transport, connecting: Connecting) -> Option<Connection> {
    let peer = connecting.remote_address();
    let outcome = match tokio::time::timeout(shared.handshake_timeout, connecting).await {
        Ok(Ok(connection)) => return Some(connection),
        Ok(Err(error)) => {
            debug!(client = %peer.ip(), transport = transport.as_str(), %error, "quic handshake failed");
            Admission::Failed
        }
        Err(_) => Admission::TimedOut,
    };
    shared.stats.count(transport, outcome);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_admission_is_counted_on_its_own_transport() {
        let stats = HandshakeStats::default();
        stats.count(Transport::Quic, Admission::Retry);
        stats.count(Transport::H3, Admission::Refused);
        stats.count(Transport::H3, Admission::Refused);
        assert_eq!(stats.get(Transport::Quic, Admission::Retry), 1);
        assert_eq!(stats.get(Transport::H3, Admission::Retry), 0);
        assert_eq!(stats.get(Transport::H3, Admission::Refused), 2);
    }
}
