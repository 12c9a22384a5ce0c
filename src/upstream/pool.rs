//! The upstream pool: which server a query goes to.
//!
//! Owns: conditional forwarding (names under configured internal zones go only to their own
//! servers), health tracking (a server that failed twice in a row is skipped), background
//! probes (a skipped server is retried at most every two seconds with a copy of a real query,
//! in a task the client does not wait for), the strategy (configured order, or the lowest
//! smoothed round-trip time first) and the overall time bound. Does not own the transports
//! (`upstream`) or what one attempt at one server does (`fallback`).
//!
//! Error rcodes and health: an answer with SERVFAIL, REFUSED, NOTIMP (or a lasting FORMERR)
//! fails the query at that server, and the next server is asked. It does not count towards
//! marking the server down: health here means reachability, and a server that answers is
//! reachable; a REFUSED or SERVFAIL is usually about one zone (an ACL, a broken delegation, a
//! DNSSEC failure), and marking the server down would take it away from every other zone.
//! Such an answer therefore resets the count of consecutive failures, like any answer, but is
//! no latency sample (a fast REFUSED must not make a server look fastest). It costs the query
//! one quick round trip to that server; the metrics count these answers per rcode.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::{
    config::{Strategy, UpstreamConfig},
    upstream::{ServerStats, Upstream, UpstreamError},
};

/// Consecutive failures after which a server is skipped.
const DOWN_AFTER: u32 = 2;
/// How often a skipped server is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// One server with its health.
struct Member {
    upstream: Upstream,
    failures: AtomicU32,
    /// Smoothed round-trip time in µs (RFC 6298 style, gain 1/8); 0 = not measured yet.
    srtt_us: AtomicU64,
    /// Milliseconds since the pool started at which the last probe went out.
    last_probe_ms: AtomicU64,
}

impl Member {
    fn is_down(&self) -> bool {
        self.failures.load(Ordering::Relaxed) >= DOWN_AFTER
    }

    fn succeeded(&self, took: Duration) {
        if self.failures.swap(0, Ordering::Relaxed) >= DOWN_AFTER {
            info!(upstream = %self.upstream.address(), "upstream answers again");
        }
        let sample = took.as_micros() as u64;
        let old = self.srtt_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { old - old / 8 + sample / 8 };
        self.srtt_us.store(new.max(1), Ordering::Relaxed);
        self.upstream.stats.answered(took);
    }

    /// It answered, with an error rcode: reachable, but this query failed there.
    fn answered_with_error(&self) {
        if self.failures.swap(0, Ordering::Relaxed) >= DOWN_AFTER {
            info!(upstream = %self.upstream.address(), "upstream answers again");
        }
    }

    fn failed(&self, error: &UpstreamError) {
        self.upstream.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 == DOWN_AFTER {
            warn!(upstream = %self.upstream.address(), %error, "upstream failing; skipped until a probe succeeds");
        }
    }
}

/// Servers that answer for a set of zones (empty = everything else).
struct Group {
    zones: Vec<String>,
    members: Vec<Arc<Member>>,
}

/// Every configured upstream, grouped for conditional forwarding.
pub struct Upstreams {
    groups: Vec<Group>,
    strategy: Strategy,
    timeout: Duration,
    started: Instant,
}

impl Upstreams {
    pub fn new(config: &UpstreamConfig) -> Result<Upstreams, UpstreamError> {
        let bootstrap = super::bootstrap::resolver(config)?;
        let members = |servers: &[crate::config::UpstreamServer]| {
            servers
                .iter()
                .map(|s| {
                    Ok(Arc::new(Member {
                        upstream: Upstream::new(s, bootstrap.as_ref())?,
                        failures: AtomicU32::new(0),
                        srtt_us: AtomicU64::new(0),
                        last_probe_ms: AtomicU64::new(0),
                    }))
                })
                .collect::<Result<Vec<_>, UpstreamError>>()
        };
        let mut groups = Vec::new();
        for zone in &config.zones {
            groups.push(Group { zones: zone.zones.clone(), members: members(&zone.servers)? });
        }
        groups.push(Group { zones: Vec::new(), members: members(&config.servers)? });
        Ok(Upstreams {
            groups,
            strategy: config.strategy,
            timeout: Duration::from_millis(config.timeout_ms),
            started: Instant::now(),
        })
    }

    /// The group for `qname` (lowercase, no trailing dot): the longest matching zone.
    fn group(&self, qname: &[u8]) -> &Group {
        let under = |zone: &str| {
            qname == zone.as_bytes()
                || (qname.ends_with(zone.as_bytes()) && qname.get(qname.len() - zone.len() - 1) == Some(&b'.'))
        };
        self.groups
            .iter()
            .filter(|g| !g.zones.is_empty())
            .filter_map(|g| g.zones.iter().filter(|z| under(z)).map(|z| z.len()).max().map(|len| (len, g)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, g)| g)
            .unwrap_or_else(|| self.groups.last().expect("the default group exists"))
    }

