//! Shared helpers for the hub's integration tests: an embedded hub on `127.0.0.1:0`, raw
//! WebSocket clients for the tests that must see HTTP statuses and close codes, and frame I/O.
//!
//! These live here rather than in `resocket-testkit` because they are specific to the hub's
//! protocol, and the test kit must not depend on the hub.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use resocket_hub::{Hub, HubBuilder, Token};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The secret every test hub signs its tokens with.
pub const SECRET: &str = "test secret of at least sixteen bytes";

/// A raw client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The hang guard around every test body.
pub async fn guard<F: Future<Output = ()>>(secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test timed out");
}

/// A hub served in-process.
pub struct TestHub {
    pub hub: Hub,
    pub addr: SocketAddr,
    pub task: JoinHandle<resocket_hub::Result<()>>,
}

impl TestHub {
    /// Starts a hub built from `builder` on `127.0.0.1:0`.
    pub async fn start(builder: HubBuilder) -> TestHub {
        let hub = builder.build().expect("valid settings");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(
            hub.clone()
                .serve_with_shutdown(listener, std::future::pending()),
        );
        TestHub { hub, addr, task }
    }

    /// An anonymous hub that takes upgrades from browsers on `origin` only.
    pub async fn allowing_origin(origin: &str) -> TestHub {
        TestHub::start(Hub::builder().allow_anonymous(true).allow_origin(origin)).await
    }

    /// One sample of the hub's `/metrics`: `name` or `name{labels}` exactly.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = http_get(self.addr, "/metrics").await;
        metric(&text, series)
    }

    /// A hub that takes tokens signed with [`SECRET`] and no anonymous clients.
    pub async fn with_tokens() -> TestHub {
        TestHub::start(Hub::builder().jwt_secret(SECRET)).await
    }

    /// A hub open to anonymous clients, with a generous rate limit.
    pub async fn anonymous() -> TestHub {
        TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .rate_limit(10_000, 10_000),
        )
        .await
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connects a raw client with the subprotocol and extra headers.
    pub async fn raw(&self, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
        raw_connect(&self.url(), headers).await
    }

    /// Connects a raw client with a bearer token.
    pub async fn raw_with_token(&self, token: &str) -> Ws {
        self.raw(&[("authorization", &format!("Bearer {token}"))])
            .await
            .expect("upgrade")
    }

    /// Connects a raw anonymous client.
    pub async fn raw_anon(&self) -> Ws {
        self.raw(&[]).await.expect("upgrade")
    }
}

/// Connects to `url` asking for `resocket.v1`.
pub async fn raw_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("resocket.v1"),
    );
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "resocket.v1"
    );
    Ok(ws)
}

/// Sends one JSON frame.
pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

/// Receives the next JSON frame, skipping pings and pongs. Panics on close or error.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("hub sent JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// Reads until the hub's close frame and returns it; `None` if the stream ended without one.
pub async fn closed(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Subscribes and returns the `subscribed` reply.
pub async fn subscribe(ws: &mut Ws, room: &str, since: Option<u64>) -> Value {
    let mut f = json!({"type": "subscribe", "room": room});
    if let Some(s) = since {
        f["since"] = json!(s);
    }
    send(ws, f).await;
    let reply = recv(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply
}

/// Publishes and returns the `ack`'s offset.
pub async fn publish(ws: &mut Ws, room: &str, id: &str, data: Value) -> u64 {
    send(
        ws,
        json!({"type": "publish", "room": room, "id": id, "data": data}),
    )
    .await;
    let ack = recv(ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["id"], id);
    ack["offset"].as_u64().unwrap()
}

/// Reads the next frame, an `error`, asserts its `code` and `ref`, and returns it.
pub async fn expect_error(ws: &mut Ws, code: &str, reference: &str) -> Value {
    let err = recv(ws).await;
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["ref"].as_str()
        ),
        (Some("error"), Some(code), Some(reference)),
        "{err}"
    );
    err
}

/// A token for `sub`, signed with [`SECRET`], that may subscribe to the rooms `subscribe` and
/// publish to the rooms `publish` (patterns).
pub fn rooms_token(sub: &str, subscribe: &str, publish: &str) -> String {
    Token::new(sub)
        .subscribe(subscribe)
        .publish(publish)
        .sign(SECRET.as_bytes())
}

/// A token for `sub`, signed with [`SECRET`], that may use every room.
pub fn token(sub: &str) -> String {
    rooms_token(sub, "*", "*")
}

