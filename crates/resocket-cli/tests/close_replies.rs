//! `resocket connect` prints the replies that arrive while it closes after the end of its input,
//! against the test kit's echo server and against Python `websockets` and Node `ws`, which stop
//! answering once they receive a Close (hence `--linger`).

use std::process::Stdio;

use resocket_testkit::{within, Behavior, Peer, PeerServer, TestServer};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

fn spawn_connect(url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_resocket"))
        .args(["connect", url, "--ping-interval", "0"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs `resocket connect url` with `input` on stdin; returns (exit code, stdout).
async fn connect_with_input(url: &str, input: &[u8], extra: &[&str]) -> (i32, String) {
    let mut child = spawn_connect(url, extra);
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
        let (code, stdout) = connect_with_input(&server.url(), b"a\nb\nc\n", &[]).await;
        assert_eq!(code, 0);
        assert_eq!(stdout, "a\nb\nc\n");
    })
    .await;
}

#[tokio::test]
async fn replies_from_servers_that_stop_at_a_close_are_printed_before_exit() {
    for peer in Peer::ALL {
        let server = PeerServer::start(peer);
        within(60, &format!("{peer:?} replies after eof"), async {
            let (code, stdout) = connect_with_input(server.url(), b"a\nb\nc\n", &[]).await;
            assert_eq!(code, 0, "{peer:?}");
            assert_eq!(stdout, "a\nb\nc\n", "{peer:?}");
        })
        .await;
    }
}

#[tokio::test]
async fn replies_to_a_thousand_piped_lines_are_all_printed_in_order() {
    within(60, "a thousand replies after eof", async {
        let server = TestServer::start(Behavior::Echo).await;
        let input: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let (code, stdout) = connect_with_input(&server.url(), input.as_bytes(), &[]).await;
        assert_eq!(code, 0);
        assert!(stdout == input, "{} of 1000 lines", stdout.lines().count());
    })
    .await;
}

#[tokio::test]
async fn a_slow_reply_from_a_server_that_stops_at_a_close_is_printed_within_the_linger() {
    let server = PeerServer::start(Peer::Python);
    within(60, "slow reply", async {
        // The reply comes 200 ms after the line; the connection stays open until nothing has
        // arrived for 5 s. With `--linger 0` the Close goes out first and the reply is lost.
        let (code, stdout) =
            connect_with_input(server.url(), b"later:200:slow\n", &["--linger", "5"]).await;
        assert_eq!(code, 0);
        assert_eq!(stdout, "slow\n");
        let (code, stdout) =
            connect_with_input(server.url(), b"later:200:slow\n", &["--linger", "0"]).await;
        assert_eq!(code, 0);
        assert_eq!(
            stdout, "",
            "without a linger the server drops its answer at the Close"
        );
    })
    .await;
}

#[tokio::test]
async fn the_reply_to_the_line_before_eof_is_printed() {
    let server = PeerServer::start(Peer::Python);
    within(60, "reply to the last line", async {
        let mut child = spawn_connect(server.url(), &[]);
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
