//! The PostgreSQL writer: two threads around the spool. The spooler takes records off the
//! queue and appends them to the spool at once (a local write; the database is never waited
//! for); the shipper moves them from the spool to PostgreSQL in order, batch by batch, and
//! reconnects with backoff while the database is unreachable, slow or read-only. It also runs
//! the incremental purge, one chunk between batches.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use ::postgres::Client;
use tracing::{error, info, warn};

use crate::{
    config::StoreConfig,
    evidence::store::{
        PURGE_CHUNK, StoreError, StoreSink, StoreStats, cutoffs, postgres,
        record::{Record, millis},
        rollup::Rollups,
        spool::{Batch, Position, Spool},
    },
};

/// Records in one spool append and in one shipped transaction at most.
const BATCH: usize = 50_000;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The longest wait between two tries to reach the database.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct PostgresWriter {
    spooler: Option<JoinHandle<()>>,
    shipper: Option<JoinHandle<()>>,
}

impl PostgresWriter {
    /// Opens the spool and starts both threads; fails only when the spool cannot be opened.
    pub fn start(
        config: &StoreConfig,
        spool_dir: &Path,
    ) -> Result<(StoreSink, PostgresWriter, Arc<StoreStats>), StoreError> {
        let spool = Arc::new(Spool::open(spool_dir, config.spool_max_bytes)?);
        let (sink, incoming, stats) = StoreSink::new(config.queue);
        stats.spool_bytes.store(spool.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        let closing = Arc::new(AtomicBool::new(false));
        let node = config.node_name();
        let mut shipper = Shipper {
            config: config.clone(),
            node,
            spool: Arc::clone(&spool),
            stats: Arc::clone(&stats),
            closing: Arc::clone(&closing),
            client: None,
            position: None,
            backoff: Duration::from_millis(100),
            last_error_log: None,
            last_purge: None,
            purging: false,
            ahead: None,
        };
        let shipper = std::thread::Builder::new()
            .name("nxguard-store-ship".into())
            .spawn(move || shipper.run())
            .expect("spawning the store shipper");
        let wake = shipper.thread().clone();
        let spooler_stats = Arc::clone(&stats);
        let spooler = std::thread::Builder::new()
            .name("nxguard-store".into())
            .spawn(move || {
                spool_incoming(&incoming, &spool, &spooler_stats, &wake);
                closing.store(true, Ordering::Release);
                wake.unpark();
            })
            .expect("spawning the store spooler");
        Ok((sink, PostgresWriter { spooler: Some(spooler), shipper: Some(shipper) }, stats))
    }

    /// Waits for both threads: the queue is spooled, and the spool shipped unless the database
    /// is unreachable (then it waits in the spool for the next start).
    pub fn close(mut self) {
        for thread in [self.spooler.take(), self.shipper.take()].into_iter().flatten() {
            let _ = thread.join();
        }
    }
}

/// Appends what arrives to the spool, batch by batch, until every sink is dropped.
fn spool_incoming(
    incoming: &mpsc::Receiver<Box<Record>>,
    spool: &Spool,
    stats: &StoreStats,
    shipper: &std::thread::Thread,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let first = match incoming.recv_timeout(Duration::from_secs(1)) {
            Ok(record) => record,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut records = vec![*first];
        while records.len() < BATCH {
            match incoming.try_recv() {
                Ok(record) => records.push(*record),
                Err(_) => break,
            }
        }
        let lost = match spool.append(&records) {
            Ok(lost) => lost,
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    error!(error = %e, "cannot write the attempt spool; records lost");
                    last_error_log = Some(Instant::now());
                }
                records.len()
            }
        };
        if lost > 0 {
            stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
            warn!(lost, "attempt spool full (store.spool_max_bytes); records dropped");
        }
        stats.spooled.fetch_add((records.len() - lost) as u64, Ordering::Relaxed);
        // The oldest waiting record, unless an older one already waits.
        if lost < records.len() {
            let first = records[0].ts_ms.max(1) as u64;
            let _ = stats.spool_oldest_ms.compare_exchange(0, first, Ordering::Relaxed, Ordering::Relaxed);
        }
        stats.spool_bytes.store(spool.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        shipper.unpark();
    }
}

struct Shipper {
    config: StoreConfig,
    node: String,
    spool: Arc<Spool>,
    stats: Arc<StoreStats>,
    closing: Arc<AtomicBool>,
    client: Option<Client>,
    /// Where the spool has been shipped up to; read from the database at every connect.
    position: Option<Position>,
    backoff: Duration,
    last_error_log: Option<Instant>,
    last_purge: Option<Instant>,
    purging: bool,
    /// The batch after the one last shipped, read while that one was written; used when it
    /// starts where the database now says the spool is.
    ahead: Option<Prepared>,
}

/// A batch read from the spool and its rollup deltas, ready to ship.
struct Prepared {
    /// Where in the spool the batch starts.
    at: Position,
    batch: Batch,
    rollups: Rollups,
}

impl Prepared {
    fn read(spool: &Spool, at: Position) -> Result<Prepared, StoreError> {
        let batch = spool.read(at, BATCH)?;
        let rollups = Rollups::of(&batch.records);
        Ok(Prepared { at, batch, rollups })
    }
}

