//! The query pipeline: one query's whole way through nxguard, top to bottom.
//!
//! client check → parse → policy → cache → upstream → CNAME check → answer → record attempt.
//!
//! `answer_locally` is the synchronous part (everything but the upstream); the listeners call it
//! inline for each packet and only spawn a task when it says the upstream must be asked, so
//! blocked and cached answers never wait on a task switch. `answer` runs both halves for callers
//! that can await. Every call ends in exactly one `Outcome`, from which the answer bytes, the
//! attempt record and the counters are derived.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::{
    config::{BlockConfig, CacheConfig, Config, GroupMode, LimitsConfig, OverLimit, UpstreamConfig},
    dns::wire::{self, CLASS_ANY, CLASS_IN, HEADER_LEN, Query, TYPE_ANY, flag, rcode},
    dns::{
        blocked,
        client::{Client, Transport},
        presentation,
    },
    evidence::devices::{self, EdnsIdentity},
    evidence::{
        attempt::{Mode, Sighting, Stamp, Via},
        dispatch::Recorder,
    },
    policy::{Match, Policy},
    resolve::access::{Access, Verdict},
    resolve::cache::{self, Cache, CachedAnswer, Lookup},
    resolve::limits::{OverLimitRecords, RateLimiter},
    resolve::outcome::{Outcome, Stats},
    resolve::prefetch::Refresh,
    upstream::UpstreamError,
    upstream::pool::Upstreams,
};

/// RFC 8914 info codes used in error answers.
const EDE_PROHIBITED: u16 = 18;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
const EDE_NETWORK_ERROR: u16 = 23;
/// RFC 8767 §5 "client response timer": how long a client waits before a stale answer.
const STALE_AFTER: Duration = Duration::from_millis(1800);

/// A query on its way upstream: its place among `limits.max_in_flight`, and the expired answer
/// the cache still holds for it (RFC 8767), if any.
#[derive(Debug)]
pub struct Forward {
    _permit: OwnedSemaphorePermit,
    stale: Option<Arc<CachedAnswer>>,
}

/// The result of the synchronous half.
#[derive(Debug)]
pub enum Step {
    /// Finished; `out` holds the answer (empty: send nothing).
    Done(Outcome),
    /// The upstream must be asked: call `answer_from_upstream` with the same packet and this
    /// `Forward`, which holds the query's in-flight permit until it returns.
    Upstream(Forward),
}

impl Step {
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Step::Done(outcome) => Some(*outcome),
            Step::Upstream(_) => None,
        }
    }
}

/// Everything a reload replaces, swapped in as one value so that no query sees half of it.
pub struct Live {
    pub policy: Policy,
    pub access: Access,
    pub rate: Arc<RateLimiter>,
    pub over_limit: OverLimit,
    pub block: BlockConfig,
    pub cache_limits: CacheConfig,
    pub upstreams: Arc<Upstreams>,
    upstream_config: UpstreamConfig,
    rate_config: (LimitsConfig, Vec<IpNet>),
}

impl Live {
    /// Builds the live settings from `config`, reusing `previous` upstreams (and their open
    /// connections) when their configuration did not change.
    pub fn new(config: &Config, policy: Policy, previous: Option<&Live>) -> Result<Live, UpstreamError> {
        let upstreams = match previous {
            Some(live) if live.upstream_config == config.upstream => {
                // Kept with their connections; names given by host are asked again (a reload).
                live.upstreams.resolve_names_again();
                Arc::clone(&live.upstreams)
            }
            _ => Arc::new(Upstreams::new(&config.upstream)?),
        };
        // Keep the rate buckets (and what clients have used of them) when the limits are unchanged.
        let rate_config = (config.limits.clone(), config.access.trusted_relays.clone());
        let rate = match previous {
            Some(live) if live.rate_config == rate_config => Arc::clone(&live.rate),
            _ => Arc::new(RateLimiter::new(&config.limits, &config.access.trusted_relays)),
        };
        Ok(Live {
            policy,
            access: Access::new(&config.access),
            rate,
            rate_config,
            over_limit: config.limits.over_limit,
            block: config.block.clone(),
            cache_limits: config.cache.clone(),
            upstreams,
            upstream_config: config.upstream.clone(),
        })
    }
}

pub struct Resolver {
    live: ArcSwap<Live>,
    in_flight: Arc<Semaphore>,
    cache: Cache,
    recorder: Recorder,
    over_limit_records: OverLimitRecords,
    pub stats: Stats,
}

