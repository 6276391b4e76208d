//! The `resocket` command: parses arguments and hands over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    resocket_cli::main()
}
