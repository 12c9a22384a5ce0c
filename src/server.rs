//! A whole running server, assembled from a config.
//!
//! Owns: the start-up order (evidence outputs, policy, the attempt dispatcher, the resolver, the
//! listeners, the metrics endpoint), the policy's client groups (device names and departments
//! turned into addresses from the inventory), the feed refresher, reloading a running server
//! (when and how: `reload`, with the watched files and the reload thread's priority), and its
//! graceful shutdown.
//! This is the one place that knows every room; no room imports it.

pub mod reload;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, UdpSocket},
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    config::{ClientRef, Config, PolicyConfig},
    evidence::{
        devices::Devices,
        dispatch::{self, Sink},
        outputs::{OutputsError, Records},
    },
    ingest::{Ingest, IngestError},
    listen::{
        self, Listeners,
        quic::HandshakeStats,
        tls::{Certificates, ServerTls, TlsError},
    },
    ops::metrics,
    policy::{
        self, Policy, PolicyError,
        feeds::{self, Board},
        groups::{Groups, Unresolved},
    },
    resolve::{Resolver, limits::ConnectionLimits},
    upstream::UpstreamError,
    zone::{ZoneError, serve::RpzServer},
};

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
    Outputs(#[from] OutputsError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// A running server: its resolver, the addresses it listens on, and its tasks.
pub struct Running {
    pub resolver: Arc<Resolver>,
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub https_addrs: Vec<SocketAddr>,
    pub quic_addrs: Vec<SocketAddr>,
    pub h3_addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// What became of the connection attempts on the DoQ and DoH3 listeners.
    pub handshakes: Arc<HandshakeStats>,
    /// The certificate of the DoT, DoH, DoQ and DoH3 listeners, when any of them run.
    certificates: Option<Arc<Certificates>>,
    listeners: JoinSet<()>,
    /// Queries being answered by spawned tasks (upstream work, TCP connections).
    in_flight: TaskTracker,
    dispatcher: tokio::task::JoinHandle<()>,
    stop_dispatcher: CancellationToken,
    pub records: Records,
    /// The feeds' statuses, for the metrics endpoint.
    pub feeds: Arc<Board>,
    /// The feed refresher's settings, once it runs (`refresh_feeds`).
    feed_settings: Option<watch::Sender<Arc<PolicyConfig>>>,
    feed_task: Option<tokio::task::JoinHandle<()>>,
    /// The Response Policy Zone, when `[rpz]` names a listen address.
    pub rpz: Option<RpzServer>,
    /// The dnstap receivers, when `[ingest]` lists a socket.
    pub ingest: Option<Ingest>,
}

/// Builds the policy `config` asks for, with its client groups: device names and `owner:`
/// departments become the inventory's addresses now, not per query. Group entries that name no
/// known device are logged.
pub fn build_policy(config: &Config, devices: &Devices) -> Result<Policy, PolicyError> {
    let (policy, unresolved) = build_policy_reporting(config, devices)?;
    for (group, client) in unresolved.0 {
        warn!(group, client, "group client matches no device in the inventory; it applies to nobody");
    }
    Ok(policy)
}

/// `build_policy`, handing back the group entries that named no known device (for `check`).
pub fn build_policy_reporting(config: &Config, devices: &Devices) -> Result<(Policy, Unresolved), PolicyError> {
    let mut policy = policy::load(&config.policy)?;
    if config.policy.groups.is_empty() {
        return Ok((policy, Unresolved::default()));
    }
    let snapshot = devices.snapshot();
    let (groups, unresolved) = Groups::build(&config.policy.groups, |client| match client {
        ClientRef::Device(name) => snapshot.addresses_of(Some(name), None),
        ClientRef::Owner(owner) => snapshot.addresses_of(None, Some(owner)),
        ClientRef::Net(net) => vec![*net],
    });
    policy.set_groups(groups);
    Ok((policy, unresolved))
}

/// The statuses of the feeds `config` lists, as the status file in its cache holds them.
pub fn feed_statuses(config: &PolicyConfig) -> std::collections::BTreeMap<String, feeds::FeedStatus> {
    let Some(dir) = &config.cache_dir else {
        return std::collections::BTreeMap::new();
    };
    let mut statuses = feeds::read_statuses(dir);
    statuses.retain(|name, _| config.feeds.iter().any(|f| &f.name == name));
    statuses
}

impl Running {
    /// The addresses every listener is bound to, by kind (for the ready file).
    pub fn bound(&self) -> crate::ops::ready::Bound {
        vec![
            ("udp", self.udp_addrs.clone()),
            ("tcp", self.tcp_addrs.clone()),
            ("tls", self.tls_addrs.clone()),
            ("https", self.https_addrs.clone()),
            ("quic", self.quic_addrs.clone()),
            ("h3", self.h3_addrs.clone()),
            ("metrics", self.metrics_addr.into_iter().collect()),
            ("rpz", self.rpz.as_ref().map(|r| r.addrs.clone()).unwrap_or_default()),
            ("ingest", self.ingest.as_ref().map(|i| i.tcp_addrs.clone()).unwrap_or_default()),
        ]
    }

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
        // The inventory first: the groups' device names resolve against the current one.
        let result = self
            .records
            .devices
            .refresh()
            .map(|_| ())
            .map_err(|e| StartError::Outputs(e.into()))
            .and_then(|()| build_policy(config, &self.records.devices).map_err(StartError::from))
            .and_then(|policy| self.resolver.reload(config, policy).map_err(StartError::from));
        if let (Ok(()), Some(current), Some(certificate)) = (&result, &self.certificates, certificate) {
            current.replace(certificate);
        }
        if let (Ok(()), Some(rpz)) = (&result, &self.rpz) {
            rpz.zone.publish(self.resolver.live());
        }
        if result.is_ok() {
            self.feeds.set(feed_statuses(&config.policy));
            if let Some(settings) = &self.feed_settings {
                settings.send_replace(Arc::new(config.policy.clone()));
            }
        }
        self.resolver.stats.reloaded(result.is_ok());
        result
    }

    /// Starts refreshing `config`'s feeds in the background (each when due; the first at once
    /// when it has never been asked). The receiver hears when a copy changed: the caller then
    /// reloads, which builds the new policy off the query path and swaps it in.
    pub fn refresh_feeds(&mut self, config: &Config) -> mpsc::Receiver<()> {
        let (changed, updates) = mpsc::channel(1);
        let (settings, receiver) = watch::channel(Arc::new(config.policy.clone()));
        self.feed_settings = Some(settings);
        self.feed_task = Some(tokio::spawn(policy::fetch::run(receiver, Arc::clone(&self.feeds), changed)));
        updates
    }

    /// Graceful stop: no new queries are accepted, queries in flight get up to `grace` to
    /// finish, then every queued attempt record is delivered.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(task) = self.feed_task.take() {
            task.abort();
        }
        self.listeners.shutdown().await;
        if let Some(rpz) = self.rpz.take() {
            rpz.shutdown().await;
        }
        drop(self.ingest.take());
        self.in_flight.close();
        if tokio::time::timeout(grace, self.in_flight.wait()).await.is_err() {
            warn!(remaining = self.in_flight.len(), "shutdown: queries still in flight after the grace period");
        }
        self.stop_dispatcher.cancel();
        let _ = self.dispatcher.await;
        self.records.close().await;
    }
}

