//! `resocket completions`: the shell completion script, generated from the command line's
//! own definitions so it never falls behind a flag.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::CommandFactory;

use crate::{
    cli::{Cli, CompletionsArgs},
    exit,
};

/// Prints the completion script for `args.shell` on stdout.
///
/// # Errors
///
/// Fails when stdout cannot be written (a closed pipe, a full disk).
pub(crate) fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let script = script(args.shell);
    // Rendered into memory first: clap_complete panics on a failed write, and a closed pipe
    // must be an error line, not a panic.
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("cannot write the completion script to stdout")?;
    Ok(exit::code(exit::SUCCESS))
}

/// The completion script for `shell`, for the command named `resocket`.
fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "resocket", &mut script);
    script
}
