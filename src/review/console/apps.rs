//! The app page (its devices, the domains hit and their kinds) and the lists-health page
//! (policy version, entries per list file, when each changed).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::extract::{Query, State};
use maud::{Markup, html};

use super::{
    Console, ConsoleError,
    auth::{Role, SignedIn},
    i18n::{Text, assessment, t},
    layout::{View, encode, filters, page},
    queries,
};
use crate::{
    config::{Language, PolicyConfig},
    policy::{self, Policy, PolicyError, domains, feeds},
    review::report,
};

pub async fn app(
    State(c): State<Arc<Console>>,
    who: SignedIn,
    Query(view): Query<View>,
) -> Result<Markup, ConsoleError> {
    let lang = c.language();
    let officer = who.role >= Role::Officer;
    let now = c.now();
    let app = view.app.clone().filter(|a| !a.is_empty()).ok_or(ConsoleError::NotFound)?;
    let mut filter = report::Filter { device: None, ..c.filter(&view)? };
    if !officer {
        filter.owner = None;
    }
    let mut store = c.store()?;
    let rows = c.summaries(&mut store, &filter).await?;
    let domains =
        queries::app_domains(&mut store, &app, filter.since.unwrap_or(now), filter.until.unwrap_or(now)).await?;
    let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (_, kind, attempts, devices) in &domains {
        let entry = kinds.entry(kind).or_default();
        entry.0 += attempts;
        entry.1 += devices;
    }
    let body = html! {
        (filters(lang, &view, "/app", officer))
        h2 { (t(lang, Text::Kinds)) }
        table id="kinds" {
            tr { th { (t(lang, Text::Kind)) } th.num { (t(lang, Text::Attempts)) } }
            @for (kind, (attempts, _)) in &kinds { tr { td { (kind) } td.num { (attempts) } } }
        }
        h2 { (t(lang, Text::Domains)) }
        table id="domains" {
            tr { th { (t(lang, Text::Domain)) } th { (t(lang, Text::Kind)) } th.num { (t(lang, Text::Attempts)) } th.num { (t(lang, Text::Devices)) } }
            @for (domain, kind, attempts, devices) in &domains { tr { td { (domain) } td { (kind) } td.num { (attempts) } td.num { (devices) } } }
        }
        h2 { (t(lang, Text::Devices)) }
        table id="app-devices" {
            tr { th { (t(lang, Text::Device)) } th.num { (t(lang, Text::Attempts)) } th.num { (t(lang, Text::Days)) } th { (t(lang, Text::LastSeen)) } th { (t(lang, Text::Assessment)) } }
            @for s in rows.iter().take(super::layout::PAGE_ROWS) {
                tr {
                    td { @if officer { a href=(format!("/device?device={}&since={}", encode(&s.device), encode(view.since_text()))) { (s.device) } } @else { (c.masked(&s.device)) } }
                    td.num { (s.attempts) } td.num { (s.days) } td { (c.time(&s.last_seen)) } td { (assessment(lang, s.assessment)) }
                }
            }
        }
        @if rows.len() > super::layout::PAGE_ROWS { p { a href=(format!("/devices?{}", view.query())) { (t(lang, Text::AllDevices)) " (" (rows.len()) ")" } } }
    };
    Ok(page(lang, Some(&who), &app, body))
}

/// One list file: its id, entries, and when it last changed.
struct ListFile {
    id: String,
    entries: usize,
    modified: Option<SystemTime>,
    problem: Option<String>,
}

fn list_files(dir: &std::path::Path) -> Vec<ListFile> {
    let Ok(files) = domains::list_files(dir) else { return Vec::new() };
    files
        .into_iter()
        .map(|(id, path)| {
            let mut reader = domains::Reader::new(&id, &path.display().to_string());
            let mut entries = 0;
            let read = domains::read_file(&path, &mut reader, |_| entries += 1);
            let problem = match (read, reader.finish()) {
                (Err(e), _) => Some(e.to_string()),
                (Ok(()), Err(errors)) => Some(format!("{} problem(s), first: {}", errors.len(), errors[0])),
                (Ok(()), Ok(_)) => None,
            };
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            ListFile { id, entries, modified, problem }
        })
        .collect()
}

