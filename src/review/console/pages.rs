//! The pages: sign-in and sign-out, overview, devices, one device, and the audit log.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use axum::{
    Form,
    extract::{Query, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Console, ConsoleError, audit,
    auth::{self, COOKIE, Login, Role, SignedIn},
    cases::{self, CaseState},
    i18n::{assessment, t},
    layout::{self, PAGE_ROWS, View, encode, filters, page},
    queries::{self, DAY_MS},
    svg,
};
use crate::{
    evidence::store::millis,
    review::report::{self, Assessment},
};

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    pub error: Option<String>,
}

pub async fn login_form(State(c): State<Arc<Console>>, Query(q): Query<LoginQuery>) -> Markup {
    let lang = c.language();
    let message = match q.error.as_deref() {
        Some("locked") => Some(t(lang, "locked")),
        Some(_) => Some(t(lang, "login_failed")),
        None => None,
    };
    page(
        lang,
        None,
        t(lang, "login"),
        html! {
            @if let Some(message) = message { p class="error" { (message) } }
            form method="post" action="/login" class="stack" {
                label { (t(lang, "user")) input type="text" name="user" id="user" autocomplete="username" required; }
                label { (t(lang, "password")) input type="password" name="password" id="password" autocomplete="current-password" required; }
                button type="submit" id="login" { (t(lang, "login")) }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub user: String,
    pub password: String,
}

/// `POST /login`: checks the password (argon2id), locks after `console.lockout_failures` wrong
/// ones, audits both outcomes, and sets the session cookie (HttpOnly, SameSite=Strict, Secure
/// under TLS).
pub async fn login(
    State(c): State<Arc<Console>>,
    parts: axum::http::request::Parts,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let address = auth::address(&parts);
    let now = c.now();
    let (max_failures, lock_mins) = (c.config.lockout_failures, c.config.lockout_mins);
    let (outcome, session) = c
        .state(move |db| {
            let outcome = auth::check_password(db, &form.user, &form.password, now, max_failures, lock_mins)?;
            let (action, role) = match &outcome {
                Login::Ok(role) => ("login", role.as_str()),
                Login::Wrong => ("login failed", ""),
                Login::Locked => ("login locked", ""),
            };
            // A name typed at the sign-in form is kept short in the log (it may be anything).
            let actor: String = form.user.chars().take(64).collect();
            let record = audit::Record { actor: &actor, role, address: &address, action, target: "", detail: "" };
            audit::record(db, now, &record)?;
            let session = match outcome {
                Login::Ok(_) => Some(auth::start_session(db, &form.user, now)?.0),
                _ => None,
            };
            Ok((outcome, session))
        })
        .await?;
    match (outcome, session) {
        (Login::Ok(_), Some(id)) => {
            let secure = if c.secure_cookie { "; Secure" } else { "" };
            let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        (Login::Locked, _) => Ok(Redirect::to("/login?error=locked").into_response()),
        _ => Ok(Redirect::to("/login?error=wrong").into_response()),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    parts: axum::http::request::Parts,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ConsoleError> {
    who.check_csrf(&form.csrf)?;
    let (id, now) = (auth::cookie(&parts, COOKIE).map(String::from), c.now());
    c.state(move |db| {
        if let Some(id) = id {
            auth::end_session(db, &id)?;
        }
        audit::by(db, now, &who, "logout", "", "")
    })
    .await?;
    let secure = if c.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

/// The device key as this user may see it.
fn shown(c: &Console, who: &SignedIn, device: &str) -> String {
    if who.role >= Role::Officer { device.to_string() } else { c.masked(device) }
}

/// Device × app rows the overview lists (most recently seen first); the rest are on /devices.
const RECENT: usize = 15;

fn day_of(time: SystemTime) -> i64 {
    millis(time).div_euclid(DAY_MS)
}

pub async fn overview(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Markup, ConsoleError> {
    let lang = c.language();
    let now = c.now();
    let officer = who.role >= Role::Officer;
    let mut filter = report::Filter { device: None, ..c.filter(&view)? };
    if !officer {
        // Viewers get no owner filter: counts per owner would point at people.
        filter.owner = None;
    }
    let mut store = c.store()?;
    let rows = c.summaries(&mut store, &filter).await?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let days = queries::daily(&mut store, since, until, filter.app.as_deref()).await?;
    cases::refresh(&c, &mut store, now).await?;
    let all_cases = c.state(|db| cases::list(db, None)).await?;
    let mut by_app: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for s in &rows {
        by_app.entry(&s.app).or_default()[s.assessment as usize] += 1;
    }
    let has_case =
        |s: &report::Summary| all_cases.iter().any(|k| k.device == s.device && k.app == s.app && k.state.is_active());
    let to_act: Vec<&report::Summary> =
        rows.iter().filter(|s| s.assessment == Assessment::LikelyInstalled && !has_case(s)).collect();
    let recurred: Vec<&cases::Case> = all_cases.iter().filter(|k| k.state == CaseState::Recurred).collect();
    let trend: Vec<(i64, u64)> = days.iter().map(|d| (d.day, d.attempts)).collect();
    let body = html! {
        (filters(lang, &view, "/", officer))
        h2 { (t(lang, "by_app")) }
        @if by_app.is_empty() { p { (t(lang, "no_data")) } } @else {
            table id="by-app" {
                tr { th { (t(lang, "app")) } th.num { (t(lang, "likely")) } th.num { (t(lang, "possibly")) } th.num { (t(lang, "link")) } }
                @for (app, counts) in &by_app {
                    tr {
                        td { a href=(format!("/app?{}", view.with("app", app))) { (app) } }
                        td.num.likely { (counts[0]) } td.num { (counts[1]) } td.num { (counts[2]) }
                    }
                }
            }
        }
        h2 { (t(lang, "recent_devices")) }
        @if rows.is_empty() { p { (t(lang, "no_data")) } } @else {
            table id="recent" {
                tr { th { (t(lang, "device")) } th { (t(lang, "app")) } th.num { (t(lang, "attempts")) } th { (t(lang, "last_seen")) } th { (t(lang, "assessment")) } }
                @for s in rows.iter().take(RECENT) {
                    tr {
                        td { @if officer { a href=(format!("/device?device={}&since={}", encode(&s.device), encode(view.since_text()))) { (s.device) } } @else { (c.masked(&s.device)) } }
                        td { (s.app) } td.num { (s.attempts) } td { (c.time(&s.last_seen)) }
                        td class=[(s.assessment == Assessment::LikelyInstalled).then_some("likely")] { (assessment(lang, s.assessment)) }
                    }
                }
            }
            @if rows.len() > RECENT { p { a href=(format!("/devices?{}", view.query())) { (t(lang, "all_devices")) " (" (rows.len()) ")" } } }
        }
        h2 { (t(lang, "trend")) }
        (svg::daily_bars(&trend, day_of(since), day_of(until), t(lang, "trend")))
        h2 { (t(lang, "to_act")) }
        @if to_act.is_empty() { p { (t(lang, "none")) } } @else {
            table id="to-act" {
                tr { th { (t(lang, "device")) } th { (t(lang, "app")) } th.num { (t(lang, "days")) } th { (t(lang, "last_seen")) } @if officer { th {} } }
                @for s in &to_act {
                    tr {
                        td { @if officer { a href=(format!("/device?device={}&since={}", encode(&s.device), encode(view.since_text()))) { (s.device) } } @else { (c.masked(&s.device)) } }
                        td { (s.app) } td.num { (s.days) } td { (c.time(&s.last_seen)) }
                        @if officer { td { a href=(format!("/cases/new?device={}&app={}&owner={}", encode(&s.device), encode(&s.app), encode(&s.owner))) { (t(lang, "open_case")) } } }
                    }
                }
            }
        }
        h2 { (t(lang, "recurred")) }
        @if recurred.is_empty() { p { (t(lang, "none")) } } @else {
            table id="recurred" {
                @for k in &recurred {
                    tr.recurred {
                        td { @if officer { a href=(format!("/cases/{}", k.id)) { "#" (k.id) } } }
                        td { (shown(&c, &who, &k.device)) } td { (k.app) } td { (c.time(k.removed.as_deref().unwrap_or(""))) }
                    }
                }
            }
        }
        @if !officer { p.note { (t(lang, "pseudonymous")) } }
    };
    Ok(page(lang, Some(&who), t(lang, "overview"), body))
}

pub async fn devices(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Markup, ConsoleError> {
    let lang = c.language();
    let officer = who.role >= Role::Officer;
    let mut filter = c.filter(&view)?;
    filter.device = None;
    if !officer {
        filter.owner = None;
    }
    let mut store = c.store()?;
    let rows = c.summaries(&mut store, &filter).await?;
    let mask = |d: &str| c.masked(d);
    let rows = view.apply(rows, if officer { None } else { Some(&mask) });
    let sort = |key: &str, label: &'static str| html! { a href=(format!("/devices?{}", view.with("sort", key))) { (t(lang, label)) } };
    let page = view.page.unwrap_or(0);
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let body = html! {
        (filters(lang, &view, "/devices", officer))
        @if officer { p { a href=(format!("/export/summary.csv?{}", view.query())) id="export" { (t(lang, "export_csv")) } } }
        table id="devices" {
            tr {
                th { (sort("device", "device")) } @if officer { th { (t(lang, "owner")) } }
                th { (sort("app", "app")) } th.num { (sort("attempts", "attempts")) } th.num { (t(lang, "domains")) }
                th.num { (sort("days", "days")) } th { (t(lang, "first_seen")) } th { (sort("last_seen", "last_seen")) }
                th { (t(lang, "assessment")) } @if officer { th {} }
            }
            @for s in rows.iter().skip(page * PAGE_ROWS).take(PAGE_ROWS) {
                tr {
                    td { @if officer { a href=(format!("/device?device={}&since={}", encode(&s.device), encode(view.since_text()))) { (s.device) } } @else { (c.masked(&s.device)) } }
                    @if officer { td { (s.owner) } }
                    td { (s.app) } td.num { (s.attempts) } td.num { (s.domains) } td.num { (s.days) }
                    td { (c.time(&s.first_seen)) } td { (c.time(&s.last_seen)) }
                    td class=[(s.assessment == Assessment::LikelyInstalled).then_some("likely")] { (assessment(lang, s.assessment)) }
                    @if officer { td { a href=(format!("/cases/new?device={}&app={}&owner={}", encode(&s.device), encode(&s.app), encode(&s.owner))) { (t(lang, "open_case")) } } }
                }
            }
        }
        @if rows.is_empty() { p { (t(lang, "no_data")) } }
        @if pages > 1 {
            p.pages {
                @if page > 0 { a href=(format!("/devices?{}", view.on_page(page - 1))) rel="prev" { "←" } " " }
                (page + 1) " / " (pages) " (" (rows.len()) ")"
                @if page + 1 < pages { " " a href=(format!("/devices?{}", view.on_page(page + 1))) rel="next" { "→" } }
            }
        }
        @if !officer { p.note { (t(lang, "pseudonymous")) } }
    };
    Ok(layout::page(lang, Some(&who), t(lang, "devices"), body))
}

/// One device: identity and its sources, when each app was active, its hits and its cases.
/// Officers only; every view is audited.
pub async fn device(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Markup, ConsoleError> {
    who.require(Role::Officer)?;
    let lang = c.language();
    let now = c.now();
    let key = view.device.clone().filter(|d| !d.is_empty()).ok_or(ConsoleError::NotFound)?;
    let filter = c.filter(&view)?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let mut store = c.store()?;
    let sources = queries::identity_sources(&mut store, &key).await?;
    let lanes = queries::device_daily(&mut store, &key, since, until).await?;
    let hits = report::timeline(
        std::slice::from_mut(&mut store),
        &report::Filter { owner: None, ..filter },
        c.pseudonymizer.as_ref(),
    )
    .await?
    .events;
    let device_cases = {
        let (who, key, detail) = (who.clone(), key.clone(), format!("since {}", view.since_text()));
        c.state(move |db| {
            audit::by(db, now, &who, "view device", &key, &detail)?;
            cases::list(db, Some(&key))
        })
        .await?
    };
    let apps: Vec<&str> = {
        let mut apps: Vec<&str> = lanes.iter().map(|(a, _, _)| a.as_str()).collect();
        apps.dedup();
        apps
    };
    let owner = sources.iter().find(|s| !s.owner.is_empty()).map_or("", |s| s.owner.as_str());
    let body = html! {
        (filters(lang, &view, "/device", false))
        h2 { (t(lang, "identity")) }
        table id="identity" {
            tr { th { (t(lang, "name")) } th { (t(lang, "owner")) } th { (t(lang, "hostname")) } th { (t(lang, "mac")) } th { (t(lang, "address")) } th { (t(lang, "source")) } th { (t(lang, "first_seen")) } th { (t(lang, "last_seen")) } th.num { (t(lang, "attempts")) } }
            @for s in &sources {
                tr { td { (s.device) } td { (s.owner) } td { (s.hostname) } td { (s.mac) } td { (s.address) } td { (s.source) } td { (c.time(&s.first_seen)) } td { (c.time(&s.last_seen)) } td.num { (s.attempts) } }
            }
        }
        h2 { (t(lang, "per_app")) }
        (svg::app_lanes(&lanes, day_of(since), day_of(until), t(lang, "per_app")))
        p {
            @for app in &apps {
                a href=(format!("/cases/new?device={}&app={}&owner={}", encode(&key), encode(app), encode(owner))) class="open-case" { (t(lang, "open_case")) ": " (app) } " "
            }
        }
        h2 { (t(lang, "cases")) }
        @if device_cases.is_empty() { p { (t(lang, "none")) } } @else {
            table id="device-cases" {
                @for k in &device_cases {
                    tr { td { a href=(format!("/cases/{}", k.id)) { "#" (k.id) } } td { (k.app) } td { (t(lang, super::case_pages::state_key(k.state))) } td { (k.ticket) } }
                }
            }
        }
        h2 { (t(lang, "hits")) }
        p { a href=(format!("/export/timeline.csv?{}", view.query())) id="export-timeline" { (t(lang, "export_csv")) } }
        @if hits.len() > 200 { p.note { (t(lang, "hits_limited")) } }
        table id="hits" {
            tr { th { (t(lang, "time")) } th { (t(lang, "app")) } th { (t(lang, "name")) } th { "Type" } th { (t(lang, "kind")) } th { (t(lang, "address")) } }
            @for e in hits.iter().take(200) {
                tr { td { (c.time(&e.time)) } td { (e.app) } td { (e.qname) } td { (e.qtype) } td { (e.kind) } td { (e.client) } }
            }
        }
    };
    Ok(page(lang, Some(&who), &format!("{}: {key}", t(lang, "device")), body))
}

pub async fn audit(State(c): State<Arc<Console>>, who: SignedIn) -> Result<Markup, ConsoleError> {
    who.require(Role::Admin)?;
    let lang = c.language();
    let (actor, now) = (who.clone(), c.now());
    let entries = c
        .state(move |db| {
            audit::by(db, now, &actor, "view audit", "", "")?;
            audit::list(db, 500)
        })
        .await?;
    let body = html! {
        p { a href="/export/audit.csv" { (t(lang, "export_csv")) } }
        table id="audit" {
            tr { th { (t(lang, "time")) } th { (t(lang, "actor")) } th { (t(lang, "role")) } th { (t(lang, "address")) } th { (t(lang, "action")) } th { (t(lang, "target")) } th { (t(lang, "detail")) } }
            @for e in &entries {
                tr { td { (c.time(&e.time)) } td { (e.actor) } td { (e.role) } td { (e.address) } td { (e.action) } td { (e.target) } td { (e.detail) } }
            }
        }
    };
    Ok(page(lang, Some(&who), t(lang, "audit"), body))
}

/// Users and API tokens (admins; changed with `nxguard console user|token add`).
pub async fn users(State(c): State<Arc<Console>>, who: SignedIn) -> Result<Markup, ConsoleError> {
    who.require(Role::Admin)?;
    let lang = c.language();
    let now = c.now();
    let (users, tokens) =
        c.state(move |db| Ok((auth::accounts(db, false, now)?, auth::accounts(db, true, now)?))).await?;
    let table = |id: &str, rows: &[auth::Account]| {
        html! {
            table id=(id) {
                tr { th { (t(lang, "name")) } th { (t(lang, "role")) } th { (t(lang, "locked_until")) } th { (t(lang, "opened")) } }
                @for a in rows { tr { td { (a.name) } td { (a.role) } td { (c.time(&a.locked_until)) } td { (c.time(&a.created)) } } }
            }
        }
    };
    let body = html! {
        (table("users", &users))
        h2 { (t(lang, "tokens")) }
        (table("tokens", &tokens))
        p.note { code { "nxguard console user add NAME --role viewer|officer|admin --password-stdin" } }
    };
    Ok(page(lang, Some(&who), t(lang, "users"), body))
}
