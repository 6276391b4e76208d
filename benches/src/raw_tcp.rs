//! The floor of the receive path: a WebSocket reader written straight on a `TcpStream`, with a
//! hand-written upgrade, header-only parsing and no UTF-8 check, copy or per-message allocation.
//!
//! No application would read like this (no Close handshake, no Ping answers, no limits), which
//! is the point: it is what reading the same bytes off the same socket costs with nothing
//! else in the way, so a library's figure against it is the share of the machine it reaches.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{BoxFut, Payload, Throughput};

/// The read buffer: the same size as resocket's burst buffer.
const READ_BUFFER: usize = 128 << 10;

/// Opens `addr`, performs the upgrade by hand and returns the socket with whatever arrived
/// behind the `101` response.
///
/// # Panics
/// If the server does not answer `101`.
pub async fn connect(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("upgrade");
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp.read(&mut chunk).await.expect("upgrade response");
        assert!(n > 0, "server closed during the upgrade");
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    let rest = head.split_off(end);
    (tcp, rest)
}

/// A masked client frame (key zero: the server does not care, and the reader is not measured
/// on it).
fn masked_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Receive: asks the burst server for `n` messages and counts complete Binary frames by their
/// headers, skipping payloads; each payload is checked for its length as the other contenders'
/// user code does.
pub struct Receiver {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// `buf[..filled]` holds unparsed bytes (a partial frame carried over).
    filled: usize,
    expect: Payload,
}

impl Receiver {
    /// Connects to a [`Mode::Burst`](crate::server::Mode::Burst) server.
    pub async fn connect(addr: SocketAddr, expect: Payload) -> Receiver {
        let (tcp, rest) = connect(addr).await;
        let mut buf = vec![0u8; READ_BUFFER];
        buf[..rest.len()].copy_from_slice(&rest);
        Receiver {
            tcp,
            buf,
            filled: rest.len(),
            expect,
        }
    }
}

/// `(payload length, header length)` of an unmasked server frame, or `None` while the header
/// is incomplete.
fn header(data: &[u8]) -> Option<(usize, usize)> {
    let b1 = *data.get(1)?;
    let (len, at) = match b1 & 0x7F {
        126 => (
            usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(data.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        len => (usize::from(len), 2),
    };
    Some((len, at))
}

impl Throughput for Receiver {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let start = Instant::now();
            let request = masked_text(&n.to_string());
            self.tcp.write_all(&request).await.expect("burst request");
            let mut got = 0u64;
            while got < n {
                let mut pos = 0;
                while let Some((len, at)) = header(&self.buf[pos..self.filled]) {
                    if self.filled - pos < at + len {
                        break;
                    }
                    assert_eq!(self.buf[pos], 0x82, "raw tcp: a FIN Binary frame");
                    self.expect.take(&self.buf[pos + at..pos + at + len]);
                    pos += at + len;
                    got += 1;
                }
                self.buf.copy_within(pos..self.filled, 0);
                self.filled -= pos;
                if got == n {
                    break;
                }
                let read = self
                    .tcp
                    .read(&mut self.buf[self.filled..])
                    .await
                    .expect("raw tcp read");
                assert!(read > 0, "raw tcp: the server closed");
                self.filled += read;
            }
            start.elapsed()
        })
    }
}
