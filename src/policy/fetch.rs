//! Downloading feeds: a conditional GET per feed when it is due, in the background.
//!
//! Owns: the HTTP client (reqwest over rustls: timeouts, at most 5 redirects, a proxy from the
//! environment's `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`), one refresh of one feed (download, check,
//! keep or refuse, status), and the task that refreshes every feed when it is due and says when
//! a copy changed. Applying a changed copy is the server's reload (a new policy built from the
//! copies, swapped in atomically), never this module.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use reqwest::header::{CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    config::{FeedConfig, PolicyConfig},
    policy::feeds::{self, Board, FeedError, FeedStatus, Refusal},
};

/// After a failure the feed is asked again this soon (or at its `refresh_secs`, if sooner).
const RETRY_AFTER: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;

/// The result of one refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// A new copy was written: the policy must be rebuilt.
    pub changed: bool,
    pub status: FeedStatus,
}

/// Why one refresh of a feed kept the last good copy; its text is the status's `last_error`.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("{len} bytes is more than max_bytes ({max_bytes})")]
    FileTooBig { len: u64, max_bytes: u64 },
    #[error("{}", describe(source))]
    Http {
        #[source]
        source: reqwest::Error,
    },
    #[error("HTTP {status}")]
    Status { status: reqwest::StatusCode },
    #[error("more than max_bytes ({max_bytes}) bytes ({len} announced or read)")]
    TooBig { len: u64, max_bytes: u64 },
    #[error("timed out after {secs}s")]
    TimedOut { secs: u64 },
    /// The `NAME` in a refusal's advice is the feed's name.
    #[error("{}", source.to_string().replace("NAME", feed))]
    Refused { feed: String, source: Refusal },
    #[error(transparent)]
    Write(FeedError),
}

enum Download {
    NotModified,
    Body { bytes: Vec<u8>, etag: Option<String>, last_modified: Option<String>, content_type: Option<String> },
}

