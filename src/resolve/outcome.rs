//! How a query ended, and the counters kept of it.
//!
//! Owns: `Outcome` (every query ends in exactly one; the DNS answer, the attempt record and the
//! counters all derive from it) and `Stats`, the per-transport and per-outcome counters the
//! pipeline bumps. The metrics endpoint (`ops::metrics`) reads them and never writes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::dns::client::Transport;

/// How a query ended. The DNS answer, the attempt record and these counters all derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A banned app's domain (by name or CNAME): blocked answer, attempt recorded.
    Blocked,
    /// Answered from the cache.
    Cached,
    /// Answered with the upstream's answer.
    Forwarded,
    /// No usable upstream answer in time: SERVFAIL.
    UpstreamFailed,
    /// Unparseable: FORMERR, or dropped when not even the header could be read.
    Malformed,
    /// Not a query we serve: an unknown opcode (NOTIMP), EDNS version (BADVERS), or a class
    /// other than IN and ANY (REFUSED, as Unbound answers).
    Unsupported,
    /// From a client network listed under `access.refuse`: REFUSED.
    Refused,
    /// From an address outside `access.allow`, or a response packet: no answer at all.
    Dropped,
    /// Over the client's rate: TC=1 or nothing, per `limits.over_limit`.
    RateLimited,
    /// Too many queries already waiting for upstreams: SERVFAIL.
    Overloaded,
    /// No upstream answered usably in time (silence, failures, error rcodes); an expired cached
    /// answer was served (RFC 8767).
    Stale,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Outcome::Blocked,
        Outcome::Cached,
        Outcome::Forwarded,
        Outcome::UpstreamFailed,
        Outcome::Malformed,
        Outcome::Unsupported,
        Outcome::Refused,
        Outcome::Dropped,
        Outcome::RateLimited,
        Outcome::Overloaded,
        Outcome::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Cached => "cached",
            Outcome::Forwarded => "forwarded",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::Malformed => "malformed",
            Outcome::Unsupported => "unsupported",
            Outcome::Refused => "refused",
            Outcome::Dropped => "dropped",
            Outcome::RateLimited => "rate_limited",
            Outcome::Overloaded => "overloaded",
            Outcome::Stale => "stale",
        }
    }
}

#[derive(Default)]
pub struct Stats {
    received: [AtomicU64; Transport::ALL.len()],
    outcomes: [[AtomicU64; Outcome::ALL.len()]; Transport::ALL.len()],
    cache_misses: AtomicU64,
    /// Banned queries over the client's rate: recorded, or skipped as not the first of their
    /// client, domain and second.
    over_limit_recorded: AtomicU64,
    over_limit_skipped: AtomicU64,
    prefetches: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Https => 3,
        Transport::Quic => 4,
        Transport::H3 => 5,
    }
}

impl Stats {
    pub fn received(&self, transport: Transport) {
        self.received[transport_index(transport)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self, transport: Transport, outcome: Outcome) {
        self.outcomes[transport_index(transport)][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Queries received over all transports.
    pub fn total_received(&self) -> u64 {
        self.received.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Queries that ended with `outcome`, over all transports.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes.iter().map(|t| t[outcome as usize].load(Ordering::Relaxed)).sum()
    }

    pub fn outcome_on(&self, transport: Transport, outcome: Outcome) -> u64 {
        self.outcomes[transport_index(transport)][outcome as usize].load(Ordering::Relaxed)
    }

    /// Queries received over `transport`.
    pub fn received_on(&self, transport: Transport) -> u64 {
        self.received[transport_index(transport)].load(Ordering::Relaxed)
    }

    /// Queries that had to ask an upstream.
    pub fn cache_misses(&self) -> u64 {
        self.cache_misses.load(Ordering::Relaxed)
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A banned query over the client's rate: `recorded` when it got an attempt record.
    pub fn over_limit_attempt(&self, recorded: bool) {
        let counter = if recorded { &self.over_limit_recorded } else { &self.over_limit_skipped };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (recorded, skipped) banned queries over the client's rate.
    pub fn over_limit_attempts(&self) -> (u64, u64) {
        (self.over_limit_recorded.load(Ordering::Relaxed), self.over_limit_skipped.load(Ordering::Relaxed))
    }

    /// A cache entry near expiry was refreshed in the background.
    pub fn prefetched(&self) {
        self.prefetches.fetch_add(1, Ordering::Relaxed);
    }

    /// Prefetches started.
    pub fn prefetches(&self) -> u64 {
        self.prefetches.load(Ordering::Relaxed)
    }

    pub fn reloaded(&self, ok: bool) {
        let counter = if ok { &self.reloads_ok } else { &self.reloads_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (successful, failed) reloads.
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads_ok.load(Ordering::Relaxed), self.reloads_failed.load(Ordering::Relaxed))
    }
}
