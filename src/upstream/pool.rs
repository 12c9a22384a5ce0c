//! The upstream pool: which server a query goes to.
//!
//! Owns: conditional forwarding (names under configured internal zones go only to their own
//! servers), health tracking (a server that failed twice in a row is skipped), background
//! probes (a skipped server is retried at most every two seconds with a copy of a real query,
//! in a task the client does not wait for), the strategy (configured order, or the lowest
//! smoothed round-trip time first), the overall time bound, and how long a slow server is
//! waited for past it (`Rtt`: a server that answers other queries meanwhile is alive and is
//! waited for one RTT-based timeout past its last answer; one that answers nothing is not, so
//! a dead server still fails within the budget). Does not own the transports
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

/// The longest a query waits for a server that keeps answering other queries meanwhile.
pub const WAIT_MAX: Duration = Duration::from_secs(10);
/// The shortest retransmission timeout computed (Unbound's `RTT_MIN_TIMEOUT`).
const RTO_MIN: Duration = Duration::from_millis(50);
/// Timeouts in a row after which the timeout stops doubling (2^3 = 8 times).
const BACKOFF_MAX: u32 = 3;

/// A server's round-trip times, like Unbound's infra cache (RFC 6298): the smoothed RTT and
/// its variation give a retransmission timeout `srtt + 4 * rttvar`, clamped to
/// [[`RTO_MIN`], [`WAIT_MAX`]] and doubled for each timeout in a row. Time is passed in, so
/// tests need not wait.
struct Rtt {
    epoch: Instant,
    /// Smoothed round-trip time in µs (gain 1/8); 0 = not measured yet.
    srtt_us: AtomicU64,
    /// Round-trip time variation in µs (gain 1/4).
    rttvar_us: AtomicU64,
    /// Timeouts since the last answer, up to [`BACKOFF_MAX`].
    backoff: AtomicU32,
    /// When the server last answered, in ms since `epoch` (0 = never).
    last_answer_ms: AtomicU64,
}

impl Rtt {
    fn new(epoch: Instant) -> Rtt {
        let zero = || AtomicU64::new(0);
        Rtt { epoch, srtt_us: zero(), rttvar_us: zero(), backoff: AtomicU32::new(0), last_answer_ms: zero() }
    }

    fn answered(&self, took: Duration, at: Instant) {
        let sample = took.as_micros() as u64;
        let (srtt, rttvar) = (self.srtt_us.load(Ordering::Relaxed), self.rttvar_us.load(Ordering::Relaxed));
        let (srtt, rttvar) = if srtt == 0 {
            (sample, sample / 2)
        } else {
            (srtt - srtt / 8 + sample / 8, rttvar - rttvar / 4 + srtt.abs_diff(sample) / 4)
        };
        self.srtt_us.store(srtt.max(1), Ordering::Relaxed);
        self.rttvar_us.store(rttvar, Ordering::Relaxed);
        self.backoff.store(0, Ordering::Relaxed);
        let ms = at.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_answer_ms.store(ms.max(1), Ordering::Relaxed);
    }

    fn timed_out(&self) {
        let _ = self.backoff.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| (b < BACKOFF_MAX).then_some(b + 1));
    }

    fn rto(&self) -> Duration {
        let (srtt, rttvar) = (self.srtt_us.load(Ordering::Relaxed), self.rttvar_us.load(Ordering::Relaxed));
        let base = Duration::from_micros(srtt.saturating_add(rttvar.saturating_mul(4)));
        (base * (1 << self.backoff.load(Ordering::Relaxed))).clamp(RTO_MIN, WAIT_MAX)
    }

    /// When a query sent at `sent` may still be waited for, past its share of the time: one
    /// timeout after the server's last answer, if that answer came after `sent` (the server is
    /// alive and working through its queue), and never past `sent + WAIT_MAX`. None for a
    /// server that has not answered since: a dead one is not waited for.
    fn waited_until(&self, sent: Instant) -> Option<Instant> {
        let last = self.last_answer_ms.load(Ordering::Relaxed);
        let answered = self.epoch + Duration::from_millis(last);
        (last != 0 && answered > sent).then(|| (answered + self.rto()).min(sent + WAIT_MAX))
    }
}

/// One server with its health.
struct Member {
    upstream: Upstream,
    failures: AtomicU32,
    rtt: Rtt,
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
        self.rtt.answered(took, Instant::now());
        self.upstream.stats.answered(took);
    }

    /// Waits for `ask` until `deadline`, and past it while [`Rtt::waited_until`] allows
    /// (`extend`: when no other server is left to ask). A slow server that answers its queries
    /// one at a time is so waited for; a silent one times out at `deadline`.
    async fn awaited(
        &self,
        ask: impl Future<Output = Result<Vec<u8>, UpstreamError>>,
        sent: Instant,
        deadline: Instant,
        extend: bool,
    ) -> Result<Vec<u8>, UpstreamError> {
        tokio::pin!(ask);
        let mut until = deadline;
        loop {
            if let Ok(result) = timeout_at(until, &mut ask).await {
                return result;
            }
            match self.rtt.waited_until(sent).filter(|later| extend && *later > until) {
                Some(later) => {
                    debug!(upstream = %self.upstream.address(), wait_ms = (later - sent).as_millis() as u64, "slow upstream still answering; waiting");
                    until = later;
                }
                None => {
                    self.rtt.timed_out();
                    return Err(UpstreamError::Timeout { server: self.upstream.address() });
                }
            }
        }
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
                        rtt: Rtt::new(Instant::now()),
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
            order.sort_by_key(|m| m.rtt.srtt_us.load(Ordering::Relaxed));
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
            let no_other = i + 1 == order.len();
            let asked = member.upstream.ask(query, attempt_deadline);
            let error = match member.awaited(asked, now, attempt_deadline, no_other).await {
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
    fn a_server_is_waited_for_only_after_answering_since_the_query_went_out() {
        let epoch = Instant::now();
        let (secs, ms) = (Duration::from_secs, Duration::from_millis);
        let rtt = Rtt::new(epoch);
        assert_eq!(rtt.waited_until(epoch), None, "never answered: not waited for");
        assert_eq!(rtt.rto(), RTO_MIN);
        rtt.answered(secs(1), epoch + secs(1));
        assert_eq!(rtt.rto(), secs(3), "srtt 1 s + 4 x rttvar 0.5 s");
        assert_eq!(rtt.waited_until(epoch), Some(epoch + secs(4)), "one timeout after the last answer");
        assert_eq!(rtt.waited_until(epoch + secs(2)), None, "no answer since this query went out");
        rtt.answered(secs(2), epoch + secs(2));
        assert_eq!((rtt.srtt_us.load(Ordering::Relaxed), rtt.rttvar_us.load(Ordering::Relaxed)), (1_125_000, 625_000));
        // Doubled per timeout in a row, clamped; an answer resets the backoff.
        let base = rtt.rto();
        rtt.timed_out();
        assert_eq!(rtt.rto(), base * 2);
        (0..5).for_each(|_| rtt.timed_out());
        assert_eq!(rtt.rto(), WAIT_MAX);
        assert_eq!(rtt.waited_until(epoch + ms(1500)), Some(epoch + ms(1500) + WAIT_MAX), "never past WAIT_MAX");
        rtt.answered(ms(10), epoch + secs(3));
        assert!(rtt.rto() < base * 2, "an answer resets the backoff");
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
