//! The overview, the officer's first page: headline figures (devices likely installed, open
//! cases, recurrences, new this week), each a link to its filtered list; then recurrences, the
//! devices to act on (paged), devices by app, the most recently seen devices, the daily trend,
//! and whether the resolvers are recording (the last attempt per node).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use maud::{Markup, html};

use super::{
    Console, ConsoleError,
    auth::{Role, SignedIn},
    cases::{self, CaseState},
    i18n::{Text, assessment, t},
    layout::{View, encode, filters, page},
    pages::{case_of, day_of, shown},
    queries::{self, time_text},
    svg,
};
use crate::{
    config::Language,
    review::report::{self, Assessment},
};

/// Device × app rows the overview lists (most recently seen first); the rest are on /devices.
const RECENT: usize = 15;
/// Rows per page of "to act on".
pub const ACT_ROWS: usize = 25;
/// "New this week": first seen this long ago at most.
const NEW: Duration = Duration::from_secs(7 * 86_400);
const LIKELY: Assessment = Assessment::LikelyInstalled;

/// What a page of the overview is made of, read once.
struct Facts<'a> {
    lang: Language,
    view: &'a View,
    officer: bool,
    rows: Arc<Vec<report::Summary>>,
    cases: Vec<cases::Case>,
    now: SystemTime,
}

