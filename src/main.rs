//! The `nxguard` command: parses the command line, runs one subcommand (`cli`), and turns its
//! result into the exit code. Every subcommand's arguments and start-up live in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
