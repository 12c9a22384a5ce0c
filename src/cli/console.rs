//! `nxguard console`: the security officer's web console, and adding its users and API tokens
//! from the command line (each change written to the audit log).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use nxguard::{
    config::{Config, StoreBackend},
    review::console::{self, Console, audit, auth},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
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

/// The console over a config: its database and the attempt store it reads.
pub(super) fn open(config: &Config) -> Result<Console> {
    let (path, url) = match config.store.backend {
        StoreBackend::Sqlite => (config.store.path.clone().context("no attempt store: set store.path")?, None),
        StoreBackend::Postgres => {
            (PathBuf::new(), Some(config.store.url.clone().context("no attempt store: set store.url")?))
        }
    };
    let clock: console::Clock = std::sync::Arc::new(std::time::SystemTime::now);
    let mut console = Console::open(config.console.clone(), path, super::pseudonymizer(config)?, clock)?;
    console.store_url = url;
    console.store_config = config.store.clone();
    console.policy = Some(config.policy.clone());
    Ok(console)
}

/// The audit record of a command-line change: the Unix user, from the local machine.
pub(super) fn audit(console: &Console, action: &str, target: &str, detail: &str) -> Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let record = audit::Record { actor: &actor, role: "cli", address: "local", action, target, detail };
    Ok(audit::record(&console.db(), console.now(), &record)?)
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    let console = open(&config)?;
    match &args.action {
        None => {
            super::init_logging(&config);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(console::serve(std::sync::Arc::new(console)))?;
        }
        Some(Action::User { action: UserAction::Add { name, role, .. } }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            auth::add_user(&console.db(), name, *role, password, console.now())?;
            audit(&console, "user add", name, role.as_str())?;
            println!("user {name} ({}) saved", role.as_str());
        }
        Some(Action::Token { action: TokenAction::Add { name, role } }) => {
            let token = auth::add_token(&console.db(), name, *role, console.now())?;
            audit(&console, "token add", name, role.as_str())?;
            println!("{token}");
        }
    }
    Ok(())
}