/// A hub node on the Redis (or Redis Cluster) at `url`, taking tokens signed with [`SECRET`],
/// with a rate limit no test reaches.
pub async fn redis_node(url: String) -> TestHub {
    TestHub::start(
        Hub::builder()
            .jwt_secret(SECRET)
            .rate_limit(10_000, 10_000)
            .redis(url),
    )
    .await
}

/// Publishes on one connection with at most [`PublishWindow::SIZE`] publishes in flight, so that
/// the hub's socket buffers stay small and steady: a task reads the `ack`s.
pub struct PublishWindow {
    tx: SplitSink<Ws, Message>,
    window: Arc<Semaphore>,
    acks: JoinHandle<()>,
}

impl PublishWindow {
    /// How many publishes may wait for their `ack`.
    pub const SIZE: usize = 8;

    /// Takes over `ws`, on which `count` publishes will be sent and acknowledged.
    pub fn new(ws: Ws, count: usize) -> PublishWindow {
        let (tx, mut rx) = ws.split();
        let window = Arc::new(Semaphore::new(Self::SIZE));
        let acks = tokio::spawn({
            let window = window.clone();
            async move {
                let mut n = 0;
                while n < count {
                    if let Some(Ok(Message::Text(t))) = rx.next().await {
                        assert!(t.contains(r#""type":"ack""#), "{t}");
                        window.add_permits(1);
                        n += 1;
                    }
                }
            }
        });
        PublishWindow { tx, window, acks }
    }

    /// Sends `frame` once fewer than [`Self::SIZE`] publishes are in flight.
    pub async fn send(&mut self, frame: Message) {
        self.window.acquire().await.unwrap().forget();
        self.tx.send(frame).await.unwrap();
    }

    /// Waits until every publish sent so far is acknowledged.
    pub async fn settle(&self) {
        while self.window.available_permits() < Self::SIZE {
            tokio::task::yield_now().await;
        }
    }

    /// Waits for the `ack`s of all the `count` publishes.
    pub async fn finish(self) {
        self.acks.await.unwrap();
    }
}

/// Fetches `path` over plain HTTP/1.1 and returns the status and body. Reads by
/// `Content-Length` or chunks, since not every server closes after `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// POSTs `body` to `path` with a bearer token, if any; returns the status and body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let len = body.len();
    http_request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
             Content-Type: text/plain\r\nContent-Length: {len}\r\n\r\n{body}"
        ),
    )
    .await
}

/// Sends one raw HTTP/1.1 request and returns the response's status and body.
async fn http_request(addr: SocketAddr, req: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let complete = |buf: &[u8]| -> bool {
        let text = String::from_utf8_lossy(buf);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let head = head.to_ascii_lowercase();
        if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
            return body.len() >= len.trim().parse::<usize>().unwrap_or(0);
        }
        head.contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n")
    };
    while !complete(&buf) {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Reads one sample from Prometheus text: `name` or `name{labels}` exactly.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.rsplit_once(' ')
                .filter(|(k, _)| *k == series)
                .map(|(_, v)| v.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no series {series} in metrics"))
}

/// A `resocket::Client` speaking the hub protocol, for the tests of normal operation.
pub struct HubClient {
    pub client: resocket::Client,
    pub messages: resocket::Messages,
}

impl HubClient {
    /// Connects a resilient client to `hub` with optional extra headers.
    pub async fn connect(hub: &TestHub, headers: &[(&str, &str)]) -> HubClient {
        let mut b = resocket::Client::builder(hub.url()).subprotocol("resocket.v1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (client, messages) = b.spawn().expect("valid client settings");
        client.ready().await.expect("client connects");
        HubClient { client, messages }
    }

    /// Sends one JSON frame.
    pub async fn send(&self, frame: Value) {
        self.client
            .send(resocket::Message::text(frame.to_string()))
            .await
            .expect("queued");
    }

    /// Receives the next JSON frame.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.messages.recv().await.expect("client open") {
                resocket::Message::Text(t) => {
                    return serde_json::from_str(&t).expect("hub sent JSON")
                }
                _ => continue,
            }
        }
    }

    /// Subscribes and returns the `subscribed` reply.
    pub async fn subscribe(&mut self, room: &str, since: Option<u64>) -> Value {
        let mut f = json!({"type": "subscribe", "room": room});
        if let Some(s) = since {
            f["since"] = json!(s);
        }
        self.send(f).await;
        let reply = self.recv().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    /// Publishes and returns the ack's offset, skipping `message` frames that arrive first.
    pub async fn publish(&mut self, room: &str, id: &str, data: Value) -> u64 {
        self.send(json!({"type": "publish", "room": room, "id": id, "data": data}))
            .await;
        loop {
            let f = self.recv().await;
            if f["type"] == "message" {
                continue;
            }
            assert_eq!(f["type"], "ack", "{f}");
            assert_eq!(f["id"], id);
            return f["offset"].as_u64().unwrap();
        }
    }

    /// Receives the next `message` frame.
    pub async fn message(&mut self) -> Value {
        let f = self.recv().await;
        assert_eq!(f["type"], "message", "{f}");
        f
    }
}

