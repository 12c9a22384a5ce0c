//! The console's own SQLite database: users, sessions, API tokens, cases and the audit log.
//! Never the attempt store (which the console opens read-only through `review::report`).

use std::{path::Path, time::SystemTime};

use rusqlite::{Connection, OptionalExtension};

use super::ConsoleError;
use crate::evidence::store::millis;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name            TEXT PRIMARY KEY,
    role            TEXT NOT NULL,
    hash            TEXT NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash    TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_ms    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    id         INTEGER PRIMARY KEY,
    device     TEXT NOT NULL,
    app        TEXT NOT NULL,
    owner      TEXT NOT NULL,
    ticket     TEXT NOT NULL,
    note       TEXT NOT NULL,
    state      TEXT NOT NULL,
    removed_ms INTEGER,
    opened_ms  INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_device ON cases (device, app);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    address TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ms);
-- Append-only: no row changes, and a row leaves only once it is older than the retention.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_early_delete BEFORE DELETE ON audit
WHEN OLD.ts_ms > CAST(strftime('%s', 'now') AS INTEGER) * 1000
                 - CAST((SELECT value FROM meta WHERE key = 'audit_retention_ms') AS INTEGER)
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only; rows leave only after their retention'); END;
";

/// Opens (creating when needed) the console database; `audit_retention_days` is recorded so the
/// append-only trigger knows which rows may go. Returns the connection and the console's secret
/// (for the pseudonymous device keys viewers see), made on first use.
pub fn open(path: &Path, audit_retention_days: u32) -> Result<(Connection, [u8; 32]), ConsoleError> {
    let fail = |source| ConsoleError::State { path: path.into(), source };
    let db = Connection::open(path).map_err(fail)?;
    db.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
    // WAL: one commit (an audit row) is one append and one sync, and the CLI can write while
    // the console serves.
    db.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
    db.execute_batch(SCHEMA).map_err(fail)?;
    add_columns(&db).map_err(fail)?;
    let retention_ms = i64::from(audit_retention_days) * 86_400_000;
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_retention_ms', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [retention_ms.to_string()],
    )
    .map_err(fail)?;
    let stored: Option<String> =
        db.query_row("SELECT value FROM meta WHERE key = 'secret'", [], |r| r.get(0)).optional().map_err(fail)?;
    let secret = match stored.as_deref().and_then(|hex| data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()) {
        Some(bytes) if bytes.len() == 32 => {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&bytes);
            secret
        }
        _ => {
            let secret: [u8; 32] = rand::random();
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('secret', ?1)",
                [data_encoding::HEXLOWER.encode(&secret)],
            )
            .map_err(fail)?;
            secret
        }
    };
    Ok((db, secret))
}

/// One more connection to the console database (created by `open`): the pool's opener.
pub fn connect(path: &Path) -> Result<Connection, ConsoleError> {
    let fail = |source| ConsoleError::State { path: path.into(), source };
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(fail)?;
    db.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
    Ok(db)
}

/// Columns added after the first release, added to older databases in place.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("cases", "reason", "TEXT NOT NULL DEFAULT ''"),
    ("tokens", "expires_ms", "INTEGER"),
    ("users", "disabled", "INTEGER NOT NULL DEFAULT 0"),
];

fn add_columns(db: &Connection) -> Result<(), rusqlite::Error> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let present: i64 = db.query_row(
            &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if present == 0 {
            db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {declaration}"))?;
        }
    }
    Ok(())
}

/// Deletes audit rows older than the retention (the trigger refuses younger ones).
pub fn purge_audit(db: &Connection, now: SystemTime, retention_days: u32) -> Result<usize, rusqlite::Error> {
    let cutoff = millis(now) - i64::from(retention_days) * 86_400_000;
    db.execute("DELETE FROM audit WHERE ts_ms < ?1", [cutoff])
}

/// A fresh random secret as lowercase hex (session ids, CSRF tokens, API tokens).
pub fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    data_encoding::HEXLOWER.encode(&bytes)
}

/// SHA-256 of a secret as lowercase hex: session ids and API tokens are stored only hashed.
pub fn digest_hex(secret: &str) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}
