//! Feeds: lists subscribed by URL (`[[policy.feeds]]`), their formats, their last good copies
//! and their status, kept in `policy.cache_dir`.
//!
//! Owns: reading a feed body in its format (domains, hosts, adblock, wildcard), refusing bodies
//! that are not lists (HTML, binary, empty, too large) or that shrank too much, the cached copy
//! (`NAME.txt`), a refused version waiting for an operator (`NAME.pending`), and the status file
//! (`feeds.json`) that `nxguard lists`, `check` and the metrics read. Downloading is `fetch`;
//! building the policy from the copies is `load`.
//! Start-up reads only the copies here: it never waits for the network.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{config::FeedFormat, policy::domains::check_domain};

/// The status file in `policy.cache_dir`.
pub const STATUS_FILE: &str = "feeds.json";

#[derive(Debug, Error)]
pub enum FeedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("feed {0:?} has no refused version waiting to be accepted")]
    NoPending(String),
    #[error("feed {name:?}: {problem}")]
    Refused { name: String, problem: String },
}

/// What is known about one feed; persisted in `feeds.json`. Times are Unix seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FeedStatus {
    pub url: String,
    /// The last download attempt, whatever its result.
    pub last_attempt: Option<u64>,
    /// The last attempt that confirmed or replaced the copy (a 304 counts).
    pub last_success: Option<u64>,
    /// Entries (blocks and allows) in the accepted copy.
    pub entries: usize,
    /// Lines of the accepted copy that were not valid entries.
    pub invalid: usize,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Hash of the accepted copy's body.
    pub hash: Option<String>,
    /// Why the last attempt failed or was refused; cleared by a success.
    pub last_error: Option<String>,
    /// Failed or refused attempts since the status file was created.
    pub failures: u64,
    /// Entries of a refused (shrunk) version waiting for `nxguard lists accept`.
    pub pending_entries: Option<usize>,
}

impl FeedStatus {
    /// The feed's version for the evidence stamp: its ETag, else the hash of its copy.
    pub fn version(&self) -> Option<&str> {
        self.etag.as_deref().or(self.hash.as_deref())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The last good copy of feed `name`.
pub fn copy_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.txt"))
}

/// A refused version of feed `name`, kept for `nxguard lists accept`.
pub fn pending_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pending"))
}

