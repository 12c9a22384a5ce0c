//! `nxguard console`: the security officer's web console, and adding its users and API tokens
//! from the command line (each change written to the audit log).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use nxguard::{
    config::{Config, StoreBackend},
    ops::ready,
    review::console::{self, Console, audit, auth},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Once the console listens, write its address to PATH as JSON ({"console":
    /// ["127.0.0.1:40123"]}). With port 0 in console.listen, this is how to learn the port.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
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
    /// Disable a user: no sign-in, and the user's sessions end.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Delete a user and end the user's sessions (the audit log keeps the name).
    Delete { name: String },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token (printed once; stored only hashed). It opens /api/v1/ only.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: auth::Role,
        /// The token stops working after this long (90d) or at this time (2027-03-01); without
        /// it, it works until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

/// The console over a config: its database and the attempt store it reads.
pub(super) fn open(config: &Config) -> Result<Console> {
    let source = match config.store.backend {
        StoreBackend::Sqlite => {
            config.store.path.as_ref().context("no attempt store: set store.path")?.display().to_string()
        }
        StoreBackend::Postgres => config.store.url.clone().context("no attempt store: set store.url")?,
    };
    let clock: console::Clock = std::sync::Arc::new(std::time::SystemTime::now);
    let mut console =
        Console::open(config.console.clone(), PathBuf::from(&source), super::pseudonymizer(config)?, clock)?;
    console.read_store(&source, config.store.clone())?;
    console.policy = Some(config.policy.clone());
    Ok(console)
}

/// The audit record of a command-line change: the Unix user, from the local machine.
pub(super) fn audit(console: &Console, action: &str, target: &str, detail: &str) -> Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let record = audit::Record { actor: &actor, role: "cli", address: "local", action, target, detail };
    Ok(audit::record(&console.db()?, console.now(), &record)?)
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
                .block_on(serve(console, args.ready_file.as_deref()))?;
        }
        Some(Action::User { action }) => run_user(&console, action)?,
        Some(Action::Token { action }) => run_token(&console, action)?,
    }
    Ok(())
}

/// Binds console.listen, writes the ready file, serves until SIGTERM.
async fn serve(console: Console, ready_file: Option<&Path>) -> Result<()> {
    let listen = console.config.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(file) = ready_file {
        let bound = vec![("console", vec![listener.local_addr()?])];
        ready::write(file, &bound).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(console::serve_on(std::sync::Arc::new(console), listener).await?)
}

fn run_user(console: &Console, action: &UserAction) -> Result<()> {
    let db = console.db()?;
    let (verb, name) = match action {
        UserAction::Add { name, role, .. } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            auth::add_user(&db, name, *role, password, console.now())?;
            ("add", name)
        }
        UserAction::Disable { name } => (auth::set_disabled(&db, name, true).map(|()| "disable")?, name),
        UserAction::Enable { name } => (auth::set_disabled(&db, name, false).map(|()| "enable")?, name),
        UserAction::Delete { name } => (auth::delete_user(&db, name).map(|()| "delete")?, name),
    };
    drop(db);
    audit(console, &format!("user {verb}"), name, "")?;
    println!("user {name}: {verb} done");
    Ok(())
}

fn run_token(console: &Console, action: &TokenAction) -> Result<()> {
    let now = console.now();
    match action {
        TokenAction::Add { name, role, expires } => {
            let expires = expires.as_deref().map(|e| token_expiry(e, now)).transpose()?;
            let token = auth::add_token(&console.db()?, name, *role, expires, now)?;
            let until = expires.map(|at| humantime::format_rfc3339_seconds(at).to_string());
            let detail = format!("{}; expires {}", role.as_str(), until.as_deref().unwrap_or("never"));
            audit(console, "token add", name, &detail)?;
            println!("{token}");
        }
        TokenAction::Revoke { name } => {
            auth::revoke_token(&console.db()?, name)?;
            audit(console, "token revoke", name, "")?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}

/// `--expires`: a duration from now (90d) or a date or time (2027-03-01).
fn token_expiry(text: &str, now: std::time::SystemTime) -> Result<std::time::SystemTime> {
    if let Ok(ahead) = humantime::parse_duration(text) {
        return Ok(now + ahead);
    }
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z'))
        .with_context(|| format!("--expires {text:?}: give a duration (90d) or a date (2027-03-01)"))
}
