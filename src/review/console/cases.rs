//! Removal cases: one device × app, tracked from "open" to proof that the app is gone.
//!
//! ```text
//! open ──▶ removal requested ──▶ removed (date) ──▶ verified   (no attempts for verify_days)
//!   └───────────────────────────▶      │       └──▶ recurred   (attempts after the removal)
//!                                      ◀── removal requested / removed again ──┘
//! ```
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
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::RemovalRequested => "removal_requested",
            CaseState::Removed => "removed",
            CaseState::Verified => "verified",
            CaseState::Recurred => "recurred",
        }
    }

    pub fn parse(text: &str) -> Option<CaseState> {
        use CaseState::*;
        [Open, RemovalRequested, Removed, Verified, Recurred].into_iter().find(|s| s.as_str() == text)
    }

    /// Still needs someone to act (not verified).
    pub fn is_active(self) -> bool {
        self != CaseState::Verified
    }
}

/// A change a person makes to a case.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    RequestRemoval,
    /// The app was removed at this time.
    Removed(SystemTime),
    /// Only the note (and ticket) change.
    Note {
        ticket: Option<String>,
        note: String,
    },
}

/// The state after `change`, or why it is not allowed from `state`.
pub fn next_state(state: CaseState, change: &Change) -> Result<CaseState, ConsoleError> {
    use CaseState::*;
    match (state, change) {
        (_, Change::Note { .. }) => Ok(state),
        (Open | Recurred, Change::RequestRemoval) => Ok(RemovalRequested),
        (Open | RemovalRequested | Recurred, Change::Removed(_)) => Ok(Removed),
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
    #[serde(skip)]
    removed_ms: Option<i64>,
}

const COLUMNS: &str = "id, device, app, owner, ticket, note, state, removed_ms, opened_ms, updated_ms";

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
    db.execute(
        "UPDATE cases SET state = ?2, removed_ms = ?3, ticket = ?4, note = ?5, updated_ms = ?6 WHERE id = ?1",
        params![id, state.as_str(), removed_ms, ticket, note, millis(now)],
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
    fn verdict_needs_quiet_days_and_any_attempt_is_a_recurrence() {
        let removed = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(verdict(removed, 0, removed + 6 * day, 7), None);
        assert_eq!(verdict(removed, 0, removed + 7 * day, 7), Some(CaseState::Verified));
        assert_eq!(verdict(removed, 1, removed + day, 7), Some(CaseState::Recurred));
    }
}
