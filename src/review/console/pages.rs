//! The pages: sign-in and sign-out, devices, one device, the audit log and users (the overview
//! is `overview`).

use std::{sync::Arc, time::SystemTime};

use axum::{
    Form,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Console, ConsoleError, audit,
    auth::{self, COOKIE, Login, Role, SignedIn},
    cases,
    i18n::{self, Text, assessment, t},
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

/// The cookie that carries the sign-in form's CSRF token (the form carries the same value).
pub const LOGIN_COOKIE: &str = "nxguard_login";

/// `GET /login`: the form, with a fresh CSRF token in a hidden field and in a cookie. One
/// message for every refusal (wrong name, wrong password, locked, disabled): the page never
/// tells which accounts exist.
pub async fn login_form(
    State(c): State<Arc<Console>>,
    parts: axum::http::request::Parts,
    Query(q): Query<LoginQuery>,
) -> Response {
    let lang = c.language();
    let token = c.login_token();
    let cookie = format!("{LOGIN_COOKIE}={token}; {}", c.cookie_attributes(&parts));
    let body = html! {
        @if q.error.is_some() { p class="error" id="login-error" { (t(lang, Text::LoginFailed)) } }
        form method="post" action="/login" class="stack" {
            input type="hidden" name="csrf" value=(token);
            label { (t(lang, Text::User)) input type="text" name="user" id="user" autocomplete="username" required; }
            label { (t(lang, Text::Password)) input type="password" name="password" id="password" autocomplete="current-password" required; }
            button type="submit" id="login" { (t(lang, Text::Login)) }
        }
    };
    ([(header::SET_COOKIE, cookie)], page(lang, None, t(lang, Text::Login), body)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub csrf: String,
    pub user: String,
    pub password: String,
}

/// The sign-in form's token matches its cookie and was made by this console (double submit,
/// signed: another site can make the browser post the form, but can neither read the cookie
/// nor make a token of its own).
fn login_csrf(c: &Console, parts: &axum::http::request::Parts, sent: &str) -> Result<(), ConsoleError> {
    let cookie = auth::cookie(parts, LOGIN_COOKIE).unwrap_or("");
    if auth::same_secret(sent, cookie) && c.login_token_is_ours(sent) { Ok(()) } else { Err(ConsoleError::Csrf) }
}

/// Audits what the throttle decided for this address; true when the sign-in is refused.
async fn throttled(c: &Console, address: &str, now: SystemTime) -> Result<bool, ConsoleError> {
    let gate = c.throttle.gate(address, millis(now));
    let mut records = Vec::new();
    if let Some(refused) = gate.ended_refusals {
        records.push(("login throttle ended", format!("{refused} sign-ins refused")));
    }
    if gate.first_refusal {
        let until = queries::time_text(gate.until_ms);
        let detail = format!("{} failed sign-ins from this address; refused until {until}", super::throttle::FAILURES);
        records.push(("login throttled", detail));
    }
    if !records.is_empty() {
        let address = address.to_string();
        c.state(move |db| {
            for (action, detail) in &records {
                let record = audit::Record { actor: "", role: "", address: &address, action, target: "", detail };
                audit::record(db, now, &record)?;
            }
            Ok(())
        })
        .await?;
    }
    Ok(gate.refused)
}

/// `POST /login`: checks the CSRF token and the address's failed sign-ins, then the password
/// (argon2id), locks after `console.lockout_failures` wrong ones, audits the outcome, and sets
/// the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS).
pub async fn login(
    State(c): State<Arc<Console>>,
    parts: axum::http::request::Parts,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    login_csrf(&c, &parts, &form.csrf)?;
    let address = auth::address(&parts, &c.config.trust_proxy);
    let now = c.now();
    if throttled(&c, &address, now).await? {
        let retry = (super::throttle::WINDOW_MS / 1000).to_string();
        return Ok((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry)]).into_response());
    }
    let (max_failures, lock_mins, from) = (c.config.lockout_failures, c.config.lockout_mins, address.clone());
    let session = c
        .state(move |db| {
            let outcome = auth::check_password(db, &form.user, &form.password, now, max_failures, lock_mins)?;
            let (action, role) = match &outcome {
                Login::Ok(role) => ("login", role.as_str()),
                Login::Wrong => ("login failed", ""),
                Login::Locked => ("login locked", ""),
                Login::Disabled => ("login disabled", ""),
            };
            // A name typed at the sign-in form is kept short in the log (it may be anything).
            let actor: String = form.user.chars().take(64).collect();
            let record = audit::Record { actor: &actor, role, address: &from, action, target: "", detail: "" };
            audit::record(db, now, &record)?;
            let Login::Ok(_) = outcome else { return Ok(None) };
            Ok(Some(auth::start_session(db, &form.user, now)?.0))
        })
        .await?;
    let Some(id) = session else {
        c.throttle.failed(&address, millis(now));
        return Ok(Redirect::to("/login?error=1").into_response());
    };
    let attributes = c.cookie_attributes(&parts);
    let cookies = [
        (header::SET_COOKIE, format!("{COOKIE}={id}; {attributes}")),
        (header::SET_COOKIE, format!("{LOGIN_COOKIE}=; {attributes}; Max-Age=0")),
    ];
    Ok((axum::response::AppendHeaders(cookies), Redirect::to("/")).into_response())
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
    let cookie = format!("{COOKIE}=; {}; Max-Age=0", c.cookie_attributes(&parts));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

/// The device key as this user may see it.
pub(super) fn shown(c: &Console, who: &SignedIn, device: &str) -> String {
    if who.role >= Role::Officer { device.to_string() } else { c.masked(device) }
}

/// The newest case of a summary row's device × app.
pub(super) fn case_of<'a>(all: &'a [cases::Case], s: &report::Summary) -> Option<&'a cases::Case> {
    all.iter().find(|k| k.device == s.device && k.app == s.app)
}