pub async fn overview(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Response, ConsoleError> {
    let (lang, now, officer) = (c.language(), c.now(), who.role >= Role::Officer);
    let mut filter = report::Filter { device: None, ..c.filter(&view)? };
    if !officer {
        // Viewers get no owner filter: counts per owner would point at people.
        filter.owner = None;
    }
    let mut store = match c.store() {
        Err(ConsoleError::NoStore(_)) => return Ok(first_run(lang, &who)),
        store => store?,
    };
    let rows = c.summaries(&mut store, &filter).await?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let days = queries::daily(&mut store, since, until, filter.app.as_deref()).await?;
    let nodes = queries::last_attempts(&mut store, now.checked_sub(NEW).unwrap_or(now)).await?;
    cases::refresh(&c, &mut store, now).await?;
    let all_cases = c.state(|db| cases::list(db, None)).await?;
    let facts = Facts { lang, view: &view, officer, rows, cases: all_cases, now };
    let trend: Vec<(i64, u64)> = days.iter().map(|d| (d.day, d.attempts)).collect();
    let body = html! {
        (filters(lang, &view, "/", officer))
        (headline(&facts))
        (recurred(&c, &who, &facts))
        (to_act(&c, &facts))
        (by_app(&facts))
        (recent(&c, &facts))
        h2 { (t(lang, Text::Trend)) }
        (svg::daily_bars(&trend, day_of(since), day_of(until), t(lang, Text::Trend)))
        (resolvers(&c, &nodes))
        @if !officer { p.note { (t(lang, Text::Pseudonymous)) } }
    };
    Ok(page(lang, Some(&who), t(lang, Text::Overview), body).into_response())
}

/// Before any resolver has written the attempt store: say so (503, with the navigation and
/// sign-out), instead of failing.
fn first_run(lang: Language, who: &SignedIn) -> Response {
    let body = html! { p.error id="no-store" { (t(lang, Text::Err503)) } };
    (StatusCode::SERVICE_UNAVAILABLE, page(lang, Some(who), t(lang, Text::Overview), body)).into_response()
}

/// A likely-installed row first seen within `NEW` of `now`.
fn is_new(s: &report::Summary, now: SystemTime) -> bool {
    let first = humantime::parse_rfc3339_weak(s.first_seen.trim_end_matches('Z'));
    s.assessment == LIKELY && first.is_ok_and(|at| at + NEW >= now)
}

/// The four figures, each a link to the list it counts (cases only for officers).
fn headline(f: &Facts<'_>) -> Markup {
    let lang = f.lang;
    let devices = |keep: &dyn Fn(&report::Summary) -> bool| {
        f.rows.iter().filter(|s| keep(s)).map(|s| s.device.as_str()).collect::<BTreeSet<_>>().len()
    };
    let likely = devices(&|s| s.assessment == LIKELY);
    let new = devices(&|s| is_new(s, f.now));
    let open = f.cases.iter().filter(|k| k.state.is_active()).count();
    let recurred = f.cases.iter().filter(|k| k.state == CaseState::Recurred).count();
    let figures = [
        ("fig_likely", Text::FigLikely, likely, format!("/devices?{}", f.view.with("assessment", "likely")), true),
        ("fig_open_cases", Text::FigOpenCases, open, "/cases?state=active".to_string(), f.officer),
        ("fig_recurred", Text::FigRecurred, recurred, "/cases?state=recurred".to_string(), f.officer),
        (
            "fig_new",
            Text::FigNew,
            new,
            format!("/devices?{}", View { new: Some("7d".into()), ..f.view.clone() }.with("assessment", "likely")),
            true,
        ),
    ];
    html! {
        ul.figures id="figures" {
            @for (id, text, count, href, link) in figures {
                li id=(id) {
                    @if link { a href=(href) { strong { (count) } " " (t(lang, text)) } } @else { strong { (count) } " " (t(lang, text)) }
                }
            }
        }
    }
}

fn recurred(c: &Console, who: &SignedIn, f: &Facts<'_>) -> Markup {
    let list: Vec<&cases::Case> = f.cases.iter().filter(|k| k.state == CaseState::Recurred).collect();
    html! {
        h2 { (t(f.lang, Text::Recurred)) }
        @if list.is_empty() { p { (t(f.lang, Text::None)) } } @else {
            table id="recurred" {
                tr { th { "#" } th { (t(f.lang, Text::Device)) } th { (t(f.lang, Text::App)) } th { (t(f.lang, Text::RemovedOn)) } }
                @for k in &list {
                    tr.recurred {
                        td { @if f.officer { a href=(format!("/cases/{}", k.id)) { "#" (k.id) } } }
                        td { (shown(c, who, &k.device)) } td { (k.app) } td { (c.time(k.removed.as_deref().unwrap_or(""))) }
                    }
                }
            }
        }
    }
}

fn device_cell(c: &Console, f: &Facts<'_>, device: &str) -> Markup {
    html! {
        @if f.officer { a href=(format!("/device?device={}&since={}", encode(device), encode(f.view.since_text()))) { (device) } }
        @else { (c.masked(device)) }
    }
}

/// Likely installed and no case yet, `ACT_ROWS` a page. Any case takes a device × app off the
/// list, whatever its state: a verified or false-positive case was decided, and one that
/// recurs shows under the recurrences.
fn to_act(c: &Console, f: &Facts<'_>) -> Markup {
    let lang = f.lang;
    let list: Vec<&report::Summary> =
        f.rows.iter().filter(|s| s.assessment == LIKELY && case_of(&f.cases, s).is_none()).collect();
    let page = f.view.act_page.unwrap_or(0).min(list.len().saturating_sub(1) / ACT_ROWS);
    let pages = list.len().div_ceil(ACT_ROWS).max(1);
    let link = |p: usize| format!("/?{}&act_page={p}", f.view.query());
    html! {
        h2 { (t(lang, Text::ToAct)) " (" (list.len()) ")" }
        @if list.is_empty() { p { (t(lang, Text::None)) } } @else {
            table id="to-act" {
                tr { th { (t(lang, Text::Device)) } th { (t(lang, Text::App)) } th.num { (t(lang, Text::Days)) } th { (t(lang, Text::LastSeen)) } @if f.officer { th {} } }
                @for s in list.iter().skip(page * ACT_ROWS).take(ACT_ROWS) {
                    tr {
                        td { (device_cell(c, f, &s.device)) }
                        td { (s.app) } td.num { (s.days) } td { (c.time(&s.last_seen)) }
                        @if f.officer { td { a href=(format!("/cases/new?device={}&app={}&owner={}", encode(&s.device), encode(&s.app), encode(&s.owner))) { (t(lang, Text::OpenCase)) } } }
                    }
                }
            }
            @if pages > 1 {
                p.pages id="to-act-pages" {
                    @if page > 0 { a href=(link(page - 1)) rel="prev" { "←" } " " }
                    (page + 1) " / " (pages)
                    @if page + 1 < pages { " " a href=(link(page + 1)) rel="next" { "→" } }
                }
            }
        }
    }
}

fn by_app(f: &Facts<'_>) -> Markup {
    let mut counts: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for s in f.rows.iter() {
        // The columns in Assessment's order: likely, possibly, link.
        counts.entry(&s.app).or_default()[s.assessment as usize] += 1;
    }
    let lang = f.lang;
    html! {
        h2 { (t(lang, Text::ByApp)) }
        @if counts.is_empty() { p { (t(lang, Text::NoData)) } } @else {
            table id="by-app" {
                tr { th { (t(lang, Text::App)) } th.num { (t(lang, Text::Likely)) } th.num { (t(lang, Text::Possibly)) } th.num { (t(lang, Text::Link)) } }
                @for (app, n) in &counts {
                    tr {
                        td { a href=(format!("/app?{}", f.view.with("app", app))) { (app) } }
                        td.num.likely { (n[0]) } td.num { (n[1]) } td.num { (n[2]) }
                    }
                }
            }
        }
    }
}

fn recent(c: &Console, f: &Facts<'_>) -> Markup {
    let lang = f.lang;
    html! {
        h2 { (t(lang, Text::RecentDevices)) }
        @if f.rows.is_empty() { p { (t(lang, Text::NoData)) } } @else {
            table id="recent" {
                tr { th { (t(lang, Text::Device)) } th { (t(lang, Text::App)) } th.num { (t(lang, Text::Attempts)) } th { (t(lang, Text::LastSeen)) } th { (t(lang, Text::Assessment)) } }
                @for s in f.rows.iter().take(RECENT) {
                    tr {
                        td { (device_cell(c, f, &s.device)) }
                        td { (s.app) } td.num { (s.attempts) } td { (c.time(&s.last_seen)) }
                        td class=[(s.assessment == LIKELY).then_some("likely")] { (assessment(lang, s.assessment)) }
                    }
                }
            }
            @if f.rows.len() > RECENT { p { a href=(format!("/devices?{}", f.view.query())) { (t(lang, Text::AllDevices)) " (" (f.rows.len()) ")" } } }
        }
    }
}

/// Whether the resolvers are recording: each node's last attempt in the last week, in the
/// console's time zone.
fn resolvers(c: &Console, nodes: &[(String, i64)]) -> Markup {
    let lang = c.language();
    html! {
        h2 { (t(lang, Text::Resolvers)) }
        @if nodes.is_empty() { p id="resolvers" { (t(lang, Text::NoResolverAttempts)) } } @else {
            table id="resolvers" {
                tr { th { (t(lang, Text::Node)) } th { (t(lang, Text::LastAttempt)) } }
                @for (node, last) in nodes { tr { td { (node) } td { (c.time(&time_text(*last))) } } }
            }
            p.note { (t(lang, Text::ResolversNote)) }
        }
    }
}
