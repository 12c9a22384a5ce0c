//! `nxguard selftest`: asks a running nxguard for listed names of every enforced app.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use nxguard::{ops::selftest, policy};

#[derive(clap::Args)]
pub struct Args {
    /// The nxguard to ask; default: the config's first UDP address (0.0.0.0 and :: as loopback).
    /// The config (--config; default: the embedded one, every app, NXDOMAIN) gives the policy
    /// and block response expected.
    #[arg(short, long)]
    server: Option<std::net::SocketAddr>,
    /// Listed names asked per app.
    #[arg(long, default_value_t = 3)]
    names: usize,
    /// How long to wait for each answer.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    let policy = policy::load(&config.policy)?;
    let server = args.server.or_else(|| selftest::default_server(&config)).context("no server: give --server")?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let report = selftest::run(server, &policy, config.block.response, args.names.max(1), timeout)?;
    println!("{report}");
    anyhow::ensure!(report.all_enforced(), "the ban is not in force for: {}", report.not_enforced().join(", "));
    Ok(())
}
