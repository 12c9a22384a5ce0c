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
    /// Change a case: removal requested, removed (at a moment), closed as a false positive, or
    /// its ticket and note.
    Update {
        id: i64,
        #[arg(long, conflicts_with_all = ["removed", "false_positive"])]
        request_removal: bool,
        /// The app was removed at this time (2026-11-30T10:30, UTC) or "now"; a date alone means
        /// the end of that day (now, for today). Future moments are refused.
        #[arg(long, conflicts_with = "false_positive")]
        removed: Option<String>,
        /// Close the case as a false positive, for this reason.
        #[arg(long, value_name = "REASON")]
        false_positive: Option<String>,
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
            super::report::runtime()?.block_on(cases::refresh(&console, &mut store, now))?;
            println!("{}", serde_json::to_string_pretty(&cases::list(&console.db()?, None)?)?);
        }
        Action::Open { device, app, owner, ticket, note } => {
            let id = cases::open(&console.db()?, device, app, owner, ticket, note, now)?;
            super::console::audit(
                &console,
                "case open",
                &format!("case {id}"),
                &format!("{device} × {app}; ticket {ticket:?}"),
            )?;
            println!("{id}");
        }
        Action::Update { id, request_removal, removed, false_positive, ticket, note } => {
            let action = match (request_removal, removed, false_positive) {
                (true, _, _) => "request_removal",
                (false, Some(_), _) => "removed",
                (false, None, Some(_)) => "false_positive",
                (false, None, None) => "note",
            };
            let removed = removed.as_deref().unwrap_or("");
            let reason = false_positive.as_deref().unwrap_or("");
            let before = cases::get(&console.db()?, *id)?;
            let note = note.clone().unwrap_or(before.note);
            let change = console::case_pages::change(action, removed, ticket.clone(), &note, reason, now)?;
            let after = cases::update(&console.db()?, *id, &change, now)?;
            let detail = console::case_pages::update_detail(before.state, &after, &change);
            super::console::audit(&console, "case update", &format!("case {id}"), &detail)?;
            println!("case {id}: {}", after.state.as_str());
        }
    }
    Ok(())
}
