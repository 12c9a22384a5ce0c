//! The removal-case pages: list, open from a device × app row, show, and change. Officers only;
//! every change carries the CSRF token and is audited.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Console, ConsoleError, audit,
    auth::{Role, SignedIn},
    cases::{self, CaseState, Change},
    i18n::{Text, t},
    layout::{encode, page},
};

pub fn state_key(state: CaseState) -> Text {
    match state {
        CaseState::Open => Text::StOpen,
        CaseState::RemovalRequested => Text::StRemovalRequested,
        CaseState::Removed => Text::StRemoved,
        CaseState::Verified => Text::StVerified,
        CaseState::Recurred => Text::StRecurred,
        CaseState::FalsePositive => Text::StFalsePositive,
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    /// "active" (still to act on), or one state (open, recurred, …); empty: every case.
    #[serde(default)]
    pub state: String,
}

pub async fn list(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    who.require(Role::Officer)?;
    let lang = c.language();
    let mut store = c.store()?;
    cases::refresh(&c, &mut store, c.now()).await?;
    let wanted = CaseState::parse(&q.state);
    let mut all = c.state(|db| cases::list(db, None)).await?;
    all.retain(|k| match (q.state.as_str(), wanted) {
        ("active", _) => k.state.is_active(),
        (_, Some(state)) => k.state == state,
        _ => true,
    });
    let body = html! {
        table id="cases" {
            tr { th { "#" } th { (t(lang, Text::Device)) } th { (t(lang, Text::App)) } th { (t(lang, Text::Owner)) } th { (t(lang, Text::Ticket)) } th { (t(lang, Text::State)) } th { (t(lang, Text::RemovedOn)) } th { (t(lang, Text::Opened)) } }
            @for k in &all {
                tr class=[(k.state == CaseState::Recurred).then_some("recurred")] {
                    td { a href=(format!("/cases/{}", k.id)) { "#" (k.id) } }
                    td { a href=(format!("/device?device={}", encode(&k.device))) { (k.device) } }
                    td { (k.app) } td { (k.owner) } td { (k.ticket) } td { (t(lang, state_key(k.state))) }
                    td { (c.time(k.removed.as_deref().unwrap_or(""))) } td { (c.time(&k.opened)) }
                }
            }
        }
        @if all.is_empty() { p { (t(lang, Text::None)) } }
    };
    Ok(page(lang, Some(&who), t(lang, Text::Cases), body))
}

#[derive(Deserialize, Default)]
pub struct NewCase {
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub owner: String,
}

pub async fn new_form(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(q): Query<NewCase>,
) -> Result<Markup, ConsoleError> {
    who.require(Role::Officer)?;
    let lang = c.language();
    let body = html! {
        form method="post" action="/cases" class="stack" id="new-case" {
            input type="hidden" name="csrf" value=(who.csrf);
            label { (t(lang, Text::Device)) input type="text" name="device" value=(q.device) required; }
            label { (t(lang, Text::App)) input type="text" name="app" value=(q.app) required; }
            label { (t(lang, Text::Owner)) input type="text" name="owner" value=(q.owner); }
            label { (t(lang, Text::Ticket)) input type="text" name="ticket" id="ticket"; }
            label { (t(lang, Text::Note)) textarea name="note" id="note" rows="3" {} }
            button type="submit" id="open-case" { (t(lang, Text::OpenCase)) }
        }
    };
    Ok(page(lang, Some(&who), t(lang, Text::OpenCase), body))
}

#[derive(Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    pub csrf: String,
    pub device: String,
    pub app: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub note: String,
}

pub async fn open(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Form(f): Form<OpenForm>,
) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    who.check_csrf(&f.csrf)?;
    let now = c.now();
    let id = c
        .state(move |db| {
            let id =
                cases::open(db, f.device.trim(), f.app.trim(), f.owner.trim(), f.ticket.trim(), f.note.trim(), now)?;
            let detail = format!("{} × {}; ticket {:?}", f.device.trim(), f.app.trim(), f.ticket.trim());
            audit::by(db, now, &who, "case open", &format!("case {id}"), &detail)?;
            Ok(id)
        })
        .await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}

