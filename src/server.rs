//! Listeners: UDP, TCP, DoT and DoH sockets feeding the resolver.
//!
//! Owns: binding (one UDP socket per worker with SO_REUSEPORT, so the kernel spreads packets
//! across cores), the receive/answer loops, TCP framing (RFC 7766 §8, also carried by DoT) and
//! idle timeouts, and starting a whole server from a config. TLS itself is in `tls`, HTTP/2 in
//! `https`. Sockets can be bound by the caller and passed in (tests
//! bind 127.0.0.1:0). Does not own: what the answer is (`resolver`).

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    task::JoinSet,
};
use tracing::{debug, error, info, warn};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    attempts::{self, Outputs, Sink, Transport},
    config::Config,
    datagrams::{Batch, Outbox},
    devices::{Devices, DevicesError},
    limits::ConnectionLimits,
    metrics,
    policy::{self, PolicyError},
    resolver::{Client, Resolver, Step},
    siem::{SiemError, SiemWriter},
    store::{Pseudonymizer, StoreError, StoreWriter},
    tls::{self, Certificates, ServerTls, TlsError},
    upstream::UpstreamError,
};

/// Largest UDP query we read; anything longer is cut and then fails to parse.
const UDP_RECV_BUFFER: usize = 4096;

/// Bound sockets, ready to serve.
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    /// DNS-over-TLS (`server.tls`).
    pub tls: Vec<std::net::TcpListener>,
    /// DNS-over-HTTPS (`server.https`).
    pub https: Vec<std::net::TcpListener>,
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
        Ok(Listeners { udp, tcp, tls, https })
    }

    /// One UDP and one TCP socket on the same loopback port, chosen by the system (for tests).
    /// The UDP port may be taken for TCP by another socket; then another port is tried.
    pub fn bind_loopback() -> io::Result<Listeners> {
        let mut last = None;
        for _ in 0..32 {
            let udp = bind_udp("127.0.0.1:0".parse().expect("literal"))?;
            let port = udp.local_addr()?.port();
            match bind_tcp(SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(tcp) => return Ok(Listeners { udp: vec![udp], tcp: vec![tcp], tls: Vec::new(), https: Vec::new() }),
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
}

pub fn worker_count(config: &Config) -> usize {
    match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
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

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
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

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("cannot use listening socket: {0}")]
    Socket(#[from] io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Devices(#[from] DevicesError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Siem(#[from] SiemError),
}

/// A running server: its resolver, the addresses it listens on, and its tasks.
pub struct Running {
    pub resolver: Arc<Resolver>,
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The DoT/DoH certificate, when those listeners run.
    certificates: Option<Arc<Certificates>>,
    listeners: JoinSet<()>,
    /// Queries being answered by spawned tasks (upstream work, TCP connections).
    in_flight: TaskTracker,
    dispatcher: tokio::task::JoinHandle<()>,
    stop_dispatcher: CancellationToken,
    pub records: Records,
}

/// Where attempt records end up besides the log, and the device identities they carry.
pub struct Records {
    pub devices: Arc<Devices>,
    pub store: Option<StoreWriter>,
    pub siem: Option<SiemWriter>,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl Records {
    /// Opens the configured outputs; `taps` receive every record too (tests).
    fn open(config: &Config, taps: Vec<Sink>) -> Result<(Records, Outputs), StartError> {
        let devices = Arc::new(Devices::load(&config.devices)?);
        let pseudonymizer = match (&config.privacy.key_file, config.privacy.pseudonymize) {
            (Some(key), true) => Some(Arc::new(Pseudonymizer::from_file(key)?)),
            _ => None,
        };
        let (store_sink, store) = match &config.store.path {
            Some(path) => {
                let (sink, writer) = StoreWriter::start(path, &config.store, pseudonymizer.clone());
                (Some(sink), Some(writer))
            }
            None => {
                warn!("no attempt store configured (store.path): attempts go only to the log");
                (None, None)
            }
        };
        let (siem_sink, siem) = match &config.siem.path {
            Some(path) => {
                let (sink, writer) = SiemWriter::start(path, config.store.queue)?;
                (Some(sink), Some(writer))
            }
            None => (None, None),
        };
        let refresh = (!devices.files().is_empty()).then(|| {
            let devices = Arc::clone(&devices);
            let every = Duration::from_secs(config.devices.reread_secs);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    match devices.refresh() {
                        Ok(true) => info!("device inventory or leases re-read"),
                        Ok(false) => {}
                        Err(error) => error!(%error, "device files unreadable; the previous view stays in force"),
                    }
                }
            })
        });
        let outputs =
            Outputs { store: store_sink, siem: siem_sink, pseudonymizer, devices: Some(Arc::clone(&devices)), taps };
        Ok((Records { devices, store, siem, refresh }, outputs))
    }

    /// After the dispatcher has ended: lets the writers write what they hold, then stops them.
    async fn close(self) {
        if let Some(refresh) = self.refresh {
            refresh.abort();
        }
        let (store, siem) = (self.store, self.siem);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(store) = store {
                store.close();
            }
            if let Some(siem) = siem {
                siem.close();
            }
        })
        .await;
    }
}

