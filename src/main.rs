//! The `nxguard` command: parses the command line, runs one subcommand (`cli`), and turns its
//! result into the exit code. Every subcommand's arguments and start-up live in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: most of nxguard's errors already word their cause
/// (so that a log line's `%error` is whole), and a cause is only added when the text so far does
/// not contain it.
fn chain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        let cause = cause.trim_end();
        if !text.contains(cause) {
            text.push_str(": ");
            text.push_str(cause);
        }
    }
    text
}