/// Starts a task per UDP socket and TCP listener in `tasks`; their addresses.
fn start_plain(
    config: &Config,
    (udp, tcp): (Vec<std::net::UdpSocket>, Vec<std::net::TcpListener>),
    resolver: &Arc<Resolver>,
    connections: &Arc<ConnectionLimits>,
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> io::Result<(Vec<SocketAddr>, Vec<SocketAddr>)> {
    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());
    for socket in udp {
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        udp_addrs.push(socket.local_addr()?);
        tasks.spawn(listen::udp::serve_udp(Arc::clone(resolver), socket, in_flight.clone()));
    }
    let limits = listen::tcp::StreamLimits::of(config);
    for listener in tcp {
        let listener = TcpListener::from_std(listener)?;
        tcp_addrs.push(listener.local_addr()?);
        let connections = Arc::clone(connections);
        tasks.spawn(listen::tcp::serve_tcp(Arc::clone(resolver), listener, limits, connections, in_flight.clone()));
    }
    Ok((udp_addrs, tcp_addrs))
}

/// Builds the policy and resolver from `config` and serves on `listeners`; `sinks` receive every
/// attempt record besides the tracing event. Must be called inside a tokio runtime.
pub fn start(config: &Config, listeners: Listeners, sinks: Vec<Sink>) -> Result<Running, StartError> {
    let core = start_core(config, sinks)?;
    let in_flight = TaskTracker::new();
    let mut tasks = JoinSet::new();
    let dns = start_listeners(config, listeners, &core.resolver, &in_flight, &mut tasks)?;
    let services = start_services(config, &core, &dns.handshakes, &mut tasks)?;
    let running = Running {
        resolver: core.resolver,
        udp_addrs: dns.udp_addrs,
        tcp_addrs: dns.tcp_addrs,
        tls_addrs: dns.encrypted.tls_addrs,
        https_addrs: dns.encrypted.https_addrs,
        quic_addrs: dns.encrypted.quic_addrs,
        h3_addrs: dns.encrypted.h3_addrs,
        metrics_addr: services.metrics_addr,
        handshakes: dns.handshakes,
        certificates: dns.encrypted.certificates,
        listeners: tasks,
        in_flight,
        dispatcher: core.dispatcher,
        stop_dispatcher: core.stop_dispatcher,
        records: core.records,
        feeds: core.feeds,
        feed_settings: None,
        feed_task: None,
        rpz: services.rpz,
        ingest: services.ingest,
    };
    log_serving(&running);
    Ok(running)
}