/// The statuses in `dir`; a missing or unreadable file is an empty map (a fresh cache).
pub fn read_statuses(dir: &Path) -> BTreeMap<String, FeedStatus> {
    let path = dir.join(STATUS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "feed status file unreadable; starting it afresh");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Writes the statuses atomically (a temporary file renamed over the old one).
pub fn write_statuses(dir: &Path, statuses: &BTreeMap<String, FeedStatus>) -> Result<(), FeedError> {
    let text = serde_json::to_vec_pretty(statuses).unwrap_or_default();
    write_atomically(&dir.join(STATUS_FILE), &text)
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new file, never half.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FeedError> {
    let io = |source| FeedError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// One line of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'t> {
    /// Block this domain and its subdomains.
    Block(Cow<'t, str>),
    /// Never block this domain or its subdomains (adblock `@@||d^`).
    Allow(Cow<'t, str>),
    /// Blank, comment or header.
    Skip,
    /// Not understood: counted, not fatal.
    Invalid,
}

/// Reads one line of a feed in `format`. Every format's entries block the name and its
/// subdomains, as nxguard's own lists do.
pub fn parse_line(format: FeedFormat, raw: &str) -> Line<'_> {
    let line = raw.trim();
    let comment = match format {
        FeedFormat::Adblock => line.starts_with('!') || line.starts_with('[') || line.starts_with('#'),
        _ => line.starts_with('#'),
    };
    if line.is_empty() || comment {
        return Line::Skip;
    }
    let line = match format {
        FeedFormat::Adblock => line,
        _ => line.split('#').next().unwrap_or_default().trim(),
    };
    match format {
        FeedFormat::Domains => domain(line).map_or(Line::Invalid, Line::Block),
        FeedFormat::Wildcard => domain(line.strip_prefix("*.").unwrap_or(line)).map_or(Line::Invalid, Line::Block),
        FeedFormat::Hosts => {
            let mut words = line.split_whitespace();
            let address = words.next().unwrap_or_default();
            let name = words.next();
            if address.parse::<std::net::IpAddr>().is_err() || words.next().is_some() {
                return Line::Invalid;
            }
            match name {
                Some(
                    "localhost"
                    | "localhost.localdomain"
                    | "local"
                    | "broadcasthost"
                    | "ip6-localhost"
                    | "ip6-loopback"
                    | "ip6-localnet"
                    | "ip6-mcastprefix"
                    | "ip6-allnodes"
                    | "ip6-allrouters"
                    | "ip6-allhosts"
                    | "0.0.0.0",
                ) => Line::Skip,
                Some(name) => domain(name).map_or(Line::Invalid, Line::Block),
                None => Line::Invalid,
            }
        }
        FeedFormat::Adblock => {
            let (allow, rule) = match line.strip_prefix("@@") {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            // `||name^`, optionally `$important`; other modifiers change what the rule means
            // (third-party, per-client, regexes) and are not honoured: such lines are invalid.
            let name = rule
                .strip_prefix("||")
                .and_then(|r| r.strip_suffix("^").or_else(|| r.strip_suffix("^$important")))
                .and_then(domain);
            match (name, allow) {
                (Some(name), false) => Line::Block(name),
                (Some(name), true) => Line::Allow(name),
                (None, _) => Line::Invalid,
            }
        }
    }
}

/// A valid domain, lowercased (allocating only when it had capitals).
fn domain(text: &str) -> Option<Cow<'_, str>> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let name = if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    };
    check_domain(&name).is_ok().then_some(name)
}

/// What a feed body holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub blocks: usize,
    pub allows: usize,
    pub invalid: usize,
}

impl Counts {
    pub fn entries(&self) -> usize {
        self.blocks + self.allows
    }
}

/// Reads every line of `text`, handing each entry to `each`; returns the counts.
pub fn scan<'t>(format: FeedFormat, text: &'t str, mut each: impl FnMut(Line<'t>)) -> Counts {
    let mut counts = Counts::default();
    for raw in text.trim_start_matches('\u{feff}').lines() {
        let line = parse_line(format, raw);
        match line {
            Line::Skip => continue,
            Line::Invalid => {
                counts.invalid += 1;
                continue;
            }
            Line::Block(_) => counts.blocks += 1,
            Line::Allow(_) => counts.allows += 1,
        }
        each(line);
    }
    counts
}

/// Checks a downloaded body: text, not an HTML page, not binary, with entries, and not shrunk
/// by more than `shrink_max_percent` against the accepted copy's `accepted` entries.
pub fn check_body<'b>(
    body: &'b [u8],
    content_type: Option<&str>,
    format: FeedFormat,
    accepted: Option<usize>,
    shrink_max_percent: u8,
) -> Result<(&'b str, Counts), Refusal> {
    if content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) {
        return Err(Refusal::NotAList("the server sent an HTML page (Content-Type)".into()));
    }
    let text = std::str::from_utf8(body).map_err(|_| Refusal::NotAList("the body is not UTF-8 text".into()))?;
    if text.contains('\0') {
        return Err(Refusal::NotAList("the body is binary (NUL bytes)".into()));
    }
    // No format's line starts with '<': a body that does is a web page (an error or login page,
    // a captive portal), whatever its Content-Type says.
    if text.trim_start_matches('\u{feff}').trim_start().starts_with('<') {
        return Err(Refusal::NotAList("the body is an HTML page".into()));
    }
    let counts = scan(format, text, |_| {});
    if counts.entries() == 0 {
        return Err(Refusal::NotAList(format!("no valid entries ({} invalid lines)", counts.invalid)));
    }
    if let Some(accepted) = accepted.filter(|&a| a > 0) {
        let kept_percent = counts.entries() as u128 * 100 / accepted as u128;
        if kept_percent < u128::from(100 - shrink_max_percent.min(100)) {
            return Err(Refusal::Shrunk { from: accepted, to: counts.entries() });
        }
    }
    Ok((text, counts))
}

