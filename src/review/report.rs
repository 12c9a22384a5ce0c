//! `nxguard report`: what the security officer reads. Read-only over the attempt store.
//!
//! Owns: the two views — per device and app (where the device's name came from, attempts,
//! distinct domains, days seen, first and
//! last seen, and an assessment from the domain kinds), and one device's timeline — their
//! filters, and their output as an aligned table, CSV or JSON.
//!
//! The assessment: hits on an app's API or telemetry domains come from the app itself, so a
//! device that makes them on two or more days very likely has the app installed; on one day,
//! possibly. A device with only web, CDN or alias hits probably followed a link or loaded an
//! embedded video. Days are UTC days.

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, params_from_iter, types::Value};
use serde::Serialize;
use thiserror::Error;

use crate::evidence::store::{self, Pseudonymizer, StoreError, millis};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the attempt store: {0}")]
    Query(#[from] rusqlite::Error),
    #[error(
        "{0:?} is not a time: use a duration back from now (7d, 24h, 90m) or a date (2026-11-01, 2026-11-01T08:00:00Z)"
    )]
    Time(String),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// Which attempts a report covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// App id or name, any case.
    pub app: Option<String>,
    /// Inventory name, hostname, MAC, address or pseudonym.
    pub device: Option<String>,
    /// Owner or department, any case.
    pub owner: Option<String>,
}

/// Parses `7d`, `24h`, `90m` (back from `now`) or a date/time (`2026-11-01`, RFC 3339).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, ReportError> {
    if let Ok(back) = humantime::parse_duration(text) {
        return Ok(now.checked_sub(back).unwrap_or(UNIX_EPOCH));
    }
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).map_err(|_| ReportError::Time(text.to_string()))
}

/// One device and app.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub device: String,
    pub owner: String,
    /// Where the device's name came from (its latest attempt): inventory-ip, dhcp, rdns, …
    pub source: String,
    pub app: String,
    pub attempts: u64,
    pub domains: u64,
    pub days: u64,
    pub backend_days: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub assessment: &'static str,
}

/// One attempt in a device's timeline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub time: String,
    pub device: String,
    pub app: String,
    pub qname: String,
    pub qtype: String,
    pub kind: String,
    pub domain: String,
    pub matched_on: String,
    pub client: String,
}

fn assessment(backend_days: u64) -> &'static str {
    match backend_days {
        0 => "link or embedded content",
        1 => "app possibly installed",
        _ => "app likely installed",
    }
}

