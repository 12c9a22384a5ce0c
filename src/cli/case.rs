//! `nxguard case`: the console's removal cases from the command line: list, open, update.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;
use nxguard::review::console::{self, cases};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Every case, after deciding verified and recurred from the attempt store.
    List,
    /// Open a case for a device (its key, as `report` shows it) and an app.
    Open {
        #[arg(long)]
        device: String,
        #[arg(long)]
        app: String,
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long, default_value = "")]
        ticket: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Change a case: removal requested, removed (on a date), or its ticket and note.
    Update {
        id: i64,
        #[arg(long, conflicts_with = "removed")]
        request_removal: bool,
        /// The app was removed on this date (2026-11-30) or time; "now" for now.
        #[arg(long)]
        removed: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
}

pub fn run(args: &Args, config: Option<&Path>) -> Result<()> {
    let config = super::load_config(config)?;
    let console = super::console::open(&config)?;
    let now = console.now();
    match &args.action {
        Action::List => {
            let mut store = console.store()?;
            let db = console.db();
            cases::refresh(&db, &mut store, console.pseudonymizer.as_ref(), now, console.config.verify_days)?;
            println!("{}", serde_json::to_string_pretty(&cases::list(&db, None)?)?);
        }
        Action::Open { device, app, owner, ticket, note } => {
            let id = cases::open(&console.db(), device, app, owner, ticket, note, now)?;
            super::console::audit(
                &console,
                "case open",
                &format!("case {id}"),
                &format!("{device} × {app}; ticket {ticket:?}"),
            )?;
            println!("{id}");
        }
        Action::Update { id, request_removal, removed, ticket, note } => {
            let action = match (request_removal, removed) {
                (true, _) => "request_removal",
                (false, Some(_)) => "removed",
                (false, None) => "note",
            };
            let removed = removed.as_deref().filter(|r| *r != "now").unwrap_or("");
            let before = cases::get(&console.db(), *id)?;
            let note = note.clone().unwrap_or(before.note);
            let change = console::case_pages::change(action, removed, ticket.clone(), &note, now)?;
            let after = cases::update(&console.db(), *id, &change, now)?;
            let detail = format!("{} -> {}; {action}", before.state.as_str(), after.state.as_str());
            super::console::audit(&console, "case update", &format!("case {id}"), &detail)?;
            println!("case {id}: {}", after.state.as_str());
        }
    }
    Ok(())
}
