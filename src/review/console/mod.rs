//! `nxguard console`: the security officer's web console. Read-only over the attempt store;
//! writes only its own database (users, sessions, API tokens, cases, audit log).
//!
//! Owns: the HTTP server (axum, HTML written server-side with maud, charts as inline SVG, the
//! stylesheet embedded; no JavaScript), sign-in and roles (`auth`), the console database
//! (`state`), the audit log (`audit`), removal cases and their state machine (`cases`), the
//! pages (`layout`, `pages`, `case_pages`, `apps`: the app page and lists health), CSV export and the JSON API (`export`), the two
//! languages (`i18n`), the charts (`svg`), and its few reads of the attempt store beyond
//! `review::report` (`queries`).
//!
//! Reads the attempt evidence only through `review::report` (`open`, `Filter`, `summaries`,
//! `timeline`, `parse_time`, `render_summaries`, `render_timeline`) and `queries`, both over the
//! connection `report::open` returns, so the console follows the store wherever it goes.
//! Must not touch: the query path, the store's writer, or the store's schema.
//!
//! Roles: a viewer sees aggregates with pseudonymous device keys (a keyed hash made with the
//! console's own secret); an officer sees identities, timelines, exports and cases; an admin also
//! the audit log and users. Every login, failed login, device view, export, API call and case
//! change is written to the audit log (who, when, from which address, what).

pub mod apps;
pub mod audit;
pub mod auth;
pub mod case_pages;
pub mod cases;
pub mod export;
pub mod i18n;
pub mod layout;
pub mod overview;
pub mod pages;
pub mod queries;
pub mod responses;
pub mod state;
pub mod svg;
pub mod throttle;
pub mod tls;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rusqlite::Connection;
use thiserror::Error;