/// Why a downloaded version was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAList(String),
    /// Lost more entries than `policy.shrink_max_percent` allows; kept as `NAME.pending`.
    Shrunk {
        from: usize,
        to: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAList(why) => write!(f, "refused: {why}"),
            Refusal::Shrunk { from, to } => write!(
                f,
                "refused: shrank from {from} to {to} entries (more than policy.shrink_max_percent); \
                 check the list, then run `nxguard lists accept NAME`"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A stable short hash of a body (FNV-1a, 64 bits, hex).
pub fn hash(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}

/// An operator accepts a refused (shrunk) version: it becomes the copy in force at the next
/// reload or refresh.
pub fn accept(dir: &Path, name: &str, now: SystemTime) -> Result<FeedStatus, FeedError> {
    let pending = pending_path(dir, name);
    let body = std::fs::read(&pending).map_err(|_| FeedError::NoPending(name.to_string()))?;
    let mut statuses = read_statuses(dir);
    let status = statuses.entry(name.to_string()).or_default();
    write_atomically(&copy_path(dir, name), &body)?;
    std::fs::remove_file(&pending).map_err(|source| FeedError::Io { path: pending.clone(), source })?;
    status.entries = status.pending_entries.take().unwrap_or(0);
    status.hash = Some(hash(&body));
    // The ETag belonged to the refused download's predecessor; the next refresh asks afresh.
    status.etag = None;
    status.last_modified = None;
    status.last_error = None;
    status.last_success = Some(unix_secs(now));
    let status = status.clone();
    write_statuses(dir, &statuses)?;
    Ok(status)
}

fn time_text(secs: Option<u64>) -> String {
    secs.map_or_else(
        || "never".to_string(),
        |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(s)).to_string(),
    )
}

/// One paragraph per configured feed, as `nxguard lists` and `check` print it.
pub fn status_lines(config: &crate::config::PolicyConfig) -> Vec<String> {
    let dir = config.cache_dir.as_deref();
    let statuses = dir.map(read_statuses).unwrap_or_default();
    config
        .feeds
        .iter()
        .map(|feed| {
            let status = statuses.get(&feed.name).cloned().unwrap_or_default();
            let copy = dir.is_some_and(|d| copy_path(d, &feed.name).exists());
            let mut line = format!(
                "{}: {} entries{}, mode {}, last success {}, last attempt {}, etag {}",
                feed.name,
                status.entries,
                if copy { "" } else { " (no cached copy: not in force)" },
                if feed.mode == crate::config::ListMode::LogOnly { "log-only" } else { "enforce" },
                time_text(status.last_success),
                time_text(status.last_attempt),
                status.etag.as_deref().unwrap_or("-"),
            );
            if status.invalid > 0 {
                line.push_str(&format!(", {} invalid lines", status.invalid));
            }
            if let Some(error) = &status.last_error {
                line.push_str(&format!("\n  last error: {error}"));
            }
            if let Some(pending) = status.pending_entries {
                line.push_str(&format!(
                    "\n  a refused version with {pending} entries waits: `nxguard lists accept {}`",
                    feed.name
                ));
            }
            line.push_str(&format!("\n  {}", feed.url));
            line
        })
        .collect()
}

/// The statuses as the running server last saw them, for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Board(Mutex<BTreeMap<String, FeedStatus>>);

impl Board {
    pub fn snapshot(&self) -> BTreeMap<String, FeedStatus> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set(&self, statuses: BTreeMap<String, FeedStatus>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = statuses;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(format: FeedFormat, text: &str) -> (Vec<String>, Counts) {
        let mut out = Vec::new();
        let counts = scan(format, text, |line| match line {
            Line::Block(d) => out.push(d.into_owned()),
            Line::Allow(d) => out.push(format!("allow {d}")),
            _ => {}
        });
        (out, counts)
    }

    #[test]
    fn every_format_reads_its_lines_and_counts_the_rest() {
        let (got, c) = entries(FeedFormat::Domains, "\u{feff}# c\r\nA.example\r\nb.example. # note\nnot a domain\n\n");
        assert_eq!((got, c.invalid), (vec!["a.example".to_string(), "b.example".into()], 1));
        let (got, c) = entries(FeedFormat::Hosts, "127.0.0.1 localhost\n0.0.0.0 x.example\n:: y.example\nbad\n");
        assert_eq!((got, c.invalid), (vec!["x.example".to_string(), "y.example".into()], 1));
        let text = "[Adblock Plus 2.0]\n! c\n||a.example^\n@@||ok.a.example^\n||b.example^$important\n||c.example^$third-party\n/re/\n";
        let (got, c) = entries(FeedFormat::Adblock, text);
        assert_eq!(got, vec!["a.example".to_string(), "allow ok.a.example".into(), "b.example".into()]);
        assert_eq!(c.invalid, 2);
        let (got, _) = entries(FeedFormat::Wildcard, "*.w.example\nv.example\n*.\n");
        assert_eq!(got, vec!["w.example".to_string(), "v.example".into()]);
    }

    #[test]
    fn html_binary_empty_and_shrunk_bodies_are_refused() {
        let check = |body: &[u8], ct, accepted| {
            check_body(body, ct, FeedFormat::Domains, accepted, 50).map(|(_, c)| c.entries())
        };
        assert!(matches!(check(b"\n <!DOCTYPE html><p>503", None, None), Err(Refusal::NotAList(_))));
        assert!(matches!(check("\u{feff}<html>".as_bytes(), Some("text/plain"), None), Err(Refusal::NotAList(_))));
        assert!(matches!(check(b"a.example\n", Some("text/html; charset=utf-8"), None), Err(Refusal::NotAList(_))));
        assert!(matches!(check(b"a.example\n\0\x01", None, None), Err(Refusal::NotAList(_))));
        assert!(matches!(check(b"\xff\xfe", None, None), Err(Refusal::NotAList(_))));
        assert!(matches!(check(b"# only comments\n", None, None), Err(Refusal::NotAList(_))));
        assert_eq!(check(b"a.example\nb.example\n", None, Some(4)), Ok(2));
        assert_eq!(check(b"a.example\n", None, Some(4)), Err(Refusal::Shrunk { from: 4, to: 1 }));
    }

    #[test]
    fn accepting_a_refused_version_makes_it_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(accept(dir.path(), "f", SystemTime::now()), Err(FeedError::NoPending(_))));
        let mut statuses = BTreeMap::new();
        statuses.insert("f".to_string(), FeedStatus { entries: 10, pending_entries: Some(2), ..Default::default() });
        write_statuses(dir.path(), &statuses).unwrap();
        std::fs::write(pending_path(dir.path(), "f"), "a.example\nb.example\n").unwrap();
        let status = accept(dir.path(), "f", SystemTime::now()).unwrap();
        assert_eq!((status.entries, status.pending_entries), (2, None));
        assert_eq!(std::fs::read_to_string(copy_path(dir.path(), "f")).unwrap(), "a.example\nb.example\n");
        assert_eq!(read_statuses(dir.path())["f"], status);
    }
}
