//! Helpers shared by the client's integration tests. They name resocket's own types, so they
//! cannot live in the test kit (which resocket's tests depend on) without a dependency cycle.

#![allow(dead_code)] // each test binary uses its own subset

use std::fmt::Debug;
use std::time::Duration;

use resocket::retry::ExponentialBackoff;
use resocket::{Client, ClientConfig, Events, Message, Messages};
use resocket::{ConnectionEvent, Error};
use resocket_testkit::Behavior;
use tokio::{io::AsyncReadExt, net::TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The process's resident memory in bytes (`VmRSS`).
pub fn rss() -> usize {
    proc_status_bytes("VmRSS:")
}

/// The process's peak resident memory in bytes (`VmHWM`).
pub fn peak_rss() -> usize {
    proc_status_bytes("VmHWM:")
}

/// The figure in kB of the `name` line of `/proc/self/status`, in bytes.
fn proc_status_bytes(name: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
    kib << 10
}

/// A configuration edit for tests that wait on reconnects: the backoff starts at 20 ms and
/// doubles up to `max`.
pub fn quick_backoff(max: Duration) -> impl FnOnce(&mut ClientConfig) {
    move |c| c.backoff = ExponentialBackoff::new(Duration::from_millis(20), max)
}

/// Sends `request` and returns the next message, the echo server's reply.
pub async fn ask(client: &Client, messages: &mut Messages, request: Message) -> Message {
    client.send(request).await.unwrap();
    messages.recv().await.expect("a reply")
}

/// Asks an echo peer (`echo:` command) for a long text of multi-byte characters back, and
/// asserts it arrives whole; `peer` names it in the failure.
pub async fn echoes_long_text(client: &Client, messages: &mut Messages, peer: impl Debug) {
    let text = "grüße, 世界 🦀 ".repeat(5000);
    let reply = ask(client, messages, Message::text(format!("echo:{text}"))).await;
    assert_eq!(reply, Message::text(text), "{peer:?}");
}

/// A server behaviour that refuses every upgrade with `status`, `headers` and the body `no`.
pub fn reject(status: u16, headers: &[(&str, &str)]) -> Behavior {
    Behavior::Reject {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: "no".into(),
    }
}

/// Waits for the first event that `pred` accepts.
pub async fn wait_event(
    events: &mut Events,
    mut pred: impl FnMut(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    loop {
        let event = events.recv().await.expect("event stream ended");
        if pred(&event) {
            return event;
        }
    }
}

/// Waits for the `Ready` event of a reconnect.
pub async fn reconnected(events: &mut Events) {
    wait_event(events, |e| {
        matches!(e, ConnectionEvent::Ready { reconnect: true })
    })
    .await;
}

/// Waits for the next `Disconnected` event and returns its reason.
pub async fn disconnect_reason(events: &mut Events) -> Error {
    match wait_event(events, |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await
    {
        ConnectionEvent::Disconnected { reason, .. } => reason,
        _ => unreachable!("filtered above"),
    }
}

/// Waits for the next `Disconnected` event, whose reason must be the server's Close frame, and
/// returns its code and reason.
pub async fn server_close(events: &mut Events) -> (u16, String) {
    let reason = disconnect_reason(events).await;
    let close = reason
        .close_frame()
        .unwrap_or_else(|| panic!("the server's Close is the reason, got {reason:?}"));
    (u16::from(close.code), close.reason.as_str().to_owned())
}

/// For servers written by hand: reads the client's upgrade request from `stream` and returns
/// the `101` response that accepts it, for the caller to write (with any frames behind it).
/// `None` when the client hung up first.
pub async fn read_upgrade(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("the request head is text");
    let key = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Sec-WebSocket-Key: ")
                .or(l.strip_prefix("sec-websocket-key: "))
        })
        .expect("the request has a key");
    Some(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.trim().as_bytes())
        )
        .into_bytes(),
    )
}