/// Lists health: the policy this console's config loads (version, apps, entries) and each list
/// file. Any signed-in user: it holds no personal data.
pub async fn lists(State(c): State<Arc<Console>>, who: SignedIn) -> Result<Markup, ConsoleError> {
    let lang = c.language();
    let Some(config) = c.policy.as_ref() else {
        return Ok(page(lang, Some(&who), t(lang, Text::Lists), html! { p { (t(lang, Text::None)) } }));
    };
    let loaded = policy::load(config);
    let files = config.domains_dir.as_deref().map(list_files).unwrap_or_default();
    let body = html! {
        (policy_table(lang, config, &loaded))
        @if !files.is_empty() { (list_files_table(lang, &files)) }
        @if !config.feeds.is_empty() { (feeds_table(lang, config)) }
    };
    Ok(page(lang, Some(&who), t(lang, Text::Lists), body))
}

/// The loaded policy's version, size, apps and source, or why it does not load.
fn policy_table(lang: Language, config: &PolicyConfig, loaded: &Result<Policy, PolicyError>) -> Markup {
    html! {
        @match loaded {
            Ok(policy) => {
                table id="policy" {
                    tr { th { (t(lang, Text::PolicyVersion)) } td { code { (policy.version()) } } }
                    tr { th { (t(lang, Text::Entries)) } td { (policy.len()) } }
                    tr { th { (t(lang, Text::Apps)) } td { @for (i, a) in policy.apps().iter().enumerate() { @if i > 0 { ", " } (a.app.name) } } }
                    tr { th { (t(lang, Text::Source)) } td { (config.domains_dir.as_ref().map_or_else(|| t(lang, Text::Embedded).to_string(), |d| d.display().to_string())) } }
                }
            }
            Err(error) => { p.error { (error.to_string()) } }
        }
    }
}

/// Each list file: entries, when it changed, and its first problem.
fn list_files_table(lang: Language, files: &[ListFile]) -> Markup {
    html! {
        h2 { (t(lang, Text::ListFiles)) }
        table id="list-files" {
            tr { th { (t(lang, Text::App)) } th.num { (t(lang, Text::Entries)) } th { (t(lang, Text::Changed)) } th { (t(lang, Text::State)) } }
            @for f in files {
                tr {
                    td { (f.id) } td.num { (f.entries) }
                    td { (f.modified.map(|m| humantime::format_rfc3339_seconds(m).to_string()).unwrap_or_default()) }
                    td { @match &f.problem { Some(p) => span.error { (p) }, None => "ok" } }
                }
            }
        }
    }
}

/// Each feed of the policy: entries, last success and attempt, and its state (from the status
/// file in `policy.cache_dir`).
fn feeds_table(lang: Language, config: &PolicyConfig) -> Markup {
    let feed_status = config.cache_dir.as_deref().map(feeds::read_statuses).unwrap_or_default();
    let when = |t: Option<u64>| {
        t.map_or_else(
            || "-".into(),
            |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
        )
    };
    html! {
        h2 { (t(lang, Text::Feeds)) }
        table id="feeds" {
            tr {
                th { (t(lang, Text::Feed)) } th.num { (t(lang, Text::Entries)) } th { (t(lang, Text::LastSuccess)) }
                th { (t(lang, Text::LastAttempt)) } th { (t(lang, Text::State)) }
            }
            @for feed in &config.feeds {
                @let status = feed_status.get(&feed.name).cloned().unwrap_or_default();
                tr {
                    td { (feed.name) } td.num { (status.entries) }
                    td { (when(status.last_success)) } td { (when(status.last_attempt)) }
                    td {
                        @match (&status.last_error, status.pending_entries) {
                            (Some(error), _) => span.error { (error) },
                            (None, Some(pending)) => span.error { (t(lang, Text::FeedPending)) " (" (pending) ")" },
                            (None, None) => "ok",
                        }
                    }
                }
            }
        }
    }
}
