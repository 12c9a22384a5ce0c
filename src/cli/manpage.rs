//! `nxguard manpage` (hidden): nxguard(8) in roff, generated from these clap types, so that the
//! manual page says what `--help` says: clap_mangen writes the title, synopsis and global
//! options; each subcommand gets a subsection with its usage and options. `docs/man/nxguard.8`
//! is its output; a test keeps it so.

use std::fmt::Write as _;

use anyhow::Result;
use clap::{Command, CommandFactory};

pub fn run() -> Result<()> {
    let command = super::Cli::command();
    let man = clap_mangen::Man::new(command.clone()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut commands = String::from(".SH COMMANDS\n");
    for sub in command.get_subcommands() {
        write_command(&mut commands, sub, "nxguard");
    }
    man.render_version_section(&mut out)?;
    let mut page = String::from_utf8(out)?;
    page.insert_str(page.rfind(".SH VERSION").unwrap_or(page.len()), &commands);
    print!("{page}");
    Ok(())
}

/// A subsection for `command` (and its own subcommands): usage, what it does, its options.
fn write_command(out: &mut String, command: &Command, parent: &str) {
    if command.is_hide_set() || command.get_name() == "help" {
        return;
    }
    let path = format!("{parent} {}", command.get_name());
    let mut built = command.clone().bin_name(&path);
    let usage = built.render_usage().to_string();
    let _ = writeln!(out, ".SS \"{}\"\n.nf\n{}\n.fi", escape(&path), escape(usage.trim_start_matches("Usage: ")));
    if let Some(about) = command.get_long_about().or_else(|| command.get_about()) {
        let _ = writeln!(out, "{}", escape(&about.to_string()));
    }
    let options = command.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set());
    for arg in options.filter(|a| a.get_id() != "help") {
        let name = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => format!("\\fB\\-{short}\\fR, \\fB\\-\\-{}\\fR", escape(long)),
            (Some(long), None) => format!("\\fB\\-\\-{}\\fR", escape(long)),
            _ => format!("\\fI{}\\fR", escape(arg.get_id().as_str()).to_uppercase()),
        };
        let help = arg.get_long_help().or_else(|| arg.get_help()).map(ToString::to_string).unwrap_or_default();
        let _ = writeln!(out, ".TP\n{name}\n{}", escape(&help));
    }
    for sub in command.get_subcommands() {
        write_command(out, sub, &path);
    }
}

/// Text safe in a roff line: backslashes and hyphens escaped, no line starting with a control
/// character.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    text.lines()
        .map(|line| if line.starts_with(['.', '\'']) { format!("\\&{line}") } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}
