//! Removal cases: one device × app, tracked from "open" to proof that the app is gone.
//!
//! ```text
//! open ──▶ removal requested ──▶ removed (moment) ──▶ verified   (no attempts for verify_days)
//!   └───────────────────────────▶      │         └──▶ recurred   (attempts after the removal)
//!                                      ◀── removal requested / removed again ──┘
//! open, removal requested, removed, recurred ──▶ false positive (with a reason; final)
//! ```
//! The removal is a moment, not a date: attempts earlier that same day are not a recurrence
//! (`removal_moment`).
//! Verified and recurred are decided from the attempt store (`refresh`), never by hand; a
//! verified case that sees attempts again becomes recurred. Every change is audited by the
//! caller (pages, CLI) or, for the automatic ones, by `refresh` itself as actor `nxguard`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Console, ConsoleError, audit, queries::time_text};
use crate::{
    evidence::store::{millis, read::Reader},
    review::report::{self, Filter},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Open,
    RemovalRequested,
    Removed,
    Verified,
    Recurred,
    /// Closed by a person: the evidence did not mean an installed app (the reason is kept).
    FalsePositive,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::RemovalRequested => "removal_requested",
            CaseState::Removed => "removed",
            CaseState::Verified => "verified",
            CaseState::Recurred => "recurred",
            CaseState::FalsePositive => "false_positive",
        }
    }

    pub fn parse(text: &str) -> Option<CaseState> {
        use CaseState::{FalsePositive, Open, Recurred, RemovalRequested, Removed, Verified};
        [Open, RemovalRequested, Removed, Verified, Recurred, FalsePositive].into_iter().find(|s| s.as_str() == text)
    }

    /// Every state, in the order of the state machine.
    pub const ALL: [CaseState; 6] = [
        CaseState::Open,
        CaseState::RemovalRequested,
        CaseState::Removed,
        CaseState::Verified,
        CaseState::Recurred,
        CaseState::FalsePositive,
    ];

    /// Still needs someone to act (not verified, not closed as a false positive).
    pub fn is_active(self) -> bool {
        !matches!(self, CaseState::Verified | CaseState::FalsePositive)
    }
}

/// A change a person makes to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    RequestRemoval,
    /// The app was removed at this time.
    Removed(SystemTime),
    /// Closed as a false positive, with the reason (required).
    FalsePositive(String),
    /// Only the note (and ticket) change.
    Note {
        ticket: Option<String>,
        note: String,
    },
}

/// The state after `change`, or why it is not allowed from `state`.
pub fn next_state(state: CaseState, change: &Change) -> Result<CaseState, ConsoleError> {
    use CaseState::{FalsePositive, Open, Recurred, RemovalRequested, Removed};
    match (state, change) {
        (_, Change::Note { .. }) => Ok(state),
        (Open | Recurred, Change::RequestRemoval) => Ok(RemovalRequested),
        (Open | RemovalRequested | Recurred, Change::Removed(_)) => Ok(Removed),
        (_, Change::FalsePositive(reason)) if reason.trim().is_empty() => {
            Err(ConsoleError::Input("closing a case as a false positive needs a reason".into()))
        }
        (Open | RemovalRequested | Removed | Recurred, Change::FalsePositive(_)) => Ok(FalsePositive),
        _ => Err(ConsoleError::Input(format!("a case in state {} cannot take that change", state.as_str()))),
    }
}

/// What the attempt store says about a removed app: `Some(Recurred)` when attempts came after the
/// removal, `Some(Verified)` when `verify_days` passed without any, otherwise no change yet.
pub fn verdict(removed: SystemTime, attempts_since: u64, now: SystemTime, verify_days: u32) -> Option<CaseState> {
    if attempts_since > 0 {
        Some(CaseState::Recurred)
    } else if now >= removed + Duration::from_secs(u64::from(verify_days) * 86_400) {
        Some(CaseState::Verified)
    } else {
        None
    }
}

/// The moment an app was removed, from what a person gave: empty or "now" is `now`; a time
/// (`2026-11-23T10:30`, RFC 3339) is that time; a date alone is the end of that day, or `now`
/// for today, so that day's earlier attempts are not taken as a recurrence. Dates and times
/// without an offset are read in `zone` (the console's time zone: local time to UTC). Refuses
/// moments after `now`.
pub fn removal_moment(
    text: &str,
    now: SystemTime,
    zone: &dyn Fn(&str) -> Option<SystemTime>,
) -> Result<SystemTime, ConsoleError> {
    let text = text.trim();
    let unreadable = || ConsoleError::Input("the removal moment is not a date or time (2026-11-23T10:30)".into());
    let at = match text {
        "" | "now" => return Ok(now),
        date if date.len() == 10 => {
            let start = zone(&format!("{date}T00:00:00")).ok_or_else(unreadable)?;
            let end = zone(&format!("{}T00:00:00", next_date(date).ok_or_else(unreadable)?)).ok_or_else(unreadable)?;
            if start <= now && now < end { now } else { end - Duration::from_millis(1) }
        }
        time if time.len() == 16 => zone(&format!("{time}:00")).ok_or_else(unreadable)?,
        time if time.ends_with('Z') || time.len() > 19 => humantime::parse_rfc3339(time).map_err(|_| unreadable())?,
        time => zone(time).ok_or_else(unreadable)?,
    };
    if at > now {
        return Err(ConsoleError::Input("the removal moment lies in the future".into()));
    }
    Ok(at)
}

