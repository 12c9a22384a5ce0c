//! Presenting report rows for people and tools: an aligned table, CSV or JSON.
//!
//! Owns: the columns of each view (the optional `nodes` and `mode` columns appear only when a
//! report has them), escaping control characters in table cells, and the shadow view's layout.
//! Does not own: reading the stores (`report`).

use std::fmt::Write as _;

use crate::review::report::{Event, Format, ReportError, Summary};

/// A cell for the people's table: control characters shown as escapes, so no stored name can
/// break a line or move the cursor.
fn cell(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()).collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            let _ = write!(text, "{c}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn csv_text(headers: &[&str], rows: &[Vec<String>]) -> Result<String, ReportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(headers)?;
    for r in rows {
        writer.write_record(r)?;
    }
    let bytes = writer.into_inner().map_err(|e| ReportError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

const SUMMARY_HEADERS: [&str; 11] = [
    "device",
    "owner",
    "source",
    "app",
    "attempts",
    "domains",
    "days",
    "backend_days",
    "first_seen",
    "last_seen",
    "assessment",
];
const EVENT_HEADERS: [&str; 9] = ["time", "device", "app", "qname", "qtype", "kind", "domain", "matched_on", "client"];
const SHADOW_HEADERS: [&str; 7] = ["device", "owner", "app", "attempts", "first_seen", "last_seen", "domains"];

/// Appends the optional columns (`nodes`, `mode`) that any row fills.
fn with_optional(
    headers: &[&'static str],
    rows: &mut [Vec<String>],
    optional: &[(&'static str, Vec<&str>)],
) -> Vec<&'static str> {
    let mut headers = headers.to_vec();
    for (name, values) in optional {
        if values.iter().any(|v| !v.is_empty()) {
            headers.push(name);
            for (row, value) in rows.iter_mut().zip(values) {
                row.push(value.to_string());
            }
        }
    }
    headers
}

fn output<T: serde::Serialize>(
    headers: &[&str],
    rows: &[Vec<String>],
    items: &T,
    format: Format,
) -> Result<String, ReportError> {
    match format {
        Format::Table => Ok(table(headers, rows)),
        Format::Csv => csv_text(headers, rows),
        Format::Json => Ok(serde_json::to_string_pretty(items)? + "\n"),
    }
}

pub fn summaries(summaries: &[Summary], format: Format) -> Result<String, ReportError> {
    let mut rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.device.clone(),
                s.owner.clone(),
                s.source.clone(),
                s.app.clone(),
                s.attempts.to_string(),
                s.domains.to_string(),
                s.days.to_string(),
                s.backend_days.to_string(),
                s.first_seen.clone(),
                s.last_seen.clone(),
                s.assessment.as_str().to_string(),
            ]
        })
        .collect();
    let optional = [
        ("nodes", summaries.iter().map(|s| s.nodes.as_str()).collect()),
        ("mode", summaries.iter().map(|s| s.mode.as_str()).collect()),
    ];
    let headers = with_optional(&SUMMARY_HEADERS, &mut rows, &optional);
    output(&headers, &rows, &summaries, format)
}

pub fn timeline(events: &[Event], format: Format) -> Result<String, ReportError> {
    let mut rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                e.device.clone(),
                e.app.clone(),
                e.qname.clone(),
                e.qtype.clone(),
                e.kind.clone(),
                e.domain.clone(),
                e.matched_on.clone(),
                e.client.clone(),
            ]
        })
        .collect();
    let optional = [
        ("node", events.iter().map(|e| e.node.as_str()).collect()),
        ("mode", events.iter().map(|e| e.mode.as_str()).collect()),
    ];
    let headers = with_optional(&EVENT_HEADERS, &mut rows, &optional);
    output(&headers, &rows, &events, format)
}

/// One would-be block in the shadow view (log-only attempts).
#[derive(serde::Serialize)]
struct Shadow<'a> {
    device: &'a str,
    owner: &'a str,
    app: &'a str,
    attempts: u64,
    first_seen: &'a str,
    last_seen: &'a str,
    domains: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    nodes: &'a str,
}

/// The shadow view: which devices would have been blocked, for which app and listed domains.
pub fn shadow(summaries: &[Summary], format: Format) -> Result<String, ReportError> {
    let items: Vec<Shadow> = summaries
        .iter()
        .map(|s| Shadow {
            device: &s.device,
            owner: &s.owner,
            app: &s.app,
            attempts: s.attempts,
            first_seen: &s.first_seen,
            last_seen: &s.last_seen,
            domains: &s.names,
            nodes: &s.nodes,
        })
        .collect();
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            vec![
                s.device.to_string(),
                s.owner.to_string(),
                s.app.to_string(),
                s.attempts.to_string(),
                s.first_seen.to_string(),
                s.last_seen.to_string(),
                s.domains.join(" "),
            ]
        })
        .collect();
    let optional = [("nodes", items.iter().map(|s| s.nodes).collect())];
    let headers = with_optional(&SHADOW_HEADERS, &mut rows, &optional);
    output(&headers, &rows, &items, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_cannot_break_lines() {
        let out = table(&["a", "b"], &[vec!["x\ny".into(), "\u{1b}[2J".into()]]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("x\\ny") && out.contains("\\u{1b}[2J"), "{out}");
    }
}
