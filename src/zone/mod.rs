//! The policy as a Response Policy Zone, for the resolvers a municipality already runs
//! (Unbound, BIND, PowerDNS Recursor, Knot Resolver, RPZ appliances).
//!
//! Owns: the zone's contents made from the policy in force (`contents`: `name CNAME .` and
//! `*.name CNAME .` for blocks, `rpz-passthru.` for exceptions, TXT at the apex naming each
//! app), its serial (rising with each policy change), the differences of the last few changes
//! (`changes`, for IXFR), serving it (`serve`: SOA over UDP and TCP, AXFR, and IXFR with the
//! differences or the whole zone, source networks, TSIG; `tcp`: the connections, which stream
//! a transfer at the secondary's pace), the TSIG key and its signatures (`tsig`), and NOTIFY to
//! the secondaries, signed (`notify`).
//! Does not own: building the policy (`policy`) or deciding when it changes (`server`).
//!
//! hickory-server 0.26's `Catalog` answers a transfer in one message (its issue #351), which
//! holds no more than 64 KiB (a few thousand entries), and its `InMemoryZoneHandler` refuses
//! every transfer but `AxfrPolicy::AllowAll` (only `SqliteZoneHandler` checks TSIG). So the
//! zone is answered by a hickory-server `RequestHandler` of its own that streams the transfer
//! in as many messages as needed, each signed (RFC 8945 §5.3.1): over UDP through
//! hickory-server's `Server`, over TCP through `tcp` (see there why not hickory's listener).

pub mod changes;
pub mod contents;
pub mod notify;
pub mod serve;
pub mod tcp;
pub mod tsig;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use tokio::sync::watch;

use crate::{config::RpzConfig, policy::Policy, resolve::Live, zone::changes::ChangeSet};

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("rpz.zone: {0:?} is not a zone name")]
    Origin(String),
    #[error(transparent)]
    Key(#[from] tsig::KeyError),
    #[error("rpz.listen {address}: {source}")]
    Bind { address: std::net::SocketAddr, source: std::io::Error },
}

/// Where the zone's entries come from: the policy in force (`Live`), or a policy on its own
/// (`nxguard export`, tests, benchmarks).
pub trait PolicySource: Send + Sync {
    fn policy(&self) -> &Policy;
}

impl PolicySource for Policy {
    fn policy(&self) -> &Policy {
        self
    }
}

impl PolicySource for Live {
    fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// One version of the zone: a policy, the serial it was published under, and the changes that
/// led to it (oldest first, each `to` the next one's `from`, the last one's `to` this serial).
pub struct Snapshot {
    pub serial: u32,
    pub source: Arc<dyn PolicySource>,
    pub history: Vec<Arc<ChangeSet>>,
}

impl Snapshot {
    /// The changes from `serial` to this version, when they are all kept.
    pub fn changes_since(&self, serial: u32) -> Option<&[Arc<ChangeSet>]> {
        let first = self.history.iter().position(|change| change.from == serial)?;
        Some(&self.history[first..])
    }
}

/// What the zone server counted, for the metrics endpoint.
#[derive(Debug, Default)]
pub struct ZoneStats {
    pub transfers: AtomicU64,
    /// IXFRs answered with the differences (the rest of `transfers` sent the whole zone).
    pub incremental_transfers: AtomicU64,
    /// Transfer messages written to secondaries (a transfer is written as it is read).
    pub transfer_messages: AtomicU64,
    /// Transfers whose request carried a valid TSIG (their answers are signed).
    pub signed_transfers: AtomicU64,
    /// Requests from sources outside `rpz.allow`, unsigned transfers from sources outside
    /// `rpz.allow_unsigned` while a key is set, and bad signatures.
    pub refused: AtomicU64,
    pub soa_queries: AtomicU64,
    pub notifies_sent: AtomicU64,
    pub notifies_failed: AtomicU64,
}

impl ZoneStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Response Policy Zone: its name, the version being served and its counters.
pub struct Zone {
    pub origin: Name,
    pub refresh_secs: u32,
    current: ArcSwap<Snapshot>,
    pub stats: ZoneStats,
    /// The serial, each time it changes (the NOTIFY task listens).
    changes: watch::Sender<u32>,
}

impl Zone {
    pub fn new(config: &RpzConfig, source: Arc<dyn PolicySource>) -> Result<Zone, ZoneError> {
        let origin = Name::from_ascii(&config.zone)
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .map_err(|_| ZoneError::Origin(config.zone.clone()))?;
        let serial = next_serial(0, SystemTime::now());
        Ok(Zone {
            origin,
            refresh_secs: config.refresh_secs,
            current: ArcSwap::from_pointee(Snapshot { serial, source, history: Vec::new() }),
            stats: ZoneStats::default(),
            changes: watch::channel(serial).0,
        })
    }

    /// The version being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves `source` from now on; when its policy differs from the one served (another
    /// version), under a higher serial with the change kept for IXFR, and the secondaries are
    /// told. Returns the serial.
    pub fn publish(&self, source: Arc<dyn PolicySource>) -> u32 {
        let current = self.snapshot();
        if current.source.policy().version() == source.policy().version() {
            let history = current.history.clone();
            self.current.store(Arc::new(Snapshot { serial: current.serial, source, history }));
            return current.serial;
        }
        let serial = next_serial(current.serial, SystemTime::now());
        let (old, new) = (current.source.policy(), source.policy());
        let history = match changes::diff(&self.origin, self.refresh_secs, old, new, current.serial, serial) {
            Some(change) => {
                let skip = (current.history.len() + 1).saturating_sub(changes::HISTORY);
                current.history.iter().skip(skip).cloned().chain([Arc::new(change)]).collect()
            }
            // Too large to keep: no chain of differences crosses it.
            None => Vec::new(),
        };
        self.current.store(Arc::new(Snapshot { serial, source, history }));
        self.changes.send_replace(serial);
        tracing::info!(zone = %self.origin, serial, "rpz serial raised");
        serial
    }

    /// Hears each new serial.
    pub fn changes(&self) -> watch::Receiver<u32> {
        self.changes.subscribe()
    }
}

/// The serial after `previous`: the Unix time when it is ahead (so a restarted server still
/// rises above what the secondaries hold), else one more (RFC 1982 arithmetic).
pub fn next_serial(previous: u32, now: SystemTime) -> u32 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as u32;
    let ahead = secs.wrapping_sub(previous);
    if ahead != 0 && ahead < (1 << 31) { secs } else { previous.wrapping_add(1) }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn serial_rises_with_time_and_within_one_second() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(next_serial(0, t), 1_800_000_000);
        assert_eq!(next_serial(1_800_000_000, t), 1_800_000_001);
        assert_eq!(next_serial(1_800_000_005, t), 1_800_000_006);
    }
}
