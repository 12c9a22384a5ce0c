//! The durable attempt store, on SQLite (embedded, one node) or PostgreSQL (shared by every
//! node).
//!
//! Owns: the schema and its migrations on both backends, the writers (off the query path: a
//! bounded queue the query side never waits on), the local spool that carries records over a
//! PostgreSQL outage, the daily rollups, the incremental purge (raw rows after `raw_days`,
//! rollups after `retention_days`), pseudonyms, and opening either backend read-only for
//! readers (`read`).
//! Must not touch: what a record contains (`evidence::attempt`) or how reports read and present
//! it (`review`).
//!
//! # Schema (version 4; the same tables and columns on both backends)
//!
//! `attempts`, one row per recorded query (raw; kept `store.raw_days`):
//! `id` (INTEGER PRIMARY KEY / BIGSERIAL), `ts_ms` (ms since the epoch, UTC), `node` (the
//! writing node, `store.node`), `device_key` (identity key or pseudonym), `client_ip`,
//! `client_port`, `transport` (udp|tcp|tls|https), `device_ip`, `mac`, `hostname`, `device`,
//! `owner` (all NULL when pseudonymised), `identity_source` (inventory-mac|inventory-ip|dhcp|
//! edns|unknown|…, stored as the string the resolver gives), `qname`, `qtype`, `app` (id),
//! `app_name`, `vendor`, `domain` (the listed domain that matched), `kind` (api|telemetry|cdn|
//! web|alias|unspecified), `matched_on` (query|cname), `cname_alias`, `mode` (enforce|log-only),
//! `policy_version`, `rule`.
//! Indexes: `attempts_ts (ts_ms)` (time windows, the purge) and `attempts_device (device_key,
//! ts_ms)` (a device's page and timeline), nothing else: every index costs each recorded
//! attempt a b-tree insert. (Version 4 dropped `attempts_app` and `attempts_owner`, which no
//! read could use; version 3 is the read side's summary table.)
//!
//! `rollups`, one row per (day, device_key, app, node, mode) (kept `store.retention_days`):
//! `day` (UTC days since the epoch, `ts_ms / 86400000`), `device_key`, `app`, `node`, `mode`,
//! `owner` (greatest seen), `app_name`, `attempts`, per kind `api`, `telemetry`, `cdn`, `web`,
//! `alias`, `unspecified`, `first_ms`, `last_ms`, `domains` (the distinct listed domains,
//! sorted, space-separated). Primary key `(day, device_key, app, node, mode)` (SQLite: a
//! `WITHOUT ROWID` table clustered on it, so a window of days is one range scan); index
//! `rollups_device (device_key, day)`. Written in the same transaction as the raw rows they
//! count.
//!
//! PostgreSQL only: `nxguard_schema (version)` and `spool_positions (node, spool_id, segment,
//! byte_offset)`, how far each node's spool is in the database. SQLite keeps its version in
//! `PRAGMA user_version`. Text columns on PostgreSQL are `COLLATE "C"` (bytewise, as SQLite).

pub mod pool;
pub mod postgres;
pub mod read;
pub mod record;
pub mod rollup;
pub mod shipper;
pub mod spool;
pub mod sqlite;
pub mod sqlite_writer;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use thiserror::Error;

pub use record::{DAY_MS, Pseudonymizer, Record, millis};
pub use sqlite::{check_writable, insert_all, open, purge};

use crate::config::{StoreBackend, StoreConfig};

/// The schema version this binary writes and reads (`PRAGMA user_version` on SQLite, the
/// `nxguard_schema` table on PostgreSQL). Older stores are migrated; newer ones refused.
pub const SCHEMA_VERSION: i64 = 4;
/// Rows one purge step deletes at most (a few ms of work).
pub const PURGE_CHUNK: usize = 2000;

/// What is wrong with a file the store reads beside its database (key, password, CA).
#[derive(Debug, Error)]
pub enum FileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error(transparent)]
    Certificate(#[from] rustls::Error),
    #[error("has {bytes} bytes, needs at least 32")]
    ShortKey { bytes: usize },
    #[error("is empty")]
    Empty,
    #[error("holds no certificate")]
    NoCertificate,
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("attempt store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(
        "attempt store {store} has schema version {found}; this nxguard reads version {SCHEMA_VERSION} \
         (a newer store needs a newer nxguard; an older one is migrated when nxguard serve opens it)"
    )]
    Version { store: String, found: i64 },
    #[error("attempt store {path} cannot be written: {source}")]
    NotWritable { path: PathBuf, source: std::io::Error },
    #[error("pseudonymisation key {path}: {source}")]
    Key { path: PathBuf, source: FileError },
    /// The cause with its own causes, each said once (`postgres::chain`).
    #[error("PostgreSQL store {url}: {}", postgres::chain(source.as_ref()))]
    Postgres { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("store.url {url:?} is not a PostgreSQL URL: {}", postgres::chain(source))]
    Url { url: String, source: ::postgres::Error },
    #[error("store.password_file {path}: {source}")]
    Password { path: PathBuf, source: FileError },
    #[error("store.ca_file {path}: {source}")]
    Ca { path: PathBuf, source: FileError },
    #[error("attempt spool {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
    #[error("attempt store {store}: no answer within {ms} ms")]
    Timeout { store: String, ms: u128 },
    #[error("attempt store {0}")]
    Pool(#[from] pool::PoolError),
}

