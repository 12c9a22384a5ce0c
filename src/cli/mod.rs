//! The command line: the clap types and one file per subcommand, each with its `Args` and
//! `run`. Owns parsing arguments, the global `--config`, logging set-up and turning a command's
//! error into its exit code (in `main`); the work itself is done by the library's rooms.

mod case;
mod check;
mod console;
mod export;
mod ingest;
mod lists;
mod manpage;
mod pseudonym;
mod report;
mod selftest;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use nxguard::{
    config::{Config, LogFormat},
    evidence::store,
};
use tracing_subscriber::EnvFilter;

/// DNS resolver that blocks banned apps (TikTok, WeChat, Temu…) with NXDOMAIN and records which
/// device tried which app.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML; see deploy/nxguard.toml), before or after the subcommand.
    /// Without it, the embedded default: listens on 127.0.0.1:5300, answers loopback clients,
    /// forwards to Quad9 over DNS-over-TLS, enforces every app.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the resolver (with the embedded default when --config is not given).
    /// SIGHUP reloads the config and domain lists; SIGTERM or Ctrl-C stops gracefully.
    Serve(serve::Args),
    /// Validate a configuration and the domain lists it loads, and that the attempt store can
    /// be written (run it as the service's user); exits non-zero on any problem.
    Check,
    /// Ask a running nxguard for a few listed names of every app the config enforces, over UDP
    /// and TCP, and report per app whether the ban is in force. Exits non-zero when an app is
    /// not blocked or the server does not answer.
    Selftest(selftest::Args),
    /// Which devices tried which banned app: per device and app (default), or one device's
    /// timeline with --device. Read-only over the attempt store.
    Report(report::Args),
    /// The feeds (`[[policy.feeds]]`): per feed its URL, entries in force, last success, last
    /// attempt, ETag and last error, read from `policy.cache_dir`. `lists accept NAME` accepts a
    /// version the shrink guard refused; it applies at the next reload.
    Lists(lists::Args),
    /// Pseudonyms: create a key file, or show the pseudonym of a device name, hostname, MAC or
    /// address (to find one device in a pseudonymised store on suspicion).
    Pseudonym(pseudonym::Args),
    /// The security officer's web console (console.listen, default 127.0.0.1:8053), or its
    /// users and API tokens. Read-only over the attempt store; writes console.state_path.
    Console(console::Args),
    /// Removal cases (the console's cases, from the command line): list, open, update.
    Case(case::Args),
    /// Receive other resolvers' dnstap (`[ingest]`) and serve the Response Policy Zone
    /// (`[rpz]`) without answering DNS queries: the evidence and policy centre for Unbound,
    /// BIND, PowerDNS or Knot resolvers. SIGHUP reloads as for serve.
    Ingest(serve::Args),
    /// Write the policy as a file for another resolver: rpz, unbound, bind, dnsmasq, hosts or
    /// adblock (see docs/operator/existing-resolvers.md).
    Export(export::Args),
    /// Write the nxguard(8) manual page (roff) to standard output.
    #[command(hide = true)]
    Manpage,
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<()> {
        let config = self.config.as_deref();
        match &self.command {
            Command::Serve(args) => serve::run(args, config),
            Command::Check => check::run(config),
            Command::Selftest(args) => selftest::run(args, config),
            Command::Report(args) => report::run(args, config),
            Command::Lists(args) => lists::run(args, config),
            Command::Pseudonym(args) => pseudonym::run(args, config),
            Command::Console(args) => console::run(args, config),
            Command::Case(args) => case::run(args, config),
            Command::Ingest(args) => ingest::run(args, config),
            Command::Export(args) => export::run(args, config),
            Command::Manpage => manpage::run(),
        }
    }
}

/// The config at `path`, or the embedded default without one.
fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(path) => Config::read(path)?,
        None => Config::embedded(),
    })
}

/// The pseudonymizer the config asks for (privacy.pseudonymize with privacy.key_file), if any.
fn pseudonymizer(config: &Config) -> Result<Option<store::Pseudonymizer>> {
    Ok(match (&config.privacy.key_file, config.privacy.pseudonymize) {
        (Some(key), true) => Some(store::Pseudonymizer::from_file(key)?),
        _ => None,
    })
}

/// Logs go to stderr; colour codes only when stderr is a terminal, never into a file or the
/// journal. Query names in log events are in presentation form (`dns::presentation::name_text`).
fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.log.filter()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
