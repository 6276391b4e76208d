//! The `resocket` binary, driven through its arguments, stdin and stdout.

mod support;

use std::{process::Stdio, time::Duration};

use futures_util::{SinkExt, StreamExt};
use resocket_hub::Hub;
use resocket_testkit::{closed_port, within, Behavior, FaultProxy, TestServer};
use support::{output, resocket, serve_on_free_port};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStderr, ChildStdout},
};

fn assert_one_line_error(code: i32, stderr: &str) {
    assert_ne!(code, 0);
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error"), "{stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr:?}"
    );
}

#[tokio::test]
async fn unknown_flag_is_a_one_line_error() {
    within(60, "unknown flag", async {
        let (code, _, stderr) = output(&["connect", "--no-such-flag", "ws://127.0.0.1:1/"]).await;
        assert_eq!(code, 2);
        assert_one_line_error(code, &stderr);
    })
    .await;
}

#[tokio::test]
async fn malformed_url_is_a_one_line_error() {
    within(60, "bad url", async {
        for url in ["not a url", "http://example.com/"] {
            let (code, _, stderr) = output(&["connect", url]).await;
            assert_one_line_error(code, &stderr);
        }
    })
    .await;
}

#[tokio::test]
async fn chaos_starts_before_its_upstream_and_forwards_once_it_is_up() {
    within(60, "chaos before its upstream", async {
        let upstream = resocket_testkit::closed_port().await;
        let url = format!("ws://{upstream}/");
        let (mut chaos, mut stderr, listen) = start_chaos(&["-v"], &url, &[]).await;

        // While the upstream is down, a client connection is accepted and closed, with a line
        // saying why.
        let mut tcp = tokio::net::TcpStream::connect(&listen).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::io::AsyncReadExt::read(&mut tcp, &mut byte).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        loop {
            let line = stderr.next_line().await.unwrap().expect("chaos exited");
            if line.contains("upstream unreachable") && line.contains("closing") {
                break;
            }
        }
        assert!(
            chaos.try_wait().unwrap().is_none(),
            "chaos must keep running"
        );

        let _server = TestServer::start_at(upstream, Behavior::Echo)
            .await
            .expect("bind the released port again");
        let (client, mut messages) = chaos_client(&listen);
        assert_echoed(&client, &mut messages, "upstream is up").await;
        chaos.kill().await.unwrap();
    })
    .await;
}

