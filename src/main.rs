//! The `nxguard` command: serve, or check a configuration.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nxguard::{
    config::{Config, LogFormat},
    domains, policy, server,
};
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
    // Library crates stay at warn: none of them may log queries with client addresses.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,nxguard={0},{0}", config.log.level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn check(path: Option<&PathBuf>) -> Result<()> {
    let config = load_config(path)?;
    let policy = policy::load(&config.policy)?;
    if let Some(dir) = &config.policy.domains_dir {
        let lists = domains::read_dir(dir).map_err(policy::PolicyError::Lists)?;
        for list in &lists {
            for problem in domains::lint(list, &format!("{}/{}.txt", dir.display(), list.id)) {
                eprintln!("warning: {problem}");
            }
        }
    }
    println!(
        "ok: {} apps, {} domains, policy version {}",
        policy.apps().len(),
        policy.len(),
        policy.version()
    );
    Ok(())
}

async fn serve(path: Option<&PathBuf>) -> Result<()> {
    let config = load_config(path)?;
    init_logging(&config);
    let listeners = server::Listeners::bind(&config).context("cannot open the listening sockets")?;
    let mut running = server::start(&config, listeners, Vec::new())?;
    tokio::select! {
        _ = running.wait() => anyhow::bail!("a listener stopped unexpectedly"),
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check { config } => check(config.as_ref()),
        Command::Serve { config } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(serve(config.as_ref()))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