/// The client every feed download uses.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("nxguard/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Asks for a new version of `feed` and keeps it in `dir` if it is good; records the result in
/// the status file. Never fails: a problem is the status's `last_error`. Checking and writing
/// the body (up to `max_bytes`, with an fsync) run on a blocking thread, never on a query worker.
pub async fn refresh(
    client: &reqwest::Client,
    feed: &FeedConfig,
    dir: &Path,
    shrink_max_percent: u8,
    now: SystemTime,
) -> Refreshed {
    let mut status = feeds::read_statuses(dir).remove(&feed.name).unwrap_or_default();
    if status.url != feed.url {
        // Another source: its validators and size say nothing about this one.
        status = FeedStatus { url: feed.url.clone(), failures: status.failures, ..FeedStatus::default() };
    }
    let have_copy = feeds::copy_path(dir, &feed.name).exists();
    status.last_attempt = Some(feeds::unix_secs(now));
    let validators = if have_copy { (status.etag.clone(), status.last_modified.clone()) } else { (None, None) };
    let downloaded = download(client, feed, validators).await;
    let (feed, dir) = (feed.clone(), dir.to_path_buf());
    let settle = move || settle(&feed, &dir, status, have_copy, downloaded, shrink_max_percent, now);
    match tokio::task::spawn_blocking(settle).await {
        Ok(refreshed) => refreshed,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Keeps or refuses what `download` brought, and records the result.
fn settle(
    feed: &FeedConfig,
    dir: &Path,
    mut status: FeedStatus,
    have_copy: bool,
    downloaded: Result<Download, FetchError>,
    shrink_max_percent: u8,
    now: SystemTime,
) -> Refreshed {
    let copy = feeds::copy_path(dir, &feed.name);
    let mut changed = false;
    let outcome = match downloaded {
        Err(error) => Err(error),
        Ok(Download::NotModified) => Ok(()),
        Ok(Download::Body { bytes, etag, last_modified, content_type }) => {
            let accepted = have_copy.then_some(status.entries);
            match feeds::check_body(&bytes, content_type.as_deref(), feed.format, accepted, shrink_max_percent) {
                Ok((_, counts)) => {
                    let hash = feeds::hash(&bytes);
                    let same = have_copy && status.hash.as_deref() == Some(hash.as_str());
                    let written = if same { Ok(()) } else { feeds::write_atomically(&copy, &bytes) };
                    written.map_err(FetchError::Write).map(|()| {
                        changed = !same;
                        status.entries = counts.entries();
                        status.invalid = counts.invalid;
                        status.hash = Some(hash);
                        status.etag = etag;
                        status.last_modified = last_modified;
                        status.pending_entries = None;
                        let _ = std::fs::remove_file(feeds::pending_path(dir, &feed.name));
                    })
                }
                Err(refusal) => {
                    if let Refusal::Shrunk { to, .. } = refusal {
                        match feeds::write_atomically(&feeds::pending_path(dir, &feed.name), &bytes) {
                            Ok(()) => status.pending_entries = Some(to),
                            Err(error) => warn!(feed = %feed.name, %error, "cannot keep the refused version"),
                        }
                    }
                    Err(FetchError::Refused { feed: feed.name.clone(), source: refusal })
                }
            }
        }
    };
    match outcome {
        Ok(()) => {
            status.last_success = Some(feeds::unix_secs(now));
            status.last_error = None;
            if changed {
                info!(feed = %feed.name, entries = status.entries, invalid = status.invalid, "feed updated");
            }
        }
        Err(error) => {
            status.failures += 1;
            warn!(feed = %feed.name, url = %feed.url, %error, "feed not updated; its last good copy stays in force");
            status.last_error = Some(error.to_string());
        }
    }
    // Read again just before writing: `nxguard lists accept` may have changed another feed.
    let mut statuses = feeds::read_statuses(dir);
    statuses.insert(feed.name.clone(), status.clone());
    if let Err(error) = feeds::write_statuses(dir, &statuses) {
        warn!(%error, "cannot write the feed status file");
    }
    Refreshed { changed, status }
}

async fn download(
    client: &reqwest::Client,
    feed: &FeedConfig,
    (etag, last_modified): (Option<String>, Option<String>),
) -> Result<Download, FetchError> {
    if let Some(path) = feed.url.strip_prefix("file://") {
        let file = |source| FetchError::File { path: path.to_string(), source };
        let len = tokio::fs::metadata(path).await.map_err(file)?.len();
        if len > feed.max_bytes {
            return Err(FetchError::FileTooBig { len, max_bytes: feed.max_bytes });
        }
        let bytes = tokio::fs::read(path).await.map_err(file)?;
        return Ok(Download::Body { bytes, etag: None, last_modified: None, content_type: None });
    }
    let timeout = Duration::from_secs(feed.timeout_secs);
    let mut request = client.get(&feed.url).timeout(timeout);
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(date) = last_modified {
        request = request.header(IF_MODIFIED_SINCE, date);
    }
    let work = async {
        let mut response = request.send().await.map_err(|source| FetchError::Http { source })?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Download::NotModified);
        }
        if !response.status().is_success() {
            return Err(FetchError::Status { status: response.status() });
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (etag, last_modified, content_type) = (header(ETAG), header(LAST_MODIFIED), header(CONTENT_TYPE));
        let too_big = |len: u64| FetchError::TooBig { len, max_bytes: feed.max_bytes };
        if let Some(length) = response.content_length().filter(|&n| n > feed.max_bytes) {
            return Err(too_big(length));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|source| FetchError::Http { source })? {
            if (bytes.len() + chunk.len()) as u64 > feed.max_bytes {
                return Err(too_big((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Download::Body { bytes, etag, last_modified, content_type })
    };
    // reqwest's timeout covers the body too; this one also bounds a server that trickles.
    tokio::time::timeout(timeout, work).await.unwrap_or(Err(FetchError::TimedOut { secs: feed.timeout_secs }))
}

/// reqwest's text followed by its causes, which its own text leaves out.
fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() { format!("timed out ({text})") } else { text }
}

/// When `feed` is next due, given its status.
fn due_at(feed: &FeedConfig, status: Option<&FeedStatus>) -> SystemTime {
    let Some(last) = status.and_then(|s| s.last_attempt) else {
        return UNIX_EPOCH;
    };
    let mut wait = Duration::from_secs(feed.refresh_secs);
    if status.is_some_and(|s| s.last_error.is_some()) {
        wait = wait.min(RETRY_AFTER);
    }
    UNIX_EPOCH + Duration::from_secs(last) + wait
}

/// Refreshes every feed of the policy in `settings` when it is due, for as long as `settings`
/// has a sender; sends on `changed` when a copy changed (the server then reloads), and keeps
/// `board` current for the metrics.
pub async fn run(mut settings: watch::Receiver<Arc<PolicyConfig>>, board: Arc<Board>, changed: mpsc::Sender<()>) {
    let client = match client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client; feeds are not refreshed");
            return;
        }
    };
    loop {
        let config = Arc::clone(&settings.borrow_and_update());
        let mut wait = Duration::from_secs(3600);
        if let Some(dir) = &config.cache_dir {
            for feed in &config.feeds {
                let now = SystemTime::now();
                let statuses = feeds::read_statuses(dir);
                if due_at(feed, statuses.get(&feed.name)) <= now
                    && refresh(&client, feed, dir, config.shrink_max_percent, now).await.changed
                {
                    let _ = changed.try_send(());
                }
            }
            let statuses = feeds::read_statuses(dir);
            let now = SystemTime::now();
            for feed in &config.feeds {
                let next = due_at(feed, statuses.get(&feed.name)).duration_since(now).unwrap_or_default();
                wait = wait.min(next.max(Duration::from_secs(1)));
            }
            board.set(statuses.into_iter().filter(|(name, _)| config.feeds.iter().any(|f| &f.name == name)).collect());
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            result = settings.changed() => if result.is_err() { return },
        }
    }
}
