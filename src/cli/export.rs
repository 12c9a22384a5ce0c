//! `nxguard export`: the policy as a file for another resolver.

use std::path::{Path, PathBuf};

use anyhow::Result;
use nxguard::{export, policy, policy::feeds, zone};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    format: export::Format,
    /// Write here (replaced atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    let policy = policy::load(&config.policy)?;
    let serial = zone::next_serial(0, std::time::SystemTime::now());
    let params = export::ZoneParams { zone: &config.rpz.zone, serial, ttl: config.rpz.refresh_secs };
    let mut text = Vec::new();
    export::write(&policy, args.format, &params, &mut text)?;
    match &args.out {
        Some(path) => feeds::write_atomically(path, &text)?,
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), &text)?,
    }
    Ok(())
}
