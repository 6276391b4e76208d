//! Running the `resocket` binary the way a script does.

use std::{ffi::OsStr, process::Stdio};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The `resocket` binary, with no colour, no backtraces, and killed when the handle drops.
pub fn resocket() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resocket"));
    command
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

/// The `resocket` binary as [`resocket`] gives it, without the `RESOCKET_*` variables of the
/// test's own environment.
pub fn resocket_without_env() -> Command {
    let mut command = resocket();
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("RESOCKET_")) {
        command.env_remove(name);
    }
    command
}

/// Runs `resocket ARGS` to completion with an empty stdin; returns (exit code, stdout, stderr).
pub async fn output(args: &[&str]) -> (i32, String, String) {
    let mut command = resocket();
    command.args(args);
    output_of(command).await
}

/// Runs `command` to completion with an empty stdin; returns (exit code, stdout, stderr).
pub async fn output_of(mut command: Command) -> (i32, String, String) {
    let out = command
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

/// Starts `resocket serve --listen 127.0.0.1:0 ARGS` with `env` and no other `RESOCKET_*`
/// variable; returns it and the port its banner names. Its stderr is closed after the banner,
/// so whatever it logs later meets a broken pipe, which it must survive.
pub async fn serve_on_free_port<A: AsRef<OsStr>>(
    args: impl IntoIterator<Item = A>,
    env: &[(&str, &str)],
) -> (Child, u16) {
    serve_on(0, args, env).await
}

/// As [`serve_on_free_port`], on `127.0.0.1:port` (a node restarted where it was).
pub async fn serve_on<A: AsRef<OsStr>>(
    port: u16,
    args: impl IntoIterator<Item = A>,
    env: &[(&str, &str)],
) -> (Child, u16) {
    let mut command = resocket_without_env();
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run the resocket binary");
    let stderr = child.stderr.take().expect("stderr is piped");
    let banner = BufReader::new(stderr)
        .lines()
        .next_line()
        .await
        .expect("read the banner")
        .expect("a banner");
    let port: u16 = banner
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner:?}"));
    (child, port)
}