impl Shipper {
    fn run(&mut self) {
        let idle = Duration::from_millis(self.config.flush_interval_ms);
        loop {
            let closing = self.closing.load(Ordering::Acquire);
            match self.ship_once() {
                Ok(true) => self.purge_step(),
                Ok(false) => {
                    self.stats.spool_oldest_ms.store(0, Ordering::Relaxed);
                    if closing {
                        return;
                    }
                    self.purge_step();
                    std::thread::park_timeout(if self.purging { Duration::from_millis(10) } else { idle });
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.client = None;
                    self.position = None;
                    self.ahead = None;
                    if closing {
                        warn!(error = %e, "attempt store unreachable at shutdown; records stay in the spool");
                        return;
                    }
                    if self.last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        error!(error = %e, "cannot write attempts to PostgreSQL; keeping them in the spool");
                        self.last_error_log = Some(Instant::now());
                    }
                    std::thread::park_timeout(self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn connected(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_none() {
            let mut client = postgres::connect(&self.config)?;
            postgres::migrate(&mut client, &self.config)?;
            let stored = postgres::position(&mut client, &self.node, &self.spool.id)
                .map_err(|e| postgres::db_error(&self.config, e))?;
            self.position = Some(self.spool.start(stored)?);
            info!(url = self.config.url.as_deref().unwrap_or_default(), "attempt store connected");
            self.backoff = Duration::from_millis(100);
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Ships one batch; false when the spool had nothing left. While the database writes it,
    /// a scoped thread reads and rolls up the next one, so parsing the spool never waits for
    /// the database nor the database for the parsing.
    fn ship_once(&mut self) -> Result<bool, StoreError> {
        self.connected()?;
        let at = self.position.unwrap_or_default();
        let current = match self.ahead.take() {
            Some(ahead) if ahead.at == at && ahead.batch.next != at => ahead,
            _ => Prepared::read(&self.spool, at)?,
        };
        if current.batch.next == at {
            return Ok(false);
        }
        let (shipped, ahead) = self.ship_reading_ahead(&current);
        shipped.map_err(|e| postgres::db_error(&self.config, e))?;
        let next = current.batch.next;
        self.position = Some(next);
        self.stats.written.fetch_add(current.batch.records.len() as u64, Ordering::Relaxed);
        self.stats.dropped.fetch_add(current.batch.unreadable, Ordering::Relaxed);
        self.spool.release(next)?;
        // The next record waiting, if any, is now the oldest.
        let oldest = match ahead.as_ref().and_then(|ahead| ahead.batch.records.first()) {
            Some(first) => Some(first.ts_ms),
            None => self.spool.read(next, 1)?.records.first().map(|r| r.ts_ms),
        };
        self.stats.spool_oldest_ms.store(oldest.map_or(0, |ts| ts.max(1) as u64), Ordering::Relaxed);
        self.stats.spool_bytes.store(self.unshipped_bytes(next), Ordering::Relaxed);
        self.ahead = ahead;
        Ok(true)
    }

    /// Writes `current` to the database while the batch after it is read from the spool on a
    /// scoped thread; that batch is `None` when it could not be read (read again, and any
    /// error reported, at the next turn).
    fn ship_reading_ahead(&mut self, current: &Prepared) -> (Result<(), ::postgres::Error>, Option<Prepared>) {
        let (node, id, spool) = (self.node.as_str(), self.spool.id.as_str(), &*self.spool);
        let client = self.client.as_mut().expect("ship_once connects first");
        std::thread::scope(|scope| {
            let next = current.batch.next;
            let reader = std::thread::Builder::new()
                .name("nxguard-store-read".into())
                .spawn_scoped(scope, move || Prepared::read(spool, next));
            let shipped = postgres::ship(client, node, id, &current.batch, &current.rollups);
            let ahead = reader.ok().and_then(|reader| reader.join().ok()).and_then(Result::ok);
            (shipped, ahead)
        })
    }

    /// The spool's bytes not yet shipped (the shipped part of the current segment excluded).
    fn unshipped_bytes(&self, at: Position) -> u64 {
        self.spool.bytes.load(Ordering::Relaxed).saturating_sub(at.offset.max(0) as u64)
    }

    fn purge_step(&mut self) {
        if !self.purging && self.last_purge.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
            return;
        }
        let Some(client) = self.client.as_mut() else { return };
        let (raw, rollups) = cutoffs(SystemTime::now(), self.config.raw_days, self.config.retention_days);
        match postgres::purge_chunk(client, raw, rollups, PURGE_CHUNK as i64) {
            Ok(n) => {
                self.purging = n > 0;
                self.stats.purged.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                warn!(error = %postgres::db_error(&self.config, e), "retention purge failed");
                self.purging = false;
            }
        }
        if !self.purging {
            self.last_purge = Some(Instant::now());
        }
    }
}

/// Milliseconds since the oldest spooled record waiting, 0 when none waits.
pub fn oldest_age_ms(stats: &StoreStats) -> u64 {
    match stats.spool_oldest_ms.load(Ordering::Relaxed) {
        0 => 0,
        oldest => (millis(SystemTime::now()).max(0) as u64).saturating_sub(oldest),
    }
}
