//! The attempt store: every blocked query as a row in an embedded SQLite database.
//!
//! Owns: the schema (versioned with `PRAGMA user_version`, indexed for the report queries), the
//! writer thread (one, fed through a bounded queue, writing batched transactions in WAL mode at
//! least every `flush_interval_ms`), keeping failed batches to retry when the disk recovers,
//! reopening the file when it was deleted or replaced under the writer (checked at each flush),
//! the retention purge, and pseudonymisation of the client identity. The query path never
//! waits for disk: a full queue drops the record and counts it.
//! Does not own: what a record contains (`evidence::attempt`), or reading for reports (`review`).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, OpenFlags, params_from_iter, types::Value};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::{config::StoreConfig, evidence::attempt::Attempt};

/// Schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;
/// Failed records kept in memory for the next try; beyond this the oldest are dropped.
const MAX_PENDING: usize = 200_000;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Records written in one transaction at most, when they arrive faster than the flush interval.
const BATCH: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attempts (
    id              INTEGER PRIMARY KEY,
    ts_ms           INTEGER NOT NULL,
    device_key      TEXT NOT NULL,
    client_ip       TEXT,
    client_port     INTEGER,
    transport       TEXT NOT NULL,
    device_ip       TEXT,
    mac             TEXT,
    hostname        TEXT,
    device          TEXT,
    owner           TEXT,
    identity_source TEXT NOT NULL,
    qname           TEXT NOT NULL,
    qtype           TEXT NOT NULL,
    app             TEXT NOT NULL,
    app_name        TEXT NOT NULL,
    vendor          TEXT NOT NULL,
    domain          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    matched_on      TEXT NOT NULL,
    cname_alias     TEXT
);
CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts_ms);
CREATE INDEX IF NOT EXISTS attempts_device ON attempts (device_key, ts_ms);
CREATE INDEX IF NOT EXISTS attempts_app ON attempts (app, ts_ms);
CREATE INDEX IF NOT EXISTS attempts_owner ON attempts (owner, ts_ms);
";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("attempt store {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("attempt store {path} has schema version {found}; this nxguard knows {SCHEMA_VERSION}")]
    Version { path: PathBuf, found: i64 },
    #[error("attempt store {path} cannot be written: {message}")]
    NotWritable { path: PathBuf, message: String },
    #[error("pseudonymisation key {path}: {message}")]
    Key { path: PathBuf, message: String },
}

/// Milliseconds since the Unix epoch.
pub fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Keyed hash of a device identity (HMAC-SHA-256, first 16 hex digits), so that the store can
/// group a device's attempts without holding who it is.
pub struct Pseudonymizer {
    key: ring::hmac::Key,
}

impl Pseudonymizer {
    /// Reads the key file (at least 32 bytes of secret, kept apart from the database).
    pub fn from_file(path: &Path) -> Result<Pseudonymizer, StoreError> {
        let fail = |message: String| StoreError::Key { path: path.into(), message };
        let secret = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        if secret.len() < 32 {
            return Err(fail(format!("has {} bytes, needs at least 32", secret.len())));
        }
        Ok(Pseudonymizer { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret) })
    }

    /// Writes a new random key file (mode 0600).
    pub fn create_key(path: &Path) -> Result<(), StoreError> {
        use std::io::Write;
        let fail = |message: String| StoreError::Key { path: path.into(), message };
        let secret: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
        file.write_all(&secret).map_err(|e| fail(e.to_string()))
    }

    pub fn pseudonym(&self, identity: &str) -> String {
        let tag = ring::hmac::sign(&self.key, identity.as_bytes());
        let hex: String = tag.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("p-{hex}")
    }
}

/// Counters the metrics endpoint and tests read.
#[derive(Default)]
pub struct StoreStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    pub pending: AtomicU64,
    /// Times the database file was found deleted or replaced at a flush, and reopened.
    pub reopened: AtomicU64,
}

/// The query side of the store: hands records to the writer thread.
#[derive(Clone)]
pub struct StoreSink {
    queue: SyncSender<Attempt>,
    stats: Arc<StoreStats>,
}

impl StoreSink {
    pub fn stats(&self) -> Arc<StoreStats> {
        Arc::clone(&self.stats)
    }