/// The last cell of an officer's device × app row: its case, or a link to open one.
fn case_cell(lang: crate::config::Language, all: &[cases::Case], s: &report::Summary) -> Markup {
    match case_of(all, s) {
        Some(k) => {
            html! { a href=(format!("/cases/{}", k.id)) class="case" { (t(lang, Text::Case)) " #" (k.id) ": " (t(lang, super::case_pages::state_key(k.state))) } }
        }
        None => {
            html! { a href=(format!("/cases/new?device={}&app={}&owner={}", encode(&s.device), encode(&s.app), encode(&s.owner))) { (t(lang, Text::OpenCase)) } }
        }
    }
}

pub(super) fn day_of(time: SystemTime) -> i64 {
    millis(time).div_euclid(DAY_MS)
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
    let all_cases = if officer { c.state(|db| cases::list(db, None)).await? } else { Vec::new() };
    let mask = |d: &str| c.masked(d);
    let rows = view.apply(&rows, if officer { None } else { Some(&mask) }, c.now());
    let sort =
        |key: &str, label: Text| html! { a href=(format!("/devices?{}", view.with("sort", key))) { (t(lang, label)) } };
    let page = view.page.unwrap_or(0);
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let body = html! {
        (filters(lang, &view, "/devices", officer))
        @if officer { p { a href=(format!("/export/summary.csv?{}", view.query())) id="export" { (t(lang, Text::ExportCsv)) } } }
        table id="devices" {
            tr {
                th { (sort("device", Text::Device)) } @if officer { th { (t(lang, Text::Owner)) } }
                th { (sort("app", Text::App)) } th.num { (sort("attempts", Text::Attempts)) } th.num { (t(lang, Text::Domains)) }
                th.num { (sort("days", Text::Days)) } th { (t(lang, Text::FirstSeen)) } th { (sort("last_seen", Text::LastSeen)) }
                th { (t(lang, Text::Assessment)) } @if officer { th {} }
            }
            @for s in rows.iter().skip(page * PAGE_ROWS).take(PAGE_ROWS) {
                tr {
                    td { @if officer { a href=(format!("/device?device={}&since={}", encode(&s.device), encode(view.since_text()))) { (s.device) } } @else { (c.masked(&s.device)) } }
                    @if officer { td { (s.owner) } }
                    td { (s.app) } td.num { (s.attempts) } td.num { (s.domains) } td.num { (s.days) }
                    td { (c.time(&s.first_seen)) } td { (c.time(&s.last_seen)) }
                    td class=[(s.assessment == Assessment::LikelyInstalled).then_some("likely")] { (assessment(lang, s.assessment)) }
                    @if officer { td { (case_cell(lang, &all_cases, s)) } }
                }
            }
        }
        @if rows.is_empty() { p { (t(lang, Text::NoData)) } }
        @if pages > 1 {
            p.pages {
                @if page > 0 { a href=(format!("/devices?{}", view.on_page(page - 1))) rel="prev" { "←" } " " }
                (page + 1) " / " (pages) " (" (rows.len()) ")"
                @if page + 1 < pages { " " a href=(format!("/devices?{}", view.on_page(page + 1))) rel="next" { "→" } }
            }
        }
        @if !officer { p.note { (t(lang, Text::Pseudonymous)) } }
    };
    Ok(layout::page(lang, Some(&who), t(lang, Text::Devices), body))
}

