//! Upstreams named by host: resolving `host:port` to the address the transports connect to.
//!
//! Owns: one upstream's host name, its current address, and keeping that address fresh: the
//! name is resolved through hickory-resolver against `upstream.bootstrap` (never through
//! nxguard itself) when the upstream is built (at start and on a reload that changed it), again
//! in the background once the answer's TTL has run out, and the last good address is kept when
//! a lookup fails. Only the first query after start waits for the name (the pool's time bound
//! applies). Does not own: the transports (`upstream`), which ask here for the address.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use tracing::{info, warn};

use crate::{
    config::{NameServers, UpstreamConfig},
    dns::lookup::{self, LookupError},
};

/// How long one bootstrap lookup may take over all bootstrap servers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed lookup, how long the last good address is used before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Bounds on how long a resolved address is used before the name is asked again.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(86_400);

/// The bootstrap resolver of an upstream configuration, when it names servers by host.
pub fn resolver(config: &UpstreamConfig) -> Result<Option<TokioResolver>, LookupError> {
    match NameServers::parse(&config.bootstrap) {
        Ok(Some(servers)) => lookup::resolver(&servers, LOOKUP_TIMEOUT, "upstream.bootstrap").map(Some),
        Ok(None) => Ok(None),
        Err(source) => Err(LookupError::Servers { what: "upstream.bootstrap", source }),
    }
}

#[derive(Debug, Clone, Copy)]
struct Resolved {
    address: Option<SocketAddr>,
    /// When to ask again.
    refresh_at: Instant,
    refreshing: bool,
}

/// An upstream's host name and the address it resolves to now.
pub struct Host {
    name: String,
    port: u16,
    resolver: TokioResolver,
    state: Mutex<Resolved>,
}

impl Host {
    /// Starts resolving `name` right away when a runtime is running.
    pub fn new(name: &str, port: u16, resolver: TokioResolver) -> Arc<Host> {
        let host = Arc::new(Host {
            name: name.to_string(),
            port,
            resolver,
            state: Mutex::new(Resolved { address: None, refresh_at: Instant::now(), refreshing: false }),
        });
        if tokio::runtime::Handle::try_current().is_ok() && host.claim_refresh(Instant::now()) {
            tokio::spawn(Arc::clone(&host).refresh());
        }
        host
    }

    /// The address to connect to. Waits for the first lookup when none succeeded yet; once the
    /// TTL ran out, starts a background lookup and answers with the last good address meanwhile.
    pub async fn address(self: &Arc<Self>) -> Option<SocketAddr> {
        let now = Instant::now();
        let current = self.state().address;
        match current {
            Some(address) => {
                if self.claim_refresh(now) {
                    tokio::spawn(Arc::clone(self).refresh());
                }
                Some(address)
            }
            None => {
                self.lookup().await;
                self.state().address
            }
        }
    }

    /// Asks for the name again now, in the background (a reload), keeping the current address
    /// meanwhile.
    pub fn resolve_again(self: &Arc<Self>) {
        let now = Instant::now();
        self.state().refresh_at = now;
        if tokio::runtime::Handle::try_current().is_ok() && self.claim_refresh(now) {
            tokio::spawn(Arc::clone(self).refresh());
        }
    }

    /// The last good address, without waiting (for logs and metrics).
    pub fn current(&self) -> Option<SocketAddr> {
        self.state().address
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Resolved> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True for the one caller that should start a lookup now.
    fn claim_refresh(&self, now: Instant) -> bool {
        let mut state = self.state();
        let due = now >= state.refresh_at && !state.refreshing;
        if due {
            state.refreshing = true;
        }
        due
    }

    async fn refresh(self: Arc<Self>) {
        self.lookup().await;
    }

    /// One lookup; the result (or, on failure, the last good address) is stored.
    async fn lookup(&self) {
        let name = format!("{}.", self.name.trim_end_matches('.'));
        let answer = tokio::time::timeout(LOOKUP_TIMEOUT * 2, self.resolver.lookup_ip(name.as_str())).await;
        let found = answer.ok().and_then(Result::ok).and_then(|lookup| {
            let ttl = lookup.valid_until().saturating_duration_since(Instant::now());
            let first: Option<IpAddr> = lookup.iter().next();
            first.map(|ip| (SocketAddr::new(ip, self.port), ttl.clamp(MIN_TTL, MAX_TTL)))
        });
        let mut state = self.state();
        state.refreshing = false;
        match found {
            Some((address, ttl)) => {
                if state.address != Some(address) {
                    info!(upstream = %self.name, %address, ttl_secs = ttl.as_secs(), "upstream name resolved");
                }
                state.address = Some(address);
                state.refresh_at = Instant::now() + ttl;
            }
            None => {
                warn!(upstream = %self.name, last_good = ?state.address, "cannot resolve upstream name; keeping the last good address");
                state.refresh_at = Instant::now() + RETRY_AFTER;
            }
        }
    }
}