/// What every listener serves: the resolver with its policy, and the attempt dispatcher and
/// outputs behind it.
struct Core {
    records: Records,
    resolver: Arc<Resolver>,
    feeds: Arc<Board>,
    dispatcher: tokio::task::JoinHandle<()>,
    stop_dispatcher: CancellationToken,
}

/// Opens the evidence outputs, builds the policy, starts the dispatcher, and builds the resolver.
fn start_core(config: &Config, sinks: Vec<Sink>) -> Result<Core, StartError> {
    let (records, outputs) = Records::open(config, sinks)?;
    let policy = build_policy(config, &records.devices)?;
    let feeds = Arc::new(Board::default());
    feeds.set(feed_statuses(&config.policy));
    let (recorder, dispatcher) = dispatch::channel(config.attempts.queue, outputs);
    let resolver = Arc::new(Resolver::new(config, policy, recorder)?);
    let stop_dispatcher = CancellationToken::new();
    let dispatcher = tokio::spawn(dispatcher.run(stop_dispatcher.clone()));
    Ok(Core { records, resolver, feeds, dispatcher, stop_dispatcher })
}

/// The DNS listeners once they run: their addresses, and the QUIC handshake counters.
struct DnsListeners {
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    encrypted: listen::Started,
    handshakes: Arc<HandshakeStats>,
}

/// Starts the plain (UDP, TCP) and the encrypted (DoT, DoH, DoQ, DoH3) listeners in `tasks`.
fn start_listeners(
    config: &Config,
    listeners: Listeners,
    resolver: &Arc<Resolver>,
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> Result<DnsListeners, StartError> {
    let connections = Arc::new(ConnectionLimits::new(&config.limits));
    let plain = (listeners.udp, listeners.tcp);
    let (mut udp_addrs, tcp_addrs) = start_plain(config, plain, resolver, &connections, in_flight, tasks)?;
    udp_addrs.dedup();
    let handshakes = Arc::new(HandshakeStats::default());
    let encrypted = listen::start_encrypted(
        config,
        listeners.tls,
        listeners.https,
        (listeners.quic, listeners.h3),
        resolver,
        (connections, Arc::clone(&handshakes)),
        in_flight,
        tasks,
    )?;
    Ok(DnsListeners { udp_addrs, tcp_addrs, encrypted, handshakes })
}

/// The services beside DNS, each when the config asks for it.
struct Services {
    rpz: Option<RpzServer>,
    ingest: Option<Ingest>,
    metrics_addr: Option<SocketAddr>,
}

/// Starts the Response Policy Zone, the dnstap receivers and the metrics endpoint (in `tasks`).
fn start_services(
    config: &Config,
    core: &Core,
    handshakes: &Arc<HandshakeStats>,
    tasks: &mut JoinSet<()>,
) -> Result<Services, StartError> {
    let resolver = &core.resolver;
    let rpz = (!config.rpz.listen.is_empty()).then(|| RpzServer::start(&config.rpz, resolver.live())).transpose()?;
    let ingest =
        (!config.ingest.dnstap.is_empty()).then(|| Ingest::start(&config.ingest, Arc::clone(resolver))).transpose()?;
    let shown = metrics::Services {
        rpz: rpz.as_ref().map(|r| Arc::clone(&r.zone)),
        ingest: ingest.as_ref().map(|i| Arc::clone(&i.stats)),
        handshakes: Arc::clone(handshakes),
    };
    let mut metrics_addr = None;
    if let Some(listener) = metrics::bind(config.metrics.listen)? {
        let listener = TcpListener::from_std(listener)?;
        metrics_addr = Some(listener.local_addr()?);
        tasks.spawn(metrics::serve(Arc::clone(resolver), Arc::clone(&core.feeds), shown, listener));
    }
    Ok(Services { rpz, ingest, metrics_addr })
}

fn log_serving(running: &Running) {
    let live = running.resolver.live();
    info!(
        udp = ?running.udp_addrs,
        tcp = ?running.tcp_addrs,
        tls = ?running.tls_addrs,
        https = ?running.https_addrs,
        quic = ?running.quic_addrs,
        h3 = ?running.h3_addrs,
        metrics = ?running.metrics_addr,
        apps = live.policy.apps().len(),
        domains = live.policy.len(),
        policy_version = %live.policy.version(),
        "serving"
    );
}