impl Resolver {
    pub fn new(config: &Config, policy: Policy, recorder: Recorder) -> Result<Resolver, UpstreamError> {
        Ok(Resolver {
            live: ArcSwap::from_pointee(Live::new(config, policy, None)?),
            in_flight: Arc::new(Semaphore::new(config.limits.max_in_flight)),
            cache: Cache::new(&config.cache),
            recorder,
            over_limit_records: OverLimitRecords::new(),
            stats: Stats::default(),
        })
    }

    /// Answers one query packet; `out` receives the answer (left empty when none is sent).
    pub async fn answer(&self, packet: &[u8], client: Client, out: &mut Vec<u8>) -> Outcome {
        match self.answer_locally(packet, client, out, Instant::now()) {
            Step::Done(outcome) => outcome,
            Step::Upstream(forward) => self.answer_from_upstream(packet, client, forward, out).await,
        }
    }

    /// Everything that needs no upstream: access, parsing, policy and cache.
    pub fn answer_locally(&self, packet: &[u8], client: Client, out: &mut Vec<u8>, now: Instant) -> Step {
        out.clear();
        self.stats.received(client.transport);
        let live = self.live.load();
        let query = match self.admit(packet, client, &live, out, now) {
            Ok(query) => query,
            Err(step) => return step,
        };
        let direct = live.policy.lookup(query.name.as_bytes());
        if let Some(step) = direct.and_then(|m| self.apply(&query, client, &live, m, Via::Query, false, out)) {
            return step;
        }
        let mut key = [0u8; cache::MAX_KEY];
        let stale = match self.cache.lookup(cache::key(&query, &mut key), now) {
            Lookup::Fresh(entry) => return self.answer_from_cache(&query, client, &live, direct, &entry, out, now),
            Lookup::Stale(entry) => Some(entry),
            Lookup::Absent => None,
        };
        if query.qtype == TYPE_ANY && client.transport == Transport::Udp {
            // RFC 8482 §4.2: a minimal answer instead of everything, which would make nxguard
            // an amplifier; clients that need more use TCP.
            wire::write_any_refusal(out, &query);
            return self.finish(client, Outcome::Unsupported);
        }
        self.stats.cache_miss();
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => Step::Upstream(Forward { _permit: permit, stale }),
            Err(_) => {
                wire::write_error(out, &query, rcode::SERVFAIL.into(), None);
                self.finish(client, Outcome::Overloaded)
            }
        }
    }

    /// The checks before the policy: access, parsing, the rate limit, opcode, EDNS version
    /// and class. The parsed query, or the step that already answered it.
    fn admit<'p>(
        &self,
        packet: &'p [u8],
        client: Client,
        live: &Live,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Result<Query<'p>, Step> {
        let verdict = live.access.check(client.addr.ip());
        if verdict == Verdict::Drop {
            return Err(self.finish(client, Outcome::Dropped));
        }
        let query = match wire::parse_query(packet) {
            Ok(query) if query.is_response() => return Err(self.finish(client, Outcome::Dropped)),
            Ok(query) => query,
            Err(error) => {
                debug!(%error, "malformed query");
                // No reply to something that claims to be a response (no reflection loops).
                wire::write_formerr_header(out, packet);
                return Err(self.finish(client, Outcome::Malformed));
            }
        };
        if client.transport == Transport::Udp && !live.rate.allow(client.addr.ip(), now) {
            if live.over_limit == OverLimit::Truncate {
                wire::write_truncated(out, &query);
            }
            if verdict == Verdict::Allow {
                self.record_over_limit(&query, client, live);
            }
            return Err(self.finish(client, Outcome::RateLimited));
        }
        let refusal = if verdict == Verdict::Refuse {
            Some((rcode::REFUSED.into(), Some((EDE_PROHIBITED, "")), Outcome::Refused))
        } else if query.opcode() != 0 {
            Some((rcode::NOTIMP.into(), None, Outcome::Unsupported))
        } else if query.edns.is_some_and(|e| e.version > 0) {
            Some((rcode::BADVERS, None, Outcome::Unsupported))
        } else if !class_served(&query) {
            // HS, NONE, CHAOS, 0…: answered here as Unbound answers them, never forwarded, so
            // an upstream's odd reply to them can never count against its health.
            Some((rcode::REFUSED.into(), None, Outcome::Unsupported))
        } else {
            None
        };
        match refusal {
            Some((code, ede, outcome)) => {
                wire::write_error(out, &query, code, ede);
                Err(self.finish(client, outcome))
            }
            None => Ok(query),
        }
    }

    /// A fresh cache hit: the stored CNAME chain is checked again when the policy changed
    /// since (or when it led into a banned domain), then the stored answer is served and, near
    /// its expiry, refreshed.
    #[allow(clippy::too_many_arguments)]
    fn answer_from_cache(
        &self,
        query: &Query<'_>,
        client: Client,
        live: &Arc<Live>,
        direct: Option<Match<'_>>,
        entry: &CachedAnswer,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Step {
        let policy = &live.policy;
        let recheck = entry.generation != policy.generation() || entry.chain_blocked;
        if let Some((matched, alias)) =
            recheck.then(|| chain_match(policy, query.name.as_bytes(), &entry.chain)).flatten()
            && let Some(step) =
                self.apply(query, client, live, matched, Via::Cname { alias }, logged(live, direct, client), out)
        {
            return step;
        }
        entry.write(query, now, udp_limit(query, client), out);
        if direct.is_none() && !entry.chain_blocked && entry.hit_wants_prefetch(now) {
            self.prefetch(query, entry, live, now);
        }
        self.finish(client, Outcome::Cached)
    }

    /// The upstream half: forward, inspect the CNAME chain, cache, answer.
    pub async fn answer_from_upstream(
        &self,
        packet: &[u8],
        client: Client,
        forward: Forward,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let Ok(query) = wire::parse_query(packet) else {
            return self.finished(client, Outcome::Malformed);
        };
        let upstreams = Arc::clone(&self.live.load().upstreams);
        // RFC 8767: with an expired answer at hand, the client waits at most 1.8 s for a fresh one.
        let Forward { _permit, stale } = forward;
        let budget = if stale.is_some() { STALE_AFTER } else { Duration::MAX };
        // The pool tries the next server on an error rcode or silence, and falls back to plain
        // DNS for servers that do not take EDNS (`upstream::fallback`).
        let asked = upstream_query(&query);
        // Boxed: the exchange's state (pool, fallback, socket) is kilobytes, and inline it made
        // every spawned miss that large, copied several times over while being spawned.
        let fetch = Box::pin(upstreams.exchange(&asked, query.name.as_bytes()));
        let result = tokio::time::timeout(budget, fetch)
            .await
            .unwrap_or_else(|_| Err(UpstreamError::Timeout { server: std::net::SocketAddr::from(([0, 0, 0, 0], 0)) }));
        match (result, stale) {
            (Ok(response), _) => self.answer_with(&query, client, &response, out),
            (Err(error), Some(entry)) => self.answer_stale(&query, client, &error, &entry, out),
            (Err(error), None) => {
                warn!(%error, qname = %query.name_text(), "no upstream answer");
                wire::write_error(out, &query, rcode::SERVFAIL.into(), Some((failure_ede(&error), "")));
                self.finished(client, Outcome::UpstreamFailed)
            }
        }
    }

    /// No upstream answered in time but the cache still holds an expired answer (RFC 8767):
    /// served stale, unless its chain now leads into a banned domain.
    fn answer_stale(
        &self,
        query: &Query<'_>,
        client: Client,
        error: &UpstreamError,
        entry: &CachedAnswer,
        out: &mut Vec<u8>,
    ) -> Outcome {
        warn!(%error, qname = %query.name_text(), "no upstream answer; serving stale");
        let live = self.live.load();
        if let Some((matched, alias)) = chain_match(&live.policy, query.name.as_bytes(), &entry.chain) {
            let direct = logged(&live, live.policy.lookup(query.name.as_bytes()), client);
            if self.apply(query, client, &live, matched, Via::Cname { alias }, direct, out).is_some() {
                return Outcome::Blocked;
            }
        }
        entry.write_stale(query, udp_limit(query, client), out);
        self.finished(client, Outcome::Stale)
    }

    /// The upstream's answer: inspected (CNAME chain, TTLs), cached, checked against the
    /// policy along its chain, and served.
    fn answer_with(&self, query: &Query<'_>, client: Client, response: &[u8], out: &mut Vec<u8>) -> Outcome {
        // Loaded after the upstream answered: a reload meanwhile applies to this answer too.
        let live = self.live.load();
        let now = Instant::now();
        let inspected =
            match CachedAnswer::from_upstream(query, response, &live.cache_limits, now, live.policy.generation()) {
                Ok(inspected) => inspected,
                Err(error) => {
                    warn!(%error, qname = %query.name_text(), "malformed upstream answer");
                    wire::write_error(out, query, rcode::SERVFAIL.into(), None);
                    return self.finished(client, Outcome::UpstreamFailed);
                }
            };
        if inspected.chain_loop {
            warn!(qname = %query.name_text(), "upstream answer has a CNAME loop");
            wire::write_error(out, query, rcode::SERVFAIL.into(), None);
            return self.finished(client, Outcome::UpstreamFailed);
        }
        let mut answer = inspected.answer;
        let blocked_by = chain_match(&live.policy, query.name.as_bytes(), &answer.chain);
        answer.chain_blocked = blocked_by.is_some();
        let answer = Arc::new(answer);
        if inspected.ttl.is_some() {
            let mut key = [0u8; cache::MAX_KEY];
            self.cache.insert(cache::key(query, &mut key), Arc::clone(&answer));
        }
        if let Some((matched, alias)) = blocked_by {
            let direct = logged(&live, live.policy.lookup(query.name.as_bytes()), client);
            if self.apply(query, client, &live, matched, Via::Cname { alias }, direct, out).is_some() {
                return Outcome::Blocked;
            }
        }
        answer.write(query, now, udp_limit(query, client), out);
        self.finished(client, Outcome::Forwarded)
    }

    /// The policy step for a matched name: the client's group and the list decide. Enforced:
    /// the blocked answer and its step. Log-only: the attempt is recorded (unless the query name
    /// itself was, `recorded`) and the query goes on to be answered normally (`None`), as it does
    /// for an exempt client, which leaves no record.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        query: &Query<'_>,
        client: Client,
        live: &Live,
        matched: Match<'_>,
        via: Via,
        recorded: bool,
        out: &mut Vec<u8>,
    ) -> Option<Step> {
        match live.policy.decide(&matched, client.addr.ip()) {
            GroupMode::Enforce => Some(self.block(query, client, live, matched, via, out)),
            GroupMode::LogOnly if !recorded => {
                self.record(query, client, live, matched, via, Mode::LogOnly);
                None
            }
            GroupMode::LogOnly | GroupMode::Exempt => None,
        }
    }

    fn block(
        &self,
        query: &Query<'_>,
        client: Client,
        live: &Live,
        matched: Match<'_>,
        via: Via,
        out: &mut Vec<u8>,
    ) -> Step {
        let response = matched.app.app.response;
        let serial = live.policy.version_serial();
        blocked::write(out, query, &live.block, response, matched.domain, serial, &matched.app.notice);
        self.record(query, client, live, matched, via, Mode::Enforce);
        self.finish(client, Outcome::Blocked)
    }

    /// The attempt record of a query the policy matched, handed to the dispatcher.
    fn record(&self, query: &Query<'_>, client: Client, live: &Live, matched: Match<'_>, via: Via, mode: Mode) {
        // Relays' identity options are read here, while the packet is at hand; the dispatcher
        // resolves the full identity off the query path.
        let edns = if live.access.is_relay(client.addr.ip()) {
            devices::edns_identity(query.edns_options())
        } else {
            EdnsIdentity::default()
        };
        self.recorder.record(Sighting {
            time: SystemTime::now(),
            client: client.addr,
            transport: client.transport,
            edns,
            qname: query.name_text(),
            qtype: RecordType::from(query.qtype).to_string(),
            app: Arc::clone(matched.app),
            domain: matched.domain.to_string(),
            kind: matched.kind,
            via,
            stamp: Stamp { mode, policy_version: live.policy.version(), rule: Arc::clone(matched.rule) },
            resolver: None,
        });
    }

    /// A query over the client's rate gets no answer from the policy, but a banned name is
    /// still evidence: one record per client, listed domain and second, so a flood cannot flood
    /// the store (the rate limit protects the network, not the app).
    fn record_over_limit(&self, query: &Query<'_>, client: Client, live: &Live) {
        if query.opcode() != 0 || !class_served(query) {
            return;
        }
        let Some(matched) = live.policy.lookup(query.name.as_bytes()) else {
            return;
        };
        // The client's group decides as for any other query: exempt leaves no record.
        let mode = match live.policy.decide(&matched, client.addr.ip()) {
            GroupMode::Enforce => Mode::Enforce,
            GroupMode::LogOnly => Mode::LogOnly,
            GroupMode::Exempt => return,
        };
        let second = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let first = self.over_limit_records.first_in_second(client.addr.ip(), matched.domain, second);
        self.stats.over_limit_attempt(first);
        if first {
            self.record(query, client, live, matched, Via::Query, mode);
        }
    }

    /// Refreshes a popular entry near its expiry in the background, under the in-flight cap.
    /// Only for names the current policy does not list at all (the caller checks): a listed
    /// name reaches the cache only for log-only or exempt clients, and is never refreshed.
    fn prefetch(&self, query: &Query<'_>, entry: &CachedAnswer, live: &Arc<Live>, now: Instant) {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            entry.prefetch_skipped();
            return;
        };
        self.stats.prefetched();
        let refresh = Refresh {
            asked: upstream_query(query),
            upstreams: Arc::clone(&live.upstreams),
            cache: self.cache.clone(),
            limits: live.cache_limits.clone(),
            now,
            permit,
        };
        let live = Arc::clone(live);
        refresh.spawn(move |qname, answer| {
            answer.generation = live.policy.generation();
            answer.chain_blocked = chain_match(&live.policy, qname, &answer.chain).is_some();
        });
    }

    fn finish(&self, client: Client, outcome: Outcome) -> Step {
        Step::Done(self.finished(client, outcome))
    }

    fn finished(&self, client: Client, outcome: Outcome) -> Outcome {
        self.stats.finished(client.transport, outcome);
        outcome
    }

    /// Applies a new config and policy atomically; queries already running finish under the
    /// old ones. Listener addresses and the cache size take a restart.
    pub fn reload(&self, config: &Config, policy: Policy) -> Result<(), UpstreamError> {
        let live = Live::new(config, policy, Some(&self.live.load()))?;
        self.live.store(Arc::new(live));
        Ok(())
    }

    /// The settings in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

