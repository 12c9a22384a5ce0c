//! `nxguard report`: which devices tried which banned app, one device's timeline, the
//! would-be blocks of log-only rules, or the board report, read from the attempt stores.

use std::{path::Path, time::SystemTime};

use anyhow::{Context, Result};
use nxguard::{
    config::{Config, StoreBackend},
    evidence::store,
    review::{board, console::cases, render, report},
};

#[derive(clap::Args)]
pub struct Args {
    /// A store to read instead of the config's: an SQLite file or a postgres:// URL. Repeat it
    /// to merge the stores of a primary/secondary pair (--db a.sqlite --db b.sqlite).
    #[arg(long)]
    db: Vec<String>,
    /// Start of the window: a duration back from now (7d, 24h) or a date (2026-11-01).
    #[arg(long)]
    since: Option<String>,
    /// End of the window (same forms); default now.
    #[arg(long)]
    until: Option<String>,
    /// Only this app (id or name, e.g. tiktok or "UC Browser").
    #[arg(long)]
    app: Option<String>,
    /// One device (inventory name, hostname, MAC, address or pseudonym): its timeline.
    #[arg(long)]
    device: Option<String>,
    /// Only devices of this owner or department (anywhere in the owner text, any case).
    #[arg(long)]
    owner: Option<String>,
    /// Which attempts count: blocked (enforce, the default), would-be blocks of log-only
    /// rules (log-only), or both (all, with a mode column).
    #[arg(long, value_enum, default_value_t)]
    mode: report::ModeFilter,
    /// Would-be blocks: per device and app, the log-only attempts and the listed domains they
    /// hit (what a shadow list or log-only group would block if enforced).
    #[arg(long, conflicts_with_all = ["mode", "device"])]
    shadow: bool,
    /// table, csv, json, or html: the board report (one self-contained file, no personal data
    /// unless --with-identities).
    #[arg(long, value_enum, default_value_t)]
    format: board::Format,
    /// In the HTML board report, also list the devices (personal data).
    #[arg(long)]
    with_identities: bool,
    /// The time the report treats as now (RFC 3339), for reproducible reports.
    #[arg(long, hide = true)]
    now: Option<String>,
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    let now = match &args.now {
        Some(text) => report::parse_time(text, std::time::SystemTime::now())?,
        None => std::time::SystemTime::now(),
    };
    let filter = filter(args, &config, now)?;
    let pseudonymizer = super::pseudonymizer(&config)?;
    let limits = store::read::Limits::COMMAND_LINE;
    let dbs = sources(args, &config)?
        .iter()
        .map(|s| store::read::Reader::open(s, &config.store, limits))
        .collect::<Result<Vec<_>, _>>()?;
    let text = runtime()?.block_on(text(args, &config, dbs, &filter, pseudonymizer.as_ref(), now))?;
    print!("{text}");
    Ok(())
}

/// The runtime the command line's store reads run on (one thread, plus the blocking pool for
/// SQLite).
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// The report the arguments ask for, over `dbs`.
async fn text(
    args: &Args,
    config: &Config,
    mut dbs: Vec<store::read::Reader>,
    filter: &report::Filter,
    pseudonymizer: Option<&store::Pseudonymizer>,
    now: SystemTime,
) -> Result<String> {
    Ok(match args.format.plain() {
        Some(format) if args.shadow => {
            render::shadow(&report::summaries(&mut dbs, filter, pseudonymizer).await?, format)?
        }
        Some(format) if args.device.is_some() => {
            let timeline = report::timeline(&mut dbs, filter, pseudonymizer).await?;
            if let Some(day) = &timeline.raw_from {
                eprintln!(
                    "note: single attempts are kept store.raw_days ({} days); before {day} this device has only daily \
                     totals (nxguard report without --device shows them)",
                    config.store.raw_days
                );
            }
            render::timeline(&timeline.events, format)?
        }
        Some(format) => render::summaries(&report::summaries(&mut dbs, filter, pseudonymizer).await?, format)?,
        None => board_report(args, config, &mut dbs, filter, pseudonymizer, now).await?,
    })
}

/// The stores to read: --db, or the config's store.
fn sources(args: &Args, config: &Config) -> Result<Vec<String>> {
    if !args.db.is_empty() {
        return Ok(args.db.clone());
    }
    let configured = match config.store.backend {
        StoreBackend::Sqlite => config.store.path.as_ref().map(|p| p.display().to_string()),
        StoreBackend::Postgres => config.store.url.clone(),
    };
    Ok(vec![configured.context("no store: give --db or set store.path (or store.url)")?])
}

/// The attempts the arguments select, with `now` as the window's default end.
fn filter(args: &Args, config: &Config, now: SystemTime) -> Result<report::Filter> {
    let time = |text: &Option<String>| text.as_deref().map(|t| report::parse_time(t, now)).transpose();
    Ok(report::Filter {
        since: time(&args.since)?,
        until: Some(time(&args.until)?.unwrap_or(now)),
        app: args.app.clone(),
        device: args.device.clone(),
        owner: args.owner.clone(),
        mode: if args.shadow { report::ModeFilter::LogOnly } else { args.mode },
        now: Some(now),
        raw_days: config.store.raw_days,
    })
}

/// The HTML board report; the cases come from the console's database, when there is one.
async fn board_report(
    args: &Args,
    config: &Config,
    dbs: &mut [store::read::Reader],
    filter: &report::Filter,
    pseudonymizer: Option<&store::Pseudonymizer>,
    now: SystemTime,
) -> Result<String> {
    let console = config.console.state_path.as_ref().filter(|p| p.exists()).map(|p| {
        rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", p.display()))
    });
    let all_cases = match console.transpose()? {
        Some(db) => cases::list(&db, None)?,
        None => Vec::new(),
    };
    let html =
        board::render(dbs, &all_cases, filter, pseudonymizer, args.with_identities, now, &config.console).await?;
    Ok(html)
}
