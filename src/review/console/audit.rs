//! The audit log: who did what, when, from which address. Append-only (triggers in `state`
//! refuse changes and early deletes); admins read and export it.

use std::time::SystemTime;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{ConsoleError, auth::SignedIn};
use crate::evidence::store::millis;

/// One audit row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub time: String,
    pub actor: String,
    pub role: String,
    pub address: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// What happened, written once.
pub struct Record<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    pub address: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: &'a str,
}

pub fn record(db: &Connection, now: SystemTime, r: &Record<'_>) -> Result<(), ConsoleError> {
    db.execute(
        "INSERT INTO audit (ts_ms, actor, role, address, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![millis(now), r.actor, r.role, r.address, r.action, r.target, r.detail],
    )?;
    Ok(())
}

/// Records what a signed-in user did.
pub fn by(
    db: &Connection,
    now: SystemTime,
    who: &SignedIn,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), ConsoleError> {
    let action = if who.api { format!("api {action}") } else { action.to_string() };
    record(
        db,
        now,
        &Record { actor: &who.user, role: who.role.as_str(), address: &who.address, action: &action, target, detail },
    )
}

/// The newest `limit` rows, newest first.
pub fn list(db: &Connection, limit: usize) -> Result<Vec<Entry>, ConsoleError> {
    let mut statement = db.prepare(
        "SELECT id, ts_ms, actor, role, address, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit as i64], |r| {
        Ok(Entry {
            id: r.get(0)?,
            time: super::queries::time_text(r.get(1)?),
            actor: r.get(2)?,
            role: r.get(3)?,
            address: r.get(4)?,
            action: r.get(5)?,
            target: r.get(6)?,
            detail: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rows_leave_only_after_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = crate::review::console::state::open(&dir.path().join("c.sqlite"), 30).unwrap();
        let entry = Record { actor: "ann", role: "admin", address: "", action: "login", target: "", detail: "" };
        let row = |at| record(&db, at, &entry).unwrap();
        let now = SystemTime::now();
        row(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
        row(now);
        assert_eq!(crate::review::console::state::purge_audit(&db, now, 30).unwrap(), 1);
        assert_eq!(list(&db, 10).unwrap().len(), 1);
        assert!(db.execute("DELETE FROM audit", []).is_err(), "a young row was deleted");
    }
}
