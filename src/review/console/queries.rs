//! The console's own reads of the attempt store, beyond `review::report`: per-day counts for the
//! trend charts and a device's identity sources. Each takes the connection `report::open`
//! returns; like `report`, they move with the store's schema.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use crate::{evidence::store::millis, review::report::ReportError};

pub const DAY_MS: i64 = 86_400_000;

pub fn time_text(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// The UTC date of a day number (days since 1970-01-01).
pub fn day_text(day: i64) -> String {
    time_text(day * DAY_MS)[..10].to_string()
}

/// One day of attempts: the day number (UTC days since 1970), attempts and distinct devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub day: i64,
    pub attempts: u64,
    pub devices: u64,
}

/// Attempts and devices per UTC day in [since, until), optionally for one app (id or name).
pub fn daily(
    db: &Connection,
    since: SystemTime,
    until: SystemTime,
    app: Option<&str>,
) -> Result<Vec<Day>, ReportError> {
    let mut statement = db.prepare(
        "SELECT ts_ms / 86400000, COUNT(*), COUNT(DISTINCT device_key) FROM attempts \
         WHERE ts_ms >= ?1 AND ts_ms < ?2 AND (?3 IS NULL OR app = ?3 COLLATE NOCASE OR app_name = ?3 COLLATE NOCASE) \
         GROUP BY 1 ORDER BY 1",
    )?;
    let rows = statement.query_map(params![millis(since), millis(until), app], |r| {
        Ok(Day {
            day: r.get(0)?,
            attempts: r.get::<_, i64>(1)?.max(0) as u64,
            devices: r.get::<_, i64>(2)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Attempts of one device per app and UTC day in [since, until): (app name, day, attempts).
pub fn device_daily(
    db: &Connection,
    device_key: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<(String, i64, u64)>, ReportError> {
    let mut statement = db.prepare(
        "SELECT app_name, ts_ms / 86400000, COUNT(*) FROM attempts \
         WHERE device_key = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 GROUP BY app, 2 ORDER BY app_name, 2",
    )?;
    let rows = statement.query_map(params![device_key, millis(since), millis(until)], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Where a device's identity came from: each distinct (name, owner, hostname, MAC, address,
/// source) the store holds for it, with when it was first and last seen. Under pseudonymisation
/// the store holds none of these, and neither does this.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentitySource {
    pub device: String,
    pub owner: String,
    pub hostname: String,
    pub mac: String,
    pub address: String,
    pub source: String,
    pub first_seen: String,
    pub last_seen: String,
    pub attempts: u64,
}

pub fn identity_sources(db: &Connection, device_key: &str) -> Result<Vec<IdentitySource>, ReportError> {
    let mut statement = db.prepare(
        "SELECT COALESCE(device, ''), COALESCE(owner, ''), COALESCE(hostname, ''), COALESCE(mac, ''), \
         COALESCE(device_ip, ''), identity_source, MIN(ts_ms), MAX(ts_ms), COUNT(*) FROM attempts \
         WHERE device_key = ?1 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY MAX(ts_ms) DESC LIMIT 50",
    )?;
    let rows = statement.query_map([device_key], |r| {
        Ok(IdentitySource {
            device: r.get(0)?,
            owner: r.get(1)?,
            hostname: r.get(2)?,
            mac: r.get(3)?,
            address: r.get(4)?,
            source: r.get(5)?,
            first_seen: time_text(r.get(6)?),
            last_seen: time_text(r.get(7)?),
            attempts: r.get::<_, i64>(8)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The domains of one app hit in [since, until): (domain, kind, attempts, devices), most hit
/// first.
pub fn app_domains(
    db: &Connection,
    app: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<(String, String, u64, u64)>, ReportError> {
    let mut statement = db.prepare(
        "SELECT domain, kind, COUNT(*), COUNT(DISTINCT device_key) FROM attempts \
         WHERE ts_ms >= ?1 AND ts_ms < ?2 AND (app = ?3 COLLATE NOCASE OR app_name = ?3 COLLATE NOCASE) \
         GROUP BY domain, kind ORDER BY 3 DESC, 1 LIMIT 500",
    )?;
    let rows = statement.query_map(params![millis(since), millis(until), app], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64, r.get::<_, i64>(3)?.max(0) as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
