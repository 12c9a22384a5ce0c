//! `nxguard lists`: the feeds' status, and accepting a version the shrink guard refused.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use nxguard::policy::feeds;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
    /// Accept the refused (shrunk) version of feed NAME as its copy in force.
    Accept {
        /// The feed's name.
        name: String,
    },
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    match &args.action {
        None => {
            if config.policy.feeds.is_empty() {
                println!("no feeds configured ([[policy.feeds]])");
            }
            for line in feeds::status_lines(&config.policy) {
                println!("{line}");
            }
        }
        Some(Action::Accept { name }) => {
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
