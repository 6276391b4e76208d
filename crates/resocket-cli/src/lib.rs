//! The `resocket` command-line tool: `connect`, `serve`, `chaos`, `bench`, `demo` and
//! `completions`.
//!
//! Every command reports bad input as one line on stderr and a non-zero exit status: clap's
//! usage errors are cut to their first line (status 2), and runtime errors print their whole
//! cause chain on one line (status 1). Status 3 means messages did not make it; the statuses
//! are listed in every command's `--help`. No command panics on input.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod bench;
mod chaos;
mod cli;
mod completions;
mod connect;
mod demo;
mod exit;
mod input;
mod serve;
mod serve_config;

pub use cli::{Cli, Command};

/// Parses the command line and runs the command on a tokio runtime.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return exit::code(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A blocking read of stdin may still be parked in a runtime thread; do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code(exit::FAILURE)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Connect(args) => connect::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Completions(args) => completions::run(args),
    }
}

/// `Cli::try_parse`, keeping what only the matches know: which serve settings were given.
fn parse() -> Result<Cli, clap::Error> {
    let command = || Cli::command().mut_subcommand("serve", serve_config::with_file_keys);
    let matches = command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command()))?;
    if let (Command::Serve(args), Some(serve)) =
        (&mut cli.command, matches.subcommand_matches("serve"))
    {
        args.given = serve_config::Given::from_matches(serve);
    }
    Ok(cli)
}

/// Help and version go to stdout as clap prints them; real usage errors become one line.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            exit::code(exit::SUCCESS)
        }
        _ => {
            let rendered = error.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line} (see --help)");
            exit::code(exit::USAGE)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,resocket=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESOCKET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr closed: a log collector gone, a parent
        // that stopped reading) is dropped. Reporting it would `eprintln!`, which panics on
        // the same broken stderr and takes down whichever task logged, such as the hub's Redis
        // pub/sub task.
        .log_internal_errors(false)
        .try_init();
}