/// The day after `date` (YYYY-MM-DD), as YYYY-MM-DD.
fn next_date(date: &str) -> Option<String> {
    let midnight = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).ok()?;
    Some(humantime::format_rfc3339_seconds(midnight + Duration::from_secs(86_400)).to_string()[..10].to_string())
}

/// Local time (`YYYY-MM-DDTHH:MM:SS`) read as UTC: the zone until the console has its own.
pub fn utc_zone(local: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(&format!("{local}Z")).ok()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Case {
    pub id: i64,
    /// The device key, as in the attempt store.
    pub device: String,
    pub app: String,
    pub owner: String,
    pub ticket: String,
    pub note: String,
    pub state: CaseState,
    pub removed: Option<String>,
    pub opened: String,
    pub updated: String,
    /// Why the case was closed as a false positive (empty otherwise).
    pub reason: String,
    #[serde(skip)]
    removed_ms: Option<i64>,
}

const COLUMNS: &str = "id, device, app, owner, ticket, note, state, removed_ms, opened_ms, updated_ms, reason";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Case> {
    let removed_ms: Option<i64> = r.get(7)?;
    let state: String = r.get(6)?;
    Ok(Case {
        id: r.get(0)?,
        device: r.get(1)?,
        app: r.get(2)?,
        owner: r.get(3)?,
        ticket: r.get(4)?,
        note: r.get(5)?,
        state: CaseState::parse(&state).unwrap_or(CaseState::Open),
        removed: removed_ms.map(time_text),
        opened: time_text(r.get(8)?),
        updated: time_text(r.get(9)?),
        reason: r.get(10)?,
        removed_ms,
    })
}

pub fn open(
    db: &Connection,
    device: &str,
    app: &str,
    owner: &str,
    ticket: &str,
    note: &str,
    now: SystemTime,
) -> Result<i64, ConsoleError> {
    if device.is_empty() || app.is_empty() {
        return Err(ConsoleError::Input("a case needs a device and an app".into()));
    }
    db.execute(
        "INSERT INTO cases (device, app, owner, ticket, note, state, opened_ms, updated_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?6)",
        params![device, app, owner, ticket, note, millis(now)],
    )?;
    Ok(db.last_insert_rowid())
}

pub fn get(db: &Connection, id: i64) -> Result<Case, ConsoleError> {
    db.query_row(&format!("SELECT {COLUMNS} FROM cases WHERE id = ?1"), [id], from_row)
        .optional()?
        .ok_or(ConsoleError::NotFound)
}

/// Cases, newest first; only one device's when `device` is given.
pub fn list(db: &Connection, device: Option<&str>) -> Result<Vec<Case>, ConsoleError> {
    let mut statement =
        db.prepare(&format!("SELECT {COLUMNS} FROM cases WHERE ?1 IS NULL OR device = ?1 ORDER BY id DESC"))?;
    let rows = statement.query_map([device], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Applies a person's change; returns the case as it is now.
pub fn update(db: &Connection, id: i64, change: &Change, now: SystemTime) -> Result<Case, ConsoleError> {
    let case = get(db, id)?;
    let state = next_state(case.state, change)?;
    let removed_ms = match change {
        Change::Removed(at) => Some(millis(*at)),
        _ => case.removed_ms,
    };
    let (ticket, note) = match change {
        Change::Note { ticket, note } => (ticket.clone().unwrap_or(case.ticket), note.clone()),
        _ => (case.ticket, case.note),
    };
    let reason = match change {
        Change::FalsePositive(reason) => reason.trim().to_string(),
        _ => case.reason,
    };
    db.execute(
        "UPDATE cases SET state = ?2, removed_ms = ?3, ticket = ?4, note = ?5, updated_ms = ?6, reason = ?7 \
         WHERE id = ?1",
        params![id, state.as_str(), removed_ms, ticket, note, millis(now), reason],
    )?;
    get(db, id)
}

/// Decides verified and recurred for removed (and verified) cases from the attempt store;
/// each change is audited as actor `nxguard`. Returns the cases that changed.
pub async fn refresh(console: &Console, store: &mut Reader, now: SystemTime) -> Result<Vec<Case>, ConsoleError> {
    let mut verdicts = Vec::new();
    for case in console.state(|db| list(db, None)).await? {
        let (Some(removed_ms), CaseState::Removed | CaseState::Verified) = (case.removed_ms, case.state) else {
            continue;
        };
        let removed = UNIX_EPOCH + Duration::from_millis(removed_ms.max(0) as u64);
        let filter = Filter {
            since: Some(removed),
            until: Some(now),
            app: Some(case.app.clone()),
            device: Some(case.device.clone()),
            owner: None,
            mode: report::ModeFilter::Enforce,
            now: Some(now),
            // Every day since the removal counts, whole days from the rollups and the partial
            // first and last days from the raw rows (0: taken as kept; a removal older than
            // store.raw_days loses only the attempts of its own, partial, day).
            raw_days: 0,
        };
        let summaries = report::summaries(std::slice::from_mut(store), &filter, console.pseudonymizer.as_ref()).await?;
        let attempts: u64 = summaries.iter().map(|s| s.attempts).sum();
        let Some(state) = verdict(removed, attempts, now, console.config.verify_days) else { continue };
        if state != case.state {
            verdicts.push((case, state, attempts));
        }
    }
    if verdicts.is_empty() {
        return Ok(Vec::new());
    }
    console.state(move |db| record_verdicts(db, &verdicts, now)).await
}

/// Writes and audits the verdicts of `refresh`.
fn record_verdicts(
    db: &Connection,
    verdicts: &[(Case, CaseState, u64)],
    now: SystemTime,
) -> Result<Vec<Case>, ConsoleError> {
    let mut changed = Vec::new();
    for (case, state, attempts) in verdicts {
        db.execute(
            "UPDATE cases SET state = ?2, updated_ms = ?3 WHERE id = ?1",
            params![case.id, state.as_str(), millis(now)],
        )?;
        let detail = format!("{} -> {} ({attempts} attempts since the removal)", case.state.as_str(), state.as_str());
        let record = audit::Record {
            actor: "nxguard",
            role: "system",
            address: "",
            action: "case state",
            target: &format!("case {}", case.id),
            detail: &detail,
        };
        audit::record(db, now, &record)?;
        changed.push(get(db, case.id)?);
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_state_machine() {
        use CaseState::*;
        let t = UNIX_EPOCH;
        assert_eq!(next_state(Open, &Change::RequestRemoval).unwrap(), RemovalRequested);
        assert_eq!(next_state(RemovalRequested, &Change::Removed(t)).unwrap(), Removed);
        assert_eq!(next_state(Recurred, &Change::RequestRemoval).unwrap(), RemovalRequested);
        assert!(next_state(Removed, &Change::RequestRemoval).is_err());
        assert!(next_state(Verified, &Change::Removed(t)).is_err());
        assert_eq!(next_state(Verified, &Change::Note { ticket: None, note: "x".into() }).unwrap(), Verified);
    }

    #[test]
    fn a_removal_is_a_moment_and_never_in_the_future() {
        // 2026-11-23T12:00:00Z.
        let now = UNIX_EPOCH + Duration::from_secs(1_795_392_000 + 12 * 3600);
        let at = |text: &str| removal_moment(text, now, &utc_zone);
        assert_eq!(at("").unwrap(), now);
        assert_eq!(at("2026-11-23").unwrap(), now, "today is now, not midnight");
        let end_of_day = UNIX_EPOCH + Duration::from_millis((1_795_392_000 * 1000) - 1);
        assert_eq!(at("2026-11-22").unwrap(), end_of_day);
        assert_eq!(at("2026-11-23T10:30").unwrap(), now - Duration::from_secs(90 * 60));
        assert_eq!(at("2026-11-23T10:30:00Z").unwrap(), now - Duration::from_secs(90 * 60));
        for future in ["2026-11-24", "2026-11-23T12:01", "2027-01-01T00:00:00Z"] {
            assert!(matches!(at(future), Err(ConsoleError::Input(_))), "{future}");
        }
        assert!(at("gisteren").is_err());
        assert_eq!(next_date("2026-12-31").as_deref(), Some("2027-01-01"));
    }

    #[test]
    fn a_false_positive_needs_a_reason_and_is_final() {
        use CaseState::*;
        let close = |reason: &str| Change::FalsePositive(reason.into());
        assert_eq!(next_state(Open, &close("shared link in a newsletter")).unwrap(), FalsePositive);
        assert_eq!(next_state(Recurred, &close("test device")).unwrap(), FalsePositive);
        assert!(next_state(Open, &close("  ")).is_err());
        assert!(next_state(Verified, &close("x")).is_err());
        assert!(next_state(FalsePositive, &Change::RequestRemoval).is_err());
        assert!(!FalsePositive.is_active());
    }

    #[test]
    fn verdict_needs_quiet_days_and_any_attempt_is_a_recurrence() {
        let removed = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(verdict(removed, 0, removed + 6 * day, 7), None);
        assert_eq!(verdict(removed, 0, removed + 7 * day, 7), Some(CaseState::Verified));
        assert_eq!(verdict(removed, 1, removed + day, 7), Some(CaseState::Recurred));
    }
}
