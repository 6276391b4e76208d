//! Peer: yawc 0.5, a tokio WebSocket client with permessage-deflate, its `WebSocket` used
//! directly (it does not reconnect). Only the compressed receive case uses it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use yawc::{
    frame::{Frame, OpCode},
    Options, WebSocket,
};

use crate::{BoxFut, Payload, Throughput};

/// Receive: asks the feed server for `n` messages and reads them with `next()`.
pub struct Receiver {
    ws: WebSocket<TcpStream>,
    expect: Payload,
}

impl Receiver {
    /// Connects to a [`FeedServer`](crate::feed::FeedServer) over plain TCP (nodelay, as
    /// everywhere here), offering permessage-deflate at level 6 (`with_balanced_compression`)
    /// and checking UTF-8 of Text messages (`with_utf8`; off by default in yawc, always on in
    /// resocket, and what a JSON consumer needs).
    pub async fn connect(addr: SocketAddr, expect: Payload) -> Receiver {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let options = Options::default().with_balanced_compression().with_utf8();
        let url = format!("ws://{addr}/").parse().expect("valid url");
        let ws = WebSocket::handshake(url, tcp, options)
            .await
            .expect("upgrade");
        Receiver { ws, expect }
    }
}

impl Throughput for Receiver {
    fn round(&mut self, n: u64) -> BoxFut<'_, Duration> {
        Box::pin(async move {
            let start = Instant::now();
            self.ws
                .send(Frame::text(n.to_string()))
                .await
                .expect("yawc send");
            let mut got = 0u64;
            while got < n {
                let frame = self.ws.next().await.expect("yawc stream open");
                match frame.opcode() {
                    OpCode::Text | OpCode::Binary => {
                        self.expect.take(frame.payload());
                        got += 1;
                    }
                    other => panic!("yawc receive: unexpected {other:?}"),
                }
            }
            start.elapsed()
        })
    }
}
