//! The board report: `nxguard report --format html`. One self-contained HTML file (inline SVG
//! and CSS, nothing fetched, print-friendly) with per app the devices found by assessment, the
//! daily trend and the removal cases by state. No personal data unless asked for
//! (`--with-identities`: then also the device × app rows). In the console's language
//! (`console.language`).
//!
//! Reads the evidence through `review::report` and `console::queries`, the cases through
//! `console::cases`; writes nothing.

use std::{collections::BTreeMap, time::SystemTime};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{
    console::{
        ConsoleError,
        case_pages::state_key,
        cases::{self, CaseState},
        i18n::{self, Text, assessment, t},
        queries::{self, DAY_MS},
        svg,
    },
    report::{self, Assessment, Filter, Summary},
};
use crate::{
    config::{ConsoleConfig, Language},
    evidence::store::{Pseudonymizer, millis, read::Reader},
};

/// The output formats of `nxguard report`: the three of `report`, and the board's HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
    Html,
}

impl Format {
    /// The `report` format, or None for HTML.
    pub fn plain(self) -> Option<report::Format> {
        match self {
            Format::Table => Some(report::Format::Table),
            Format::Csv => Some(report::Format::Csv),
            Format::Json => Some(report::Format::Json),
            Format::Html => None,
        }
    }
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;color:#1d2430;max-width:60rem;margin:2rem auto;padding:0 1rem}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dde6}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #d8dde6}\
td.num,th.num{text-align:right}.chart{width:100%;max-width:720px}.chart .bar{fill:#0b5cad}.chart .axis{stroke:#d8dde6}\
.chart .tick{font-size:10px;fill:#5b6677}.note{color:#5b6677}@media print{h2{break-after:avoid}section{break-inside:avoid}}";

/// The period of the same length just before [since, until), for the comparison.
fn previous_period(filter: &Filter, since: SystemTime, until: SystemTime) -> Filter {
    let length = until.duration_since(since).unwrap_or_default();
    Filter { since: since.checked_sub(length), until: Some(since), ..filter.clone() }
}

/// One period's devices per assessment and attempts, under the headers' columns.
fn counts_row(label: &str, list: &[&Summary]) -> Markup {
    let count = |a: Assessment| list.iter().filter(|s| s.assessment == a).count();
    html! {
        tr {
            th { (label) }
            @for a in Assessment::ALL { td.num { (count(a)) } }
            td.num { (list.iter().map(|s| s.attempts).sum::<u64>()) }
        }
    }
}

/// Devices with attempts per day for `app` over every store (a device seen by two nodes is
/// counted once per store: an upper bound).
async fn devices_per_day(
    stores: &mut [Reader],
    since: SystemTime,
    until: SystemTime,
    app: &str,
) -> Result<Vec<(i64, u64)>, ConsoleError> {
    let mut days: BTreeMap<i64, u64> = BTreeMap::new();
    for store in stores.iter_mut() {
        for day in queries::daily(store, since, until, Some(app)).await? {
            *days.entry(day.day).or_default() += day.devices;
        }
    }
    Ok(days.into_iter().collect())
}

/// How a section is shown: language, the period's first and last day, identities or not.
struct Shown<'z> {
    lang: Language,
    zone: &'z jiff::tz::TimeZone,
    first: i64,
    last: i64,
    with_identities: bool,
}

/// One app's section: its figures against the previous period, the trend, the cases by state
/// and (asked for) its device rows.
fn app_section(
    shown: &Shown<'_>,
    app: &str,
    list: &[&Summary],
    before: &[&Summary],
    trend: &[(i64, u64)],
    app_cases: &[&cases::Case],
) -> Markup {
    let lang = shown.lang;
    let states = CaseState::ALL;
    html! {
        section {
            h2 { (app) }
            table.figures {
                tr { th {} th.num { (t(lang, Text::Likely)) } th.num { (t(lang, Text::Possibly)) } th.num { (t(lang, Text::Link)) } th.num { (t(lang, Text::Attempts)) } }
                (counts_row(t(lang, Text::ThisPeriod), list))
                (counts_row(t(lang, Text::PreviousPeriod), before))
            }
            p.note { (t(lang, Text::DevicesPerDay)) }
            (svg::daily_bars(trend, shown.first, shown.last, &format!("{app}: {}", t(lang, Text::DevicesPerDay))))
            p.note { (t(lang, Text::CasesByState)) }
            table {
                tr { @for s in states { th.num { (t(lang, state_key(s))) } } }
                tr { @for s in states { td.num { (app_cases.iter().filter(|c| c.state == s).count()) } } }
            }
            @if shown.with_identities {
                table {
                    tr { th { (t(lang, Text::Device)) } th { (t(lang, Text::Owner)) } th.num { (t(lang, Text::Attempts)) } th.num { (t(lang, Text::Days)) } th { (t(lang, Text::LastSeen)) } th { (t(lang, Text::Assessment)) } }
                    @for s in list { tr { td { (s.device) } td { (s.owner) } td.num { (s.attempts) } td.num { (s.days) } td { (i18n::local_time(lang, shown.zone, &s.last_seen)) } td { (assessment(lang, s.assessment)) } } }
                }
            }
        }
    }
}

/// Writes the board report for `filter` (its since/until; app and owner narrow it), with
/// `all_cases` (the console's, when there is one).
pub async fn render(
    stores: &mut [Reader],
    all_cases: &[cases::Case],
    filter: &Filter,
    pseudonymizer: Option<&Pseudonymizer>,
    with_identities: bool,
    now: SystemTime,
    console: &ConsoleConfig,
) -> Result<String, ConsoleError> {
    let lang = console.language;
    // Validated with the config; UTC only for a config made in code.
    let zone = jiff::tz::TimeZone::get(&console.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let rows = report::summaries(stores, filter, pseudonymizer).await?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let previous = report::summaries(stores, &previous_period(filter, since, until), pseudonymizer).await?;
    let (first, last) = (millis(since).div_euclid(DAY_MS), millis(until).div_euclid(DAY_MS));
    let shown = Shown { lang, zone: &zone, first, last, with_identities };
    let mut by_app: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for s in &rows {
        by_app.entry(&s.app).or_default().push(s);
    }
    let mut sections = Vec::new();
    for (app, list) in &by_app {
        let trend = devices_per_day(stores, since, until, app).await?;
        let app_cases: Vec<&cases::Case> = all_cases.iter().filter(|c| c.app == *app).collect();
        let before: Vec<&Summary> = previous.iter().filter(|s| s.app == *app).collect();
        sections.push(app_section(&shown, app, list, &before, &trend, &app_cases));
    }
    Ok(board_page(&shown, &sections, now).into_string())
}

/// The whole page around the app sections: title and period, what it shows, and who wrote it
/// when.
fn board_page(shown: &Shown<'_>, sections: &[Markup], now: SystemTime) -> Markup {
    let lang = shown.lang;
    let period = format!("{} – {}", queries::day_text(shown.first), queries::day_text(shown.last));
    let written = i18n::local_time(lang, shown.zone, &humantime::format_rfc3339_seconds(now).to_string());
    html! {
        (DOCTYPE)
        html lang=(match lang { Language::Nl => "nl", Language::En => "en" }) {
            head { meta charset="utf-8"; title { "nxguard: " (t(lang, Text::BoardTitle)) ", " (period) } style { (PreEscaped(CSS)) } }
            body {
                h1 { (t(lang, Text::BoardTitle)) ", " (period) }
                p.note {
                    (t(lang, Text::BoardIntro)) " "
                    @if shown.with_identities { (t(lang, Text::BoardNamed)) } @else { (t(lang, Text::BoardCounts)) }
                }
                @if sections.is_empty() { p { (t(lang, Text::NoData)) } }
                @for section in sections { (section) }
                p.note { (t(lang, Text::WrittenBy)) " nxguard " (env!("CARGO_PKG_VERSION")) ", " (written) "." }
            }
        }
    }
}