/// The raw-row cutoff (ms) and the first rollup day kept, for a purge at `now`.
pub fn cutoffs(now: SystemTime, raw_days: u32, retention_days: u32) -> (i64, i64) {
    let now = millis(now.max(UNIX_EPOCH));
    let today = now.div_euclid(DAY_MS);
    (now - i64::from(raw_days) * DAY_MS, today - i64::from(retention_days))
}

/// Counters the metrics endpoint and tests read.
#[derive(Default)]
pub struct StoreStats {
    /// Records committed to the database.
    pub written: AtomicU64,
    /// Records lost (queue, retry buffer or spool full; unreadable spool lines).
    pub dropped: AtomicU64,
    /// Failed writes (kept and retried).
    pub errors: AtomicU64,
    /// SQLite: records held by the writer, not yet committed.
    pub pending: AtomicU64,
    /// Raw rows and rollups deleted by the purge.
    pub purged: AtomicU64,
    /// SQLite: times the database file was found deleted or replaced at a flush, and reopened.
    pub reopened: AtomicU64,
    /// PostgreSQL: records appended to the spool.
    pub spooled: AtomicU64,
    /// PostgreSQL: bytes in the spool not yet shipped.
    pub spool_bytes: AtomicU64,
    /// PostgreSQL: time (ms since the epoch) of the oldest record waiting in the spool; 0 none.
    pub spool_oldest_ms: AtomicU64,
}

impl StoreStats {
    /// Seconds the oldest spooled record has waited (0 when the spool is shipped).
    pub fn spool_oldest_age_secs(&self) -> f64 {
        shipper::oldest_age_ms(self) as f64 / 1000.0
    }
}

/// The query side of the store: hands records to the writer.
#[derive(Clone)]
pub struct StoreSink {
    /// Boxed: `sync_channel` allocates every slot up front, and 65 536 slots of a 600-byte record
    /// were 13 MB more resident memory than the attempts they replaced (8 bytes a slot now).
    queue: SyncSender<Box<Record>>,
    stats: Arc<StoreStats>,
}

impl StoreSink {
    fn new(capacity: usize) -> (StoreSink, mpsc::Receiver<Box<Record>>, Arc<StoreStats>) {
        let (queue, incoming) = mpsc::sync_channel(capacity);
        let stats = Arc::new(StoreStats::default());
        (StoreSink { queue, stats: Arc::clone(&stats) }, incoming, stats)
    }

    pub fn stats(&self) -> Arc<StoreStats> {
        Arc::clone(&self.stats)
    }

    /// Waits for room in the queue (benchmarks and imports; the query path uses `send`).
    pub fn send_waiting(&self, record: Record) {
        if self.queue.send(Box::new(record)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Never blocks: a full queue drops the record and counts it.
    pub fn send(&self, record: Record) {
        match self.queue.try_send(Box::new(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

enum Backend {
    Sqlite(sqlite_writer::SqliteWriter),
    Postgres(shipper::PostgresWriter),
}

/// The running writer; dropping every `StoreSink` (or calling `close`) makes it flush and end.
pub struct StoreWriter {
    backend: Backend,
    pub stats: Arc<StoreStats>,
}

impl StoreWriter {
    /// Starts the configured writer; `None` when no store is configured. A database that
    /// cannot be reached now is retried, so DNS is never held up by the store. Records come
    /// pseudonymised already (the dispatcher builds them once for every output).
    pub fn start(config: &StoreConfig) -> Result<Option<(StoreSink, StoreWriter)>, StoreError> {
        match config.backend {
            StoreBackend::Sqlite => Ok(config.path.as_ref().map(|path| {
                let (sink, writer, stats) = sqlite_writer::SqliteWriter::start(path, config);
                (sink, StoreWriter { backend: Backend::Sqlite(writer), stats })
            })),
            StoreBackend::Postgres => {
                let Some(dir) = &config.spool_dir else { return Ok(None) };
                let (sink, writer, stats) = shipper::PostgresWriter::start(config, dir)?;
                Ok(Some((sink, StoreWriter { backend: Backend::Postgres(writer), stats })))
            }
        }
    }

    /// Waits for the writer to flush and end (after every sink is dropped).
    pub fn close(self) {
        match self.backend {
            Backend::Sqlite(writer) => writer.close(),
            Backend::Postgres(writer) => writer.close(),
        }
    }
}

/// Checks that the configured store can be opened (for `nxguard check`): on PostgreSQL it
/// connects, which names a bad URL, password file, CA or an unreachable host, and refuses a
/// schema newer than this binary (none yet is fine: `serve` creates it). A failed query is an
/// error, never taken as "no schema".
pub fn check(config: &StoreConfig) -> Result<(), StoreError> {
    match config.backend {
        StoreBackend::Sqlite => Ok(()),
        StoreBackend::Postgres => {
            let mut client = postgres::connect(config)?;
            let found = postgres::version(&mut client).map_err(|e| postgres::db_error(config, e))?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::Version { store: config.url.clone().unwrap_or_default(), found });
            }
            Ok(())
        }
    }
}