    /// Sends `query` (a complete DNS message for `qname`) and returns the first good answer
    /// within the overall timeout. Healthy servers are asked first, by the strategy; each
    /// attempt gets an equal share of the time left. When none answers usably, the error is an
    /// [`UpstreamError::Rcode`] if any server answered with one (it says most), else the last.
    pub async fn exchange(&self, query: &[u8], qname: &[u8]) -> Result<Vec<u8>, UpstreamError> {
        let group = self.group(qname);
        let deadline = Instant::now() + self.timeout;
        let (mut order, down): (Vec<&Arc<Member>>, Vec<&Arc<Member>>) =
            group.members.iter().partition(|m| !m.is_down());
        if self.strategy == Strategy::Fastest {
            // Unmeasured servers first, so each gets measured.
            order.sort_by_key(|m| m.srtt_us.load(Ordering::Relaxed));
        }
        self.probe(&down, query);
        if order.is_empty() {
            // Everything is down: ask anyway rather than fail without trying.
            order = down;
        }
        let mut last = None;
        for (i, member) in order.iter().enumerate() {
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                break;
            }
            let attempt_deadline = now + left / (order.len() - i) as u32;
            let result = timeout_at(attempt_deadline, member.upstream.ask(query, attempt_deadline)).await;
            let error = match result.unwrap_or(Err(UpstreamError::Timeout { server: member.upstream.address() })) {
                Ok(answer) => {
                    member.succeeded(now.elapsed());
                    return Ok(answer);
                }
                Err(error @ UpstreamError::Rcode { .. }) => {
                    member.answered_with_error();
                    debug!(%error, "upstream answered with an error; trying the next");
                    error
                }
                Err(error) => {
                    member.failed(&error);
                    warn!(%error, "upstream failed");
                    error
                }
            };
            if !matches!(last, Some(UpstreamError::Rcode { .. })) || matches!(error, UpstreamError::Rcode { .. }) {
                last = Some(error);
            }
        }
        Err(last.unwrap_or(UpstreamError::Timeout { server: SocketAddr::from(([0, 0, 0, 0], 0)) }))
    }

    /// Sends a copy of `query` to each skipped server whose last probe is old enough, in the
    /// background; an answer puts the server back in rotation.
    fn probe(&self, down: &[&Arc<Member>], query: &[u8]) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        for member in down {
            let last = member.last_probe_ms.load(Ordering::Relaxed);
            let due = last == 0 || now_ms.saturating_sub(last) >= PROBE_EVERY.as_millis() as u64;
            if !due
                || member
                    .last_probe_ms
                    .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let (member, query, timeout) = (Arc::clone(member), query.to_vec(), self.timeout);
            tokio::spawn(async move {
                let started = Instant::now();
                let deadline = started + timeout;
                match timeout_at(deadline, member.upstream.ask(&query, deadline)).await {
                    Ok(Ok(_)) => member.succeeded(started.elapsed()),
                    Ok(Err(UpstreamError::Rcode { .. })) => member.answered_with_error(),
                    _ => {}
                }
            });
        }
    }

    /// Each server's address and counters, default group last.
    pub fn servers(&self) -> impl Iterator<Item = (SocketAddr, &ServerStats)> {
        self.upstreams().map(|upstream| (upstream.address(), &upstream.stats))
    }

    /// Resolves the names of servers given by host again (on reload), in the background.
    pub fn resolve_names_again(&self) {
        self.upstreams().for_each(Upstream::resolve_again);
    }

    /// Each server, default group last.
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.groups.iter().flat_map(|g| g.members.iter().map(|m| &m.upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(text: &str) -> Upstreams {
        let config: crate::config::Config = toml::from_str(text).unwrap();
        Upstreams::new(&config.upstream).unwrap()
    }

    #[test]
    fn longest_zone_wins_and_everything_else_goes_to_the_default() {
        let p = pool(
            "[upstream]\nservers = [{ address = \"192.0.2.1:53\" }]\n\
             [[upstream.zones]]\nzones = [\"corp.example\", \"10.in-addr.arpa\"]\nservers = [{ address = \"192.0.2.10:53\" }]\n\
             [[upstream.zones]]\nzones = [\"lab.corp.example\"]\nservers = [{ address = \"192.0.2.20:53\" }]\n",
        );
        let first = |name: &str| p.group(name.as_bytes()).members[0].upstream.address().to_string();
        assert_eq!(first("dc1.corp.example"), "192.0.2.10:53");
        assert_eq!(first("corp.example"), "192.0.2.10:53");
        assert_eq!(first("x.lab.corp.example"), "192.0.2.20:53");
        assert_eq!(first("4.3.2.10.in-addr.arpa"), "192.0.2.10:53");
        assert_eq!(first("notcorp.example"), "192.0.2.1:53");
        assert_eq!(first("www.example.org"), "192.0.2.1:53");
    }
}