fn time_text(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The device keys `device` may mean: itself or its pseudonym when rows carry that key (an
/// index lookup), otherwise the keys of rows whose name, hostname, MAC or address is `device`.
fn device_keys(
    db: &Connection,
    device: &str,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Vec<String>, ReportError> {
    let mut keys = vec![device.to_string()];
    keys.extend(pseudonymizer.map(|p| p.pseudonym(device)));
    let mut exists = db.prepare("SELECT 1 FROM attempts WHERE device_key = ? LIMIT 1")?;
    for key in &keys {
        if exists.exists([key])? {
            return Ok(vec![key.clone()]);
        }
    }
    let mut other = db.prepare(
        "SELECT DISTINCT device_key FROM attempts WHERE device = ?1 COLLATE NOCASE OR hostname = ?1 COLLATE NOCASE \
         OR mac = ?1 COLLATE NOCASE OR device_ip = ?1",
    )?;
    let found = other.query_map([device], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(found)
}

/// The WHERE clause and its parameters for `filter`; `device_keys` from `device_keys`.
fn conditions(filter: &Filter, device_keys: Option<&[String]>) -> (String, Vec<Value>) {
    let mut clause = String::from("ts_ms >= ? AND ts_ms < ?");
    let mut values = vec![
        Value::Integer(filter.since.map_or(i64::MIN, millis)),
        Value::Integer(filter.until.map_or(i64::MAX, millis)),
    ];
    if let Some(app) = &filter.app {
        clause.push_str(" AND (app = ? COLLATE NOCASE OR app_name = ? COLLATE NOCASE)");
        values.extend([Value::Text(app.clone()), Value::Text(app.clone())]);
    }
    if let Some(keys) = device_keys {
        // Matched on the indexed device_key column; `device_keys` found which keys mean the device.
        let marks = vec!["?"; keys.len().max(1)].join(", ");
        let _ = write!(clause, " AND device_key IN ({marks})");
        values.extend(keys.iter().cloned().map(Value::Text));
        if keys.is_empty() {
            values.push(Value::Null);
        }
    }
    if let Some(owner) = &filter.owner {
        clause.push_str(" AND owner = ? COLLATE NOCASE");
        values.push(Value::Text(owner.clone()));
    }
    (clause, values)
}

/// Opens the store read-only (reports never write).
pub fn open(path: &Path) -> Result<Connection, ReportError> {
    Ok(store::open(path, true)?)
}

/// Per device and app, most recently seen first.
pub fn summaries(
    db: &Connection,
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Vec<Summary>, ReportError> {
    let keys = filter.device.as_deref().map(|d| device_keys(db, d, pseudonymizer)).transpose()?;
    let (clause, values) = conditions(filter, keys.as_deref());
    let sql = format!(
        "SELECT device_key, COALESCE(MAX(owner), ''), MAX(app_name), COUNT(*), COUNT(DISTINCT domain), \
         COUNT(DISTINCT ts_ms / {DAY_MS}), \
         COUNT(DISTINCT CASE WHEN kind IN ('api', 'telemetry') THEN ts_ms / {DAY_MS} END), MIN(ts_ms), MAX(ts_ms), \
         (SELECT latest.identity_source FROM attempts AS latest WHERE latest.device_key = attempts.device_key \
          ORDER BY latest.ts_ms DESC LIMIT 1) \
         FROM attempts WHERE {clause} GROUP BY device_key, app ORDER BY MAX(ts_ms) DESC, device_key, app"
    );
    let mut statement = db.prepare(&sql)?;
    let rows = statement.query_map(params_from_iter(values), |r| {
        let count = |i: usize| r.get::<_, i64>(i).map(|n| n.max(0) as u64);
        let backend_days = count(6)?;
        Ok(Summary {
            device: r.get(0)?,
            owner: r.get(1)?,
            source: r.get(9)?,
            app: r.get(2)?,
            attempts: count(3)?,
            domains: count(4)?,
            days: count(5)?,
            backend_days,
            first_seen: time_text(r.get(7)?),
            last_seen: time_text(r.get(8)?),
            assessment: assessment(backend_days),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every attempt matching `filter`, most recent first.
pub fn timeline(
    db: &Connection,
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Vec<Event>, ReportError> {
    let keys = filter.device.as_deref().map(|d| device_keys(db, d, pseudonymizer)).transpose()?;
    let (clause, values) = conditions(filter, keys.as_deref());
    let sql = format!(
        "SELECT ts_ms, device_key, app_name, qname, qtype, kind, domain, matched_on, COALESCE(device_ip, '') \
         FROM attempts WHERE {clause} ORDER BY ts_ms DESC, id DESC"
    );
    let mut statement = db.prepare(&sql)?;
    let rows = statement.query_map(params_from_iter(values), |r| {
        Ok(Event {
            time: time_text(r.get(0)?),
            device: r.get(1)?,
            app: r.get(2)?,
            qname: r.get(3)?,
            qtype: r.get(4)?,
            kind: r.get(5)?,
            domain: r.get(6)?,
            matched_on: r.get(7)?,
            client: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A cell for the people's table: control characters shown as escapes, so no stored name can
/// break a line or move the cursor.
fn cell(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()).collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            let _ = write!(text, "{c}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn csv_text(headers: &[&str], rows: &[Vec<String>]) -> Result<String, ReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(headers)?;
    for r in rows {
        writer.write_record(r)?;
    }
    let bytes = writer.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

const SUMMARY_HEADERS: [&str; 11] = [
    "device",
    "owner",
    "source",
    "app",
    "attempts",
    "domains",
    "days",
    "backend_days",
    "first_seen",
    "last_seen",
    "assessment",
];
const EVENT_HEADERS: [&str; 9] = ["time", "device", "app", "qname", "qtype", "kind", "domain", "matched_on", "client"];

pub fn render_summaries(summaries: &[Summary], format: Format) -> Result<String, ReportError> {
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.device.clone(),
                s.owner.clone(),
                s.source.clone(),
                s.app.clone(),
                s.attempts.to_string(),
                s.domains.to_string(),
                s.days.to_string(),
                s.backend_days.to_string(),
                s.first_seen.clone(),
                s.last_seen.clone(),
                s.assessment.to_string(),
            ]
        })
        .collect();
    match format {
        Format::Table => Ok(table(&SUMMARY_HEADERS, &rows)),
        Format::Csv => csv_text(&SUMMARY_HEADERS, &rows),
        Format::Json => Ok(serde_json::to_string_pretty(summaries)? + "\n"),
    }
}

pub fn render_timeline(events: &[Event], format: Format) -> Result<String, ReportError> {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                e.device.clone(),
                e.app.clone(),
                e.qname.clone(),
                e.qtype.clone(),
                e.kind.clone(),
                e.domain.clone(),
                e.matched_on.clone(),
                e.client.clone(),
            ]
        })
        .collect();
    match format {
        Format::Table => Ok(table(&EVENT_HEADERS, &rows)),
        Format::Csv => csv_text(&EVENT_HEADERS, &rows),
        Format::Json => Ok(serde_json::to_string_pretty(events)? + "\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_or_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        assert_eq!(parse_time("7d", now).unwrap(), UNIX_EPOCH + Duration::from_secs(3 * 86_400));
        assert_eq!(parse_time("1970-01-02", now).unwrap(), UNIX_EPOCH + Duration::from_secs(86_400));
        assert_eq!(parse_time("1970-01-02T01:00:00Z", now).unwrap(), UNIX_EPOCH + Duration::from_secs(90_000));
        assert!(parse_time("last tuesday", now).is_err());
    }

    #[test]
    fn table_cells_cannot_break_lines() {
        let out = table(&["a", "b"], &[vec!["x\ny".into(), "\u{1b}[2J".into()]]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("x\\ny") && out.contains("\\u{1b}[2J"), "{out}");
    }

    #[test]
    fn assessment_follows_backend_days() {
        assert_eq!(assessment(0), "link or embedded content");
        assert_eq!(assessment(1), "app possibly installed");
        assert_eq!(assessment(3), "app likely installed");
    }
}
