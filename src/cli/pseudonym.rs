//! `nxguard pseudonym`: a new key file, or the pseudonym of one device identity.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nxguard::evidence::store;

#[derive(clap::Args)]
pub struct Args {
    /// Write a new random key to this file (refuses to overwrite).
    #[arg(long, conflicts_with = "identity")]
    new_key: Option<PathBuf>,
    /// The device name, hostname, MAC or address to turn into its pseudonym.
    identity: Option<String>,
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    if let Some(path) = &args.new_key {
        store::Pseudonymizer::create_key(path)?;
        println!("new key written to {}; keep it apart from the database", path.display());
        return Ok(());
    }
    let config = super::load_config(config)?;
    let identity = args.identity.as_ref().context("give a device name, hostname, MAC or address")?;
    let pseudonymizer = super::pseudonymizer(&config)?.context("privacy.pseudonymize is off in this config")?;
    println!("{}", pseudonymizer.pseudonym(identity));
    Ok(())
}