impl Running {
    /// Waits until a listener task ends (only on a fatal error).
    pub async fn wait(&mut self) {
        let _ = self.listeners.join_next().await;
    }

    /// Re-reads the config's policy and settings, and the DoT/DoH certificate files, and swaps
    /// them in; on any problem the running policy and certificate stay in force and the error
    /// says what is wrong.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        // Read the certificate first: a broken file must leave everything as it was.
        let certificate = match self.certificates.as_ref().map(|_| ServerTls::load(&config.server)).transpose() {
            Ok(certificate) => certificate,
            Err(error) => {
                self.resolver.stats.reloaded(false);
                return Err(error.into());
            }
        };
        let result = policy::load(&config.policy)
            .map_err(StartError::from)
            .and_then(|policy| self.resolver.reload(config, policy).map_err(StartError::from))
            .and_then(|()| self.records.devices.refresh().map(|_| ()).map_err(StartError::from));
        if let (Ok(()), Some(current), Some(certificate)) = (&result, &self.certificates, certificate) {
            current.replace(certificate);
        }
        self.resolver.stats.reloaded(result.is_ok());
        result
    }

    /// Graceful stop: no new queries are accepted, queries in flight get up to `grace` to
    /// finish, then every queued attempt record is delivered.
    pub async fn shutdown(mut self, grace: Duration) {
        self.listeners.shutdown().await;
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait()).await.is_err() {
            warn!(remaining = self.in_flight.len(), "shutdown: queries still in flight after the grace period");
        }
        self.stop_dispatcher.cancel();
        let _ = self.dispatcher.await;
        self.records.close().await;
    }
}

/// Builds the policy and resolver from `config` and serves on `listeners`; `sinks` receive every
/// attempt record besides the tracing event. Must be called inside a tokio runtime.
pub fn start(config: &Config, listeners: Listeners, sinks: Vec<Sink>) -> Result<Running, StartError> {
    let policy = policy::load(&config.policy)?;
    let (records, outputs) = Records::open(config, sinks)?;
    let (recorder, dispatcher) = attempts::channel(config.attempts.queue, outputs);
    let resolver = Arc::new(Resolver::new(config, policy, recorder)?);
    let stop_dispatcher = CancellationToken::new();
    let dispatcher = tokio::spawn(dispatcher.run(stop_dispatcher.clone()));
    let in_flight = TaskTracker::new();
    let mut tasks = JoinSet::new();
    let mut udp_addrs = Vec::new();
    let mut tcp_addrs = Vec::new();
    for socket in listeners.udp {
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        udp_addrs.push(socket.local_addr()?);
        tasks.spawn(serve_udp(Arc::clone(&resolver), socket, in_flight.clone()));
    }
    let idle = Duration::from_millis(config.server.tcp_idle_timeout_ms);
    let connections = Arc::new(ConnectionLimits::new(&config.limits));
    for listener in listeners.tcp {
        let listener = TcpListener::from_std(listener)?;
        tcp_addrs.push(listener.local_addr()?);
        tasks.spawn(serve_tcp(Arc::clone(&resolver), listener, idle, Arc::clone(&connections), in_flight.clone()));
    }
    let encrypted = tls::start(config, listeners.tls, listeners.https, &resolver, connections, &in_flight, &mut tasks)?;
    let mut metrics_addr = None;
    if let Some(listener) = metrics::bind(config.metrics.listen)? {
        let listener = TcpListener::from_std(listener)?;
        metrics_addr = Some(listener.local_addr()?);
        tasks.spawn(metrics::serve(Arc::clone(&resolver), listener));
    }
    udp_addrs.dedup();
    let live = resolver.live();
    info!(
        udp = ?udp_addrs,
        tcp = ?tcp_addrs,
        tls = ?encrypted.tls_addrs,
        https = ?encrypted.https_addrs,
        metrics = ?metrics_addr,
        apps = live.policy.apps().len(),
        domains = live.policy.len(),
        policy_version = %live.policy.version(),
        "serving"
    );
    Ok(Running {
        resolver,
        udp_addrs,
        tcp_addrs,
        tls_addrs: encrypted.tls_addrs,
        https_addrs: encrypted.https_addrs,
        metrics_addr,
        certificates: encrypted.certificates,
        listeners: tasks,
        in_flight,
        dispatcher,
        stop_dispatcher,
        records,
    })
}

