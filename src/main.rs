//! The `nxguard` command: serve, or check a configuration.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nxguard::{
    config::{Config, LogFormat, StoreBackend},
    evidence::{devices::Devices, store},
    listen::{self, tls},
    ops::{selftest, systemd},
    policy::{self, domains, feeds},
    review::{
        board,
        console::{self, Console, audit, auth, cases},
        render, report,
    },
    server,
    upstream::pool,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// DNS resolver that blocks banned apps (TikTok, WeChat, Temu…) with NXDOMAIN and records which
/// device tried which app.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the resolver. Without --config it uses the embedded default: listens on
    /// 127.0.0.1:5300, answers loopback clients, forwards to Quad9 over DNS-over-TLS.
    /// SIGHUP reloads the config and domain lists; SIGTERM or Ctrl-C stops gracefully.
    Serve {
        /// Configuration file (TOML); see deploy/nxguard.toml.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and the domain lists it loads, and that the attempt store can
    /// be written (run it as the service's user); exits non-zero on any problem.
    Check {
        /// Configuration file (TOML); without it, the embedded default is checked.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Ask a running nxguard for a few listed names of every app the config enforces, over UDP
    /// and TCP, and report per app whether the ban is in force. Exits non-zero when an app is
    /// not blocked or the server does not answer.
    Selftest(SelftestArgs),
    /// Which devices tried which banned app: per device and app (default), or one device's
    /// timeline with --device. Read-only over the attempt store.
    Report(ReportArgs),
    /// The feeds (`[[policy.feeds]]`): per feed its URL, entries in force, last success, last
    /// attempt, ETag and last error, read from `policy.cache_dir`. `lists accept NAME` accepts a
    /// version the shrink guard refused; it applies at the next reload.
    Lists {
        /// Configuration file (TOML) naming the feeds and policy.cache_dir.
        #[arg(short, long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ListsAction>,
    },
    /// Pseudonyms: create a key file, or show the pseudonym of a device name, hostname, MAC or
    /// address (to find one device in a pseudonymised store on suspicion).
    Pseudonym {
        /// Configuration file (TOML) naming privacy.key_file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Write a new random key to this file (refuses to overwrite).
        #[arg(long, conflicts_with = "identity")]
        new_key: Option<PathBuf>,
        /// The device name, hostname, MAC or address to turn into its pseudonym.
        identity: Option<String>,
    },
    /// The security officer's web console (console.listen, default 127.0.0.1:8053), or its
    /// users and API tokens. Read-only over the attempt store; writes console.state_path.
    Console(ConsoleArgs),
    /// Removal cases (the console's cases, from the command line): list, open, update.
    Case(CaseArgs),
}

#[derive(clap::Args)]
struct ConsoleArgs {
    /// Configuration file (TOML) with [console] (state_path) and [store] (path).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Option<ConsoleAction>,
}

#[derive(Subcommand)]
enum ConsoleAction {
    /// Console users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens for /api/v1/ (sent as `Authorization: Bearer TOKEN`).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user, or set an existing user's role and password (argon2id; at least 12 characters).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: auth::Role,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token (printed once; stored only hashed).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: auth::Role,
    },
}

#[derive(clap::Args)]
struct CaseArgs {
    /// Configuration file (TOML) with [console] (state_path) and [store] (path).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: CaseAction,
}

#[derive(Subcommand)]
enum CaseAction {
    /// Every case, after deciding verified and recurred from the attempt store.
    List,
    /// Open a case for a device (its key, as `report` shows it) and an app.
    Open {
        #[arg(long)]
        device: String,
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long, default_value = "")]
        ticket: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Change a case: removal requested, removed (on a date), or its ticket and note.
    Update {
        id: i64,
        #[arg(long, conflicts_with = "removed")]
        request_removal: bool,
        /// The app was removed on this date (2026-11-30) or time; "now" for now.
        #[arg(long)]
        removed: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
}

