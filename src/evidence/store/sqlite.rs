//! The SQLite backend: every blocked query as a row in an embedded database, plus its daily
//! rollups (schema in `store`'s header).
//!
//! Owns: the schema and its migrations on SQLite (`PRAGMA user_version`), opening the file
//! (WAL mode), writing a batch (raw rows and rollups in one transaction), the purge in chunks,
//! noticing that the open file was deleted or replaced (`file_moved`), and proving a path can be
//! written (`check_writable`). The writer thread that calls these is `sqlite_writer`.
//! Does not own: what a record contains (`evidence::attempt`, `record`), or reading for reports
//! (`review`).

use std::{
    path::Path,
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use rusqlite::{
    Connection, OpenFlags, ToSql, Transaction, params,
    types::{ToSqlOutput, ValueRef},
};
use tracing::info;

use crate::{
    config::StoreConfig,
    evidence::{
        attempt::Attempt,
        store::{
            PURGE_CHUNK, SCHEMA_VERSION, StoreError, cutoffs,
            record::{Pseudonymizer, Record, Value, column_names},
            rollup::Rollups,
        },
    },
};

/// Version 1: the raw attempts.
const SCHEMA_V1: &str = "
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

/// Version 2: node and evidence stamp on every row, and the daily rollups.
const SCHEMA_V2: &str = "
ALTER TABLE attempts ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE attempts ADD COLUMN mode TEXT NOT NULL DEFAULT 'enforce';
ALTER TABLE attempts ADD COLUMN policy_version TEXT NOT NULL DEFAULT '';
ALTER TABLE attempts ADD COLUMN rule TEXT NOT NULL DEFAULT '';
CREATE TABLE rollups (
    device_key  TEXT NOT NULL,
    app         TEXT NOT NULL,
    day         INTEGER NOT NULL,
    node        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    owner       TEXT,
    app_name    TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    api         INTEGER NOT NULL,
    telemetry   INTEGER NOT NULL,
    cdn         INTEGER NOT NULL,
    web         INTEGER NOT NULL,
    alias       INTEGER NOT NULL,
    unspecified INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    domains     TEXT NOT NULL,
    PRIMARY KEY (day, device_key, app, node, mode)
) WITHOUT ROWID;
CREATE INDEX rollups_device ON rollups (device_key, day);
";

/// Version 4 (3 is the read side's summary table): the two indexes no reader uses go. Reports
/// match `app` and `owner` case-insensitively (`lower(app) = ?`, `lower(owner) LIKE '%…%'`),
/// which an index on the plain column cannot serve, so each only cost a b-tree insert per row.
const SCHEMA_V4: &str = "
DROP INDEX IF EXISTS attempts_app;
DROP INDEX IF EXISTS attempts_owner;
";

/// `INSERT INTO attempts (…) VALUES (?1, …)` over `record::columns`, in their order.
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let names = column_names();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        format!("INSERT INTO attempts ({}) VALUES ({})", names.join(", "), marks.join(", "))
    })
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Int8(v) => ValueRef::Integer(v),
            Value::Int4(Some(v)) => ValueRef::Integer(i64::from(v)),
            Value::Text(v) | Value::OptText(Some(v)) => ValueRef::Text(v.as_bytes()),
            Value::Int4(None) | Value::OptText(None) => ValueRef::Null,
        }))
    }
}

/// Writes records and their rollups in one transaction, through one cached statement whose
/// parameters are bound column by column (no parameter list built per row).
pub fn insert(connection: &mut Connection, records: &[Record]) -> Result<(), rusqlite::Error> {
    let tx = connection.transaction()?;
    {
        let mut insert = tx.prepare_cached(insert_sql())?;
        for record in records {
            for (i, (_, value)) in record.columns().into_iter().enumerate() {
                insert.raw_bind_parameter(i + 1, value)?;
            }
            insert.raw_execute()?;
        }
    }
    add_rollups(&tx, &Rollups::of(records))?;
    tx.commit()
}

/// Adds rollups directly in one transaction (benchmarks: rollups of a long history without its
/// raw rows).
pub fn insert_rollups(connection: &mut Connection, rollups: &Rollups) -> Result<(), rusqlite::Error> {
    let tx = connection.transaction()?;
    add_rollups(&tx, rollups)?;
    tx.commit()
}