/// Answers every query queued on the socket as one batch (see `datagrams`): blocked and cached
/// answers go out together at the end of the batch, upstream work is spawned.
async fn serve_udp(resolver: Arc<Resolver>, socket: Arc<UdpSocket>, in_flight: TaskTracker) {
    let mut batch = Batch::new(UDP_RECV_BUFFER);
    // Answers of forwarded queries, sent together by their own task.
    let (outbox, sender) = Outbox::new(Arc::clone(&socket));
    in_flight.spawn(sender);
    loop {
        let received = match batch.recv(&socket).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                debug!(%error, "udp receive failed");
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..received {
            let (packet, peer, out) = batch.query(i);
            let client = Client { addr: peer, transport: Transport::Udp };
            if let Step::Upstream(forward) = resolver.answer_locally(packet, client, out, now) {
                let packet = packet.to_vec();
                let (resolver, outbox) = (Arc::clone(&resolver), outbox.clone());
                in_flight.spawn(async move {
                    let mut out = Vec::new();
                    resolver.answer_from_upstream(&packet, client, forward, &mut out).await;
                    outbox.send(out, peer);
                });
            }
        }
        if let Err(error) = batch.send(&socket).await {
            debug!(%error, "udp send failed");
        }
        // Each query spends one unit of the task's scheduling budget, as with one receive per
        // query, so the attempt dispatcher on the same worker keeps pace with the listener.
        for _ in 0..received {
            tokio::task::consume_budget().await;
        }
    }
}

async fn serve_tcp(
    resolver: Arc<Resolver>,
    listener: TcpListener,
    idle: Duration,
    connections: Arc<ConnectionLimits>,
    in_flight: TaskTracker,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Over the caps: close at once (RFC 7766 §6.2.2 lets a server refuse).
                let Some(slot) = connections.admit(peer.ip()) else {
                    debug!(client = %peer.ip(), "tcp connection refused: too many open");
                    continue;
                };
                let resolver = Arc::clone(&resolver);
                in_flight.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    serve_stream(resolver, stream, Client { addr: peer, transport: Transport::Tcp }, idle).await;
                    drop(slot);
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves length-framed queries (RFC 7766 §8; RFC 7858 §3.3 over TLS) on one connection until
/// the client closes it or stays idle too long.
pub(crate) async fn serve_stream<S>(resolver: Arc<Resolver>, mut stream: S, client: Client, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut packet = Vec::new();
    let mut out = Vec::new();
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        packet.resize(len, 0);
        if !matches!(tokio::time::timeout(idle, stream.read_exact(&mut packet)).await, Ok(Ok(_))) {
            return;
        }
        resolver.answer(&packet, client, &mut out).await;
        if out.is_empty() {
            continue;
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
