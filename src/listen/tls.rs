//! TLS for clients: the certificate nxguard presents on its DNS-over-TLS (RFC 7858),
//! DNS-over-HTTPS (RFC 8484), DNS-over-QUIC (RFC 9250) and DoH3 listeners, and accepting the
//! TCP ones' connections.
//!
//! Owns: reading the PEM certificate chain and key (`server.tls_cert_file`,
//! `server.tls_key_file`), the two TLS configurations built from them (no ALPN for DoT; "h2" for
//! DoH, RFC 8484 §5.2), swapping them on reload (new connections get the new certificate, open
//! ones keep theirs), and the accept loop: access check before the handshake, connection caps
//! shared with plain TCP, the handshake timeout (`limits.handshake_timeout_ms`). The accept loop hands each established stream to
//! the handler it is given: a DoT connection then carries the 2-byte length framing of RFC 7766
//! (`tcp`), a DoH connection HTTP/2 (`https`). Nothing here imports either.
//! Does not own: the answer (`resolve`) or binding the sockets (`listen`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::{
    config::ServerConfig,
    listen::tcp,
    resolve::Transport,
    resolve::{Client, Resolver, access::Verdict, limits::ConnectionLimits},
};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("server.tls_cert_file and server.tls_key_file are required for DoT and DoH listeners")]
    NotConfigured,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("certificate {cert} with key {key} is unusable: {source}")]
    Rejected { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

/// The TLS configurations built from one certificate and key.
pub struct ServerTls {
    dot: TlsAcceptor,
    doh: TlsAcceptor,
    /// The same certificate and key for the QUIC listeners (`quic` builds their TLS 1.3
    /// configuration with its own ALPN and asks `Certificates` for the key per handshake).
    key: Arc<rustls::sign::CertifiedKey>,
}

impl ServerTls {
    /// Reads the certificate chain and key named in `config` and builds both configurations.
    pub fn load(config: &ServerConfig) -> Result<ServerTls, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
            return Err(TlsError::NotConfigured);
        };
        let read = |path: &Path, source| TlsError::Read { path: path.to_path_buf(), source };
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
        let signing = rustls::crypto::ring::sign::any_supported_type(&private_key).map_err(rejected)?;
        let key = Arc::new(rustls::sign::CertifiedKey::new(chain.clone(), signing));
        // DoT without ALPN: a client offering "dot" (or nothing) is served either way.
        Ok(ServerTls { dot: build(&[])?, doh: build(&[b"h2"])?, key })
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

    pub(crate) fn acceptor(&self, transport: Transport) -> TlsAcceptor {
        let current = self.current.load();
        if transport == Transport::Https { current.doh.clone() } else { current.dot.clone() }
    }
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificates")
    }
}

/// The DoQ and DoH3 listeners' handshakes ask here, so a reload reaches them too.
impl rustls::server::ResolvesServerCert for Certificates {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

/// What the DoT and DoH listeners share.
pub(crate) struct Service {
    pub resolver: Arc<Resolver>,
    pub certificates: Arc<Certificates>,
    /// The same caps as plain TCP: an encrypted connection is a TCP connection too.
    pub connections: Arc<ConnectionLimits>,
    pub in_flight: TaskTracker,
    /// `server.tcp_idle_timeout_ms`: bounds idle connections.
    pub idle: Duration,
    /// `limits.handshake_timeout_ms`: bounds the TLS handshake.
    pub handshake: Duration,
    /// How a DoT connection is served (idle timeout, queries in flight per connection).
    pub stream: tcp::StreamLimits,
    pub https_path: Arc<str>,
}

/// Accepts connections on `listener`, checks access and the connection caps before the
/// handshake, completes the TLS handshake within `limits.handshake_timeout_ms`, and hands each established
/// stream to `serve`, the listener that speaks the protocol inside (DoT framing or HTTP/2).
/// This is the one way the TLS layer reaches a listener.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, transport: Transport, service: Arc<Service>, serve: F)
where
    F: Fn(TlsStream<TcpStream>, Client) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
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
        let acceptor = service.certificates.acceptor(transport);
        let bound = service.handshake;
        let serve = Arc::clone(&serve);
        service.in_flight.spawn(async move {
            if let Some(stream) = handshake(acceptor, stream, peer, transport, bound).await {
                serve(stream, Client { addr: peer, transport }).await;
            }
            drop(slot);
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
    bound: Duration,
) -> Option<TlsStream<TcpStream>> {
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(bound, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            debug!(client = %peer.ip(), %error, transport = transport.as_str(), "tls handshake failed");
            None
        }
        Err(_) => {
            debug!(client = %peer.ip(), transport = transport.as_str(), "tls handshake timed out");
            None
        }
    }
}