/// The console over a config: its database and the attempt store it reads.
fn open_console(config: &Config) -> Result<Console> {
    let source = match config.store.backend {
        StoreBackend::Sqlite => {
            config.store.path.as_ref().context("no attempt store: set store.path")?.display().to_string()
        }
        StoreBackend::Postgres => config.store.url.clone().context("no attempt store: set store.url")?,
    };
    let clock: console::Clock = std::sync::Arc::new(std::time::SystemTime::now);
    let mut console = Console::open(config.console.clone(), PathBuf::from(&source), pseudonymizer(config)?, clock)?;
    console.read_store(&source, config.store.clone())?;
    console.policy = Some(config.policy.clone());
    Ok(console)
}

/// The audit record of a command-line change: the Unix user, from the local machine.
fn audit_cli(console: &Console, action: &str, target: &str, detail: &str) -> Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let record = audit::Record { actor: &actor, role: "cli", address: "local", action, target, detail };
    Ok(audit::record(&console.db()?, console.now(), &record)?)
}

fn run_console(args: &ConsoleArgs) -> Result<()> {
    let config = load_config(args.config.as_ref())?;
    let console = open_console(&config)?;
    match &args.action {
        None => {
            init_logging(&config);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(console::serve(std::sync::Arc::new(console)))?;
        }
        Some(ConsoleAction::User { action: UserAction::Add { name, role, .. } }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            auth::add_user(&console.db()?, name, *role, password, console.now())?;
            audit_cli(&console, "user add", name, role.as_str())?;
            println!("user {name} ({}) saved", role.as_str());
        }
        Some(ConsoleAction::Token { action: TokenAction::Add { name, role } }) => {
            let token = auth::add_token(&console.db()?, name, *role, console.now())?;
            audit_cli(&console, "token add", name, role.as_str())?;
            println!("{token}");
        }
    }
    Ok(())
}

