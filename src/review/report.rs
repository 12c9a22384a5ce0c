//! `nxguard report`: what the security officer reads. Read-only over one or more attempt
//! stores (SQLite files or PostgreSQL), merged as if they were one.
//!
//! Owns: the views — per device and app (attempts, distinct domains, days seen, first and
//! last seen, and an assessment from the domain kinds), one device's timeline, and the shadow
//! view (would-be blocks of log-only rules) — their filters, and their output as an aligned
//! table, CSV or JSON.
//!
//! Summaries read the daily rollups for whole days and the raw rows for the partial days at a
//! window's edges (or the edge day's rollup once its raw rows are past `store.raw_days`). The
//! timeline reads raw rows only. Both engines get the same SQL and the merging and ordering
//! happen here, so the output is the same byte for byte whichever backend holds the records.
//!
//! The assessment: hits on an app's API or telemetry domains come from the app itself, so a
//! device that makes them on two or more days very likely has the app installed; on one day,
//! possibly. Without them, the pattern decides (`pattern_assessment`): at least 20 attempts a
//! day on average over 5 or more days reads as likely installed, over 2 to 4 days as possibly;
//! less reads as a followed link or an embedded video. The stronger reading wins. Days are
//! UTC days. Only enforced attempts count unless the filter asks for
//! log-only ones; a `mode` column appears when it does, a `nodes` column when more than one
//! node wrote the rows shown.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use thiserror::Error;

use crate::evidence::store::{
    DAY_MS, Pseudonymizer, StoreError, millis,
    read::{Cell, Param, Reader},
};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Which attempts count, by the mode they were recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ModeFilter {
    /// Blocked attempts only (the default).
    #[default]
    Enforce,
    /// Would-be blocks of log-only rules (shadow lists, log-only groups).
    LogOnly,
    /// Both, with a mode column.
    All,
}

impl ModeFilter {
    fn stored(self) -> Option<&'static str> {
        match self {
            ModeFilter::Enforce => Some("enforce"),
            ModeFilter::LogOnly => Some("log-only"),
            ModeFilter::All => None,
        }
    }
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
    /// Owner or department, any case, anywhere in the owner text.
    pub owner: Option<String>,
    pub mode: ModeFilter,
    /// Raw rows older than `now - raw_days` may be purged: edge days before that read rollups.
    pub now: Option<SystemTime>,
    /// `store.raw_days`; 0 = raw rows are never taken as purged.
    pub raw_days: u32,
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
    /// Where the device's name came from, as of its latest raw attempt (inventory-ip, dhcp,
    /// rdns, …); empty when only daily rollups are left of it.
    pub source: String,
    pub app: String,
    pub attempts: u64,
    pub domains: u64,
    pub days: u64,
    pub backend_days: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub assessment: Assessment,
    /// The nodes that saw these attempts (shown when the rows come from more than one node).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nodes: String,
    /// Shown when the filter asks for log-only attempts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// The listed domains (shadow view).
    #[serde(skip)]
    pub names: Vec<String>,
    #[serde(skip)]
    last_ms: i64,
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
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// A timeline, and whether older attempts of the window exist only as daily rollups.
pub struct Timeline {
    pub events: Vec<Event>,
    /// The first day (UTC, RFC 3339) whose raw rows are kept, when the window reaches before
    /// it and rollups show attempts there.
    pub raw_from: Option<String>,
}

/// How sure the evidence is that a device has the app installed. Written in reports (CSV,
/// JSON, table) as its English text; pages and the board show it in their language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Assessment {
    #[serde(rename = "app likely installed")]
    LikelyInstalled,
    #[serde(rename = "app possibly installed")]
    PossiblyInstalled,
    #[serde(rename = "link or embedded content")]
    LinkOrEmbedded,
}

impl Assessment {
    pub const ALL: [Assessment; 3] =
        [Assessment::LikelyInstalled, Assessment::PossiblyInstalled, Assessment::LinkOrEmbedded];

    /// The report's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Assessment::LikelyInstalled => "app likely installed",
            Assessment::PossiblyInstalled => "app possibly installed",
            Assessment::LinkOrEmbedded => "link or embedded content",
        }
    }

    /// The short key the console uses in URLs and for its texts (`likely`, `possibly`, `link`).
    pub fn key(self) -> &'static str {
        match self {
            Assessment::LikelyInstalled => "likely",
            Assessment::PossiblyInstalled => "possibly",
            Assessment::LinkOrEmbedded => "link",
        }
    }

    pub fn from_key(key: &str) -> Option<Assessment> {
        Assessment::ALL.into_iter().find(|a| a.key() == key)
    }
}

