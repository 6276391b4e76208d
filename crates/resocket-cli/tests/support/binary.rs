//! Running the `resocket` binary the way a script does.

use std::process::Stdio;

use tokio::process::Command;

/// The `resocket` binary, with no colour, no backtraces, and killed when the handle drops.
pub fn resocket() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resocket"));
    command
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

/// Runs to completion with an empty stdin; returns (exit code, stdout, stderr).
pub async fn output(args: &[&str]) -> (i32, String, String) {
    let out = resocket()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the resocket binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
