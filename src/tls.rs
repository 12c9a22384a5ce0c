//! TLS for clients: the certificate nxguard presents on its DNS-over-TLS (RFC 7858) and
//! DNS-over-HTTPS (RFC 8484) listeners, and accepting those connections.
//!
//! Owns: reading the PEM certificate chain and key (`server.tls_cert_file`,
//! `server.tls_key_file`), the two TLS configurations built from them (no ALPN for DoT; "h2" for
//! DoH, RFC 8484 §5.2), swapping them on reload (new connections get the new certificate, open
//! ones keep theirs), and the accept loop: access check before the handshake, connection caps
//! shared with plain TCP, handshake timeout. A DoT connection then carries the 2-byte length
//! framing of RFC 7766 (served by `server`), a DoH connection HTTP/2 (`https`).
//! Does not own: the answer (`resolver`) or binding the sockets (`server`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use thiserror::Error;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::{
    access::Verdict,
    attempts::Transport,
    config::{Config, ServerConfig},
    https,
    limits::ConnectionLimits,
    resolver::{Client, Resolver},
    server::{self, StartError},
};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("server.tls_cert_file and server.tls_key_file are required for DoT and DoH listeners")]
    NotConfigured,
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("certificate {cert} with key {key} is unusable: {source}")]
    Rejected { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

/// The TLS configurations built from one certificate and key.
pub struct ServerTls {
    dot: TlsAcceptor,
    doh: TlsAcceptor,
}

impl ServerTls {
    /// Reads the certificate chain and key named in `config` and builds both configurations.
    pub fn load(config: &ServerConfig) -> Result<ServerTls, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
            return Err(TlsError::NotConfigured);
        };
        let read = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| read(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read(cert, e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { path: cert.clone() });
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, e))?;
        let rejected = |source| TlsError::Rejected { cert: cert.clone(), key: key.clone(), source };
        let build = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut tls = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(rejected)?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), private_key.clone_key())
                .map_err(rejected)?;
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(tls)))
        };
        // DoT without ALPN: a client offering "dot" (or nothing) is served either way.
        Ok(ServerTls { dot: build(&[])?, doh: build(&[b"h2"])? })
    }
}

/// The certificate in force, replaced as a whole on reload.
pub struct Certificates {
    current: ArcSwap<ServerTls>,
}

impl Certificates {
    pub fn new(tls: ServerTls) -> Certificates {
        Certificates { current: ArcSwap::from_pointee(tls) }
    }

    /// New connections use `tls` from now on; open connections keep the one they started with.
    pub fn replace(&self, tls: ServerTls) {
        self.current.store(Arc::new(tls));
    }

    fn acceptor(&self, transport: Transport) -> TlsAcceptor {
        let current = self.current.load();
        if transport == Transport::Https { current.doh.clone() } else { current.dot.clone() }
    }
}

/// What the DoT and DoH listeners share.
pub(crate) struct Service {
    pub resolver: Arc<Resolver>,
    pub certificates: Arc<Certificates>,
    /// The same caps as plain TCP: an encrypted connection is a TCP connection too.
    pub connections: Arc<ConnectionLimits>,
    pub in_flight: TaskTracker,
    /// `server.tcp_idle_timeout_ms`: bounds the handshake and idle connections.
    pub idle: Duration,
    pub https_path: Arc<str>,
}

/// The running DoT and DoH listeners.
pub(crate) struct Started {
    pub tls_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    /// None when there are no such listeners.
    pub certificates: Option<Arc<Certificates>>,
}

/// Starts a task per DoT (`dot`) and DoH (`doh`) listener in `tasks`, if there are any; they
/// need `server.tls_cert_file` and `server.tls_key_file`.
pub(crate) fn start(
    config: &Config,
    dot: Vec<std::net::TcpListener>,
    doh: Vec<std::net::TcpListener>,
    resolver: &Arc<Resolver>,
    connections: Arc<ConnectionLimits>,
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> Result<Started, StartError> {
    let mut started = Started { tls_addrs: Vec::new(), https_addrs: Vec::new(), certificates: None };
    if dot.is_empty() && doh.is_empty() {
        return Ok(started);
    }
    let certificates = Arc::new(Certificates::new(ServerTls::load(&config.server)?));
    let service = Arc::new(Service {
        resolver: Arc::clone(resolver),
        certificates: Arc::clone(&certificates),
        connections,
        in_flight: in_flight.clone(),
        idle: Duration::from_millis(config.server.tcp_idle_timeout_ms),
        https_path: config.server.https_path.as_str().into(),
    });
    let listeners = dot.into_iter().map(|l| (l, Transport::Tls)).chain(doh.into_iter().map(|l| (l, Transport::Https)));
    for (listener, transport) in listeners {
        let listener = TcpListener::from_std(listener)?;
        let addrs = if transport == Transport::Tls { &mut started.tls_addrs } else { &mut started.https_addrs };
        addrs.push(listener.local_addr()?);
        tasks.spawn(serve(listener, transport, Arc::clone(&service)));
    }
    started.certificates = Some(certificates);
    Ok(started)
}

/// Accepts connections on `listener` and serves `transport` (`Tls` or `Https`) on each.
async fn serve(listener: TcpListener, transport: Transport, service: Arc<Service>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                warn!(%error, transport = transport.as_str(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A client that would get no answer gets no handshake either: TLS costs CPU.
        if service.resolver.live().access.check(peer.ip()) == Verdict::Drop {
            debug!(client = %peer.ip(), transport = transport.as_str(), "connection outside access.allow closed");
            continue;
        }
        let Some(slot) = service.connections.admit(peer.ip()) else {
            debug!(client = %peer.ip(), transport = transport.as_str(), "connection refused: too many open");
            continue;
        };
        let connection = serve_connection(Arc::clone(&service), stream, peer, transport);
        service.in_flight.spawn(async move {
            connection.await;
            drop(slot);
        });
    }
}

async fn serve_connection(service: Arc<Service>, stream: TcpStream, peer: SocketAddr, transport: Transport) {
    let _ = stream.set_nodelay(true);
    let acceptor = service.certificates.acceptor(transport);
    let stream = match tokio::time::timeout(service.idle, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(client = %peer.ip(), %error, transport = transport.as_str(), "tls handshake failed");
            return;
        }
        Err(_) => {
            debug!(client = %peer.ip(), transport = transport.as_str(), "tls handshake timed out");
            return;
        }
    };
    let client = Client { addr: peer, transport };
    if transport == Transport::Https {
        https::serve_connection(service, stream, client).await;
    } else {
        server::serve_stream(Arc::clone(&service.resolver), stream, client, service.idle).await;
    }
}