fn run_case(args: &CaseArgs) -> Result<()> {
    let config = load_config(args.config.as_ref())?;
    let console = open_console(&config)?;
    let now = console.now();
    match &args.action {
        CaseAction::List => {
            let mut store = console.store()?;
            command_line_runtime()?.block_on(cases::refresh(&console, &mut store, now))?;
            println!("{}", serde_json::to_string_pretty(&cases::list(&console.db()?, None)?)?);
        }
        CaseAction::Open { device, app, owner, ticket, note } => {
            let id = cases::open(&console.db()?, device, app, owner, ticket, note, now)?;
            audit_cli(&console, "case open", &format!("case {id}"), &format!("{device} × {app}; ticket {ticket:?}"))?;
            println!("{id}");
        }
        CaseAction::Update { id, request_removal, removed, ticket, note } => {
            let action = match (request_removal, removed) {
                (true, _) => "request_removal",
                (false, Some(_)) => "removed",
                (false, None) => "note",
            };
            let removed = removed.as_deref().filter(|r| *r != "now").unwrap_or("");
            let before = cases::get(&console.db()?, *id)?;
            let note = note.clone().unwrap_or(before.note);
            let change = console::case_pages::change(action, removed, ticket.clone(), &note, now)?;
            let after = cases::update(&console.db()?, *id, &change, now)?;
            let detail = format!("{} -> {}; {action}", before.state.as_str(), after.state.as_str());
            audit_cli(&console, "case update", &format!("case {id}"), &detail)?;
            println!("case {id}: {}", after.state.as_str());
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ListsAction {
    /// Accept the refused (shrunk) version of feed NAME as its copy in force.
    Accept {
        /// The feed's name.
        name: String,
    },
}

fn lists(config: Option<&PathBuf>, action: Option<&ListsAction>) -> Result<()> {
    let config = load_config(config)?;
    match action {
        None => {
            if config.policy.feeds.is_empty() {
                println!("no feeds configured ([[policy.feeds]])");
            }
            for line in feeds::status_lines(&config.policy) {
                println!("{line}");
            }
        }
        Some(ListsAction::Accept { name }) => {
            anyhow::ensure!(
                config.policy.feeds.iter().any(|f| &f.name == name),
                "no feed named {name:?} in the config"
            );
            let dir = config.policy.cache_dir.as_deref().context("policy.cache_dir is not set")?;
            let status = feeds::accept(dir, name, std::time::SystemTime::now())?;
            println!(
                "accepted: feed {name} now has {} entries; it applies at the next reload (systemctl reload nxguard, or SIGHUP)",
                status.entries
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Configuration file (TOML) naming the store (store.path or store.url, with its password
    /// file and TLS) and privacy settings.
    #[arg(short, long)]
    config: Option<PathBuf>,
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
    /// Only devices of this owner or department.
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

/// The runtime the command line's store reads run on (one thread, plus the blocking pool for
/// SQLite).
fn command_line_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn run_report(args: &ReportArgs) -> Result<()> {
    let config = load_config(args.config.as_ref())?;
    let sources: Vec<String> = if args.db.is_empty() {
        let configured = match config.store.backend {
            StoreBackend::Sqlite => config.store.path.as_ref().map(|p| p.display().to_string()),
            StoreBackend::Postgres => config.store.url.clone(),
        };
        vec![configured.context("no store: give --db or set store.path (or store.url)")?]
    } else {
        args.db.clone()
    };
    let now = match &args.now {
        Some(text) => report::parse_time(text, std::time::SystemTime::now())?,
        None => std::time::SystemTime::now(),
    };
    let time = |text: &Option<String>| text.as_deref().map(|t| report::parse_time(t, now)).transpose();
    let filter = report::Filter {
        since: time(&args.since)?,
        until: Some(time(&args.until)?.unwrap_or(now)),
        app: args.app.clone(),
        device: args.device.clone(),
        owner: args.owner.clone(),
        mode: if args.shadow { report::ModeFilter::LogOnly } else { args.mode },
        now: Some(now),
        raw_days: config.store.raw_days,
    };
    let pseudonymizer = pseudonymizer(&config)?;
    let limits = store::read::Limits::COMMAND_LINE;
    let dbs = sources.iter().map(|s| store::read::Reader::open(s, &config.store, limits)).collect::<Result<_, _>>()?;
    let text = command_line_runtime()?.block_on(report_text(args, &config, dbs, &filter, pseudonymizer, now))?;
    print!("{text}");
    Ok(())
}

/// The report `args` ask for, over `dbs`.
async fn report_text(
    args: &ReportArgs,
    config: &Config,
    mut dbs: Vec<store::read::Reader>,
    filter: &report::Filter,
    pseudonymizer: Option<store::Pseudonymizer>,
    now: std::time::SystemTime,
) -> Result<String> {
    Ok(match args.format.plain() {
        Some(format) if args.shadow => {
            render::shadow(&report::summaries(&mut dbs, &filter, pseudonymizer.as_ref()).await?, format)?
        }
        Some(format) if args.device.is_some() => {
            let timeline = report::timeline(&mut dbs, &filter, pseudonymizer.as_ref()).await?;
            if let Some(day) = &timeline.raw_from {
                eprintln!(
                    "note: single attempts are kept store.raw_days ({} days); before {day} this device has only daily \
                     totals (nxguard report without --device shows them)",
                    config.store.raw_days
                );
            }
            render::timeline(&timeline.events, format)?
        }
        Some(format) => {
            render::summaries(&report::summaries(&mut dbs, &filter, pseudonymizer.as_ref()).await?, format)?
        }
        None => {
            // The cases come from the console's database, when there is one.
            let console = config.console.state_path.as_ref().filter(|p| p.exists()).map(|p| {
                rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .with_context(|| format!("opening {}", p.display()))
            });
            let all_cases = match console.transpose()? {
                Some(db) => cases::list(&db, None)?,
                None => Vec::new(),
            };
            let console = &config.console;
            board::render(&mut dbs, &all_cases, &filter, pseudonymizer.as_ref(), args.with_identities, now, console)
                .await?
        }
    })
}

fn pseudonymizer(config: &Config) -> Result<Option<store::Pseudonymizer>> {
    Ok(match (&config.privacy.key_file, config.privacy.pseudonymize) {
        (Some(key), true) => Some(store::Pseudonymizer::from_file(key)?),
        _ => None,
    })
}

fn pseudonym(config: Option<&PathBuf>, new_key: Option<&PathBuf>, identity: Option<&String>) -> Result<()> {
    if let Some(path) = new_key {
        store::Pseudonymizer::create_key(path)?;
        println!("new key written to {}; keep it apart from the database", path.display());
        return Ok(());
    }
    let config = load_config(config)?;
    let identity = identity.context("give a device name, hostname, MAC or address")?;
    let pseudonymizer = pseudonymizer(&config)?.context("privacy.pseudonymize is off in this config")?;
    println!("{}", pseudonymizer.pseudonym(identity));
    Ok(())
}

#[derive(clap::Args)]
struct SelftestArgs {
    /// The nxguard to ask; default: the config's first UDP address (0.0.0.0 and :: as loopback).
    #[arg(short, long)]
    server: Option<std::net::SocketAddr>,
    /// Configuration (TOML) whose policy and block response are expected; default: the
    /// embedded one (every app, NXDOMAIN).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Listed names asked per app.
    #[arg(long, default_value_t = 3)]
    names: usize,
    /// How long to wait for each answer.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

fn run_selftest(args: &SelftestArgs) -> Result<()> {
    let config = load_config(args.config.as_ref())?;
    let policy = policy::load(&config.policy)?;
    let server = args.server.or_else(|| selftest::default_server(&config)).context("no server: give --server")?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let report = selftest::run(server, &policy, config.block.response, args.names.max(1), timeout)?;
    println!("{report}");
    anyhow::ensure!(report.all_enforced(), "the ban is not in force for: {}", report.not_enforced().join(", "));
    Ok(())
}

/// Tells systemd (`Type=notify`) about a state change; a failure is logged, never fatal.
fn notify_systemd(state: &str) {
    if let Err(error) = systemd::notify(state) {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

/// Whether a `[server]` change needs a restart: everything but the certificate files, which a
/// reload re-reads.
fn server_needs_restart(new: &nxguard::config::ServerConfig, old: &nxguard::config::ServerConfig) -> bool {
    let mut new = new.clone();
    new.tls_cert_file.clone_from(&old.tls_cert_file);
    new.tls_key_file.clone_from(&old.tls_key_file);
    new != *old
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(path) => Config::read(path)?,
        None => Config::embedded(),
    })
}

/// Logs go to stderr; colour codes only when stderr is a terminal, never into a file or the
/// journal. Query names in log events are in presentation form (`dns::presentation::name_text`).
fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.log.filter()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn check(path: Option<&PathBuf>) -> Result<()> {
    let config = load_config(path)?;
    let devices = Devices::load(&config.devices)?;
    let (policy, unresolved) = server::build_policy_reporting(&config, &devices)?;
    pool::Upstreams::new(&config.upstream)?;
    let server = &config.server;
    if !server.tls.is_empty() || !server.https.is_empty() || !server.quic.is_empty() || !server.h3.is_empty() {
        tls::ServerTls::load(&config.server)?;
    }
    pseudonymizer(&config)?;
    if let (StoreBackend::Sqlite, Some(path)) = (config.store.backend, &config.store.path) {
        // Run as the service's user (the unit's ExecStartPre does): root may write where it can't.
        store::check_writable(path)?;
    }
    // PostgreSQL: connects once, naming a bad URL, password file, CA, password or host.
    store::check(&config.store)?;
    for (group, client) in &unresolved.0 {
        eprintln!("warning: policy.groups {group:?}: {client:?} matches no device in the inventory");
    }
    for line in feeds::status_lines(&config.policy) {
        println!("feed {line}");
    }
    // The names a municipality needs must never be blocked: the shipped lists are tested, so a
    // hit comes from a feed, a local list or policy.extra.
    let local_names = config
        .policy
        .domains_dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join(domains::MUST_RESOLVE_FILE)).ok());
    let names = domains::must_resolve(local_names.as_deref().unwrap_or(domains::MUST_RESOLVE));
    for (name, rule) in policy::load::blocked_must_resolve(&policy, &names) {
        eprintln!("warning: {name} must keep resolving (domains/must-resolve.txt) but {rule} blocks it");
    }
    if let Some(dir) = &config.policy.domains_dir {
        // Curation warnings (order, kinds, sources): the first few, then a count.
        let lists = domains::read_dir(dir).map_err(policy::PolicyError::Lists)?;
        let warnings: Vec<_> =
            lists.iter().flat_map(|l| domains::lint(l, &format!("{}/{}.txt", dir.display(), l.id))).collect();
        for warning in warnings.iter().take(10) {
            eprintln!("warning: {warning}");
        }
        if warnings.len() > 10 {
            eprintln!("warning: … and {} more", warnings.len() - 10);
        }
    }
    println!("ok: {} apps, {} domains, policy version {}", policy.apps().len(), policy.len(), policy.version());
    Ok(())
}

/// How long queries in flight may take to finish on shutdown (upstream timeouts are shorter).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn serve(path: Option<&PathBuf>, config: Config) -> Result<()> {
    init_logging(&config);
    // Signals are watched before the sockets answer, so that a SIGHUP or SIGTERM sent as soon
    // as the server responds is handled instead of killing the process.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let listeners = listen::Listeners::bind(&config).context("cannot open the listening sockets")?;
    let mut running = server::start(&config, listeners, Vec::new())?;
    let mut feed_updates = running.refresh_feeds(&config);
    // Ready only once SIGHUP is handled: `systemctl reload` right after start must not kill us.
    notify_systemd("READY=1");
    let watching = config.policy.watch_secs > 0;
    let mut watch = tokio::time::interval(Duration::from_secs(config.policy.watch_secs.max(1)));
    let mut current = config.clone();
    let mut seen = fingerprint(path, &current);
    loop {
        tokio::select! {
            _ = running.wait() => anyhow::bail!("a listener stopped unexpectedly"),
            _ = hangup.recv() => reload_notified(path, &config, &mut current, &running),
            Some(()) = feed_updates.recv() => {
                tracing::info!("a feed changed; reloading the policy");
                reload_notified(path, &config, &mut current, &running);
            }
            _ = watch.tick(), if watching => {
                let now = fingerprint(path, &current);
                if now != seen {
                    tracing::info!("config or domain lists changed on disk");
                    reload_notified(path, &config, &mut current, &running);
                    seen = fingerprint(path, &current);
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    notify_systemd("STOPPING=1");
    running.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Names, sizes and modification times of the config file and the list files: a change in any
/// of them triggers a reload when watching is on.
fn fingerprint(path: Option<&PathBuf>, config: &Config) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut files: Vec<PathBuf> = path.into_iter().cloned().collect();
    if let Some(Ok(entries)) = config.policy.domains_dir.as_ref().map(std::fs::read_dir) {
        files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let (len, modified) = meta.map_or((0, None), |m| (m.len(), m.modified().ok()));
            (f, len, modified)
        })
        .collect()
}

/// A reload as systemd sees it: RELOADING=1, then READY=1 once the new configuration (or the
/// previous one, when the new one is broken) is in force.
fn reload_notified(path: Option<&PathBuf>, started_with: &Config, current: &mut Config, running: &server::Running) {
    notify_systemd("RELOADING=1");
    reload(path, started_with, current, running);
    notify_systemd("READY=1");
}

/// SIGHUP: re-read the config and the domain lists; a broken file keeps the running policy.
/// `current` is the config in force, updated when the reload succeeds.
fn reload(path: Option<&PathBuf>, started_with: &Config, current: &mut Config, running: &server::Running) {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(error) => {
            running.resolver.stats.reloaded(false);
            tracing::error!(error = %format!("{error:#}"), "reload failed; the previous configuration stays in force");
            return;
        }
    };
    let restart_only = [
        ("server", server_needs_restart(&config.server, &started_with.server)),
        ("cache.max_entries", config.cache.max_entries != started_with.cache.max_entries),
        ("cache.max_bytes", config.cache.max_bytes != started_with.cache.max_bytes),
        ("limits.max_in_flight", config.limits.max_in_flight != started_with.limits.max_in_flight),
        ("limits.tcp_max_connections", config.limits.tcp_max_connections != started_with.limits.tcp_max_connections),
        (
            "limits.tcp_max_connections_per_client",
            config.limits.tcp_max_connections_per_client != started_with.limits.tcp_max_connections_per_client,
        ),
        ("policy.watch_secs", config.policy.watch_secs != started_with.policy.watch_secs),
        (
            "devices.reverse_dns",
            (&config.devices.reverse_dns, config.devices.reverse_dns_timeout_ms)
                != (&started_with.devices.reverse_dns, started_with.devices.reverse_dns_timeout_ms),
        ),
        ("attempts", config.attempts != started_with.attempts),
        ("metrics", config.metrics != started_with.metrics),
        ("log", config.log != started_with.log),
    ];
    for (key, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(key, "changed in the config file; takes effect only after a restart");
    }
    match in_background(|| running.reload(&config)) {
        Ok(()) => {
            let live = running.resolver.live();
            tracing::info!(domains = live.policy.len(), policy_version = %live.policy.version(), "reloaded");
            *current = config;
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "reload failed; the previous configuration stays in force");
        }
    }
}

/// Runs `work` (a reload) on a thread of its own at the lowest CPU priority, inside the
/// async runtime. Rebuilding a 1M-domain list takes a few hundred milliseconds of CPU; where a
/// query worker shares the core (a small VM, or `workers` = all cores), the worker must win.
/// Without a thread to spare (out of resources), the work runs on the calling thread.
fn in_background<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let runtime = tokio::runtime::Handle::current();
    let work = std::sync::Mutex::new(Some(work));
    let take = || work.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("nxguard-reload".into()).spawn_scoped(scope, || {
            let _runtime = runtime.enter();
            lower_priority();
            take().map(|work| work())
        });
        let done = match thread {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(error) => {
                tracing::warn!(%error, "cannot start a reload thread; reloading on the main thread");
                None
            }
        };
        done.or_else(|| take().map(|work| work())).expect("the reload ran on one of the two threads")
    })
}

/// Moves the calling thread to the SCHED_IDLE policy (Linux schedules each thread on its own):
/// it runs only when no query worker wants the core, and a query arriving preempts it at once.
/// Under sustained full load a reload therefore waits for the first idle moments.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on this thread's ID and a valid sched_param; a failure
        // (reported by its return value) leaves the thread's policy as it was.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the reload thread's priority");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check { config } => check(config.as_ref()),
        Command::Selftest(args) => run_selftest(args),
        Command::Report(args) => run_report(args),
        Command::Lists { config, action } => lists(config.as_ref(), action.as_ref()),
        Command::Console(args) => run_console(args),
        Command::Case(args) => run_case(args),
        Command::Pseudonym { config, new_key, identity } => {
            pseudonym(config.as_ref(), new_key.as_ref(), identity.as_ref())
        }
        Command::Serve { config } => load_config(config.as_ref()).and_then(|loaded| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(listen::worker_count(&loaded))
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config.as_ref(), loaded))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