const LINK: Assessment = Assessment::LinkOrEmbedded;
const POSSIBLY: Assessment = Assessment::PossiblyInstalled;
const LIKELY: Assessment = Assessment::LikelyInstalled;

/// The stronger of the two readings: the days with API or telemetry hits, and the pattern.
fn assessment(backend_days: u64, days: u64, attempts: u64) -> Assessment {
    let by_backend = match backend_days {
        0 => LINK,
        1 => POSSIBLY,
        _ => LIKELY,
    };
    // The variants are ordered strongest first.
    pattern_assessment(days, attempts).map_or(by_backend, |pattern| pattern.min(by_backend))
}

/// Days a device must show the pattern on for "likely installed" without a backend hit.
pub const PATTERN_LIKELY_DAYS: u64 = 5;
/// Days for "possibly installed" without a backend hit.
pub const PATTERN_POSSIBLY_DAYS: u64 = 2;
/// Attempts per day seen, on average, that make the pattern.
pub const PATTERN_ATTEMPTS_PER_DAY: u64 = 20;

/// The reading of a pattern without API or telemetry hits (a list that has none, or hosts its
/// list lacks): an installed app asks for its hosts in the background all day, every day it
/// is on, and keeps retrying a blocked name, while a clicked link or an embedded video asks a
/// few times when a page is opened. So many days ([`PATTERN_LIKELY_DAYS`]) at many attempts per
/// day ([`PATTERN_ATTEMPTS_PER_DAY`] on average) reads as installed; a few days at that rate as
/// possibly installed; anything less says nothing beyond a link.
fn pattern_assessment(days: u64, attempts: u64) -> Option<Assessment> {
    let steady = days > 0 && attempts >= days.saturating_mul(PATTERN_ATTEMPTS_PER_DAY);
    match days {
        _ if !steady => None,
        d if d >= PATTERN_LIKELY_DAYS => Some(LIKELY),
        d if d >= PATTERN_POSSIBLY_DAYS => Some(POSSIBLY),
        _ => None,
    }
}