    /// Waits for room in the queue (benchmarks and imports; the query path uses `send`).
    pub fn send_waiting(&self, attempt: Attempt) {
        if self.queue.send(attempt).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Never blocks: a full queue drops the record and counts it.
    pub fn send(&self, attempt: Attempt) {
        match self.queue.try_send(attempt) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread; dropping every `StoreSink` (or calling `close`) makes it flush and end.
pub struct StoreWriter {
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<StoreStats>,
}

impl StoreWriter {
    /// Starts the writer. A database that cannot be opened now is retried at every flush, so
    /// DNS is never held up by the store.
    pub fn start(
        path: &Path,
        config: &StoreConfig,
        pseudonymizer: Option<Arc<Pseudonymizer>>,
    ) -> (StoreSink, StoreWriter) {
        let (queue, incoming) = mpsc::sync_channel(config.queue);
        let stats = Arc::new(StoreStats::default());
        let sink = StoreSink { queue, stats: Arc::clone(&stats) };
        let mut worker = Worker {
            path: path.to_path_buf(),
            flush: Duration::from_millis(config.flush_interval_ms),
            retention: Duration::from_secs(u64::from(config.retention_days) * 86_400),
            pseudonymizer,
            connection: None,
            pending: VecDeque::new(),
            stats: Arc::clone(&stats),
            last_purge: None,
            last_error_log: None,
            dropped_logged: 0,
        };
        let thread = std::thread::Builder::new()
            .name("nxguard-store".into())
            .spawn(move || worker.run(incoming))
            .expect("spawning the store thread");
        (sink, StoreWriter { thread: Some(thread), stats })
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
    flush: Duration,
    retention: Duration,
    pseudonymizer: Option<Arc<Pseudonymizer>>,
    connection: Option<Connection>,
    pending: VecDeque<Attempt>,
    stats: Arc<StoreStats>,
    last_purge: Option<Instant>,
    last_error_log: Option<Instant>,
    dropped_logged: u64,
}

impl Worker {
    fn run(&mut self, incoming: mpsc::Receiver<Attempt>) {
        // Opened now so that the schema exists and a burst can be written at once; a failure
        // here is retried (and reported) at the first flush.
        self.connection = open(&self.path, false).ok();
        let mut deadline = Instant::now() + self.flush;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match incoming.recv_timeout(wait) {
                Ok(attempt) => {
                    self.push(attempt);
                    // Take what else is waiting, up to one batch, without blocking.
                    while self.pending.len() < BATCH {
                        match incoming.try_recv() {
                            Ok(attempt) => self.push(attempt),
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
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_pending();
                    return;
                }
            }
            self.write_pending();
            self.purge_if_due();
            self.log_drops();
            deadline = Instant::now() + self.flush;
        }
    }

    fn push(&mut self, attempt: Attempt) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.pending.push_back(attempt);
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
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite { path: path.clone(), source };
        if self.connection.as_ref().is_some_and(file_moved) {
            self.reopen_moved();
        }
        if self.connection.is_none() {
            self.connection = Some(open(&self.path, false)?);
            info!(path = %self.path.display(), "attempt store open");
        }
        let connection = self.connection.as_mut().expect("opened above");
        let tx = connection.transaction().map_err(wrap)?;
        {
            let mut insert = tx.prepare_cached(INSERT).map_err(wrap)?;
            for attempt in &self.pending {
                let row = Row::of(attempt, self.pseudonymizer.as_deref());
                insert.execute(params_from_iter(row.values())).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(self.pending.len())
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

    fn purge_if_due(&mut self) {
        if self.last_purge.is_some_and(|t| t.elapsed() < PURGE_EVERY) {
            return;
        }
        // An idle server purges too: open the store if no write has yet.
        if self.connection.is_none() {
            self.connection = open(&self.path, false).ok();
        }
        if let Some(connection) = &self.connection {
            match purge(connection, SystemTime::now(), self.retention) {
                Ok(n) if n > 0 => info!(deleted = n, "attempts past retention deleted"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "retention purge failed"),
            }
            self.last_purge = Some(Instant::now());
        }
    }
}

const INSERT: &str = "INSERT INTO attempts (ts_ms, device_key, client_ip, client_port, transport, device_ip, mac, \
     hostname, device, owner, identity_source, qname, qtype, app, app_name, vendor, domain, kind, matched_on, \
     cname_alias) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// One attempt as stored; with pseudonymisation the identifying fields are replaced by the
/// pseudonym (device_key) and left empty.
struct Row<'a> {
    attempt: &'a Attempt,
    device_key: String,
    identifying: bool,
}

impl<'a> Row<'a> {
    fn of(attempt: &'a Attempt, pseudonymizer: Option<&Pseudonymizer>) -> Row<'a> {
        let key = attempt.identity.key();
        match pseudonymizer {
            Some(p) => Row { attempt, device_key: p.pseudonym(&key), identifying: false },
            None => Row { attempt, device_key: key, identifying: true },
        }
    }

    fn values(&self) -> [Value; 20] {
        let a = self.attempt;
        let id = &a.identity;
        let text = |v: &str| Value::Text(v.to_string());
        let keep = |v: Option<String>| match v {
            Some(v) if self.identifying => Value::Text(v),
            _ => Value::Null,
        };
        let (matched_on, alias) = match &a.via {
            crate::evidence::attempt::Via::Query => ("query", Value::Null),
            crate::evidence::attempt::Via::Cname { alias } => ("cname", text(alias)),
        };
        [
            Value::Integer(millis(a.time)),
            text(&self.device_key),
            keep(Some(a.client.ip().to_string())),
            if self.identifying { Value::Integer(i64::from(a.client.port())) } else { Value::Null },
            text(a.transport.as_str()),
            keep(Some(id.ip.to_string())),
            keep(id.mac.clone()),
            keep(id.hostname.clone()),
            keep(id.device.clone()),
            keep(id.owner.clone()),
            text(id.source.as_str()),
            text(&a.qname),
            text(&a.qtype),
            text(&a.app.app.id),
            text(&a.app.app.name),
            text(&a.app.app.vendor),
            text(&a.domain),
            text(a.kind.as_str()),
            text(matched_on),
            alias,
        ]
    }
}

/// Whether the store at `path` can be written (for `nxguard check`): an existing file is opened
/// for writing, and a file is created and removed beside it (SQLite's journal goes there too).
/// Both fail on a read-only mount, even for root, and where the user may not write.
pub fn check_writable(path: &Path) -> Result<(), StoreError> {
    let fail = |e: std::io::Error| StoreError::NotWritable { path: path.into(), message: e.to_string() };
    if path.exists() {
        std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(format!(".nxguard-check-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Opens (creating when `read_only` is false) the database and checks its schema version.
pub fn open(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let wrap = |source| StoreError::Sqlite { path: path.into(), source };
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(path, flags).map_err(wrap)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(wrap)?;
    if read_only {
        if version != SCHEMA_VERSION {
            return Err(StoreError::Version { path: path.into(), found: version });
        }
        return Ok(connection);
    }
    // WAL: readers (reports) never block the writer; synchronous=NORMAL keeps every committed
    // transaction across a process crash (kill -9); only a power loss can cost the last ones.
    connection.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
    connection.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
    match version {
        0 => {
            connection.execute_batch(SCHEMA).map_err(wrap)?;
            connection.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(wrap)?;
        }
        SCHEMA_VERSION => {}
        found => return Err(StoreError::Version { path: path.into(), found }),
    }
    Ok(connection)
}

/// Whether the database file `connection` has open was unlinked or replaced since: SQLite's
/// unix VFS compares the open file's inode with the one now at its path
/// (`SQLITE_FCNTL_HAS_MOVED`). Rows written to an unlinked file are lost when it is closed.
fn file_moved(connection: &Connection) -> bool {
    let mut moved: std::ffi::c_int = 0;
    // SAFETY: `handle` is the live connection's database handle, borrowed for this call only;
    // "main" is a NUL-terminated schema name; HAS_MOVED writes one int through the pointer,
    // which points at a local that outlives the call.
    let result = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            connection.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_HAS_MOVED,
            (&raw mut moved).cast(),
        )
    };
    result == rusqlite::ffi::SQLITE_OK && moved != 0
}

/// Deletes attempts older than `retention` before `now`; returns how many.
pub fn purge(connection: &Connection, now: SystemTime, retention: Duration) -> Result<usize, rusqlite::Error> {
    let cutoff = millis(now.checked_sub(retention).unwrap_or(UNIX_EPOCH));
    connection.execute("DELETE FROM attempts WHERE ts_ms < ?1", [cutoff])
}

/// Writes attempts straight into a database (tests, benchmarks and imports).
pub fn insert_all(path: &Path, attempts: &[Attempt], pseudonymizer: Option<&Pseudonymizer>) -> Result<(), StoreError> {
    let mut connection = open(path, false)?;
    let wrap = |source| StoreError::Sqlite { path: path.into(), source };
    let tx = connection.transaction().map_err(wrap)?;
    {
        let mut insert = tx.prepare_cached(INSERT).map_err(wrap)?;
        for attempt in attempts {
            insert.execute(params_from_iter(Row::of(attempt, pseudonymizer).values())).map_err(wrap)?;
        }
    }
    tx.commit().map_err(wrap)
}
