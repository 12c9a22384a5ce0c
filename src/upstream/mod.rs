//! Upstream resolvers: sending a query and getting back a matching answer.
//!
//! Owns: the transports (UDP with TCP fallback on truncation, TCP, DNS-over-TLS, DNS-over-HTTPS,
//! DNS-over-QUIC),
//! spoofing checks on plain answers (random source ports and IDs, 0x20, question must match;
//! UDP goes over a few long-lived sockets per server, see `udp`), failover
//! in configured order, and the overall time bound; which upstream a query goes to (`pool`:
//! zones, health, probes, strategy); what one attempt does when a server misbehaves and what
//! is remembered about it (`fallback`: error rcodes, EDNS fallback, case-folding servers); the
//! addresses of upstreams given by host name (`bootstrap`).
//! Must not touch: what is asked (the pipeline builds the query; `fallback` only drops our own
//! OPT record for servers that need plain DNS) or what is done with the answer; nothing here
//! imports `resolve`.
//!
//! Plain UDP/TCP are written here on bare sockets: the answer's bytes pass through untouched,
//! negative answers included. DoT, DoH and DoQ use hickory-net's multiplexed exchanges (DoQ: one
//! QUIC connection per server, a stream per query). (hickory-
//! resolver's name-server pool turns NXDOMAIN, NODATA and SERVFAIL answers into errors, which
//! would lose the upstream's answer; so it is not used here for queries, only to resolve
//! upstreams given by host name in `bootstrap`.)

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_net::{
    runtime::{RuntimeProvider, Spawn, TokioRuntimeProvider},
    xfer::{DnsExchange, DnsHandle, FirstAnswer},
};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message};

pub mod bootstrap;
pub mod fallback;
pub mod pool;
mod udp;

use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Mutex,
    time::Instant,
};
pub use udp::UdpPool;

use crate::{
    config::{Protocol, UpstreamServer},
    dns::wire::{self, HEADER_LEN},
};

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("upstream {server} did not answer in time")]
    Timeout { server: SocketAddr },
    #[error("upstream {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    /// The causes are boxed to keep the query path's `Result` small.
    #[error("upstream {server}: {source}")]
    Exchange { server: SocketAddr, source: Box<hickory_net::NetError> },
    #[error("upstream {server} answered with a malformed message")]
    Malformed { server: SocketAddr },
    #[error("cannot set up TLS for upstream {server}: {source}")]
    Tls { server: SocketAddr, source: Box<TlsSetupError> },
    /// SERVFAIL, REFUSED, NOTIMP, or FORMERR after the retry without EDNS (see `fallback`).
    #[error("upstream {server} answered {}", rcode_name(*rcode))]
    Rcode { server: SocketAddr, rcode: u8 },
    #[error("upstream {server} answered in another letter case, and neither TCP nor a second query confirmed it")]
    CaseMismatch { server: SocketAddr },
    #[error("upstream {name}: the name has not resolved yet (upstream.bootstrap)")]
    Unresolved { name: String, server: SocketAddr },
    #[error(transparent)]
    Bootstrap(#[from] crate::dns::lookup::LookupError),
}

/// What went wrong setting up TLS for an encrypted upstream.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("no TLS config")]
    Missing,
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Name(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("{path}: {source}")]
    CaFile { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{path}: {source}")]
    CaCertificate { path: PathBuf, source: rustls::Error },
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        wire::rcode::FORMERR => "FORMERR".into(),
        wire::rcode::SERVFAIL => "SERVFAIL".into(),
        wire::rcode::NOTIMP => "NOTIMP".into(),
        wire::rcode::REFUSED => "REFUSED".into(),
        other => format!("rcode {other}"),
    }
}

type Exchange = DnsExchange<TokioRuntimeProvider>;

/// Upper bounds (ms) of the upstream latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// Per-server counters for the metrics endpoint.
#[derive(Default)]
pub struct ServerStats {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    pub errors: AtomicU64,
    /// Error answers and the fallbacks taken (see `fallback`).
    pub fallbacks: fallback::Fallbacks,
}

