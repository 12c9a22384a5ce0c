//! Listeners: UDP, TCP, DoT, DoH, DoQ and DoH3 sockets feeding the resolver.
//!
//! Owns: binding (one UDP socket per worker with SO_REUSEPORT, so the kernel spreads packets
//! across cores), one file per listener (`udp`, `tcp`, `tls` for the certificate of every
//! encrypted listener and the DoT/DoH accept loop, `https` for HTTP/2, `quic` for the DoQ and
//! DoH3 endpoints on quinn and their admission, `gate` for the access check under them, `doq`
//! for DoQ streams, `h3` for HTTP/3), and starting them on a running resolver. Sockets can be
//! bound by the caller and passed in (tests bind 127.0.0.1:0). The TLS accept loop hands each accepted
//! stream to the listener that serves it through one function (`tls::accept_loop` takes the
//! handler); it never calls back into `tcp` or `https`. Every stream listener closes a source
//! outside `access.allow` at accept, before it takes a connection slot; the QUIC ones drop its
//! datagrams as they are read, before quinn does any crypto.
//! Must not touch: what the answer is (`resolve`), or attempt records beyond the client's
//! transport.

pub mod doq;
mod gate;
pub mod h3;
pub mod https;
pub mod quic;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::task::TaskTracker;

use crate::{
    config::Config,
    resolve::Transport,
    resolve::{Resolver, limits::ConnectionLimits},
};

use self::{
    quic::{HandshakeStats, Sockets},
    tls::{Certificates, ServerTls, Service, TlsError},
};

/// Bound sockets, ready to serve.
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    /// DNS-over-TLS (`server.tls`).
    pub tls: Vec<std::net::TcpListener>,
    /// DNS-over-HTTPS (`server.https`).
    pub https: Vec<std::net::TcpListener>,
    /// DNS-over-QUIC (`server.quic`).
    pub quic: Vec<std::net::UdpSocket>,
    /// DNS-over-HTTPS over HTTP/3 (`server.h3`).
    pub h3: Vec<std::net::UdpSocket>,
}

impl Listeners {
    /// Binds the configured addresses: `workers` UDP sockets per address sharing the port.
    pub fn bind(config: &Config) -> io::Result<Listeners> {
        let workers = worker_count(config);
        let mut udp = Vec::new();
        for addr in &config.server.udp {
            let first = bind_udp(*addr)?;
            let addr = first.local_addr()?;
            udp.push(first);
            for _ in 1..workers {
                udp.push(bind_udp(addr)?);
            }
        }
        let bind_all = |addrs: &[SocketAddr]| addrs.iter().map(|addr| bind_tcp(*addr)).collect::<io::Result<Vec<_>>>();
        let tcp = bind_all(&config.server.tcp)?;
        let tls = bind_all(&config.server.tls)?;
        let https = bind_all(&config.server.https)?;
        let bind_udp_all =
            |addrs: &[SocketAddr]| addrs.iter().map(|addr| bind_udp(*addr)).collect::<io::Result<Vec<_>>>();
        let quic = bind_udp_all(&config.server.quic)?;
        let h3 = bind_udp_all(&config.server.h3)?;
        Ok(Listeners { udp, tcp, tls, https, quic, h3 })
    }

    /// One UDP and one TCP socket on the same loopback port, chosen by the system (for tests).
    /// The UDP port may be taken for TCP by another socket; then another port is tried.
    pub fn bind_loopback() -> io::Result<Listeners> {
        let mut last = None;
        for _ in 0..32 {
            let udp = bind_udp("127.0.0.1:0".parse().expect("literal"))?;
            let port = udp.local_addr()?.port();
            match bind_tcp(SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(tcp) => {
                    let (tls, https, quic, h3) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    return Ok(Listeners { udp: vec![udp], tcp: vec![tcp], tls, https, quic, h3 });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free loopback port")))
    }

    /// Adds one DoT and one DoH listener on loopback ports chosen by the system (for tests; the
    /// config must name a certificate).
    pub fn with_tls_loopback(mut self) -> io::Result<Listeners> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        self.tls.push(bind_tcp(loopback)?);
        self.https.push(bind_tcp(loopback)?);
        Ok(self)
    }

    /// Adds one DoQ and one DoH3 listener on loopback UDP ports chosen by the system (for tests;
    /// the config must name a certificate).
    pub fn with_quic_loopback(mut self) -> io::Result<Listeners> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        self.quic.push(bind_udp(loopback)?);
        self.h3.push(bind_udp(loopback)?);
        Ok(self)
    }
}

/// Why the encrypted listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot use listening socket: {0}")]
    Socket(#[from] io::Error),
}

pub fn worker_count(config: &Config) -> usize {
    match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    }
}

pub(crate) fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Room for bursts while a worker is busy: 4 MiB, as large resolvers configure.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    Ok(socket.into())
}

pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("cannot bind TCP {addr}: {e}")))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The running encrypted listeners.
pub(crate) struct Started {
    pub tls_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    pub quic_addrs: Vec<SocketAddr>,
    pub h3_addrs: Vec<SocketAddr>,
    /// None when there are no such listeners.
    pub certificates: Option<Arc<Certificates>>,
}