/// Adds rollup deltas to the stored rollups: one upsert per key, counts added by SQLite, domain
/// sets merged by `nxguard_merge_domains` (registered by `open_writable`) only when they differ.
fn add_rollups(tx: &Transaction, rollups: &Rollups) -> Result<(), rusqlite::Error> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO rollups (device_key, app, day, node, mode, owner, app_name, attempts, api, telemetry, cdn, \
         web, alias, unspecified, first_ms, last_ms, domains) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
         ON CONFLICT (day, device_key, app, node, mode) DO UPDATE SET \
         owner = CASE WHEN excluded.owner IS NULL THEN rollups.owner WHEN rollups.owner IS NULL THEN excluded.owner \
                 ELSE max(rollups.owner, excluded.owner) END, \
         app_name = max(rollups.app_name, excluded.app_name), \
         attempts = rollups.attempts + excluded.attempts, api = rollups.api + excluded.api, \
         telemetry = rollups.telemetry + excluded.telemetry, cdn = rollups.cdn + excluded.cdn, \
         web = rollups.web + excluded.web, alias = rollups.alias + excluded.alias, \
         unspecified = rollups.unspecified + excluded.unspecified, \
         first_ms = min(rollups.first_ms, excluded.first_ms), last_ms = max(rollups.last_ms, excluded.last_ms), \
         domains = CASE WHEN rollups.domains = excluded.domains THEN rollups.domains \
                   ELSE nxguard_merge_domains(rollups.domains, excluded.domains) END",
    )?;
    for (key, c) in rollups.sorted() {
        let k = c.kinds;
        upsert.execute(params![
            key.device_key,
            key.app,
            key.day,
            key.node,
            key.mode,
            c.owner,
            c.app_name,
            c.attempts,
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            k[5],
            c.first_ms,
            c.last_ms,
            c.domains_text()
        ])?;
    }
    Ok(())
}

/// The union of two space-separated domain sets, sorted bytewise.
fn merge_domains(a: &str, b: &str) -> String {
    let set: std::collections::BTreeSet<&str> = a.split(' ').chain(b.split(' ')).filter(|d| !d.is_empty()).collect();
    set.into_iter().collect::<Vec<_>>().join(" ")
}

fn register_functions(connection: &Connection) -> Result<(), rusqlite::Error> {
    use rusqlite::functions::FunctionFlags;
    connection.create_scalar_function(
        "nxguard_merge_domains",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(merge_domains(&ctx.get::<String>(0)?, &ctx.get::<String>(1)?)),
    )
}

/// Whether the store at `path` can be written (for `nxguard check`): an existing file is opened
/// for writing, and a file is created and removed beside it (SQLite's journal goes there too).
/// Both fail on a read-only mount, even for root, and where the user may not write.
pub fn check_writable(path: &Path) -> Result<(), StoreError> {
    let fail = |source| StoreError::NotWritable { path: path.into(), source };
    if path.exists() {
        std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let probe = dir.join(format!(".nxguard-check-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe).map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// Whether the database file `connection` has open was unlinked or replaced since: SQLite's
/// unix VFS compares the open file's inode with the one now at its path
/// (`SQLITE_FCNTL_HAS_MOVED`). Rows written to an unlinked file are lost when it is closed.
pub fn file_moved(connection: &Connection) -> bool {
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

/// Opens the database read-only (reports) and checks that its schema is the one this binary
/// reads.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let wrap = |source| StoreError::Sqlite { path: path.into(), source };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(wrap)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(wrap)?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Version { store: path.display().to_string(), found: version });
    }
    Ok(connection)
}

/// Opens (creating) the database for writing and migrates an older schema; rows written before
/// version 2 are given `node`.
pub fn open_writable(path: &Path, node: &str) -> Result<Connection, StoreError> {
    let wrap = |source| StoreError::Sqlite { path: path.into(), source };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags).map_err(wrap)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
    register_functions(&connection).map_err(wrap)?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(wrap)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Version { store: path.display().to_string(), found: version });
    }
    // WAL: readers (reports) never block the writer; synchronous=NORMAL keeps every committed
    // transaction across a process crash (kill -9); only a power loss can cost the last ones.
    connection.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
    connection.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
    if version < SCHEMA_VERSION {
        migrate(&mut connection, version, node).map_err(wrap)?;
        if version > 0 {
            info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "attempt store schema migrated");
        }
    }
    Ok(connection)
}

