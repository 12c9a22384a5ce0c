//! The `nxguard` command: serve, or check a configuration.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nxguard::{
    config::{Config, LogFormat},
    domains, policy, server, upstream,
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
    /// Validate a configuration and the domain lists it loads; exits non-zero on any problem.
    Check {
        /// Configuration file (TOML); without it, the embedded default is checked.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(path) => Config::read(path)?,
        None => Config::embedded(),
    })
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.log.filter()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn check(path: Option<&PathBuf>) -> Result<()> {
    let config = load_config(path)?;
    let policy = policy::load(&config.policy)?;
    upstream::Upstreams::new(&config.upstream)?;
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
    let listeners = server::Listeners::bind(&config).context("cannot open the listening sockets")?;
    let mut running = server::start(&config, listeners, Vec::new())?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let watching = config.policy.watch_secs > 0;
    let mut watch = tokio::time::interval(Duration::from_secs(config.policy.watch_secs.max(1)));
    let mut current = config.clone();
    let mut seen = fingerprint(path, &current);
    loop {
        tokio::select! {
            _ = running.wait() => anyhow::bail!("a listener stopped unexpectedly"),
            _ = hangup.recv() => reload(path, &config, &mut current, &running),
            _ = watch.tick(), if watching => {
                let now = fingerprint(path, &current);
                if now != seen {
                    tracing::info!("config or domain lists changed on disk");
                    reload(path, &config, &mut current, &running);
                    seen = fingerprint(path, &current);
                }
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
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
        ("server", config.server != started_with.server),
        ("cache.max_entries", config.cache.max_entries != started_with.cache.max_entries),
        ("limits.max_in_flight", config.limits.max_in_flight != started_with.limits.max_in_flight),
        ("limits.tcp_max_connections", config.limits.tcp_max_connections != started_with.limits.tcp_max_connections),
        (
            "limits.tcp_max_connections_per_client",
            config.limits.tcp_max_connections_per_client != started_with.limits.tcp_max_connections_per_client,
        ),
        ("policy.watch_secs", config.policy.watch_secs != started_with.policy.watch_secs),
        ("attempts", config.attempts != started_with.attempts),
        ("metrics", config.metrics != started_with.metrics),
        ("log", config.log != started_with.log),
    ];
    for (key, _) in restart_only.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(key, "changed in the config file; takes effect only after a restart");
    }
    match running.reload(&config) {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check { config } => check(config.as_ref()),
        Command::Serve { config } => load_config(config.as_ref()).and_then(|loaded| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(server::worker_count(&loaded))
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
