//! `nxguard serve`: the resolver until SIGTERM, reloading on SIGHUP, feed changes and (with
//! policy.watch_secs) changes on disk.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use nxguard::{
    config::Config,
    listen,
    ops::{ready, systemd},
    server::{self, reload::Reloader},
};
use tokio::signal::unix::{SignalKind, signal};

/// How long queries in flight may take to finish on shutdown (upstream timeouts are shorter).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct Args {
    /// Once every listener is bound, write their addresses to PATH as JSON
    /// ({"udp": ["127.0.0.1:40123"], "tcp": [...], "metrics": [...], ...}; kinds without a
    /// listener are left out). With port 0 in the config, this is how to learn the ports.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

pub fn run(args: &Args, path: Option<&Path>) -> Result<()> {
    let config = super::load_config(path)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(listen::worker_count(&config))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(path, config, true, args.ready_file.as_deref()))
}

/// Runs the server until SIGTERM; without `dns`, only `[rpz]`, `[ingest]` and the metrics
/// endpoint (`nxguard ingest`). The bound addresses go to `ready_file` once listening.
pub(super) async fn serve(path: Option<&Path>, config: Config, dns: bool, ready_file: Option<&Path>) -> Result<()> {
    super::init_logging(&config);
    // Signals are watched before the sockets answer, so that a SIGHUP or SIGTERM sent as soon
    // as the server responds is handled instead of killing the process.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let listeners = if dns {
        listen::Listeners::bind(&config).context("cannot open the listening sockets")?
    } else {
        listen::Listeners { udp: vec![], tcp: vec![], tls: vec![], https: vec![], quic: vec![], h3: vec![] }
    };
    let mut running = server::start(&config, listeners, Vec::new())?;
    let mut feed_updates = running.refresh_feeds(&config);
    // Ready only once SIGHUP is handled: `systemctl reload` right after start must not kill us.
    if let Some(file) = ready_file {
        ready::write(file, &running.bound()).with_context(|| format!("cannot write {}", file.display()))?;
    }
    systemd::notify_or_warn("READY=1");
    let watching = config.policy.watch_secs > 0;
    let mut watch = tokio::time::interval(Duration::from_secs(config.policy.watch_secs.max(1)));
    let mut reloader = Reloader::new(path, config);
    loop {
        tokio::select! {
            () = running.wait(), if dns => anyhow::bail!("a listener stopped unexpectedly"),
            _ = hangup.recv() => reloader.reload(&running),
            Some(()) = feed_updates.recv() => {
                tracing::info!("a feed changed; reloading the policy");
                reloader.reload(&running);
            }
            _ = watch.tick(), if watching => reloader.reload_if_changed(&running),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    systemd::notify_or_warn("STOPPING=1");
    running.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}
