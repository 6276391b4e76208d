//! `resocket connect` prints the replies that arrive while it closes after the end of its input.

use std::process::Stdio;

use resocket_testkit::{within, Behavior, TestServer};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

fn spawn_connect(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_resocket"))
        .args(["connect", url, "--ping-interval", "0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `resocket connect url` with `input` on stdin; returns (exit code, stdout).
async fn connect_with_input(url: &str, input: &[u8]) -> (i32, String) {
    let mut child = spawn_connect(url);
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

#[tokio::test]
async fn replies_to_a_thousand_piped_lines_are_all_printed_in_order() {
    within(60, "a thousand replies after eof", async {
        let server = TestServer::start(Behavior::Echo).await;
        let input: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let (code, stdout) = connect_with_input(&server.url(), input.as_bytes()).await;
        assert_eq!(code, 0);
        assert!(stdout == input, "{} of 1000 lines", stdout.lines().count());
    })
    .await;
}

#[tokio::test]
async fn the_reply_to_the_line_before_eof_is_printed() {
    within(60, "reply to the last line", async {
        let server = TestServer::start(Behavior::Echo).await;
        let mut child = spawn_connect(&server.url());
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdin.write_all(b"hello\n").await.unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).await.unwrap();
        assert_eq!(line, "hello\n");
        stdin.write_all(b"world\n").await.unwrap();
        drop(stdin);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "world\n");
        assert!(child.wait().await.unwrap().success());
    })
    .await;
}
