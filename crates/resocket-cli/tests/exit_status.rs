//! `resocket connect` tells scripts the truth: its exit status says whether every line of
//! input was delivered, and the end of input bounds the wait for an absent server.

mod support;

use std::{net::SocketAddr, process::Stdio, sync::atomic::Ordering::Relaxed, time::Duration};

use resocket_testkit::{closed_port, within, Behavior, Message, TestServer};
use support::{output, resocket};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Child,
};

/// `resocket connect URL ARGS…` with stdin and stderr piped.
fn spawn_connect(url: &str, args: &[&str]) -> Child {
    resocket()
        .args(["connect", url, "--ping-interval", "0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resocket connect")
}

/// Writes `input` to the child's stdin, then closes it (the end of input).
async fn feed_and_close(child: &mut Child, input: &[u8]) {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).await.expect("write stdin");
    drop(stdin);
}

/// Waits for the child to exit; returns its exit code and everything it wrote on stderr.
async fn exit_and_stderr(child: &mut Child) -> (i32, String) {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    let status = child.wait().await.expect("wait for resocket");
    (status.code().unwrap_or(-1), stderr)
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

#[tokio::test]
async fn input_dropped_because_nothing_listens_exits_3_with_the_count() {
    within(60, "dropped input", async {
        let addr = closed_port().await;
        let mut child = spawn_connect(&url(addr), &["--drain-timeout", "1"]);
        feed_and_close(&mut child, b"x\n").await;
        let (code, stderr) = exit_and_stderr(&mut child).await;
        assert_eq!(code, 3, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error:") && last.contains("1 of 1 line(s)"),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait_when_input_ends_behind_a_full_queue() {
    within(60, "full queue", async {
        // More lines than the client's queue holds (1024): reading stdin stalls on the full
        // queue, and the end of input must still be noticed.
        const LINES: usize = 2000;
        let addr = closed_port().await;
        let mut child = spawn_connect(&url(addr), &["--drain-timeout", "1"]);
        let input: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
        feed_and_close(&mut child, input.as_bytes()).await;
        let started = tokio::time::Instant::now();
        let (code, stderr) =
            tokio::time::timeout(Duration::from_secs(30), exit_and_stderr(&mut child))
                .await
                .expect("the end of input did not bound the wait");
        // The bound: one drain timeout plus the close, far below the 30 s allowed above.
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(code, 3, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&format!("{LINES} of {LINES} line(s)")),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn input_during_an_outage_is_read_ahead_only_to_a_bound() {
    within(120, "read-ahead bound", async {
        // 128 MiB of 16 KiB lines against a server that is down: the send queue (8 MiB) and
        // the read-ahead (8 MiB) fill, then reading stops and the writer is held back.
        const LINE: usize = 16 << 10;
        const TOTAL: usize = 128 << 20;
        let addr = closed_port().await;
        let mut child = spawn_connect(&url(addr), &[]);
        let pid = child.id().expect("a running child");
        let before = rss_kib(pid);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = {
            let written = written.clone();
            tokio::spawn(async move {
                let mut line = vec![b'x'; LINE - 1];
                line.push(b'\n');
                while written.load(Relaxed) < TOTAL {
                    if stdin.write_all(&line).await.is_err() {
                        return;
                    }
                    written.fetch_add(LINE, Relaxed);
                }
            })
        };
        // Wait until the writer makes no progress for a while: reading has stopped.
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = written.load(Relaxed);
            assert!(
                now < TOTAL,
                "all {TOTAL} bytes were read: reading never stopped"
            );
            if now == last {
                break;
            }
            last = now;
        }
        let growth_mib = rss_kib(pid).saturating_sub(before) / 1024;
        assert!(
            growth_mib < 64,
            "grew by {growth_mib} MiB on {} MiB of input",
            last >> 20
        );
        println!("growth {growth_mib} MiB, written {} MiB", last >> 20);
        writer.abort();
        child.kill().await.unwrap();
    })
    .await;
}

/// The resident set of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test]
async fn queued_lines_are_delivered_when_the_server_returns_within_the_drain_timeout() {
    within(120, "server returns", async {
        let addr = closed_port().await;
        let mut child = spawn_connect(&url(addr), &["--drain-timeout", "60"]);
        feed_and_close(&mut child, b"one\ntwo\n").await;
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        // The end of input is seen, and then an attempt fails: the server is down while the
        // drain runs.
        let mut input_ended = false;
        loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .expect("resocket exited before the server came back");
            input_ended |= line.contains("end of input");
            if input_ended && line.contains("retrying") {
                break;
            }
        }
        let mut server = TestServer::start_at(addr, Behavior::Echo)
            .await
            .expect("bind the released port again");
        assert_eq!(server.next_message().await.1, Message::text("one"));
        assert_eq!(server.next_message().await.1, Message::text("two"));
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0));
        let (_, frame) = server.wait_closed().await;
        assert_eq!(u16::from(frame.expect("a Close frame").code), 1000);
    })
    .await;
}

#[tokio::test]
async fn exhausted_retries_exit_1() {
    within(60, "retries exhausted", async {
        let addr = closed_port().await;
        let mut child = spawn_connect(&url(addr), &["--max-retries", "1"]);
        // stdin stays open: the failure, not the end of input, ends the command.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(b"never sent\n").await.unwrap();
        let (code, stderr) = exit_and_stderr(&mut child).await;
        assert_eq!(code, 1, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error:"), "{stderr}");
        drop(stdin);
    })
    .await;
}

#[tokio::test]
async fn a_bad_drain_timeout_is_a_usage_error() {
    within(60, "bad drain timeout", async {
        for value in ["-1", "soon", "inf"] {
            let (code, _, stderr) =
                output(&["connect", "ws://127.0.0.1:1/", "--drain-timeout", value]).await;
            assert_eq!(code, 2, "{value}: {stderr}");
        }
    })
    .await;
}

#[tokio::test]
async fn every_command_documents_its_exit_status() {
    within(60, "help", async {
        for command in ["connect", "serve", "chaos", "bench", "demo"] {
            let (code, stdout, _) = output(&[command, "--help"]).await;
            assert_eq!(code, 0, "{command}");
            assert!(stdout.contains("Exit status"), "{command}: {stdout}");
        }
        let (_, connect, _) = output(&["connect", "--help"]).await;
        for needle in ["--drain-timeout", "  3 ", "  1 ", "  2 ", "  0 "] {
            assert!(connect.contains(needle), "{needle}: {connect}");
        }
    })
    .await;
}
