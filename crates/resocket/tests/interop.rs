//! The client against Python `websockets`, an independent implementation of RFC 6455: frames of
//! every length encoding both ways, a fragmented message, a server Ping, and a server Close.
//!
//! `scripts/test` installs `websockets` into `.deps/python` (`scripts/deps/python-websockets.sh`).

mod support;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use resocket::{retry::FixedDelay, Client, Message, Messages};
use resocket_testkit::within;

/// The Python server process, killed when dropped.
struct PythonServer {
    child: Child,
    url: String,
}

impl PythonServer {
    fn start() -> PythonServer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let deps = root.join(".deps/python");
        assert!(
            deps.join("websockets").is_dir(),
            "Python websockets not found in {}: run scripts/deps/python-websockets.sh",
            deps.display()
        );
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/python_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .env("PYTHONPATH", deps)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the server prints its port");
        let port: u16 = line.trim().parse().expect("a port number");
        PythonServer {
            child,
            url: format!("ws://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ask(client: &Client, messages: &mut Messages, request: Message) -> Message {
    client.send(request).await.unwrap();
    messages.recv().await.expect("a reply")
}

#[tokio::test]
async fn payloads_of_every_length_encoding_round_trip_through_python_websockets() {
    let server = PythonServer::start();
    within(60, "python echo", async {
        let (client, mut messages) = Client::builder(server.url.clone()).connect().unwrap();
        for size in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let reply = ask(&client, &mut messages, Message::binary(payload.clone())).await;
            assert_eq!(reply, Message::binary(payload), "binary of {size} bytes");
        }
        let text = "grüße, 世界 🦀 ".repeat(5000);
        let reply = ask(
            &client,
            &mut messages,
            Message::text(format!("echo:{text}")),
        )
        .await;
        assert_eq!(reply, Message::text(text));
    })
    .await;
}

#[tokio::test]
async fn fragments_pings_and_close_from_python_websockets() {
    let server = PythonServer::start();
    within(60, "python protocol", async {
        let (client, mut messages) = Client::builder(server.url.clone())
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .connect()
            .unwrap();
        let mut events = client.events();
        let whole: String = (0..50)
            .map(|i| format!("{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let reply = ask(&client, &mut messages, Message::text("fragments:50")).await;
        assert_eq!(reply, Message::text(whole), "50 fragments, one message");
        // The server waits for our Pong before it answers.
        let reply = ask(&client, &mut messages, Message::text("ping")).await;
        assert_eq!(reply, Message::text("pong:interop"));
        client
            .send(Message::text("close:4002:done here"))
            .await
            .unwrap();
        assert_eq!(
            support::server_close(&mut events).await,
            (4002, "done here".to_owned())
        );
    })
    .await;
}
