//! `/healthz?deep=1`: proves the hub accepts a WebSocket and delivers a message over it, and,
//! on the Redis engine, that Redis answers: without it no publish can be stored.
//!
//! The hub connects to itself like any client (upgrade, token, subscribe to `$healthz`),
//! publishes a nonce into that room and waits to read it back. When the hub was mounted with
//! [`Hub::router`](crate::Hub::router) it does not know its own address; then the round trip
//! runs in-process, through a room and an outbox, and the answer says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hub::Shared;
use crate::outbox::Outbox;
use crate::token::Token;

/// The system room the deep check uses; anyone may subscribe to it.
pub(crate) const HEALTH_ROOM: &str = "$healthz";

/// How long the whole round trip may take.
const DEEP_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the deep check; `Ok` carries a description of what was proven.
pub(crate) async fn deep(shared: &Arc<Shared>) -> Result<&'static str, String> {
    let nonce = format!("{:016x}", fastrand::u64(..));
    let check = async {
        match shared.local_addr() {
            Some(addr) => over_socket(shared, addr, &nonce)
                .await
                .map(|()| "ok (websocket round trip)"),
            None => in_process(shared, &nonce)
                .await
                .map(|()| "ok (in-process round trip)"),
        }
    };
    let proven = tokio::time::timeout(DEEP_TIMEOUT, check)
        .await
        .map_err(|_| "deep check timed out".to_string())??;
    if let Some(engine) = shared.redis() {
        engine
            .ping()
            .await
            .map_err(|e| format!("redis engine unavailable: {}", e.0))?;
    }
    Ok(proven)
}

fn publish_nonce(shared: &Shared, nonce: &str) -> Result<(), String> {
    let room = shared
        .room(HEALTH_ROOM, None)
        .map_err(|_| "no health room")?;
    let data = RawValue::from_string(format!("\"{nonce}\"")).map_err(|e| e.to_string())?;
    room.publish(None, &data, &shared.limits, &shared.metrics);
    Ok(())
}

async fn in_process(shared: &Shared, nonce: &str) -> Result<(), String> {
    let outbox = Arc::new(Outbox::new(64 * 1024));
    // An id no connection will ever have (they count up from 1).
    let id = u64::MAX - fastrand::u64(..1 << 20);
    let room = shared
        .room(HEALTH_ROOM, None)
        .map_err(|_| "no health room")?;
    room.subscribe(id, &outbox, None, None, &shared.limits, &shared.metrics);
    publish_nonce(shared, nonce)?;
    let mut batch = std::collections::VecDeque::new();
    outbox.take(&mut batch);
    room.unsubscribe(id, &shared.metrics);
    if batch.iter().any(|f| f.as_str().contains(nonce)) {
        Ok(())
    } else {
        Err("message not delivered".into())
    }
}

async fn over_socket(shared: &Shared, addr: SocketAddr, nonce: &str) -> Result<(), String> {
    let err = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut s = TcpStream::connect(target).await.map_err(err("connect"))?;
    let token = Token::new("$healthz")
        .subscribe(HEALTH_ROOM)
        .expires_in(Duration::from_secs(60));
    let auth = match shared
        .verifier
        .as_ref()
        .and_then(|v| v.internal_token(&token))
    {
        Some(token) => format!("Authorization: Bearer {token}\r\n"),
        None => String::new(),
    };
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: aGVhbHRoei1kZWVwLWNoZWNr\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: resocket.v1\r\n{auth}\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(err("upgrade"))?;
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"\r\n\r\n").await?;
    if !buf.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&buf);
        return Err(format!(
            "upgrade refused: {}",
            line.lines().next().unwrap_or("")
        ));
    }
    buf.clear();
    let sub = format!(r#"{{"type":"subscribe","room":"{HEALTH_ROOM}"}}"#);
    // A client frame must be masked; the all-zero mask is valid and leaves the bytes as they are.
    let mut frame = vec![0x81, 0x80 | sub.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(sub.as_bytes());
    s.write_all(&frame).await.map_err(err("subscribe"))?;
    read_until(&mut s, &mut buf, b"\"subscribed\"").await?;
    publish_nonce(shared, nonce)?;
    read_until(&mut s, &mut buf, nonce.as_bytes()).await?;
    // Close 1000, masked with zeros.
    let _ = s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).await;
    Ok(())
}

/// Reads until `needle` shows up in `buf` (at most 64 KiB).
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        if buf.len() > 64 * 1024 {
            return Err("unexpected answer".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}
