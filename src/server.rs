//! Listeners: UDP and TCP sockets feeding the resolver.
//!
//! Owns: binding (one UDP socket per worker with SO_REUSEPORT, so the kernel spreads packets
//! across cores), the receive/answer loops, TCP framing (RFC 7766 §8) and idle timeouts, and
//! starting a whole server from a config. Sockets can be bound by the caller and passed in (tests
//! bind 127.0.0.1:0). Does not own: what the answer is (`resolver`).

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinSet,
};
use tracing::{debug, info, warn};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    attempts::{self, Sink, Transport},
    config::Config,
    limits::ConnectionLimits,
    metrics,
    policy::{self, PolicyError},
    resolver::{Client, Resolver, Step},
    upstream::UpstreamError,
};

/// Largest UDP query we read; anything longer is cut and then fails to parse.
const UDP_RECV_BUFFER: usize = 4096;

/// Bound sockets, ready to serve.
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
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
        let tcp = config.server.tcp.iter().map(|addr| bind_tcp(*addr)).collect::<io::Result<_>>()?;
        Ok(Listeners { udp, tcp })
    }

    /// One UDP and one TCP socket on the same loopback port, chosen by the system (for tests).
    /// The UDP port may be taken for TCP by another socket; then another port is tried.
    pub fn bind_loopback() -> io::Result<Listeners> {
        let mut last = None;
        for _ in 0..32 {
            let udp = bind_udp("127.0.0.1:0".parse().expect("literal"))?;
            let port = udp.local_addr()?.port();
            match bind_tcp(SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(tcp) => return Ok(Listeners { udp: vec![udp], tcp: vec![tcp] }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free loopback port")))
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
}

/// A running server: its resolver, the addresses it listens on, and its tasks.
pub struct Running {
    pub resolver: Arc<Resolver>,
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    listeners: JoinSet<()>,
    /// Queries being answered by spawned tasks (upstream work, TCP connections).
    in_flight: TaskTracker,
    dispatcher: tokio::task::JoinHandle<()>,
    stop_dispatcher: CancellationToken,
}

impl Running {
    /// Waits until a listener task ends (only on a fatal error).
    pub async fn wait(&mut self) {
        let _ = self.listeners.join_next().await;
    }

    /// Re-reads the config's policy and settings and swaps them in; on any problem the running
    /// policy stays in force and the error says what is wrong.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let result = policy::load(&config.policy)
            .map_err(StartError::from)
            .and_then(|policy| self.resolver.reload(config, policy).map_err(StartError::from));
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
    }
}

/// Builds the policy and resolver from `config` and serves on `listeners`; `sinks` receive every
/// attempt record besides the tracing event. Must be called inside a tokio runtime.
pub fn start(config: &Config, listeners: Listeners, sinks: Vec<Sink>) -> Result<Running, StartError> {
    let policy = policy::load(&config.policy)?;
    let (recorder, dispatcher) = attempts::channel(config.attempts.queue, sinks);
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
        metrics_addr,
        listeners: tasks,
        in_flight,
        dispatcher,
        stop_dispatcher,
    })
}

async fn serve_udp(resolver: Arc<Resolver>, socket: Arc<UdpSocket>, in_flight: TaskTracker) {
    let mut buf = vec![0u8; UDP_RECV_BUFFER];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                debug!(%error, "udp receive failed");
                continue;
            }
        };
        let client = Client { addr: peer, transport: Transport::Udp };
        match resolver.answer_locally(&buf[..n], client, &mut out, Instant::now()) {
            Step::Done(_) => send_udp(&socket, &out, peer).await,
            Step::Upstream(permit) => {
                let packet = buf[..n].to_vec();
                let (resolver, socket) = (Arc::clone(&resolver), Arc::clone(&socket));
                in_flight.spawn(async move {
                    let mut out = Vec::new();
                    resolver.answer_from_upstream(&packet, client, &mut out).await;
                    drop(permit);
                    send_udp(&socket, &out, peer).await;
                });
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    if out.is_empty() {
        return;
    }
    if let Err(error) = socket.send_to(out, peer).await {
        debug!(%error, "udp send failed");
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
                    serve_connection(resolver, stream, peer, idle).await;
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

/// Serves queries on one TCP connection until the client closes it or stays idle too long.
async fn serve_connection(resolver: Arc<Resolver>, mut stream: TcpStream, peer: SocketAddr, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let client = Client { addr: peer, transport: Transport::Tcp };
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