/// Hits the device page lists (the newest; the timeline export has them all).
const HITS: usize = 200;

/// What the device page shows, read once.
struct DeviceFacts {
    sources: Vec<queries::IdentitySource>,
    totals: Arc<Vec<report::Summary>>,
    lanes: Vec<(String, i64, u64)>,
    hits: Vec<report::Event>,
    cases: Vec<cases::Case>,
    since: SystemTime,
    until: SystemTime,
}

/// Reads the device page's facts, and audits the view.
async fn device_facts(c: &Console, who: &SignedIn, view: &View, key: &str) -> Result<DeviceFacts, ConsoleError> {
    let now = c.now();
    let filter = c.filter(view)?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let mut store = c.store()?;
    let sources = queries::identity_sources(&mut store, key, since, until).await?;
    let totals = c.summaries(&mut store, &report::Filter { owner: None, ..filter.clone() }).await?;
    let lanes = queries::device_daily(&mut store, key, since, until).await?;
    let filter = report::Filter { owner: None, ..filter };
    let hits = report::latest(std::slice::from_mut(&mut store), &filter, c.pseudonymizer.as_ref(), Some(HITS + 1))
        .await?
        .events;
    let cases = {
        let (who, key, detail) = (who.clone(), key.to_string(), format!("since {}", view.since_text()));
        c.state(move |db| {
            audit::by(db, now, &who, "view device", &key, &detail)?;
            cases::list(db, Some(&key))
        })
        .await?
    };
    Ok(DeviceFacts { sources, totals, lanes, hits, cases, since, until })
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
    let key = view.device.clone().filter(|d| !d.is_empty()).ok_or(ConsoleError::NotFound)?;
    let facts = device_facts(&c, &who, &view, &key).await?;
    let body = html! {
        (filters(lang, &view, "/device", false))
        (identity_table(&c, lang, &facts.sources))
        (device_totals(&c, &facts.totals, &facts.sources))
        (device_lanes(lang, &facts, &key))
        (device_cases(&c, &facts.cases))
        (device_hits(&c, &view, &facts.hits))
    };
    Ok(page(lang, Some(&who), &format!("{}: {key}", t(lang, Text::Device)), body))
}

/// When each app was active, and a link per app to open a case.
fn device_lanes(lang: crate::config::Language, facts: &DeviceFacts, key: &str) -> Markup {
    let mut apps: Vec<&str> = facts.lanes.iter().map(|(a, _, _)| a.as_str()).collect();
    apps.dedup();
    let owner = facts.sources.iter().find(|s| !s.owner.is_empty()).map_or("", |s| s.owner.as_str());
    html! {
        h2 { (t(lang, Text::PerApp)) }
        (svg::app_lanes(&facts.lanes, day_of(facts.since), day_of(facts.until), t(lang, Text::PerApp)))
        p {
            @for app in &apps {
                a href=(format!("/cases/new?device={}&app={}&owner={}", encode(key), encode(app), encode(owner))) class="open-case" { (t(lang, Text::OpenCase)) ": " (app) } " "
            }
        }
    }
}

/// The device's cases.
fn device_cases(c: &Console, list: &[cases::Case]) -> Markup {
    let lang = c.language();
    html! {
        h2 { (t(lang, Text::Cases)) }
        @if list.is_empty() { p { (t(lang, Text::None)) } } @else {
            table id="device-cases" {
                tr { th { "#" } th { (t(lang, Text::App)) } th { (t(lang, Text::State)) } th { (t(lang, Text::Ticket)) } th { (t(lang, Text::RemovedOn)) } }
                @for k in list {
                    tr { td { a href=(format!("/cases/{}", k.id)) { "#" (k.id) } } td { (k.app) } td { (t(lang, super::case_pages::state_key(k.state))) } td { (k.ticket) } td.removed { (c.time(k.removed.as_deref().unwrap_or(""))) } }
                }
            }
        }
    }
}

/// The newest `HITS` hits, and the link to all of them.
fn device_hits(c: &Console, view: &View, hits: &[report::Event]) -> Markup {
    let lang = c.language();
    html! {
        h2 { (t(lang, Text::Hits)) }
        p { a href=(format!("/export/timeline.csv?{}", view.query())) id="export-timeline" { (t(lang, Text::ExportCsv)) } }
        @if hits.len() > HITS { p.note { (t(lang, Text::HitsLimited)) } }
        table id="hits" {
            tr { th { (t(lang, Text::Time)) } th { (t(lang, Text::App)) } th { (t(lang, Text::Name)) } th { (t(lang, Text::Qtype)) } th { (t(lang, Text::Kind)) } th { (t(lang, Text::Address)) } }
            @for e in hits.iter().take(HITS) {
                tr { td { (c.time(&e.time)) } td { (e.app) } td { (e.qname) } td { (e.qtype) } td { (e.kind) } td { (e.client) } }
            }
        }
    }
}