pub async fn show(State(c): State<Arc<Console>>, who: SignedIn, Path(id): Path<i64>) -> Result<Markup, ConsoleError> {
    who.require(Role::Officer)?;
    let lang = c.language();
    let mut store = c.store()?;
    cases::refresh(&c, &mut store, c.now()).await?;
    let k = c.state(move |db| cases::get(db, id)).await?;
    // The removal moment's field: now, to the second, and never later (UTC until the console
    // has a time zone of its own; `cases::removal_moment` reads it the same way).
    let now_local = &humantime::format_rfc3339_seconds(c.now()).to_string()[..19];
    let body = html! {
        table id="case" {
            tr { th { (t(lang, Text::Device)) } td { a href=(format!("/device?device={}", encode(&k.device))) { (k.device) } } }
            tr { th { (t(lang, Text::App)) } td { (k.app) } }
            tr { th { (t(lang, Text::Owner)) } td { (k.owner) } }
            tr { th { (t(lang, Text::Ticket)) } td { (k.ticket) } }
            tr { th { (t(lang, Text::Note)) } td { (k.note) } }
            tr { th { (t(lang, Text::State)) } td id="case-state" class=[(k.state == CaseState::Recurred).then_some("recurred")] { (t(lang, state_key(k.state))) } }
            tr { th { (t(lang, Text::RemovedOn)) } td { (c.time(k.removed.as_deref().unwrap_or(""))) } }
            tr { th { (t(lang, Text::Opened)) } td { (c.time(&k.opened)) } }
            @if k.state == CaseState::FalsePositive { tr { th { (t(lang, Text::Reason)) } td id="case-reason" { (k.reason) } } }
        }
        h2 { (t(lang, Text::State)) }
        @if matches!(k.state, CaseState::Open | CaseState::Recurred) {
            form method="post" action=(format!("/cases/{id}")) class="inline" {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="action" value="request_removal";
                button type="submit" id="request-removal" { (t(lang, Text::RequestRemoval)) }
            }
        }
        @if matches!(k.state, CaseState::Open | CaseState::RemovalRequested | CaseState::Recurred) {
            form method="post" action=(format!("/cases/{id}")) class="inline" {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="action" value="removed";
                label { (t(lang, Text::RemovedAt)) " " input type="datetime-local" name="removed" step="1" value=(now_local) max=(now_local); }
                button type="submit" id="mark-removed" { (t(lang, Text::MarkRemoved)) }
            }
        }
        @if k.state.is_active() {
            form method="post" action=(format!("/cases/{id}")) class="stack" id="false-positive-form" {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="action" value="false_positive";
                label { (t(lang, Text::Reason)) textarea name="reason" id="reason" rows="2" required {} }
                button type="submit" id="false-positive" { (t(lang, Text::CloseFalsePositive)) }
            }
        }
        form method="post" action=(format!("/cases/{id}")) class="stack" {
            input type="hidden" name="csrf" value=(who.csrf);
            input type="hidden" name="action" value="note";
            label { (t(lang, Text::Ticket)) input type="text" name="ticket" value=(k.ticket); }
            label { (t(lang, Text::Note)) textarea name="note" rows="3" { (k.note) } }
            button type="submit" { (t(lang, Text::Save)) }
        }
    };
    Ok(page(lang, Some(&who), &format!("{} #{id}", t(lang, Text::Case)), body))
}

#[derive(Deserialize)]
pub struct UpdateForm {
    #[serde(default)]
    pub csrf: String,
    pub action: String,
    #[serde(default)]
    pub removed: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub note: String,
    /// Why the case is a false positive (action false_positive).
    #[serde(default)]
    pub reason: String,
}

/// The change a form or the CLI asks for: request_removal, removed (at a moment, see
/// `cases::removal_moment`), false_positive (with a reason), or note.
pub fn change(
    action: &str,
    removed: &str,
    ticket: Option<String>,
    note: &str,
    reason: &str,
    now: std::time::SystemTime,
) -> Result<Change, ConsoleError> {
    match action {
        "request_removal" => Ok(Change::RequestRemoval),
        "removed" => Ok(Change::Removed(cases::removal_moment(removed, now, &cases::utc_zone)?)),
        "false_positive" => Ok(Change::FalsePositive(reason.to_string())),
        "note" => Ok(Change::Note { ticket, note: note.to_string() }),
        _ => Err(ConsoleError::Input("not a case change (request_removal, removed, false_positive, note)".into())),
    }
}

/// The audit detail of a case change: the states, the change, and what it carried.
pub fn update_detail(before: CaseState, after: &cases::Case, change: &Change) -> String {
    let carried = match change {
        Change::RequestRemoval => "request_removal".to_string(),
        Change::Removed(_) => format!("removed {}", after.removed.as_deref().unwrap_or("")),
        Change::FalsePositive(reason) => format!("false_positive: {}", reason.trim()),
        Change::Note { .. } => "note".to_string(),
    };
    format!("{} -> {}; {carried}", before.as_str(), after.state.as_str())
}

pub async fn update(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Path(id): Path<i64>,
    Form(f): Form<UpdateForm>,
) -> Result<Response, ConsoleError> {
    who.require(Role::Officer)?;
    who.check_csrf(&f.csrf)?;
    let now = c.now();
    let change = change(&f.action, &f.removed, f.ticket, &f.note, &f.reason, now)?;
    c.state(move |db| {
        let before = cases::get(db, id)?.state;
        let after = cases::update(db, id, &change, now)?;
        let detail = update_detail(before, &after, &change);
        audit::by(db, now, &who, "case update", &format!("case {id}"), &detail)
    })
    .await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}
