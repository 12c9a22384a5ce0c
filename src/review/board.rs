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
        i18n::{self, assessment, t},
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
    let local = |utc: &str| i18n::local_time(lang, &zone, utc);
    let rows = report::summaries(stores, filter, pseudonymizer).await?;
    let (since, until) = (filter.since.unwrap_or(now), filter.until.unwrap_or(now));
    let previous = report::summaries(stores, &previous_period(filter, since, until), pseudonymizer).await?;
    let mut by_app: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for s in &rows {
        by_app.entry(&s.app).or_default().push(s);
    }
    let (first, last) = (millis(since).div_euclid(DAY_MS), millis(until).div_euclid(DAY_MS));
    let mut sections = Vec::new();
    for (app, list) in &by_app {
        let mut days: Vec<queries::Day> = Vec::new();
        for store in stores.iter_mut() {
            for day in queries::daily(store, since, until, Some(app)).await? {
                match days.iter_mut().find(|d| d.day == day.day) {
                    // A device seen by two nodes is counted once per store: an upper bound.
                    Some(known) => {
                        known.attempts += day.attempts;
                        known.devices += day.devices;
                    }
                    None => days.push(day),
                }
            }
        }
        days.sort_by_key(|d| d.day);
        let trend: Vec<(i64, u64)> = days.iter().map(|d| (d.day, d.devices)).collect();
        let app_cases: Vec<&cases::Case> = all_cases.iter().filter(|c| c.app == *app).collect();
        let states = CaseState::ALL;
        sections.push(html! {
            section {
                h2 { (app) }
                @let before: Vec<&Summary> = previous.iter().filter(|s| s.app == *app).collect();
                table.figures {
                    tr { th {} th.num { (t(lang, "likely")) } th.num { (t(lang, "possibly")) } th.num { (t(lang, "link")) } th.num { (t(lang, "attempts")) } }
                    (counts_row(t(lang, "this_period"), list))
                    (counts_row(t(lang, "previous_period"), &before))
                }
                p.note { (t(lang, "devices_per_day")) }
                (svg::daily_bars(&trend, first, last, &format!("{app}: {}", t(lang, "devices_per_day"))))
                p.note { (t(lang, "cases_by_state")) }
                table {
                    tr { @for s in states { th.num { (t(lang, state_key(s))) } } }
                    tr { @for s in states { td.num { (app_cases.iter().filter(|c| c.state == s).count()) } } }
                }
                @if with_identities {
                    table {
                        tr { th { (t(lang, "device")) } th { (t(lang, "owner")) } th.num { (t(lang, "attempts")) } th.num { (t(lang, "days")) } th { (t(lang, "last_seen")) } th { (t(lang, "assessment")) } }
                        @for s in list { tr { td { (s.device) } td { (s.owner) } td.num { (s.attempts) } td.num { (s.days) } td { (local(&s.last_seen)) } td { (assessment(lang, s.assessment)) } } }
                    }
                }
            }
        });
    }
    let period = format!("{} – {}", queries::day_text(first), queries::day_text(last));
    let page: Markup = html! {
        (DOCTYPE)
        html lang=(match lang { Language::Nl => "nl", Language::En => "en" }) {
            head { meta charset="utf-8"; title { "nxguard: " (t(lang, "board_title")) ", " (period) } style { (PreEscaped(CSS)) } }
            body {
                h1 { (t(lang, "board_title")) ", " (period) }
                p.note {
                    (t(lang, "board_intro")) " "
                    @if with_identities { (t(lang, "board_named")) } @else { (t(lang, "board_counts")) }
                }
                @if sections.is_empty() { p { (t(lang, "no_data")) } }
                @for section in &sections { (section) }
                p.note { (t(lang, "written_by")) " nxguard " (env!("CARGO_PKG_VERSION")) ", " (local(&humantime::format_rfc3339_seconds(now).to_string())) "." }
            }
        }
    };
    Ok(page.into_string())
}