fn time_text(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The device keys `device` may mean in one store: itself or its pseudonym when rows carry
/// that key (an index lookup), otherwise the keys of rows whose name, hostname, MAC or address
/// is `device`.
async fn device_keys(
    db: &mut Reader,
    device: &str,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Vec<String>, ReportError> {
    let mut keys = vec![device.to_string()];
    keys.extend(pseudonymizer.map(|p| p.pseudonym(device)));
    for key in &keys {
        let p = [Param::Text(key.clone())];
        if !db.rows("SELECT 1 FROM attempts WHERE device_key = ? LIMIT 1", &p).await?.is_empty()
            || !db.rows("SELECT 1 FROM rollups WHERE device_key = ? LIMIT 1", &p).await?.is_empty()
        {
            return Ok(vec![key.clone()]);
        }
    }
    let sql = "SELECT DISTINCT device_key FROM attempts WHERE lower(device) = lower(?) OR lower(hostname) = lower(?) \
               OR lower(mac) = lower(?) OR device_ip = ? ORDER BY device_key";
    let p = vec![Param::Text(device.to_string()); 4];
    Ok(db.rows(sql, &p).await?.iter().map(|r| r[0].string()).collect())
}

/// The conditions beyond the time window, and their parameters.
fn conditions(filter: &Filter, device_keys: Option<&[String]>) -> (String, Vec<Param>) {
    let mut clause = String::new();
    let mut values = Vec::new();
    if let Some(mode) = filter.mode.stored() {
        clause.push_str(" AND mode = ?");
        values.push(Param::Text(mode.into()));
    }
    if let Some(app) = &filter.app {
        clause.push_str(" AND (lower(app) = lower(?) OR lower(app_name) = lower(?))");
        values.extend([Param::Text(app.clone()), Param::Text(app.clone())]);
    }
    if let Some(keys) = device_keys {
        // Matched on the indexed device_key column; `device_keys` found which keys mean the device.
        if keys.is_empty() {
            clause.push_str(" AND 1 = 0");
        } else {
            let marks = vec!["?"; keys.len()].join(", ");
            let _ = write!(clause, " AND device_key IN ({marks})");
            values.extend(keys.iter().cloned().map(Param::Text));
        }
    }
    if let Some(owner) = &filter.owner {
        // Anywhere in the owner text: `Burgerzaken` finds `J. Jansen, Burgerzaken`.
        clause.push_str(" AND lower(owner) LIKE lower(?) ESCAPE '\\'");
        let literal = owner.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        values.push(Param::Text(format!("%{literal}%")));
    }
    (clause, values)
}

/// Where a window's attempts are read: raw-row ranges (ms) and rollup day ranges.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    raw: Vec<(i64, i64)>,
    days: Vec<(i64, i64)>,
}

fn day_floor(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

fn day_ceil(ms: i64) -> i64 {
    day_floor(ms) + i64::from(ms.rem_euclid(DAY_MS) != 0)
}

/// Whole days from the rollups, partial edge days from raw rows — unless raw rows of that day
/// may be purged (before `raw_from`), or the edge starts its day and the window runs to `now`
/// or later (`open_from`: the rollups are written in the same transaction as the raw rows, so
/// today's holds exactly the attempts so far), then the edge day's rollup counts whole. A window
/// that starts inside today (a case removed an hour ago) reads today's raw rows: the rollup
/// would count the attempts before its start.
fn plan(since: i64, until: i64, raw_from: i64, open_from: i64) -> Plan {
    let mut plan = Plan::default();
    if since >= until {
        return plan;
    }
    let (first, last) = (day_ceil(since), day_floor(until));
    let mut edges = Vec::new();
    if first < last {
        plan.days.push((first, last));
        if since < first * DAY_MS {
            edges.push((since, first * DAY_MS));
        }
        if until > last * DAY_MS {
            edges.push((last * DAY_MS, until));
        }
    } else {
        edges.push((since, until));
    }
    for (from, to) in edges {
        if from < raw_from || (to >= open_from && from.rem_euclid(DAY_MS) == 0) {
            plan.days.push((day_floor(from), day_ceil(to)));
        } else {
            plan.raw.push((from, to));
        }
    }
    plan
}

/// The window (ms), where raw rows may be purged before, and where it is open-ended (`now`).
fn window(filter: &Filter) -> (i64, i64, i64, i64) {
    let since = filter.since.map_or(i64::MIN / 2, millis);
    let until = filter.until.map_or(i64::MAX / 2, millis);
    let raw_from = match (filter.now, filter.raw_days) {
        (Some(now), days) if days > 0 => millis(now) - i64::from(days) * DAY_MS,
        _ => i64::MIN / 2,
    };
    let open_from = filter.now.map_or(i64::MAX / 2, millis);
    (since, until, raw_from, open_from)
}

/// Whole days from the rollups, row by row in the primary key's order, summed per (device, app,
/// mode) by `merged`. No GROUP BY: the engines sorted every rollup row of the window for it
/// (SQLite: a temporary B-tree, 0.4 s of CPU for the 169 000 rows of 30 days), while the range
/// scan alone takes 0.05 s and a map in this process groups the rows as they come.
const FROM_ROLLUPS: (&str, &str) = (
    "SELECT device_key, app, mode, owner, app_name, attempts, first_ms, last_ms, domains, node, \
     CAST(day AS TEXT), CASE WHEN api + telemetry > 0 THEN CAST(day AS TEXT) END FROM rollups WHERE day >= ? AND day < ?",
    "",
);

/// Partial days from the raw rows, in the same columns.
const FROM_RAW: (&str, &str) = (
    "SELECT device_key, app, mode, MAX(owner), MAX(app_name), COUNT(*), MIN(ts_ms), MAX(ts_ms), \
     string_agg(domain, ' '), string_agg(node, ' '), string_agg(CAST(ts_ms / 86400000 AS TEXT), ' '), \
     string_agg(CASE WHEN kind IN ('api', 'telemetry') THEN CAST(ts_ms / 86400000 AS TEXT) END, ' ') \
     FROM attempts WHERE ts_ms >= ? AND ts_ms < ?",
    " GROUP BY device_key, app, mode",
);

/// One (device, app, mode) summed over parts (stores, rollups and raw edges). The lists keep
/// every entry as read (appended text, pushed days) and are sorted and deduplicated once, by
/// `finish`: a few allocations per device and app instead of one per rollup row.
#[derive(Default)]
struct Acc {
    owner: Option<String>,
    app_name: String,
    attempts: i64,
    first: i64,
    last: i64,
    domains: String,
    nodes: String,
    days: Vec<i64>,
    backend_days: Vec<i64>,
}

/// A cell's text, moved out of the row.
fn take_text(cell: &mut Cell) -> String {
    match std::mem::replace(cell, Cell::Null) {
        Cell::Text(text) => text,
        other => other.string(),
    }
}

fn append(list: &mut String, cell: &Cell) {
    if let Some(text) = cell.text().filter(|t| !t.is_empty()) {
        if !list.is_empty() {
            list.push(' ');
        }
        list.push_str(text);
    }
}

fn push_days(days: &mut Vec<i64>, cell: &Cell) {
    let words = cell.text().unwrap_or_default().split(' ');
    days.extend(words.filter_map(|d| d.parse::<i64>().ok()));
}

/// The distinct words of a space-separated list, sorted bytewise.
fn distinct(list: &str) -> Vec<&str> {
    let mut words: Vec<&str> = list.split(' ').filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.dedup();
    words
}

fn distinct_days(days: &mut Vec<i64>) -> u64 {
    days.sort_unstable();
    days.dedup();
    days.len() as u64
}

impl Acc {
    fn add(&mut self, r: &[Cell]) {
        let fresh = self.attempts == 0;
        if let Some(owner) = r[3].text().filter(|o| self.owner.as_deref().is_none_or(|mine| *o > mine)) {
            self.owner = Some(owner.to_string());
        }
        if let Some(app_name) = r[4].text().filter(|n| *n > self.app_name.as_str()) {
            self.app_name = app_name.to_string();
        }
        self.attempts += r[5].int();
        self.first = if fresh { r[6].int() } else { self.first.min(r[6].int()) };
        self.last = if fresh { r[7].int() } else { self.last.max(r[7].int()) };
        append(&mut self.domains, &r[8]);
        append(&mut self.nodes, &r[9]);
        push_days(&mut self.days, &r[10]);
        push_days(&mut self.backend_days, &r[11]);
    }

    /// The summary row of this device, app and mode (nodes and mode shown or not).
    fn finish(mut self, device: String, mode: String, show_nodes: bool, show_mode: bool) -> Summary {
        let (backend_days, days) = (distinct_days(&mut self.backend_days), distinct_days(&mut self.days));
        let attempts = self.attempts.max(0) as u64;
        let names: Vec<String> = distinct(&self.domains).into_iter().map(String::from).collect();
        Summary {
            device,
            owner: self.owner.unwrap_or_default(),
            source: String::new(),
            app: self.app_name,
            attempts,
            domains: names.len() as u64,
            days,
            backend_days,
            first_seen: time_text(self.first),
            last_seen: time_text(self.last),
            assessment: assessment(backend_days, days, attempts),
            nodes: if show_nodes { distinct(&self.nodes).join(" ") } else { String::new() },
            mode: if show_mode { mode } else { String::new() },
            names,
            last_ms: self.last,
        }
    }
}

/// What `summaries` reads for `filter`, as text: its plan (the rollup days and raw ranges, so a
/// window that runs to now keeps its key all day) and conditions. Two filters with the same key
/// give the same summaries of the same store contents (the console shares them, `Console`).
pub fn summary_key(filter: &Filter) -> String {
    let (since, until, raw_from, open_from) = window(filter);
    let plan = plan(since, until, raw_from, open_from);
    format!("{plan:?} {:?} {:?} {:?} {:?}", filter.app, filter.device, filter.owner, filter.mode)
}

/// Every part of every store, summed per (device key, app id, mode).
async fn merged(
    dbs: &mut [Reader],
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<BTreeMap<(String, String, String), Acc>, ReportError> {
    let (since, until, raw_from, open_from) = window(filter);
    let plan = plan(since, until, raw_from, open_from);
    let mut merged: BTreeMap<(String, String, String), Acc> = BTreeMap::new();
    for db in dbs.iter_mut() {
        let keys = match filter.device.as_deref() {
            Some(device) => Some(device_keys(db, device, pseudonymizer).await?),
            None => None,
        };
        let (clause, values) = conditions(filter, keys.as_deref());
        let parts = plan.days.iter().map(|r| (FROM_ROLLUPS, r)).chain(plan.raw.iter().map(|r| (FROM_RAW, r)));
        for ((select, group), (from, to)) in parts {
            let sql = format!("{select}{clause}{group}");
            let mut params = vec![Param::Int(*from), Param::Int(*to)];
            params.extend(values.iter().cloned());
            for mut row in db.rows(&sql, &params).await? {
                let key = (take_text(&mut row[0]), take_text(&mut row[1]), take_text(&mut row[2]));
                merged.entry(key).or_default().add(&row);
            }
        }
    }
    Ok(merged)
}

/// Per device and app, most recently seen first, over every store in `dbs`.
pub async fn summaries(
    dbs: &mut [Reader],
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Vec<Summary>, ReportError> {
    let merged = merged(dbs, filter, pseudonymizer).await?;
    // A few nodes at most: a list that is searched is quicker than a set.
    let mut nodes: Vec<&str> = Vec::new();
    for node in merged.values().flat_map(|a| a.nodes.split(' ')).filter(|n| !n.is_empty()) {
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    let (show_nodes, show_mode) = (nodes.len() > 1, filter.mode != ModeFilter::Enforce);
    let mut out: Vec<Summary> =
        merged.into_iter().map(|((device, _, mode), acc)| acc.finish(device, mode, show_nodes, show_mode)).collect();
    // The map's order is (device, app id, mode): the sort keeps it among equal last-seen times.
    out.sort_by_key(|s| std::cmp::Reverse(s.last_ms));
    fill_sources(dbs, &mut out).await?;
    Ok(out)
}

/// Device keys looked up in one query by `fill_sources`.
const SOURCES_PER_QUERY: usize = 500;

/// Each device's identity source, from its latest raw attempt in any store: one index lookup
/// per device shown (`attempts_device`), `SOURCES_PER_QUERY` devices a query, so the summary
/// stays on the rollups.
async fn fill_sources(dbs: &mut [Reader], summaries: &mut [Summary]) -> Result<(), ReportError> {
    let devices: Vec<String> =
        summaries.iter().map(|s| s.device.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut sources: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for db in dbs.iter_mut() {
        for chunk in devices.chunks(SOURCES_PER_QUERY) {
            // The latest as one text per device (`ts_ms source`); VALUES names its column
            // `column1` on both engines.
            let keys = vec!["(?)"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT k.column1, (SELECT CAST(ts_ms AS TEXT) || ' ' || identity_source FROM attempts \
                 WHERE device_key = k.column1 ORDER BY ts_ms DESC LIMIT 1) FROM (VALUES {keys}) AS k"
            );
            let params: Vec<Param> = chunk.iter().cloned().map(Param::Text).collect();
            for row in db.rows(&sql, &params).await? {
                let Some((ts, source)) = row[1].text().and_then(|t| t.split_once(' ')) else { continue };
                let ts = ts.parse::<i64>().unwrap_or(i64::MIN);
                let latest = sources.entry(row[0].string()).or_insert((i64::MIN, String::new()));
                if ts > latest.0 {
                    *latest = (ts, source.to_string());
                }
            }
        }
    }
    for summary in summaries.iter_mut() {
        if let Some((_, source)) = sources.get(&summary.device) {
            summary.source = source.clone();
        }
    }
    Ok(())
}

/// Every attempt matching `filter`, most recent first, over every store in `dbs`.
pub async fn timeline(
    dbs: &mut [Reader],
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
) -> Result<Timeline, ReportError> {
    latest(dbs, filter, pseudonymizer, None).await
}

/// The `limit` most recent attempts matching `filter` (None: all), most recent first, over every
/// store in `dbs`: each store gives at most `limit`, newest first over its indexes.
pub async fn latest(
    dbs: &mut [Reader],
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
    limit: Option<usize>,
) -> Result<Timeline, ReportError> {
    let (since, until, raw_from, _) = window(filter);
    let mut rows: Vec<(i64, i64, usize, Event)> = Vec::new();
    let mut older = false;
    for (index, db) in dbs.iter_mut().enumerate() {
        let keys = match filter.device.as_deref() {
            Some(device) => Some(device_keys(db, device, pseudonymizer).await?),
            None => None,
        };
        let (clause, values) = conditions(filter, keys.as_deref());
        let newest = limit.map_or(String::new(), |n| format!(" ORDER BY ts_ms DESC, id DESC LIMIT {n}"));
        let sql = format!(
            "SELECT ts_ms, id, device_key, app_name, qname, qtype, kind, domain, matched_on, COALESCE(device_ip, ''), \
             node, mode FROM attempts WHERE ts_ms >= ? AND ts_ms < ?{clause}{newest}"
        );
        let mut params = vec![Param::Int(since), Param::Int(until)];
        params.extend(values.iter().cloned());
        for r in db.rows(&sql, &params).await? {
            let event = Event {
                time: time_text(r[0].int()),
                device: r[2].string(),
                app: r[3].string(),
                qname: r[4].string(),
                qtype: r[5].string(),
                kind: r[6].string(),
                domain: r[7].string(),
                matched_on: r[8].string(),
                client: r[9].string(),
                node: r[10].string(),
                mode: r[11].string(),
            };
            rows.push((r[0].int(), r[1].int(), index, event));
        }
        if since < raw_from {
            let sql = format!("SELECT 1 FROM rollups WHERE day >= ? AND day < ?{clause} LIMIT 1");
            let mut params = vec![Param::Int(day_floor(since)), Param::Int(day_floor(raw_from))];
            params.extend(values);
            older |= !db.rows(&sql, &params).await?.is_empty();
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)).then(b.1.cmp(&a.1)));
    rows.truncate(limit.unwrap_or(usize::MAX));
    let nodes: BTreeSet<&str> = rows.iter().map(|r| r.3.node.as_str()).collect();
    let (show_nodes, show_mode) = (nodes.len() > 1, filter.mode != ModeFilter::Enforce);
    let events = rows
        .into_iter()
        .map(|(_, _, _, mut e)| {
            if !show_nodes {
                e.node.clear();
            }
            if !show_mode {
                e.mode.clear();
            }
            e
        })
        .collect();
    Ok(Timeline { events, raw_from: older.then(|| time_text(day_floor(raw_from) * DAY_MS)) })
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
    fn assessment_follows_backend_days() {
        assert_eq!(assessment(0, 1, 1), Assessment::LinkOrEmbedded);
        assert_eq!(assessment(1, 1, 1), Assessment::PossiblyInstalled);
        assert_eq!(assessment(3, 3, 3), Assessment::LikelyInstalled);
        for a in Assessment::ALL {
            assert_eq!(Assessment::from_key(a.key()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("{:?}", a.as_str()));
        }
    }

    #[test]
    fn a_steady_pattern_without_backend_hits_reads_as_installed() {
        // The CISO trial's Temu phone: 2,261 attempts over 26 days, no API hit.
        assert_eq!(assessment(0, 26, 2_261), LIKELY);
        assert_eq!(assessment(0, PATTERN_LIKELY_DAYS, PATTERN_LIKELY_DAYS * PATTERN_ATTEMPTS_PER_DAY), LIKELY);
        assert_eq!(assessment(0, 2, 2 * PATTERN_ATTEMPTS_PER_DAY), POSSIBLY);
        // Many attempts on one day: a page opened again and again, not an app.
        assert_eq!(assessment(0, 1, 500), LINK);
        // An embedded video on a news site read every day: many days, few attempts each.
        assert_eq!(assessment(0, 30, 90), LINK);
        assert_eq!(assessment(0, 5, 5 * PATTERN_ATTEMPTS_PER_DAY - 1), LINK);
        // The pattern only ever raises the reading.
        assert_eq!(assessment(1, 26, 2_261), LIKELY);
        assert_eq!(assessment(2, 2, 2), LIKELY);
        assert_eq!(assessment(0, 0, 0), LINK);
    }

    #[test]
    fn whole_days_come_from_rollups_and_edges_from_raw_rows() {
        let d = DAY_MS;
        // 02:00 on day 10 to 12:00 on day 13, raw rows kept from day 0.
        let open = i64::MAX / 2;
        let p = plan(10 * d + 2, 13 * d + 12, 0, open);
        assert_eq!(p.days, [(11, 13)]);
        assert_eq!(p.raw, [(10 * d + 2, 11 * d), (13 * d, 13 * d + 12)]);
        // Within one day: raw rows only.
        assert_eq!(plan(10 * d + 2, 10 * d + 5, 0, open), Plan { raw: vec![(10 * d + 2, 10 * d + 5)], days: vec![] });
        // An edge day whose raw rows may be purged counts its whole rollup.
        let p = plan(10 * d + 2, 13 * d, 12 * d, open);
        assert_eq!(p.days, [(11, 13), (10, 11)]);
        assert!(p.raw.is_empty());
        assert_eq!(plan(5, 5, 0, open), Plan::default());
        // A window that runs to now takes today's rollup whole: it holds today so far.
        let p = plan(10 * d + 2, 13 * d + 12, 0, 13 * d + 12);
        assert_eq!(p.days, [(11, 13), (13, 14)]);
        assert_eq!(p.raw, [(10 * d + 2, 11 * d)]);
        // A window starting inside today and running to now: today's raw rows, not its rollup.
        let p = plan(13 * d + 5, 13 * d + 12, 0, 13 * d + 12);
        assert!(p.days.is_empty());
        assert_eq!(p.raw, [(13 * d + 5, 13 * d + 12)]);
    }
}