/// Starts `resocket BEFORE chaos --listen 127.0.0.1:0 --upstream UPSTREAM AFTER`; returns it,
/// its stderr's lines and the address its banner names.
async fn start_chaos(
    before: &[&str],
    upstream: &str,
    after: &[&str],
) -> (Child, Lines<BufReader<ChildStderr>>, String) {
    let mut chaos = resocket()
        .args(before)
        .args(["chaos", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(after)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(chaos.stderr.take().unwrap()).lines();
    let listen = chaos_address(&mut stderr).await;
    (chaos, stderr, listen)
}

/// A client of the chaos proxy on `listen`, retrying within 50 ms of every cut.
fn chaos_client(listen: &str) -> (resocket::Client, resocket::Messages) {
    resocket::Client::builder(format!("ws://{listen}"))
        .configure(|c| {
            c.backoff = resocket::retry::ExponentialBackoff::new(
                Duration::from_millis(10),
                Duration::from_millis(50),
            )
        })
        .spawn()
        .unwrap()
}

/// Sends `text` and asserts the echo server's reply is the next message.
async fn assert_echoed(client: &resocket::Client, messages: &mut resocket::Messages, text: &str) {
    client.send(resocket::Message::text(text)).await.unwrap();
    assert_eq!(
        messages.recv().await.unwrap(),
        resocket::Message::text(text)
    );
}

/// Reads the chaos banner (its first stderr line) and returns the address it listens on.
async fn chaos_address(stderr: &mut Lines<BufReader<ChildStderr>>) -> String {
    let banner = stderr.next_line().await.unwrap().expect("a banner");
    banner
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned()
}

#[tokio::test]
async fn every_command_has_help() {
    within(60, "help", async {
        for command in ["connect", "serve", "chaos", "bench", "demo"] {
            let (code, stdout, _) = output(&[command, "--help"]).await;
            assert_eq!(code, 0, "{command}");
            assert!(stdout.contains("Usage"), "{command}: {stdout}");
        }
    })
    .await;
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines.next_line().await.unwrap().expect("stdout ended")
}

fn spawn_connect(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = resocket()
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

#[tokio::test]
async fn connect_echoes_through_a_reconnect_and_exits_cleanly_on_eof() {
    within(60, "connect echo", async {
        let mut server = TestServer::start(Behavior::Echo).await;
        let proxy = FaultProxy::start(server.addr()).await;
        let (mut child, mut lines) = spawn_connect(&[&proxy.url(), "--ping-interval", "0"]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        assert_eq!(next_line(&mut lines).await, "hello");

        proxy.cut_all();
        server.wait_connected().await; // the first connection
        server.wait_connected().await; // the reconnect
        stdin.write_all(b"after the cut\n").await.unwrap();
        assert_eq!(next_line(&mut lines).await, "after the cut");

        drop(stdin); // EOF: drain, close 1000, exit 0
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        let (_, frame) = server.wait_closed().await;
        let (_, frame) = if frame.is_none() {
            server.wait_closed().await
        } else {
            (0, frame)
        };
        assert_eq!(u16::from(frame.expect("a Close frame").code), 1000);
    })
    .await;
}

#[tokio::test]
async fn connect_with_two_urls_passes_over_a_dead_first_one() {
    within(60, "connect two urls", async {
        let dead = format!("ws://{}/", closed_port().await);
        let server = TestServer::start(Behavior::Echo).await;
        // Stopping at the first failure still tries every URL once.
        let mut child = resocket()
            .args(["connect", &dead, &server.url()])
            .args(["--ping-interval", "0", "--exit-on-first-failure"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        assert_eq!(next_line(&mut lines).await, "hello");
        drop(stdin);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
            .await
            .unwrap();
        assert!(
            stderr.contains(&format!("connecting to {dead} (attempt 1)"))
                && stderr.contains(&format!("connecting to {} (attempt 2)", server.url())),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn connect_talks_to_the_hub() {
    within(60, "connect hub", async {
        let hub = Hub::builder()
            .allow_anonymous(true)
            .anonymous_rooms(&["*"], &["*"])
            .build()
            .unwrap();
        let addr = support::serve(hub).await;
        let url = format!("ws://{addr}/ws");
        let (mut child, mut lines) = spawn_connect(&[
            &url,
            "--subprotocol",
            "resocket.v1",
            "--subscribe",
            r#"{"type":"subscribe","room":"lobby"}"#,
        ]);
        let mut stdin = child.stdin.take().unwrap();
        let subscribed: serde_json::Value =
            serde_json::from_str(&next_line(&mut lines).await).unwrap();
        assert_eq!(subscribed["type"], "subscribed");
        stdin
            .write_all(br#"{"type":"publish","room":"lobby","id":"1","data":{"hi":true}}"#)
            .await
            .unwrap();
        stdin.write_all(b"\n").await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let v: serde_json::Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
            seen.push(v["type"].as_str().unwrap().to_owned());
        }
        seen.sort();
        assert_eq!(seen, ["ack", "message"]);
        drop(stdin);
        assert!(child.wait().await.unwrap().success());
    })
    .await;
}

#[tokio::test]
async fn connect_exits_non_zero_on_a_permanent_failure() {
    within(60, "connect 403", async {
        let server = TestServer::start(Behavior::Reject {
            status: 403,
            headers: vec![],
            body: String::new(),
        })
        .await;
        let mut child = resocket()
            .args(["connect", &server.url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Keep stdin open: `wait` would close it, and EOF means "close gracefully".
        let _stdin = child.stdin.take();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(1));
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
            .await
            .unwrap();
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error:") && last.contains("403"),
            "{stderr}"
        );
    })
    .await;
}

/// The demo's `summary:` line, and a reader of its `name=value` fields.
fn demo_summary(stdout: &str, stderr: &str) -> (String, impl Fn(&str) -> u64) {
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary: {stdout} {stderr}"))
        .to_owned();
    println!("{summary}");
    let fields = summary.clone();
    let field = move |name: &str| -> u64 {
        fields
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {fields}"))
            .parse()
            .unwrap()
    };
    (summary, field)
}

#[tokio::test]
async fn demo_loses_nothing_and_duplicates_nothing() {
    within(120, "demo", async {
        let (code, stdout, stderr) = output(&["demo", "--duration", "10", "--seed", "7"]).await;
        let (summary, field) = demo_summary(&stdout, &stderr);
        assert_eq!(field("lost"), 0, "{summary}");
        assert_eq!(field("duplicated"), 0, "{summary}");
        assert!(field("reconnects") > 10, "{summary}");
        assert_eq!(code, 0, "{stdout}");
    })
    .await;
}

#[tokio::test]
async fn demo_cluster_loses_nothing_across_node_and_redis_restarts() {
    within(180, "demo --cluster", async {
        let (code, stdout, stderr) =
            output(&["demo", "--cluster", "--duration", "7", "--seed", "7"]).await;
        let (summary, field) = demo_summary(&stdout, &stderr);
        assert_eq!(field("lost"), 0, "{summary}");
        assert_eq!(field("duplicated"), 0, "{summary}");
        assert_eq!(field("nodes"), 3, "{summary}");
        assert!(field("node_restarts") >= 2, "{summary}");
        assert_eq!(field("redis_restarts"), 1, "{summary}");
        assert!(field("reconnects") > 10, "{summary}");
        assert!(
            stdout.contains("result: nothing lost, nothing duplicated"),
            "{stdout}"
        );
        assert_eq!(code, 0, "{stdout}");
    })
    .await;
}

#[tokio::test]
async fn demo_cluster_without_redis_server_says_what_is_missing() {
    within(60, "demo --cluster without redis", async {
        let empty = support::TempDir::new("no-redis");
        let out = resocket()
            .args(["demo", "--cluster", "--duration", "1"])
            .env("PATH", empty.path())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_one_line_error(1, &stderr);
        assert!(stderr.contains("redis-server is not installed"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn bench_reports_throughput_and_a_latency_histogram() {
    within(60, "bench", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (code, stdout, stderr) =
            output(&["bench", &server.url(), "-c", "2", "-r", "400", "-d", "1"]).await;
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("received"), "{stdout}");
        let latency = stdout
            .lines()
            .find(|l| l.starts_with("latency"))
            .expect("a latency line");
        assert!(
            latency.contains("p50") && latency.contains("p99") && latency.contains("max"),
            "{latency}"
        );
        assert!(stdout.contains("histogram"), "{stdout}");
        assert!(
            stderr.contains("100%"),
            "the progress bar reaches the end: {stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn bench_exits_3_and_counts_refused_messages_when_the_server_never_reads() {
    within(60, "bench refused", async {
        // The server never reads: the queue (8 MiB) and the socket buffers fill, and the rest
        // of 50 MiB is refused.
        let server = TestServer::start(Behavior::Unresponsive).await;
        let (code, stdout, stderr) = output(&[
            "bench",
            &server.url(),
            "-c",
            "1",
            "-r",
            "200",
            "-d",
            "1",
            "-s",
            "262144",
        ])
        .await;
        assert_eq!(code, 3, "{stdout}{stderr}");
        let refused: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("lost"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no loss line: {stdout}"));
        assert!(refused > 0, "{stdout}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error:") && last.contains("refused"),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test]
async fn bench_exits_3_when_echoes_go_missing() {
    within(60, "bench unechoed", async {
        // Echoes the first message only, then reads the rest without answering.
        let server = TestServer::start(Behavior::custom(|mut conn| async move {
            let mut echoed = false;
            while let Some(Ok(msg)) = conn.ws.next().await {
                if msg.is_text() && !echoed {
                    echoed = true;
                    if conn.ws.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }))
        .await;
        let (code, stdout, stderr) =
            output(&["bench", &server.url(), "-c", "1", "-r", "200", "-d", "1"]).await;
        assert_eq!(code, 3, "{stdout}{stderr}");
        assert!(stdout.contains("never echoed"), "{stdout}");
        assert!(stderr.contains("lost or refused"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn connect_trusts_a_ca_file_and_presents_a_client_certificate() {
    within(60, "connect tls", async {
        let pki = resocket_testkit::TestPki::new();
        let server =
            TestServer::start_tls(Behavior::Echo, pki.server_config_requiring_client_auth()).await;
        let dir = std::env::temp_dir().join(format!("resocket-cli-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = pki.client_identity("cli");
        let paths = [
            ("ca.pem", pki.ca_pem()),
            ("cert.pem", cert),
            ("key.pem", key),
        ]
        .map(|(name, pem)| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path.to_string_lossy().into_owned()
        });
        let (mut child, mut lines) = spawn_connect(&[
            &server.url(),
            "--ca",
            &paths[0],
            "--client-cert",
            &paths[1],
            "--client-key",
            &paths[2],
            "--no-proxy-env",
        ]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"over mtls\n").await.unwrap();
        assert_eq!(next_line(&mut lines).await, "over mtls");
        drop(stdin);
        assert!(child.wait().await.unwrap().success());
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn serve_takes_its_settings_from_flags_and_environment_and_serves_wss() {
    within(60, "serve", async {
        let pki = resocket_testkit::TestPki::new();
        let (cert, key) = pki.server_identity_pem();
        let dir = std::env::temp_dir().join(format!("resocket-cli-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let mut child = resocket()
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .env("RESOCKET_ALLOW_ANONYMOUS", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let banner = stderr.next_line().await.unwrap().expect("a banner");
        let port: u16 = banner
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {banner:?}"));
        let url = format!("wss://localhost:{port}/ws");
        let connect = || {
            resocket::hub::HubClient::builder(&url)
                .configure(|b| b.add_root_certificate_pem(pki.ca_pem()))
                .spawn()
                .unwrap()
        };
        let (subscriber, publisher) = (connect(), connect());
        let mut room = subscriber.subscribe("cli").await.unwrap();
        publisher.publish("cli", &"served").await.unwrap();
        match room.recv().await.unwrap() {
            resocket::hub::RoomEvent::Message(msg) => assert_eq!(msg.raw(), r#""served""#),
            other => panic!("{other:?}"),
        }
        child.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test]
async fn chaos_proxies_and_cuts_connections() {
    within(60, "chaos", async {
        let server = TestServer::start(Behavior::Echo).await;
        let cuts = ["--cut-after", "100-200", "--seed", "1"];
        let (mut chaos, _stderr, listen) = start_chaos(&[], &server.url(), &cuts).await;
        let (client, mut messages) = chaos_client(&listen);
        assert_echoed(&client, &mut messages, "through chaos").await;
        // The proxy cuts every connection within 200 ms; the client keeps coming back.
        let mut status = client.status();
        status.wait_for(|s| s.reconnects >= 2).await.unwrap();
        client
            .send(resocket::Message::text("still here"))
            .await
            .unwrap();
        loop {
            if messages.recv().await.unwrap() == resocket::Message::text("still here") {
                break;
            }
        }
        chaos.kill().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn serve_closes_a_connection_whose_token_its_revocation_file_names() {
    within(60, "serve --revoked", async {
        const SECRET: &str = "the cli test's secret of 16+ bytes";
        let file =
            std::env::temp_dir().join(format!("resocket-cli-revoked-{}", std::process::id()));
        std::fs::write(&file, "# nothing revoked yet\n").unwrap();
        let (mut child, port) = serve_on_free_port(
            [
                "--jwt-secret".as_ref(),
                SECRET.as_ref(),
                "--revoked".as_ref(),
                file.as_os_str(),
            ],
            &[],
        )
        .await;
        let token = resocket_hub::Token::new("mallory")
            .jti("t-9")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let (client, mut messages) = resocket::Client::builder(format!("ws://127.0.0.1:{port}/ws"))
            .subprotocol("resocket.v1")
            .header("authorization", format!("Bearer {token}"))
            .spawn()
            .unwrap();
        client.ready().await.unwrap();

        std::fs::write(&file, "jti:t-9\n").unwrap();
        match messages.recv().await {
            Some(resocket::Message::Text(t)) => assert!(t.contains(r#""code":"revoked""#), "{t}"),
            other => panic!("expected the revoked error, got {other:?}"),
        }
        // Close 1008 is final: the client does not reconnect.
        let _ = client.closed().await;
        let close = client.snapshot().last_close.expect("the hub's close frame");
        assert_eq!(u16::from(close.code), 1008);
        child.kill().await.unwrap();
        let _ = std::fs::remove_file(&file);
    })
    .await;
}

#[tokio::test]
async fn serve_with_redis_shares_rooms_between_processes() {
    within(60, "serve --redis", async {
        let redis = resocket_testkit::RedisServer::start().expect("scripts/deps/redis.sh");
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..2 {
            let (child, port) = serve_on_free_port(
                [
                    "--allow-anonymous".to_owned(),
                    "--redis".to_owned(),
                    redis.url(),
                ],
                &[],
            )
            .await;
            ports.push(port);
            nodes.push(child);
        }
        let connect = |port: u16| {
            resocket::hub::HubClient::builder(&format!("ws://127.0.0.1:{port}/ws"))
                .spawn()
                .unwrap()
        };
        let (subscriber, publisher) = (connect(ports[0]), connect(ports[1]));
        let mut room = subscriber.subscribe("across").await.unwrap();
        publisher.publish("across", &"shared").await.unwrap();
        match room.recv().await.unwrap() {
            resocket::hub::RoomEvent::Message(msg) => assert_eq!(msg.raw(), r#""shared""#),
            other => panic!("{other:?}"),
        }
        for mut node in nodes {
            node.kill().await.unwrap();
        }
    })
    .await;
}

/// The status code of a WebSocket upgrade to `/ws` with `token` as its bearer.
async fn upgrade_status(port: u16, token: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: resocket.v1\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let line = BufReader::new(s)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

/// Writes a new Ed25519 public key, as PEM, to the path in `argv[1]`.
const KEYGEN: &str = "
import sys
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives import serialization as s
key = ed25519.Ed25519PrivateKey.generate().public_key()
open(sys.argv[1], 'wb').write(key.public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
";

#[tokio::test]
async fn serve_takes_jwt_settings_from_flags_and_environment() {
    within(60, "serve --jwt-*", async {
        const SECRET: &str = "the cli test's secret of 16+ bytes";
        let dir = std::env::temp_dir().join(format!("resocket-cli-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // An Ed25519 public key from Python's `cryptography` (scripts/deps/pyjwt.sh).
        let public = dir.join("ed.pub.pem");
        let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/python");
        let keygen = tokio::process::Command::new("python3")
            .env("PYTHONPATH", &deps)
            .args(["-c", KEYGEN])
            .arg(&public)
            .status()
            .await
            .expect("python3 runs");
        assert!(
            keygen.success(),
            "no `cryptography`: run scripts/deps/pyjwt.sh"
        );
        let token = resocket_hub::Token::new("alice")
            .subscribe("*")
            .sign(SECRET.as_bytes());
        let flags = [
            "--jwt-secret".as_ref(),
            SECRET.as_ref(),
            "--jwt-public-key".as_ref(),
            public.as_os_str(),
        ];

        // The issuer comes from the environment: the token has no `iss`, so it is refused.
        let env = [
            ("RESOCKET_JWT_ISSUER", "https://idp.example.test/"),
            ("RESOCKET_JWT_ALGORITHMS", "HS256,EdDSA"),
        ];
        let (mut child, port) = serve_on_free_port(&flags, &env).await;
        assert_eq!(upgrade_status(port, &token).await, 401);
        child.kill().await.unwrap();
        let (mut child, port) = serve_on_free_port(&flags, &env[1..]).await;
        assert_eq!(upgrade_status(port, &token).await, 101);
        child.kill().await.unwrap();
        let (mut child, port) =
            serve_on_free_port(&flags, &[("RESOCKET_JWT_ALGORITHMS", "EdDSA")]).await;
        assert_eq!(upgrade_status(port, &token).await, 401);
        child.kill().await.unwrap();

        // Settings that cannot work stop the start-up with one line.
        let jwks = dir.join("missing.json");
        let (code, _, stderr) = output(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwks",
            jwks.to_str().unwrap(),
        ])
        .await;
        assert_one_line_error(code, &stderr);
        assert!(stderr.contains("missing.json"), "{stderr}");
        let (code, _, stderr) = output(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
            SECRET,
            "--jwt-algorithms",
            "RS256",
        ])
        .await;
        assert_one_line_error(code, &stderr);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
