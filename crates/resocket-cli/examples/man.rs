//! Writes the man pages of the `resocket` command (`resocket.1` and one per subcommand) into
//! a directory, from the same clap definitions as `--help`.
//!
//! Run it through `scripts/man`, which regenerates `crates/resocket-cli/man/` (or, with
//! `--check`, diffs it against a fresh copy): `cargo run -p resocket-cli --example man -- DIR`.
//! It is an example rather than a subcommand so the release binary does not carry the man page
//! generator.

use std::{path::PathBuf, process::ExitCode};

use clap::CommandFactory;
use resocket_cli::Cli;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: man DIR");
        return ExitCode::from(2);
    };
    match clap_mangen::generate_to(Cli::command(), &dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "error: cannot write the man pages to {}: {error}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
