//! `resocket connect` prints the replies that arrive while it closes after the end of its input.

use std::process::Stdio;

use resocket_testkit::{within, Behavior, TestServer};
use tokio::{io::AsyncWriteExt, process::Command};

/// Runs `resocket connect url` with `input` on stdin; returns (exit code, stdout).
async fn connect_with_input(url: &str, input: &[u8]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resocket"))
        .args(["connect", url, "--ping-interval", "0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[tokio::test]
async fn replies_to_piped_input_are_printed_before_exit() {
    within(60, "replies after eof", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (code, stdout) = connect_with_input(&server.url(), b"a\nb\nc\n").await;
        assert_eq!(code, 0);
        assert_eq!(stdout, "a\nb\nc\n");
    })
    .await;
}
