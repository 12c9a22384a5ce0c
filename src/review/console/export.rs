//! CSV export of exactly the filtered view, the device timeline and the audit log, and the JSON
//! API under `/api/v1/` (bearer tokens from `nxguard console token add`). Officers and up;
//! every export and API call is audited.
//!
//! The CSV is `report --format csv` for the same filter, byte for byte, except that cells a
//! spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or carriage return)
//! get a leading `'`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Response},
};

use super::{
    Console, ConsoleError, audit,
    auth::{Role, SignedIn},
    cases,
    layout::View,
};
use crate::review::{
    render,
    report::{self, Format, ReportError},
};

/// `text` with a `'` before it when a spreadsheet would read it as a formula.
pub fn neutralise(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() }
}

/// Re-writes CSV text with every cell neutralised; cells that need nothing stay byte-identical.
pub fn neutralise_csv(text: &str) -> Result<String, ConsoleError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let mut writer = csv::Writer::from_writer(Vec::new());
    for record in reader.records() {
        let record = record.map_err(ReportError::from)?;
        writer.write_record(record.iter().map(neutralise)).map_err(ReportError::from)?;
    }
    let bytes = writer.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

/// The summary rows of a view, as the devices page shows them (officers see identities).
async fn summary_rows(c: &Console, view: &View) -> Result<Vec<report::Summary>, ConsoleError> {
    let filter = report::Filter { device: None, ..c.filter(view)? };
    let mut store = c.store()?;
    let rows = c.summaries(&mut store, &filter).await?;
    Ok(view.apply(&rows, None, c.now()).into_iter().cloned().collect())
}

/// Audits what a signed-in user did, on the console database's pool.
async fn audit_by(
    c: &Console,
    who: &SignedIn,
    action: &'static str,
    target: String,
    detail: String,
) -> Result<(), ConsoleError> {
    let (who, now) = (who.clone(), c.now());
    c.state(move |db| audit::by(db, now, &who, action, &target, &detail)).await
}

pub async fn summary_csv(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    let rows = summary_rows(&c, &view).await?;
    audit_by(&c, &who, "export summary", String::new(), format!("{}; {} rows", view.query(), rows.len())).await?;
    Ok(csv_response("nxguard-summary.csv", neutralise_csv(&render::summaries(&rows, Format::Csv)?)?))
}

async fn timeline_events(c: &Console, view: &View) -> Result<Vec<report::Event>, ConsoleError> {
    if view.device.as_deref().is_none_or(str::is_empty) {
        return Err(ConsoleError::Input("give device=".into()));
    }
    let filter = report::Filter { owner: None, ..c.filter(view)? };
    Ok(report::timeline(std::slice::from_mut(&mut c.store()?), &filter, c.pseudonymizer.as_ref()).await?.events)
}

pub async fn timeline_csv(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    let events = timeline_events(&c, &view).await?;
    let device = view.device.clone().unwrap_or_default();
    audit_by(&c, &who, "export timeline", device, format!("{}; {} rows", view.query(), events.len())).await?;
    Ok(csv_response("nxguard-timeline.csv", neutralise_csv(&render::timeline(&events, Format::Csv)?)?))
}

pub async fn audit_csv(State(c): State<Arc<Console>>, who: SignedIn) -> Result<Response, ConsoleError> {
    who.require(Role::Admin)?;
    let now = c.now();
    let entries = c
        .state(move |db| {
            audit::by(db, now, &who, "export audit", "", "")?;
            audit::list(db, usize::MAX >> 1)
        })
        .await?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["id", "time", "actor", "role", "address", "action", "target", "detail"])
        .map_err(ReportError::from)?;
    for e in &entries {
        let id = e.id.to_string();
        let cells = [&id, &e.time, &e.actor, &e.role, &e.address, &e.action, &e.target, &e.detail];
        writer.write_record(cells.iter().map(|c| neutralise(c))).map_err(ReportError::from)?;
    }
    let bytes = writer.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))?;
    Ok(csv_response("nxguard-audit.csv", String::from_utf8_lossy(&bytes).into_owned()))
}

/// `GET /api/v1/summary?since=…&app=…`: the filtered view as JSON. A viewer's token gets the
/// rows with pseudonymous device keys and no owner.
pub async fn api_summary(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Response, ConsoleError> {
    let mut rows = summary_rows(&c, &view).await?;
    if who.role < Role::Officer {
        for s in &mut rows {
            s.device = c.masked(&s.device);
            s.owner.clear();
        }
    }
    audit_by(&c, &who, "summary", String::new(), view.query()).await?;
    Ok(Json(rows).into_response())
}

/// `GET /api/v1/timeline?device=…`: one device's attempts (officers and up).
pub async fn api_timeline(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    let events = timeline_events(&c, &view).await?;
    audit_by(&c, &who, "timeline", view.device.clone().unwrap_or_default(), view.query()).await?;
    Ok(Json(events).into_response())
}

/// `GET /api/v1/cases`: every case (officers and up).
pub async fn api_cases(State(c): State<Arc<Console>>, who: SignedIn) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    let now = c.now();
    let list = c
        .state(move |db| {
            audit::by(db, now, &who, "cases", "", "")?;
            cases::list(db, None)
        })
        .await?;
    Ok(Json(list).into_response())
}