/// The first name in a CNAME chain that the policy blocks, with that name. A query name the
/// operator explicitly allowed is answered whatever its chain passes through.
fn chain_match<'p>(policy: &'p Policy, qname: &[u8], chain: &[Box<str>]) -> Option<(Match<'p>, String)> {
    let found = chain
        .iter()
        .find_map(|alias| policy.lookup(alias.as_bytes()).map(|m| (m, presentation::escape_name(alias.as_bytes()))))?;
    (!policy.allows(qname)).then_some(found)
}

/// IN and ANY are resolved; every other class is answered REFUSED (as Unbound 1.17 answers
/// HS, NONE, CHAOS and class 0).
fn class_served(query: &Query<'_>) -> bool {
    query.qclass == CLASS_IN || query.qclass == CLASS_ANY
}

/// Whether the query name's own match (`direct`) was recorded as log-only for this client, so a
/// CNAME match of the same query is not recorded a second time. An exempt match records nothing.
fn logged(live: &Live, direct: Option<Match<'_>>, client: Client) -> bool {
    direct.is_some_and(|m| live.policy.decide(&m, client.addr.ip()) == GroupMode::LogOnly)
}

fn udp_limit(query: &Query<'_>, client: Client) -> Option<usize> {
    (client.transport == Transport::Udp).then(|| query.udp_limit())
}

/// The query sent upstream: a fresh random ID, RD, AD (RFC 6840 §5.7: ask for AD), the client's
/// CD, its question, and our own OPT record carrying the client's DO bit (the upstream drops it
/// for servers that need plain DNS).
fn upstream_query(query: &Query<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + query.question_bytes().len() + 11);
    let flags = flag::RD | flag::AD | (query.flags & flag::CD);
    wire::push_header(&mut out, rand::random(), flags, [1, 0, 0, 1]);
    out.extend_from_slice(query.question_bytes());
    wire::push_opt(&mut out, query.dnssec_ok(), 0, &[]);
    out
}

/// RFC 8914 for a SERVFAIL when no upstream answered usably: 22 "No Reachable Authority" when an
/// upstream answered but refused or failed the query (RFC 8914: "or they potentially refused to
/// reply"), 23 "Network Error" when none could be talked to (silence, I/O, garbage).
fn failure_ede(error: &UpstreamError) -> u16 {
    match error {
        UpstreamError::Rcode { .. } => EDE_NO_REACHABLE_AUTHORITY,
        _ => EDE_NETWORK_ERROR,
    }
}
