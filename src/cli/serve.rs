//! `nxguard serve`: the resolver until SIGTERM, reloading on SIGHUP, feed changes and (with
//! policy.watch_secs) changes on disk.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use nxguard::{
    config::Config,
    listen,
    ops::systemd,
    server::{self, reload::Reloader},
};
use tokio::signal::unix::{SignalKind, signal};

/// How long queries in flight may take to finish on shutdown (upstream timeouts are shorter).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub fn run(path: Option<&Path>) -> Result<()> {
    let config = super::load_config(path)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(listen::worker_count(&config))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(path, config))
}

async fn serve(path: Option<&Path>, config: Config) -> Result<()> {
    super::init_logging(&config);
    // Signals are watched before the sockets answer, so that a SIGHUP or SIGTERM sent as soon
    // as the server responds is handled instead of killing the process.
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let listeners = listen::Listeners::bind(&config).context("cannot open the listening sockets")?;
    let mut running = server::start(&config, listeners, Vec::new())?;
    let mut feed_updates = running.refresh_feeds(&config);
    // Ready only once SIGHUP is handled: `systemctl reload` right after start must not kill us.
    systemd::notify_or_warn("READY=1");
    let watching = config.policy.watch_secs > 0;
    let mut watch = tokio::time::interval(Duration::from_secs(config.policy.watch_secs.max(1)));
    let mut reloader = Reloader::new(path, config);
    loop {
        tokio::select! {
            _ = running.wait() => anyhow::bail!("a listener stopped unexpectedly"),
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