use crate::{
    config::{ConsoleConfig, Language, PolicyConfig, StoreConfig},
    evidence::store::{
        Pseudonymizer,
        pool::{PoolError, SqlitePool},
        read::{Cell, Limits, Reader},
    },
    review::report::{self, ReportError},
};

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("console database {path}: {source}")]
    State { path: PathBuf, source: rusqlite::Error },
    #[error("console database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Input(String),
    #[error("not allowed for this role")]
    Forbidden,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    /// The attempt store does not exist yet (no resolver has written to it).
    #[error("no attempt store at {0} yet")]
    NoStore(PathBuf),
    #[error("console TLS: {0}")]
    Tls(String),
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
    #[error("console database {0}")]
    Pool(#[from] PoolError),
    /// A report error shared by the requests that waited for the same summaries.
    #[error(transparent)]
    Shared(Arc<ReportError>),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            ConsoleError::Forbidden | ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::NoStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Input(_) | ConsoleError::Report(ReportError::Time(_)) => StatusCode::BAD_REQUEST,
            ConsoleError::Report(ReportError::Store(error)) => return unreachable("evidence store", error),
            ConsoleError::Shared(shared) => match shared.as_ref() {
                ReportError::Store(error) => return unreachable("evidence store", error),
                ReportError::Time(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ConsoleError::Pool(error) => return unreachable("console database", error),
            _ => {
                tracing::error!(error = %self, "console request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status != StatusCode::INTERNAL_SERVER_ERROR {
            tracing::info!(status = status.as_u16(), error = %self, "console request refused");
        }
        // The words a person reads come from `responses` (in the console's language); the
        // message itself may hold what was typed, so it goes to the log only.
        (status, format!("{}\n", status.canonical_reason().unwrap_or(""))).into_response()
    }
}

/// What a 503 could not reach and why ("evidence store unreachable: …"), for the error page
/// (`responses`): the store's own error, which names the store and never holds what was typed.
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

/// 503 with what could not be reached and why; the console goes on serving other pages.
fn unreachable(what: &str, error: &dyn std::error::Error) -> Response {
    tracing::warn!(what, %error, "console page without its data");
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let text = format!("{what} unreachable: {error}");
    let mut response = (status, [(axum::http::header::RETRY_AFTER, "10")], format!("503: {text}\n")).into_response();
    response.extensions_mut().insert(Unreachable(text));
    response
}

/// The time source: the wall clock, or a fixed time in tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Everything a request handler needs.
pub struct Console {
    pub config: ConsoleConfig,
    /// The attempt store, read through a bounded pool (`store`).
    store: Reader,
    /// The `[store]` settings (raw_days for the filters; password, TLS and CA on PostgreSQL).
    pub store_config: StoreConfig,
    pub pseudonymizer: Option<Pseudonymizer>,
    /// The policy settings the lists-health page loads (None: the page says so).
    pub policy: Option<PolicyConfig>,
    state_path: PathBuf,
    state: SqlitePool<ConsoleError>,
    secret: ring::hmac::Key,
    clock: Clock,
    /// The session cookie is marked Secure (the console serves TLS itself).
    pub secure_cookie: bool,
    /// `console.time_zone`, for the times pages show.
    time_zone: jiff::tz::TimeZone,
    /// Failed sign-ins per client address.
    pub throttle: throttle::Throttle,
    /// Summaries computed in the last `SUMMARY_TTL`, by what they read and the store's newest
    /// attempt (`summaries`).
    shared: Option<moka::future::Cache<String, Arc<Vec<report::Summary>>>>,
}

/// How long computed summaries are shared. They are keyed by the store's newest attempt id too,
/// so a new attempt makes a new computation at once; only rows committed out of id order (two
/// PostgreSQL writers) or a purge wait up to this long.
const SUMMARY_TTL: Duration = Duration::from_secs(10);
/// Summary rows kept at most over all shared summaries (a row is a few hundred bytes).
const SHARED_ROWS: u64 = 400_000;

fn shared_summaries(ttl: Duration) -> moka::future::Cache<String, Arc<Vec<report::Summary>>> {
    moka::future::Cache::builder()
        .time_to_live(ttl)
        .weigher(|_, rows: &Arc<Vec<report::Summary>>| u32::try_from(rows.len().max(1)).unwrap_or(u32::MAX))
        .max_capacity(SHARED_ROWS)
        .build()
}

impl Console {
    /// Opens the console database at `config.state_path` (required), reading the SQLite
    /// attempt store at `store_path` (`read_store` points it elsewhere).
    pub fn open(
        config: ConsoleConfig,
        store_path: PathBuf,
        pseudonymizer: Option<Pseudonymizer>,
        clock: Clock,
    ) -> Result<Console, ConsoleError> {
        let path = config
            .state_path
            .clone()
            .ok_or_else(|| ConsoleError::Input("console.state_path is not set in the config".into()))?;
        let (db, secret) = state::open(&path, config.audit_retention_days)?;
        let secure_cookie = config.tls_cert_file.is_some();
        let purged = state::purge_audit(&db, clock(), config.audit_retention_days)
            .map_err(|source| ConsoleError::State { path: path.clone(), source })?;
        if purged > 0 {
            tracing::info!(rows = purged, "audit rows past their retention deleted");
        }
        let time_zone = jiff::tz::TimeZone::get(&config.time_zone)
            .map_err(|e| ConsoleError::Input(format!("console.time_zone {:?}: {e}", config.time_zone)))?;
        let limits = Self::limits(&config);
        let store_config = StoreConfig::default();
        let store =
            Reader::open(&store_path.display().to_string(), &store_config, limits).map_err(ReportError::from)?;
        let state = SqlitePool::new(path.clone(), limits.connections, limits.timeout, state::connect);
        Ok(Console {
            config,
            store,
            store_config,
            pseudonymizer,
            policy: None,
            state_path: path,
            state,
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            clock,
            secure_cookie,
            time_zone,
            throttle: throttle::Throttle::default(),
            shared: Some(shared_summaries(SUMMARY_TTL)),
        })
    }

    fn limits(config: &ConsoleConfig) -> Limits {
        Limits { connections: config.store_connections, timeout: Some(Duration::from_millis(config.store_timeout_ms)) }
    }

    /// Reads the attempt store at `source` (an SQLite file or a `postgres://` URL, with the
    /// password, TLS and CA of `store_config`) instead.
    pub fn read_store(&mut self, source: &str, store_config: StoreConfig) -> Result<(), ConsoleError> {
        self.store = Reader::open(source, &store_config, Self::limits(&self.config)).map_err(ReportError::from)?;
        self.store_config = store_config;
        Ok(())
    }

    pub fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub fn language(&self) -> Language {
        self.config.language
    }

    /// A stored UTC time as this console's readers read it (`console.time_zone`, language).
    pub fn time(&self, utc: &str) -> String {
        i18n::local_time(self.config.language, &self.time_zone, utc)
    }

    /// Runs `call` on a connection of the console database, on a blocking thread (at most
    /// `console.store_connections` at once). Handlers reach the database only this way.
    pub async fn state<T, F>(&self, call: F) -> Result<T, ConsoleError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ConsoleError> + Send + 'static,
    {
        self.state.run(call).await
    }

    /// A connection of its own to the console database, for the command line and tests.
    pub fn db(&self) -> Result<Connection, ConsoleError> {
        state::connect(&self.state_path)
    }

    /// The attempt store's reader (a handle on its pool; each query borrows a connection).
    pub fn store(&self) -> Result<Reader, ConsoleError> {
        if let Some(path) = self.store.sqlite_path().filter(|p| !p.exists()) {
            return Err(ConsoleError::NoStore(path.to_path_buf()));
        }
        Ok(self.store.clone())
    }

    /// The report filter a page's view asks for now, over this console's store.
    pub fn filter(&self, view: &layout::View) -> Result<report::Filter, ConsoleError> {
        view.filter(self.now(), self.store_config.raw_days)
    }

    /// The per device and app summary of `store` for `filter` (pseudonymised as the store is).
    /// Requests asking for the same summary of the same store contents share one computation:
    /// those that come while it runs wait for it (one error for all when it fails), and later
    /// ones take it until a new attempt is written or `SUMMARY_TTL` passes.
    pub async fn summaries(
        &self,
        store: &mut Reader,
        filter: &report::Filter,
    ) -> Result<Arc<Vec<report::Summary>>, ConsoleError> {
        let pseudonymizer = self.pseudonymizer.as_ref();
        let Some(shared) = &self.shared else {
            return Ok(Arc::new(report::summaries(std::slice::from_mut(store), filter, pseudonymizer).await?));
        };
        let newest = store.rows("SELECT MAX(id) FROM attempts", &[]).await.map_err(ReportError::from)?;
        let newest = newest.first().and_then(|r| r.first()).map_or(0, Cell::int);
        let key = format!("{newest} {}", report::summary_key(filter));
        let compute = async {
            Ok::<_, ReportError>(Arc::new(report::summaries(std::slice::from_mut(store), filter, pseudonymizer).await?))
        };
        shared.try_get_with(key, compute).await.map_err(ConsoleError::Shared)
    }

    /// Shares summaries for `ttl` instead of `SUMMARY_TTL`; None: every request computes its
    /// own (benchmarks: the cost of one computation).
    pub fn share_summaries(&mut self, ttl: Option<Duration>) {
        self.shared = ttl.map(shared_summaries);
    }

    /// The session cookie's attributes: HttpOnly, SameSite=Strict, and Secure when the request
    /// came over HTTPS (served here, or said so by a trusted proxy).
    pub fn cookie_attributes(&self, parts: &axum::http::request::Parts) -> &'static str {
        if auth::https(parts, &self.config.trust_proxy, self.secure_cookie) {
            "Path=/; HttpOnly; SameSite=Strict; Secure"
        } else {
            "Path=/; HttpOnly; SameSite=Strict"
        }
    }

    /// A fresh token for the sign-in form: a random nonce and this console's signature of it.
    pub fn login_token(&self) -> String {
        let nonce = state::random_hex();
        let tag = ring::hmac::sign(&self.secret, format!("login:{nonce}").as_bytes());
        format!("{nonce}.{}", data_encoding::HEXLOWER.encode(tag.as_ref()))
    }

    /// `token` is one `login_token` made.
    pub fn login_token_is_ours(&self, token: &str) -> bool {
        let Some((nonce, tag)) = token.split_once('.') else { return false };
        let Ok(tag) = data_encoding::HEXLOWER.decode(tag.as_bytes()) else { return false };
        ring::hmac::verify(&self.secret, format!("login:{nonce}").as_bytes(), &tag).is_ok()
    }

    /// The pseudonymous key a viewer sees for a device key: stable, but not the identity.
    pub fn masked(&self, device: &str) -> String {
        let tag = ring::hmac::sign(&self.secret, device.as_bytes());
        let hex = data_encoding::HEXLOWER.encode(&tag.as_ref()[..5]);
        format!("d-{hex}")
    }
}

/// Every route of the console.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/devices", get(pages::devices))
        .route("/device", get(pages::device))
        .route("/app", get(apps::app))
        .route("/lists", get(apps::lists))
        .route("/audit", get(pages::audit))
        .route("/users", get(pages::users))
        .route("/cases", get(case_pages::list).post(case_pages::open))
        .route("/cases/new", get(case_pages::new_form))
        .route("/cases/{id}", get(case_pages::show).post(case_pages::update))
        .route("/export/summary.csv", get(export::summary_csv))
        .route("/export/timeline.csv", get(export::timeline_csv))
        .route("/export/audit.csv", get(export::audit_csv))
        .route("/api/v1/summary", get(export::api_summary))
        .route("/api/v1/timeline", get(export::api_timeline))
        .route("/api/v1/cases", get(export::api_cases))
        .route("/static/console.css", get(layout::stylesheet))
        .fallback(responses::not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&console), responses::frame))
        .with_state(console)
}

