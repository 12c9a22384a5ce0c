//! The `nxguard` command: parses the command line, runs one subcommand (`cli`), and turns its
//! result into the exit code. Every subcommand's arguments and start-up live in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a forwarded query allocates and frees about 25 blocks
/// (its task, buffers, the cache entry), in bursts of a whole batch, which overflow glibc's
/// per-thread cache; glibc then took 28 % of a miss's instructions (callgrind, benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
