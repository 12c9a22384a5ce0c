//! The SQLite writer thread: one, fed through a bounded queue, writing batched transactions at
//! least every `flush_interval_ms`, keeping failed batches to retry when the disk recovers, and
//! running the purge one chunk per turn. The query path never waits for disk: a full queue drops
//! the record and counts it. While a batch is under way the thread polls the queue instead of
//! waiting on it, so handing it a record costs the dispatcher no system call.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::Ordering,
        mpsc::{self, RecvTimeoutError, TryRecvError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use rusqlite::Connection;
use tracing::{error, info, warn};

use crate::{
    config::StoreConfig,
    evidence::store::{
        PURGE_CHUNK, StoreError, StoreSink, StoreStats, cutoffs,
        record::Record,
        sqlite::{self, insert, open_writable, purge_chunk},
    },
};

/// Failed records kept in memory for the next try; beyond this the oldest are dropped.
const MAX_PENDING: usize = 200_000;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Records written in one transaction at most, when they arrive faster than the flush interval.
const BATCH: usize = 50_000;
/// How often the queue is emptied while a batch is under way: at the default `store.queue` of
/// 65 536 records it holds 6.5 M records a second.
const POLL: Duration = Duration::from_millis(10);

/// The SQLite writer thread; dropping every `StoreSink` (or calling `close`) makes it flush and
/// end.
pub struct SqliteWriter {
    thread: Option<JoinHandle<()>>,
}

impl SqliteWriter {
    /// Starts the writer. A database that cannot be opened now is retried at every flush, so
    /// DNS is never held up by the store.
    pub fn start(path: &Path, config: &StoreConfig) -> (StoreSink, SqliteWriter, Arc<StoreStats>) {
        let (sink, incoming, stats) = StoreSink::new(config.queue);
        let mut worker = Worker {
            path: path.to_path_buf(),
            node: config.node_name(),
            flush: Duration::from_millis(config.flush_interval_ms),
            raw_days: config.raw_days,
            retention_days: config.retention_days,
            connection: None,
            pending: VecDeque::new(),
            stats: Arc::clone(&stats),
            last_purge: None,
            purging: false,
            last_error_log: None,
            dropped_logged: 0,
        };
        let thread = std::thread::Builder::new()
            .name("nxguard-store".into())
            .spawn(move || worker.run(incoming))
            .expect("spawning the store thread");
        (sink, SqliteWriter { thread: Some(thread) }, stats)
    }

    /// Waits for the writer to flush and end (after every sink is dropped).
    pub fn close(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    path: PathBuf,
    node: String,
    flush: Duration,
    raw_days: u32,
    retention_days: u32,
    connection: Option<Connection>,
    pending: VecDeque<Record>,
    stats: Arc<StoreStats>,
    last_purge: Option<Instant>,
    /// A purge is under way: one chunk per turn of the loop until nothing is left.
    purging: bool,
    last_error_log: Option<Instant>,
    dropped_logged: u64,
}

impl Worker {
    fn run(&mut self, incoming: mpsc::Receiver<Box<Record>>) {
        // Opened now so that the schema exists and a burst can be written at once; a failure
        // here is retried (and reported) at the first flush.
        self.connection = open_writable(&self.path, &self.node).ok();
        let mut deadline = Instant::now() + self.flush;
        loop {
            // While a purge runs, the loop comes round at least every 10 ms for its next chunk.
            let wait = deadline.saturating_duration_since(Instant::now());
            let wait = if self.purging { wait.min(Duration::from_millis(10)) } else { wait };
            match self.next(&incoming, wait) {
                Ok(record) => {
                    self.push(record);
                    // Take what else is waiting, up to one batch, without blocking.
                    while self.pending.len() < BATCH {
                        match incoming.try_recv() {
                            Ok(record) => self.push(record),
                            Err(_) => break,
                        }
                    }
                    // A full batch is written at once, unless the last write failed: then the
                    // next try waits for the flush interval and records accumulate (bounded).
                    let full = self.pending.len() >= BATCH && self.connection.is_some();
                    if !full && Instant::now() < deadline {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() < deadline {
                        if self.purging {
                            self.purge_step();
                        }
                        continue;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_pending();
                    return;
                }
            }
            self.write_pending();
            self.purge_step();
            self.log_drops();
            deadline = Instant::now() + self.flush;
        }
    }

    /// The next record, waiting at most `wait`. With a batch under way the queue is polled
    /// every `POLL` instead of waited on: a waiting receiver makes every sender wake it (a
    /// futex call and a context switch per blocked query), a sleeping one costs them nothing.
    fn next(&self, incoming: &mpsc::Receiver<Box<Record>>, wait: Duration) -> Result<Box<Record>, RecvTimeoutError> {
        if self.pending.is_empty() {
            return incoming.recv_timeout(wait);
        }
        match incoming.try_recv() {
            Ok(record) => Ok(record),
            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            Err(TryRecvError::Empty) => {
                std::thread::sleep(wait.min(POLL));
                incoming.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            }
        }
    }

    fn push(&mut self, record: Box<Record>) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.pending.push_back(*record);
        self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
    }

    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.write_batch() {
            Ok(n) => {
                self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
                self.pending.clear();
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                // The connection may be in a bad state (disk full, file replaced): reopen later.
                self.connection = None;
                let quiet = self.last_error_log.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if !quiet {
                    error!(error = %e, pending = self.pending.len(), "cannot write attempts; keeping them to retry");
                    self.last_error_log = Some(Instant::now());
                }
            }
        }
        self.stats.pending.store(self.pending.len() as u64, Ordering::Relaxed);
    }

    fn write_batch(&mut self) -> Result<usize, StoreError> {
        if self.connection.as_ref().is_some_and(sqlite::file_moved) {
            self.reopen_moved();
        }
        if self.connection.is_none() {
            self.connection = Some(open_writable(&self.path, &self.node)?);
            info!(path = %self.path.display(), "attempt store open");
        }
        let connection = self.connection.as_mut().expect("opened above");
        let records = self.pending.make_contiguous();
        insert(connection, records).map_err(|source| StoreError::Sqlite { path: self.path.clone(), source })?;
        Ok(records.len())
    }

    /// The open database file was deleted or replaced (a cleanup script, the directory removed):
    /// rows written now would vanish with it. Drop the connection so the next open creates the
    /// file at its path again, recreating a removed directory (0700: it holds personal data).
    fn reopen_moved(&mut self) {
        self.connection = None;
        self.stats.reopened.fetch_add(1, Ordering::Relaxed);
        warn!(path = %self.path.display(), "attempt store file deleted or replaced while open; reopening it");
        if let Some(dir) = self.path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            if let Err(error) = builder.create(dir) {
                warn!(dir = %dir.display(), %error, "cannot recreate the attempt store directory");
            }
        }
    }

    /// Says so in the log when records were lost since the last flush.
    fn log_drops(&mut self) {
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_logged {
            warn!(lost = dropped - self.dropped_logged, total = dropped, "attempt store queue full; records dropped");
            self.dropped_logged = dropped;
        }
    }

    /// One chunk of the purge when one is due or under way: a few ms at most, so a purge of
    /// millions of rows never holds up the writer.
    fn purge_step(&mut self) {
        if !self.purging && self.last_purge.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
            return;
        }
        // An idle server purges too: open the store if no write has yet.
        if self.connection.is_none() {
            self.connection = open_writable(&self.path, &self.node).ok();
        }
        let Some(connection) = &self.connection else { return };
        let (raw, rollups) = cutoffs(SystemTime::now(), self.raw_days, self.retention_days);
        match purge_chunk(connection, raw, rollups, PURGE_CHUNK) {
            Ok(n) => {
                self.purging = n > 0;
                if n > 0 {
                    self.stats.purged.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                warn!(error = %e, "retention purge failed");
                self.purging = false;
            }
        }
        if !self.purging {
            self.last_purge = Some(Instant::now());
        }
    }
}
