//! Reverse DNS names for devices: the PTR name of a client address, as a municipality's AD DNS
//! knows every laptop by name (AdGuard Home and Technitium name clients this way).
//!
//! Owns: a bounded cache of PTR answers (names for their TTL, clamped to 1 min..1 day; "no
//! name" for `NEGATIVE_TTL`), and the lookup task that fills it through hickory-resolver
//! (`dns::lookup`: the `devices.reverse_dns` servers in order, `reverse_dns_timeout_ms` each
//! lookup). The dispatcher only reads the cache: an address it has no answer for yet is queued
//! for a lookup and its record goes out with the address only, so neither a query nor the
//! dispatcher ever waits for a PTR answer. Later records of that device carry the name.
//! Does not own: which identity wins (inventory and leases before reverse DNS; `dispatch` asks
//! only for records without a name) or storing anything.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::rr::RData;
use hickory_resolver::TokioResolver;
use moka::{Expiry, sync::Cache};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::{
    config::{DevicesConfig, NameServers},
    dns::lookup::{self, LookupError},
    evidence::devices::{EdnsIdentity, Identity, Source},
};

/// How long "this address has no PTR name" (or the lookup failed) is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Bounds on how long a found name is kept, whatever its TTL.
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// Addresses remembered (names, misses and lookups under way).
const CAPACITY: u64 = 65_536;
/// Addresses waiting for a lookup; beyond this, a new address waits for a later record.
const QUEUE: usize = 1_024;
/// Lookups running at once.
const PARALLEL: usize = 16;

/// What is known of an address.
#[derive(Debug, Clone)]
enum Ptr {
    /// A lookup is queued or running (kept no longer than `PENDING_TTL`).
    Pending,
    Name(Arc<str>, Duration),
    Absent,
}

const PENDING_TTL: Duration = Duration::from_secs(10);

struct ByKind;

impl ByKind {
    fn ttl(value: &Ptr) -> Duration {
        match value {
            Ptr::Pending => PENDING_TTL,
            Ptr::Name(_, ttl) => *ttl,
            Ptr::Absent => NEGATIVE_TTL,
        }
    }
}

impl Expiry<IpAddr, Ptr> for ByKind {
    fn expire_after_create(&self, _: &IpAddr, value: &Ptr, _: Instant) -> Option<Duration> {
        Some(Self::ttl(value))
    }

    fn expire_after_update(&self, _: &IpAddr, value: &Ptr, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(Self::ttl(value))
    }
}

/// PTR names of client addresses, filled in the background.
pub struct ReverseNames {
    cache: Cache<IpAddr, Ptr>,
    queue: mpsc::Sender<IpAddr>,
}

impl ReverseNames {
    /// Starts the lookup task (inside a tokio runtime); None when `devices.reverse_dns` is
    /// empty. The task ends when the returned value is dropped.
    pub fn start(config: &DevicesConfig) -> Result<Option<Arc<ReverseNames>>, LookupError> {
        let servers = match NameServers::parse(&config.reverse_dns) {
            Ok(Some(servers)) => servers,
            Ok(None) => return Ok(None),
            Err(source) => return Err(LookupError::Servers { what: "devices.reverse_dns", source }),
        };
        let timeout = Duration::from_millis(config.reverse_dns_timeout_ms);
        let resolver = lookup::resolver(&servers, timeout, "devices.reverse_dns")?;
        let cache = Cache::builder().max_capacity(CAPACITY).expire_after(ByKind).build();
        let (queue, asked) = mpsc::channel(QUEUE);
        tokio::spawn(run(resolver, asked, cache.clone(), timeout));
        Ok(Some(Arc::new(ReverseNames { cache, queue })))
    }

    /// The PTR name of `ip` if known now; otherwise a lookup is queued (once) and None returned.
    /// Never waits.
    pub fn name(&self, ip: IpAddr) -> Option<Arc<str>> {
        match self.cache.get(&ip) {
            Some(Ptr::Name(name, _)) => Some(name),
            Some(Ptr::Pending | Ptr::Absent) => None,
            None => {
                if self.queue.try_send(ip).is_ok() {
                    self.cache.insert(ip, Ptr::Pending);
                }
                None
            }
        }
    }

    /// Names a device that has no name from the inventory or a lease, when its PTR name is
    /// known: the name becomes its hostname and `rdns` its source. Not when a relay reported the
    /// device's MAC but not its address: the address at hand is then the relay's.
    pub fn name_identity(&self, identity: &mut Identity, edns: EdnsIdentity) {
        let unnamed = matches!(identity.source, Source::Unknown | Source::Edns) && identity.hostname.is_none();
        let own_address = edns.ip.is_some() || edns == EdnsIdentity::default();
        if !unnamed || !own_address {
            return;
        }
        if let Some(name) = self.name(identity.ip) {
            identity.hostname = Some(name.to_string());
            identity.source = Source::Rdns;
        }
    }
}

/// Looks up queued addresses, `PARALLEL` at a time, until the `ReverseNames` is dropped.
async fn run(resolver: TokioResolver, mut asked: mpsc::Receiver<IpAddr>, cache: Cache<IpAddr, Ptr>, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(PARALLEL));
    while let Some(ip) = asked.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (resolver, cache) = (resolver.clone(), cache.clone());
        tokio::spawn(async move {
            let _slot = slot;
            // hickory bounds the lookup over all servers by `timeout`; this is a backstop.
            let answer = tokio::time::timeout(timeout * 2, resolver.reverse_lookup(ip)).await;
            let found = answer.ok().and_then(Result::ok).and_then(|lookup| {
                let ttl = lookup.valid_until().saturating_duration_since(Instant::now());
                lookup.answers().iter().find_map(|record| match &record.data {
                    RData::PTR(ptr) => {
                        let name = ptr.0.to_ascii();
                        let name = name.trim_end_matches('.');
                        (!name.is_empty()).then(|| Ptr::Name(name.into(), ttl.clamp(MIN_TTL, MAX_TTL)))
                    }
                    _ => None,
                })
            });
            debug!(%ip, found = matches!(found, Some(Ptr::Name(..))), "reverse DNS lookup");
            cache.insert(ip, found.unwrap_or(Ptr::Absent));
        });
    }
}
