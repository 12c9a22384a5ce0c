//! The console's own reads of the attempt store, beyond `review::report`: per-day counts for the
//! trend charts (from the daily rollups, so they reach back `store.retention_days`), a device's
//! identity sources and an app's domains (from the raw rows, kept `store.raw_days`). Each takes
//! a `Reader`, so they run on SQLite and PostgreSQL alike; only enforced attempts are counted,
//! as in `report`'s default view.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    evidence::store::{
        millis,
        read::{Param, Reader},
    },
    review::report::ReportError,
};

pub const DAY_MS: i64 = 86_400_000;

pub fn time_text(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// The UTC date of a day number (days since 1970-01-01).
pub fn day_text(day: i64) -> String {
    time_text(day * DAY_MS)[..10].to_string()
}

/// Whole UTC days touched by [since, until): the first day and the day after the last.
fn days(since: SystemTime, until: SystemTime) -> (i64, i64) {
    (millis(since).div_euclid(DAY_MS), (millis(until) + DAY_MS - 1).div_euclid(DAY_MS))
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// One day of attempts: the day number (UTC days since 1970), attempts and distinct devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub day: i64,
    pub attempts: u64,
    pub devices: u64,
}

/// Attempts and devices per UTC day touched by [since, until), optionally for one app (id or
/// name, any case).
pub async fn daily(
    db: &mut Reader,
    since: SystemTime,
    until: SystemTime,
    app: Option<&str>,
) -> Result<Vec<Day>, ReportError> {
    let (first, end) = days(since, until);
    let mut params = vec![Param::Int(first), Param::Int(end)];
    let app_clause = match app {
        Some(app) => {
            params.push(Param::Text(app.to_lowercase()));
            params.push(Param::Text(app.to_lowercase()));
            " AND (LOWER(app) = ? OR LOWER(app_name) = ?)"
        }
        None => "",
    };
    let sql = format!(
        "SELECT day, SUM(attempts), COUNT(DISTINCT device_key) FROM rollups \
         WHERE day >= ? AND day < ? AND mode = 'enforce'{app_clause} GROUP BY day ORDER BY day"
    );
    let rows = db.rows(&sql, &params).await?;
    Ok(rows.iter().map(|r| Day { day: r[0].int(), attempts: count(r[1].int()), devices: count(r[2].int()) }).collect())
}

/// Attempts of one device per app and UTC day touched by [since, until): (app name, day,
/// attempts).
pub async fn device_daily(
    db: &mut Reader,
    device_key: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<(String, i64, u64)>, ReportError> {
    let (first, end) = days(since, until);
    let rows = db
        .rows(
            "SELECT MAX(app_name), day, SUM(attempts) FROM rollups \
         WHERE device_key = ? AND day >= ? AND day < ? AND mode = 'enforce' GROUP BY app, day ORDER BY 1, 2",
            &[Param::Text(device_key.to_string()), Param::Int(first), Param::Int(end)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r[0].string(), r[1].int(), count(r[2].int()))).collect())
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

/// The identity sources of a device's enforced attempts in [since, until), as the devices
/// table counts them (so the two agree while the raw rows are kept).
pub async fn identity_sources(
    db: &mut Reader,
    device_key: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<IdentitySource>, ReportError> {
    let rows = db
        .rows(
            "SELECT COALESCE(device, ''), COALESCE(owner, ''), COALESCE(hostname, ''), COALESCE(mac, ''), \
         COALESCE(device_ip, ''), identity_source, MIN(ts_ms), MAX(ts_ms), COUNT(*) FROM attempts \
         WHERE device_key = ? AND ts_ms >= ? AND ts_ms < ? AND mode = 'enforce' \
         GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY MAX(ts_ms) DESC LIMIT 50",
            &[Param::Text(device_key.to_string()), Param::Int(millis(since)), Param::Int(millis(until))],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| IdentitySource {
            device: r[0].string(),
            owner: r[1].string(),
            hostname: r[2].string(),
            mac: r[3].string(),
            address: r[4].string(),
            source: r[5].string(),
            first_seen: time_text(r[6].int()),
            last_seen: time_text(r[7].int()),
            attempts: count(r[8].int()),
        })
        .collect())
}

/// The domains of one app (id or name, any case) hit in [since, until): (domain, kind,
/// attempts, devices), most hit first.
pub async fn app_domains(
    db: &mut Reader,
    app: &str,
    since: SystemTime,
    until: SystemTime,
) -> Result<Vec<(String, String, u64, u64)>, ReportError> {
    let app = app.to_lowercase();
    let rows = db
        .rows(
            "SELECT domain, kind, COUNT(*), COUNT(DISTINCT device_key) FROM attempts \
         WHERE ts_ms >= ? AND ts_ms < ? AND mode = 'enforce' AND (LOWER(app) = ? OR LOWER(app_name) = ?) \
         GROUP BY domain, kind ORDER BY 3 DESC, 1 LIMIT 500",
            &[Param::Int(millis(since)), Param::Int(millis(until)), Param::Text(app.clone()), Param::Text(app)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r[0].string(), r[1].string(), count(r[2].int()), count(r[3].int()))).collect())
}

/// Each node's last attempt since `since` (ms since 1970), newest first: whether the resolvers
/// are recording. Read from the rollups of the days since (written with the raw rows, so their
/// `last_ms` is the raw rows' latest), a few rows a device and day instead of every raw row.
pub async fn last_attempts(db: &mut Reader, since: SystemTime) -> Result<Vec<(String, i64)>, ReportError> {
    let rows = db
        .rows(
            "SELECT node, MAX(last_ms) FROM rollups WHERE day >= ? AND last_ms >= ? GROUP BY node ORDER BY 2 DESC",
            &[Param::Int(millis(since).div_euclid(DAY_MS)), Param::Int(millis(since))],
        )
        .await?;
    Ok(rows.iter().map(|r| (r[0].string(), r[1].int())).collect())
}
