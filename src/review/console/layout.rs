//! The page frame (navigation, sign-out form, embedded stylesheet) and the view filters that
//! every page keeps in its URL: time range, app, owner, assessment, search and sort.

use std::time::SystemTime;

use axum::{http::header, response::IntoResponse};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::{
    ConsoleError,
    auth::{Role, SignedIn},
    i18n::{self, Text, t},
};
use crate::{
    config::Language,
    review::report::{self, Assessment, Filter, Summary},
};

const CSS: &str = include_str!("console.css");

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS)
}

/// A whole page: head, navigation for the user's role, sign-out (a POST with the CSRF token).
pub fn page(lang: Language, who: Option<&SignedIn>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(match lang { Language::Nl => "nl", Language::En => "en" }) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · nxguard" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    strong { "nxguard" }
                    @if let Some(who) = who {
                        nav {
                            a href="/" { (t(lang, Text::Overview)) }
                            a href="/devices" { (t(lang, Text::Devices)) }
                            @if who.role >= Role::Officer { a href="/cases" { (t(lang, Text::Cases)) } }
                            a href="/lists" { (t(lang, Text::Lists)) }
                            @if who.role >= Role::Admin { a href="/audit" { (t(lang, Text::Audit)) } a href="/users" { (t(lang, Text::Users)) } }
                        }
                        form method="post" action="/logout" class="logout" {
                            span { (who.user) " (" (super::pages::role_name(lang, who.role.as_str())) ")" }
                            input type="hidden" name="csrf" value=(who.csrf);
                            button type="submit" id="logout" { (t(lang, Text::Logout)) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The filters of a view, as URL query parameters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct View {
    /// 7d, 30d, 90d, or a date; default 30d.
    pub since: Option<String>,
    pub until: Option<String>,
    pub app: Option<String>,
    pub owner: Option<String>,
    /// likely, possibly or link.
    pub assessment: Option<String>,
    pub q: Option<String>,
    /// Column to sort by (attempts, days, last_seen, device, app); default last_seen.
    pub sort: Option<String>,
    /// One device (its key), for the device page and timeline export.
    pub device: Option<String>,
    /// Page of the devices table (0-based; `PAGE_ROWS` rows each). Exports hold every row.
    pub page: Option<usize>,
    /// Only rows first seen at most this long ago ("7d": new this week).
    pub new: Option<String>,
    /// Page of the overview's "to act on" (0-based).
    pub act_page: Option<usize>,
}

/// Rows per page of the devices table.
pub const PAGE_ROWS: usize = 200;

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl View {
    pub fn since_text(&self) -> &str {
        given(&self.since).unwrap_or("30d")
    }

    /// The report filter for this view at `now` (owner and app as typed; device as given), over
    /// a store that keeps raw rows `raw_days`. Enforced attempts only, as `report` shows them.
    /// A period back from now ("7d") starts at the beginning of its first UTC day, as the trend
    /// chart's days do: the pages then read whole days from the rollups, never a scan of a
    /// partial day's raw rows (a period reaching past `raw_days` counted that day whole anyway).
    pub fn filter(&self, now: SystemTime, raw_days: u32) -> Result<Filter, ConsoleError> {
        let until = given(&self.until).map(|u| report::parse_time(u, now)).transpose()?;
        let mut since = report::parse_time(self.since_text(), now)?;
        if humantime::parse_duration(self.since_text()).is_ok() {
            let day = crate::evidence::store::millis(since).div_euclid(super::queries::DAY_MS);
            since =
                std::time::UNIX_EPOCH + std::time::Duration::from_millis((day * super::queries::DAY_MS).max(0) as u64);
        }
        Ok(Filter {
            since: Some(since),
            until: Some(until.unwrap_or(now)),
            app: given(&self.app).map(str::to_string),
            device: given(&self.device).map(str::to_string),
            owner: given(&self.owner).map(str::to_string),
            mode: report::ModeFilter::Enforce,
            now: Some(now),
            raw_days,
        })
    }

    /// The rows of the summary that this view shows at `now`: assessment, new and search
    /// applied, sorted. `masked` gives the key a viewer sees (search then never matches
    /// identities).
    pub fn apply<'a>(
        &self,
        rows: &'a [Summary],
        masked: Option<&dyn Fn(&str) -> String>,
        now: SystemTime,
    ) -> Vec<&'a Summary> {
        let mut rows: Vec<&Summary> = rows.iter().collect();
        let wanted = given(&self.assessment).map(|a| Assessment::from_key(a).unwrap_or(Assessment::LinkOrEmbedded));
        rows.retain(|s| wanted.is_none_or(|w| s.assessment == w));
        if let Some(back) = given(&self.new).and_then(|n| humantime::parse_duration(n).ok()) {
            let cutoff = now.checked_sub(back).unwrap_or(std::time::UNIX_EPOCH);
            rows.retain(|s| {
                humantime::parse_rfc3339_weak(s.first_seen.trim_end_matches('Z')).is_ok_and(|first| first >= cutoff)
            });
        }
        if let Some(q) = given(&self.q).map(str::to_lowercase) {
            rows.retain(|s| {
                let fields = match masked {
                    Some(mask) => vec![mask(&s.device), s.app.clone()],
                    None => vec![s.device.clone(), s.owner.clone(), s.app.clone()],
                };
                fields.iter().any(|f| f.to_lowercase().contains(&q))
            });
        }
        match given(&self.sort).unwrap_or("last_seen") {
            "attempts" => rows.sort_by_key(|s| std::cmp::Reverse(s.attempts)),
            "days" => rows.sort_by_key(|s| std::cmp::Reverse(s.days)),
            "device" => rows.sort_by(|a, b| a.device.cmp(&b.device)),
            "app" => rows.sort_by(|a, b| a.app.cmp(&b.app)),
            _ => {}
        }
        rows
    }

    /// This view's query string with `key` set to `value` (or removed when empty); the page
    /// number is kept only when nothing else changes (`key` empty).
    pub fn with(&self, key: &str, value: &str) -> String {
        let fields = [
            ("since", given(&self.since)),
            ("until", given(&self.until)),
            ("app", given(&self.app)),
            ("owner", given(&self.owner)),
            ("assessment", given(&self.assessment)),
            ("q", given(&self.q)),
            ("sort", given(&self.sort)),
            ("device", given(&self.device)),
            ("new", given(&self.new)),
        ];
        // Another filter or sort starts again at the first page.
        let page = self.page.filter(|p| *p > 0 && key.is_empty()).map(|p| p.to_string());
        let fields = fields.into_iter().chain([("page", page.as_deref())]);
        let pairs: Vec<String> = fields
            .map(|(k, v)| (k, if k == key { Some(value).filter(|v| !v.is_empty()) } else { v }))
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
            .collect();
        pairs.join("&")
    }

    pub fn query(&self) -> String {
        self.with("", "")
    }

    /// This view on another page of the devices table.
    pub fn on_page(&self, page: usize) -> String {
        View { page: Some(page), ..self.clone() }.query()
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The filter form: time range links and fields that stay in the URL.
pub fn filters(lang: Language, view: &View, action: &str, with_owner: bool) -> Markup {
    html! {
        form method="get" action=(action) class="filters" {
            label { (t(lang, Text::Period)) " "
                select name="since" {
                    @for (value, key) in [("7d", Text::Days7), ("30d", Text::Days30), ("90d", Text::Days90)] {
                        option value=(value) selected[view.since_text() == value] { (t(lang, key)) }
                    }
                    @if !["7d", "30d", "90d"].contains(&view.since_text()) {
                        option value=(view.since_text()) selected { (view.since_text()) }
                    }
                }
            }
            label { (t(lang, Text::Until)) " " input type="text" name="until" placeholder=(t(lang, Text::DatePlaceholder)) value=(given(&view.until).unwrap_or("")); }
            label { (t(lang, Text::App)) " " input type="text" name="app" value=(given(&view.app).unwrap_or("")); }
            @if with_owner {
                label { (t(lang, Text::Owner)) " " input type="text" name="owner" value=(given(&view.owner).unwrap_or("")); }
            }
            label { (t(lang, Text::Assessment)) " "
                select name="assessment" {
                    option value="" { (t(lang, Text::All)) }
                    @for a in Assessment::ALL {
                        option value=(a.key()) selected[given(&view.assessment) == Some(a.key())] { (i18n::assessment(lang, a)) }
                    }
                }
            }
            label { (t(lang, Text::Search)) " " input type="search" name="q" value=(given(&view.q).unwrap_or("")); }
            @if let Some(sort) = given(&view.sort) { input type="hidden" name="sort" value=(sort); }
            @if let Some(device) = given(&view.device) { input type="hidden" name="device" value=(device); }
            @if let Some(new) = given(&view.new) { input type="hidden" name="new" value=(new); }
            button type="submit" { (t(lang, Text::Apply)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filters_and_a_new_filter_starts_at_the_first_page() {
        let view = View { since: Some("7d".into()), app: Some("UC Browser".into()), page: Some(2), ..View::default() };
        assert_eq!(view.query(), "since=7d&app=UC%20Browser&page=2");
        assert_eq!(view.with("sort", "attempts"), "since=7d&app=UC%20Browser&sort=attempts");
        assert_eq!(view.with("app", ""), "since=7d");
        assert_eq!(view.on_page(3), "since=7d&app=UC%20Browser&page=3");
    }
}