/// Where the device's identity came from, one row per distinct source.
fn identity_table(c: &Console, lang: crate::config::Language, sources: &[queries::IdentitySource]) -> Markup {
    html! {
        h2 { (t(lang, Text::Identity)) }
        table id="identity" {
            tr { th { (t(lang, Text::Name)) } th { (t(lang, Text::Owner)) } th { (t(lang, Text::Hostname)) } th { (t(lang, Text::Mac)) } th { (t(lang, Text::Address)) } th { (t(lang, Text::Source)) } th { (t(lang, Text::FirstSeen)) } th { (t(lang, Text::LastSeen)) } th.num { (t(lang, Text::Attempts)) } }
            @for s in sources {
                tr { td { (s.device) } td { (s.owner) } td { (s.hostname) } td { (s.mac) } td { (s.address) } td { (s.source) } td { (c.time(&s.first_seen)) } td { (c.time(&s.last_seen)) } td.num { (s.attempts) } }
            }
        }
    }
}

/// The device's totals per app, the same rows the devices table shows, and whether the identity
/// sources above add up to them (they do while the period's raw rows are kept).
fn device_totals(c: &Console, totals: &[report::Summary], sources: &[queries::IdentitySource]) -> Markup {
    let lang = c.language();
    let (all, raw) = (totals.iter().map(|s| s.attempts).sum::<u64>(), sources.iter().map(|s| s.attempts).sum::<u64>());
    html! {
        h2 { (t(lang, Text::Totals)) }
        table id="totals" {
            tr { th { (t(lang, Text::App)) } th.num { (t(lang, Text::Attempts)) } th.num { (t(lang, Text::Days)) } th { (t(lang, Text::LastSeen)) } th { (t(lang, Text::Assessment)) } }
            @for s in totals {
                tr { td { (s.app) } td.num { (s.attempts) } td.num { (s.days) } td { (c.time(&s.last_seen)) } td { (assessment(lang, s.assessment)) } }
            }
        }
        @if raw != all { p.note id="totals-differ" { (t(lang, Text::TotalsDiffer)) " (" (raw) " / " (all) ")" } }
    }
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
        p { a href="/export/audit.csv" { (t(lang, Text::ExportCsv)) } }
        table id="audit" {
            tr { th { (t(lang, Text::Time)) } th { (t(lang, Text::Actor)) } th { (t(lang, Text::Role)) } th { (t(lang, Text::Address)) } th { (t(lang, Text::Action)) } th { (t(lang, Text::Target)) } th { (t(lang, Text::Detail)) } }
            @for e in &entries {
                tr {
                    td { (c.time(&e.time)) } td { (e.actor) } td { (role_name(lang, &e.role)) } td { (e.address) }
                    td { (i18n::audit_action(lang, &e.action)) } td { (i18n::audit_detail(lang, &e.target)) } td { (i18n::audit_detail(lang, &e.detail)) }
                }
            }
        }
    };
    Ok(page(lang, Some(&who), t(lang, Text::Audit), body))
}

/// A role as the pages name it.
pub fn role_name(lang: crate::config::Language, role: &str) -> &'static str {
    match role {
        "viewer" => t(lang, Text::RoleViewer),
        "officer" => t(lang, Text::RoleOfficer),
        "admin" => t(lang, Text::RoleAdmin),
        "system" => "nxguard",
        "cli" => t(lang, Text::RoleCli),
        _ => "",
    }
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
                tr { th { (t(lang, Text::Name)) } th { (t(lang, Text::Role)) } th { (t(lang, Text::LockedUntil)) } th { (t(lang, Text::Opened)) } th { (t(lang, Text::Expires)) } th { (t(lang, Text::Disabled)) } }
                @for a in rows { tr { td { (a.name) } td { (role_name(lang, &a.role)) } td { (c.time(&a.locked_until)) } td { (c.time(&a.created)) } td { (c.time(&a.expires)) } td { @if a.disabled { "✓" } } } }
            }
        }
    };
    let body = html! {
        (table("users", &users))
        h2 { (t(lang, Text::Tokens)) }
        (table("tokens", &tokens))
        p.note { code { "nxguard console user add|disable|enable|delete NAME" } " · " code { "nxguard console token add|revoke NAME" } }
    };
    Ok(page(lang, Some(&who), t(lang, Text::Users), body))
}