/// A client that does the upgrade by hand on a bare TCP socket, so that it can stop reading
/// (or never answer pings) in ways a WebSocket library would not allow.
pub struct RawTcp {
    pub stream: TcpStream,
    /// Bytes read past the upgrade response.
    pub leftover: Vec<u8>,
}

impl RawTcp {
    /// Upgrades `GET /ws` with the subprotocol and no token.
    pub async fn upgrade(addr: SocketAddr) -> RawTcp {
        RawTcp::upgrade_with(addr, &[]).await.0
    }

    /// Upgrades `GET /ws` with the subprotocol, no token and `headers`; returns the client
    /// and the `101` response's head.
    pub async fn upgrade_with(addr: SocketAddr, headers: &[(&str, &str)]) -> (RawTcp, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let extra: String = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: resocket.v1\r\n{extra}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "hub closed during upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let raw = RawTcp {
            stream,
            leftover: buf[end..].to_vec(),
        };
        (raw, head)
    }

    /// Reads the next server frame (unmasked): its first header byte and its payload.
    pub async fn next_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let Some((first, payload, used)) = parse_server_frame(&self.leftover) {
                self.leftover.drain(..used);
                return (first, payload);
            }
            let have = self.leftover.len();
            self.read_at_least(have + 1).await;
        }
    }

    /// Sends a frame as given (first header byte, masked with the zero key).
    pub async fn send_frame(&mut self, first: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let len = payload.len();
        let mut frame = vec![first];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&short.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Sends a masked text frame (mask key 0, which the protocol allows).
    pub async fn send_text(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        let len = text.len();
        let mut frame = vec![0x81];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Sends a masked, empty ping.
    pub async fn send_ping(&mut self) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(&[0x89, 0x80, 0, 0, 0, 0])
            .await
            .unwrap();
    }

    /// Reads until at least `n` bytes past the upgrade arrived (for example, a reply).
    pub async fn read_at_least(&mut self, n: usize) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        while self.leftover.len() < n {
            let got = self.stream.read(&mut chunk).await.unwrap();
            assert!(got > 0, "closed early");
            self.leftover.extend_from_slice(&chunk[..got]);
        }
    }

    /// Reads to the end of the stream and returns the close code of the last frame, if it was
    /// a close frame. Keeps only the tail of the stream, so it is cheap on long streams.
    pub async fn close_code_at_eof(mut self) -> Option<u16> {
        use tokio::io::AsyncReadExt;
        let mut tail = std::mem::take(&mut self.leftover);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&chunk[..n]);
                    if tail.len() > 256 * 1024 {
                        tail.drain(..tail.len() - 128);
                    }
                }
            }
        }
        // A server close frame with a code and a short reason: 0x88, length, code, reason.
        (0..tail.len().saturating_sub(3)).rev().find_map(|i| {
            let len = *tail.get(i + 1)? as usize;
            (tail[i] == 0x88 && (2..126).contains(&len) && i + 2 + len == tail.len())
                .then(|| u16::from_be_bytes([tail[i + 2], tail[i + 3]]))
        })
    }
}

/// One unmasked frame at the start of `buf`: its first header byte, its payload, and the bytes
/// it took; `None` until it is all there.
pub fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (len, at) = match *buf.get(1)? {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((buf[0], payload.to_vec(), at + len))
}

/// Opens a socket and sends the start of a request whose headers never finish (slowloris).
pub async fn stalled_request(addr: SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// Reads until the peer closes (EOF or reset); what it sent before is ignored.
pub async fn read_to_close(s: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 1024];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
    }
}
