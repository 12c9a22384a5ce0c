//! Counters: one per query outcome and transport, read by tests and (later) the metrics
//! endpoint. Every query is counted exactly once, by its outcome.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::attempts::Transport;

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
    /// Not a query we serve: an unknown opcode (NOTIMP) or EDNS version (BADVERS).
    Unsupported,
    /// From a client network listed under `access.refuse`: REFUSED.
    Refused,
    /// From an address outside `access.allow`, or a response packet: no answer at all.
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Blocked,
        Outcome::Cached,
        Outcome::Forwarded,
        Outcome::UpstreamFailed,
        Outcome::Malformed,
        Outcome::Unsupported,
        Outcome::Refused,
        Outcome::Dropped,
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
        }
    }
}

#[derive(Default)]
pub struct Stats {
    received: [AtomicU64; 2],
    outcomes: [[AtomicU64; 8]; 2],
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
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
}