/// Serves the console on `console.listen` until SIGTERM or Ctrl-C: over TLS when the
/// certificate files are set.
pub async fn serve(console: Arc<Console>) -> Result<(), ConsoleError> {
    let listener = tokio::net::TcpListener::bind(console.config.listen).await?;
    serve_on(console, listener).await
}

/// `serve` on a listener the caller bound (port 0, then read back for the ready file).
pub async fn serve_on(console: Arc<Console>, listener: tokio::net::TcpListener) -> Result<(), ConsoleError> {
    let listen = listener.local_addr()?;
    tracing::info!(%listen, tls = console.secure_cookie, "console serving");
    let tls = match (&console.config.tls_cert_file, &console.config.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let purging = Arc::clone(&console);
    tokio::spawn(async move {
        // The audit log's own retention, applied hourly (and at every start).
        let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let (now, days) = (purging.now(), purging.config.audit_retention_days);
            let purge = purging.state(move |db| Ok(state::purge_audit(db, now, days)?)).await;
            if let Err(error) = purge {
                tracing::warn!(%error, "cannot purge the audit log");
            }
        }
    });
    let app = router(console).into_make_service_with_connect_info::<auth::Peer>();
    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    match tls {
        Some(acceptor) => {
            axum::serve(tls::TlsListener::new(listener, acceptor), app).with_graceful_shutdown(shutdown).await?;
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await?,
    }
    Ok(())
}