impl ServerStats {
    pub fn answered(&self, took: Duration) {
        let ms = took.as_millis() as u64;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|&b| ms < b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative bucket counts (Prometheus `le` semantics), total count, sum in seconds.
    pub fn histogram(&self) -> (Vec<u64>, u64, f64) {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (cumulative, self.count.load(Ordering::Relaxed), sum)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// One upstream server and its transport.
pub struct Upstream {
    config: UpstreamServer,
    /// The open DoT/DoH/DoQ connection and the address it goes to, reconnected after a failure
    /// or when the server's name resolves to another address.
    exchange: Mutex<Option<(Exchange, SocketAddr)>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pub stats: ServerStats,
    /// Owns the exchange's background task: hickory-net aborts it when the provider is dropped.
    provider: TokioRuntimeProvider,
    /// The long-lived UDP sockets (protocol udp), replaced when the server's name resolves to
    /// another address.
    udp: arc_swap::ArcSwap<UdpPool>,
    /// The server's host name when it was given as `host:port`.
    host: Option<Arc<bootstrap::Host>>,
    /// What has been learnt about this server: EDNS, case folding (see `fallback`).
    pub memory: fallback::Memory,
}

impl Upstream {
    /// One configured server; reads its CA file for tls, https and quic. A server named by host
    /// is resolved through `bootstrap` (the config's validation makes sure there is one).
    pub fn new(
        config: &UpstreamServer,
        bootstrap: Option<&hickory_resolver::TokioResolver>,
    ) -> Result<Upstream, UpstreamError> {
        let host = match (&config.host, bootstrap) {
            (Some(name), Some(resolver)) => Some(bootstrap::Host::new(name, config.address.port(), resolver.clone())),
            (Some(name), None) => {
                return Err(UpstreamError::Unresolved { name: name.clone(), server: config.address });
            }
            (None, _) => None,
        };
        let tls = match config.protocol {
            Protocol::Tls | Protocol::Https | Protocol::Quic => Some(Arc::new(tls_config(config)?)),
            Protocol::Udp | Protocol::Tcp => None,
        };
        Ok(Upstream {
            config: config.clone(),
            exchange: Mutex::new(None),
            tls,
            stats: ServerStats::default(),
            provider: TokioRuntimeProvider::new(),
            udp: arc_swap::ArcSwap::from_pointee(UdpPool::new(config.address)),
            host,
            memory: fallback::Memory::new(),
        })
    }

    /// The server's address (for a server named by host: the last one its name resolved to).
    pub fn address(&self) -> SocketAddr {
        self.host.as_ref().and_then(|host| host.current()).unwrap_or(self.config.address)
    }

    /// Resolves the server's name again now, in the background, if it has one (a reload).
    pub fn resolve_again(&self) {
        if let Some(host) = &self.host {
            host.resolve_again();
        }
    }

    /// The address to send to now, resolving the server's name first when it has one.
    async fn target(&self) -> Result<SocketAddr, UpstreamError> {
        let Some(host) = &self.host else {
            return Ok(self.config.address);
        };
        let name = self.config.host.clone().unwrap_or_default();
        let address = host.address().await.ok_or(UpstreamError::Unresolved { name, server: self.config.address })?;
        if self.config.protocol == Protocol::Udp && self.udp.load().server() != address {
            self.udp.store(Arc::new(UdpPool::new(address)));
        }
        Ok(address)
    }

    pub fn protocol(&self) -> Protocol {
        self.config.protocol
    }

    /// The pooled UDP sockets (used only with protocol udp), for their counters.
    pub fn udp(&self) -> Arc<UdpPool> {
        self.udp.load_full()
    }
}

impl Upstream {
    /// Sends `query` to this server; the caller bounds the time. Any answer, error rcodes
    /// included, is noted as a sign of life (`fallback::Memory::heard_after`; over UDP, each
    /// delivery is, in `Upstream::udp_exchange`).
    pub async fn exchange(&self, query: &[u8], deadline: Instant) -> Result<Vec<u8>, UpstreamError> {
        let result = self.exchange_once(query, deadline).await;
        if result.is_ok() && self.config.protocol != Protocol::Udp {
            self.memory.hear(std::time::Instant::now());
        }
        result
    }

    async fn exchange_once(&self, query: &[u8], deadline: Instant) -> Result<Vec<u8>, UpstreamError> {
        let server = self.target().await?;
        match self.config.protocol {
            Protocol::Udp => self.udp_exchange(query, deadline).await,
            Protocol::Tcp => tcp_exchange(server, query).await,
            Protocol::Tls | Protocol::Https | Protocol::Quic => {
                // Boxed: hickory's exchange future is over 6 KB, and every spawned query that
                // reaches an upstream would otherwise carry (and copy) it, UDP ones included.
                let result = Box::pin(self.encrypted_exchange(server, query, deadline)).await;
                if result.is_err() {
                    *self.exchange.lock().await = None;
                }
                result
            }
        }
    }

    async fn encrypted_exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, UpstreamError> {
        let exchange = self.connected(server, deadline).await?;
        let message = Message::from_vec(query).map_err(|_| UpstreamError::Malformed { server })?;
        let mut options = DnsRequestOptions::default();
        options.use_edns = message.edns.is_some();
        let response = exchange
            .send(DnsRequest::new(message, options))
            .first_answer()
            .await
            .map_err(|source| UpstreamError::Exchange { server, source: Box::new(source) })?;
        let mut answer = response.into_buffer();
        if answer.len() < HEADER_LEN {
            return Err(UpstreamError::Malformed { server });
        }
        // The multiplexer chose its own ID; give the answer back the one we asked with.
        answer[..2].copy_from_slice(&query[..2]);
        Ok(answer)
    }

    async fn connected(&self, server: SocketAddr, deadline: Instant) -> Result<Exchange, UpstreamError> {
        let mut slot = self.exchange.lock().await;
        if let Some((exchange, _)) = slot.as_ref().filter(|(_, to)| *to == server) {
            return Ok(exchange.clone());
        }
        let tls =
            self.tls.clone().ok_or_else(|| UpstreamError::Tls { server, source: Box::new(TlsSetupError::Missing) })?;
        let name = self.config.tls_name.clone().unwrap_or_default();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let provider = self.provider.clone();
        let connect_error = |source| UpstreamError::Exchange { server, source: Box::new(source) };
        let exchange = match self.config.protocol {
            Protocol::Https => {
                let mut builder = hickory_net::h2::HttpsClientStream::builder(tls, provider);
                builder.request_timeout(timeout);
                let path = self.config.path.clone().unwrap_or_else(|| "/dns-query".into());
                builder.exchange(server, name.into(), path.into()).await.map_err(connect_error)?
            }
            Protocol::Quic => {
                let connect = hickory_net::quic::QuicClientStream::builder()
                    .crypto_config((*tls).clone())
                    .request_timeout(timeout)
                    .build(server, name.into());
                let stream = tokio::time::timeout(timeout, connect)
                    .await
                    .map_err(|_| UpstreamError::Timeout { server })?
                    .map_err(connect_error)?;
                let (exchange, background) = DnsExchange::from_stream(stream);
                provider.create_handle().spawn_bg(background);
                exchange
            }
            _ => {
                let server_name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| UpstreamError::Tls { server, source: Box::new(e.into()) })?;
                hickory_net::tls::tls_exchange(server, server_name, (*tls).clone(), timeout, None, provider)
                    .await
                    .map_err(connect_error)?
            }
        };
        *slot = Some((exchange.clone(), server));
        Ok(exchange)
    }
}

fn tls_config(server: &UpstreamServer) -> Result<rustls::ClientConfig, UpstreamError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let address = server.address;
    let fail = |source: TlsSetupError| UpstreamError::Tls { server: address, source: Box::new(source) };
    let Some(ca_file) = &server.ca_file else {
        return hickory_net::tls::client_config().map_err(|e| fail(e.into()));
    };
    let mut roots = rustls::RootCertStore::empty();
    let unreadable = |source| fail(TlsSetupError::CaFile { path: ca_file.clone(), source });
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(unreadable)? {
        let cert = cert.map_err(unreadable)?;
        roots.add(cert).map_err(|source| fail(TlsSetupError::CaCertificate { path: ca_file.clone(), source }))?;
    }
    let provider = Arc::new(hickory_net::tls::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.into()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One query over a new TCP connection (RFC 7766 §8 framing: a two-byte length prefix).
async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, UpstreamError> {
    let io = |source| UpstreamError::Io { server, source };
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.map_err(io)?;
    if wire::matches_query(query, &answer) {
        return Ok(answer);
    }
    wire::error_without_question(query, &answer).ok_or(UpstreamError::Malformed { server })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::flag;

    #[test]
    fn answer_must_echo_id_and_question() {
        let mut query = Vec::new();
        wire::push_header(&mut query, 0x1234, flag::RD, [1, 0, 0, 0]);
        wire::push_name(&mut query, "a.example");
        query.extend_from_slice(&[0, 1, 0, 1]);
        let mut answer = query.clone();
        answer[2] |= 0x80;
        assert!(wire::matches_query(&query, &answer));
        answer[HEADER_LEN + 1] = b'A';
        assert!(wire::matches_query(&query, &answer), "case differences are allowed");
        let mut wrong_id = answer.clone();
        wrong_id[1] ^= 1;
        assert!(!wire::matches_query(&query, &wrong_id));
        let mut wrong_name = answer.clone();
        wrong_name[HEADER_LEN + 1] = b'b';
        assert!(!wire::matches_query(&query, &wrong_name));
        assert!(!wire::matches_query(&query, &query), "a query is not an answer");
    }
}