/// Opens the database: read-only for readers, otherwise writable with this host's name for
/// migrated rows (tests and tools).
pub fn open(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    if read_only { open_read_only(path) } else { open_writable(path, &StoreConfig::default().node_name()) }
}

fn migrate(connection: &mut Connection, from: i64, node: &str) -> Result<(), rusqlite::Error> {
    let tx = connection.transaction()?;
    if from < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if from < 2 {
        tx.execute_batch(SCHEMA_V2)?;
        tx.execute("UPDATE attempts SET node = ?1", [node])?;
        // The rollups of the rows already there, so summaries see them.
        let mut rollups = Rollups::default();
        {
            let mut rows =
                tx.prepare("SELECT ts_ms, device_key, app, app_name, owner, kind, domain FROM attempts ORDER BY id")?;
            let mut cursor = rows.query([])?;
            while let Some(r) = cursor.next()? {
                rollups.add(&Record {
                    ts_ms: r.get(0)?,
                    node: node.to_string(),
                    device_key: r.get(1)?,
                    app: r.get(2)?,
                    app_name: r.get(3)?,
                    owner: r.get(4)?,
                    kind: r.get(5)?,
                    domain: r.get(6)?,
                    mode: "enforce".into(),
                    ..Record::default()
                });
            }
        }
        add_rollups(&tx, &rollups)?;
    }
    if from < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Deletes at most `limit` raw rows older than `raw_before_ms` and rollups of days before
/// `rollups_before_day`; returns how many rows went.
pub fn purge_chunk(
    connection: &Connection,
    raw_before_ms: i64,
    rollups_before_day: i64,
    limit: usize,
) -> Result<usize, rusqlite::Error> {
    let raw = connection.execute(
        "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)",
        params![raw_before_ms, limit as i64],
    )?;
    let rollups = connection.execute(
        "DELETE FROM rollups WHERE (day, device_key, app, node, mode) IN \
         (SELECT day, device_key, app, node, mode FROM rollups WHERE day < ?1 LIMIT ?2)",
        params![rollups_before_day, limit as i64],
    )?;
    Ok(raw + rollups)
}

/// The whole purge at once, chunk after chunk (tests and tools): raw rows older than
/// `raw_days`, rollups older than `retention_days`, before `now`.
pub fn purge(
    connection: &Connection,
    now: SystemTime,
    raw_days: u32,
    retention_days: u32,
) -> Result<usize, rusqlite::Error> {
    let (raw, rollups) = cutoffs(now, raw_days, retention_days);
    let mut total = 0;
    loop {
        let n = purge_chunk(connection, raw, rollups, PURGE_CHUNK)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Writes attempts straight into a database (tests, benchmarks and imports), as `node`.
pub fn insert_all(
    path: &Path,
    attempts: &[Attempt],
    pseudonymizer: Option<&Pseudonymizer>,
    node: &str,
) -> Result<(), StoreError> {
    let mut connection = open_writable(path, node)?;
    let records: Vec<Record> = attempts.iter().map(|a| Record::of(a, pseudonymizer, node)).collect();
    insert(&mut connection, &records).map_err(|source| StoreError::Sqlite { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migrations' columns are the record's columns, so the one list in `record` is the
    /// table (the `INSERT` built from it would fail on a missing column, not on an extra one).
    #[test]
    fn the_schema_has_the_record_columns() {
        let dir = tempfile::tempdir().unwrap();
        let connection = open_writable(&dir.path().join("attempts.sqlite"), "ns1").unwrap();
        let mut rows = connection
            .prepare("SELECT name FROM pragma_table_info('attempts') WHERE name != 'id' ORDER BY name")
            .unwrap();
        let stored: Vec<String> = rows.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        let mut names = column_names().to_vec();
        names.sort_unstable();
        assert_eq!(stored, names);
    }
}