/// Starts a task per DoT (`dot`), DoH (`doh`), DoQ and DoH3 listener in `tasks`, if there are
/// any; they need `server.tls_cert_file` and `server.tls_key_file`. The QUIC ones count their
/// connection attempts in `handshakes`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_encrypted(
    config: &Config,
    dot: Vec<std::net::TcpListener>,
    doh: Vec<std::net::TcpListener>,
    (quic, h3): (Vec<std::net::UdpSocket>, Vec<std::net::UdpSocket>),
    resolver: &Arc<Resolver>,
    (connections, handshakes): (Arc<ConnectionLimits>, Arc<HandshakeStats>),
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> Result<Started, ListenError> {
    let mut started = Started {
        tls_addrs: Vec::new(),
        https_addrs: Vec::new(),
        quic_addrs: Vec::new(),
        h3_addrs: Vec::new(),
        certificates: None,
    };
    if dot.is_empty() && doh.is_empty() && quic.is_empty() && h3.is_empty() {
        return Ok(started);
    }
    let certificates = Arc::new(Certificates::new(ServerTls::load(&config.server)?));
    let sockets = Sockets { quic, h3 };
    let over_quic =
        quic::start(config, sockets, resolver, &certificates, Arc::clone(&connections), handshakes, in_flight, tasks)?;
    (started.quic_addrs, started.h3_addrs) = (over_quic.quic_addrs, over_quic.h3_addrs);
    let service = Arc::new(Service {
        resolver: Arc::clone(resolver),
        certificates: Arc::clone(&certificates),
        connections,
        in_flight: in_flight.clone(),
        idle: Duration::from_millis(config.server.tcp_idle_timeout_ms),
        handshake: Duration::from_millis(config.limits.handshake_timeout_ms),
        stream: tcp::StreamLimits::of(config),
        https_path: config.server.https_path.as_str().into(),
    });
    for listener in dot {
        let listener = TcpListener::from_std(listener)?;
        started.tls_addrs.push(listener.local_addr()?);
        let resolver = Arc::clone(resolver);
        let limits = service.stream;
        tasks.spawn(tls::accept_loop(listener, Transport::Tls, Arc::clone(&service), move |stream, client| {
            tcp::serve_stream(Arc::clone(&resolver), stream, client, limits)
        }));
    }
    for listener in doh {
        let listener = TcpListener::from_std(listener)?;
        started.https_addrs.push(listener.local_addr()?);
        let doh = Arc::clone(&service);
        tasks.spawn(tls::accept_loop(listener, Transport::Https, Arc::clone(&service), move |stream, client| {
            https::serve_connection(Arc::clone(&doh), stream, client)
        }));
    }
    started.certificates = Some(certificates);
    Ok(started)
}

/// One line per encrypted listener for `nxguard check`: whether it is on, where, and what it
/// needs (certificate, key, the port clients must reach) and enforces before the handshake.
pub fn requirements(config: &Config) -> Vec<String> {
    let server = &config.server;
    let certificate = match (&server.tls_cert_file, &server.tls_key_file) {
        (Some(cert), Some(key)) => format!("certificate {} and key {}", cert.display(), key.display()),
        _ => "server.tls_cert_file and server.tls_key_file (not set)".to_string(),
    };
    let caps = format!(
        "access.allow checked before the handshake, at most {} connections and {} per client (limits.tcp_max_connections*, shared with TCP), handshakes bounded by limits.handshake_timeout_ms = {}, idle connections by server.tcp_idle_timeout_ms = {}",
        config.limits.tcp_max_connections,
        config.limits.tcp_max_connections_per_client,
        config.limits.handshake_timeout_ms,
        server.tcp_idle_timeout_ms
    );
    let retry = format!(
        "a Retry once {} handshakes from unproven addresses are in progress (server.quic_unvalidated_handshakes_max)",
        server.quic_unvalidated_handshakes_max
    );
    let kinds: [(&str, &str, &[SocketAddr], &str, String); 4] = [
        ("dot", "tls", &server.tls, "tcp", "RFC 7858, no ALPN needed".to_string()),
        ("doh", "https", &server.https, "tcp", format!("HTTP/2 (ALPN h2) at {}", server.https_path)),
        ("doq", "quic", &server.quic, "udp", format!("RFC 9250 (ALPN doq, TLS 1.3, 0-RTT off), {retry}")),
        (
            "doh3",
            "h3",
            &server.h3,
            "udp",
            format!("HTTP/3 (ALPN h3, TLS 1.3, 0-RTT off) at {}, {retry}", server.https_path),
        ),
    ];
    let mut lines = Vec::new();
    for (name, key, addrs, proto, serves) in kinds {
        if addrs.is_empty() {
            lines.push(format!(
                "listener {name}: off (server.{key} = []); it needs {certificate} and a {proto} port clients can reach"
            ));
            continue;
        }
        let on: Vec<String> = addrs.iter().map(|addr| format!("{addr}/{proto}")).collect();
        lines.push(format!(
            "listener {name}: on {} (clients must reach these {proto} ports); {serves}; uses {certificate}; {caps}",
            on.join(", ")
        ));
    }
    lines
}
