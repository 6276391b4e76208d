//! A server that floods data at an application that does not read: the inbound bound must stop
//! the client reading (TCP flow control then holds the server back) instead of buffering the
//! flood. Its own binary, so the resident memory it measures is this test's alone.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client, Message};
use resocket_testkit::{raw_frame, within};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::oneshot};

#[tokio::test]
async fn a_flood_the_application_does_not_read_keeps_memory_bounded_and_loses_nothing() {
    const FLOOD: usize = 256 << 20;
    const BOUND: usize = 16 << 20;
    const PAYLOAD: usize = 1024;
    within(120, "unread flood", async {
        let one: Vec<u8> = raw_frame(true, 0x2, &[0xA5; PAYLOAD]);
        let one_len = one.len();
        let chunk: Vec<u8> = one.repeat((1 << 20) / one_len);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let (go_tx, go_rx) = oneshot::channel::<usize>();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let response = support::read_upgrade(&mut stream).await.expect("upgrade");
            stream.write_all(&response).await.unwrap();
            let baseline = go_rx.await.unwrap();
            let (mut sent, mut at, mut peak) = (0, 0, 0);
            while sent < FLOOD && peak <= BOUND {
                // A client that keeps reading for an application that does not takes the whole
                // flood (and its memory grows past the bound). A bounded one stops reading, and
                // this write then waits on TCP flow control: the stall is the sign to measure.
                // (`write` is cancel-safe: a write cut short by the timeout sent nothing.)
                let write = stream.write(&chunk[at..]);
                let Ok(written) = tokio::time::timeout(Duration::from_secs(3), write).await else {
                    break;
                };
                let n = written.unwrap();
                sent += n;
                at = (at + n) % chunk.len();
                peak = peak.max(support::rss().saturating_sub(baseline));
            }
            peak = peak.max(support::rss().saturating_sub(baseline));
            (sent, at, peak, stream, chunk)
        });
        let (client, mut messages) = Client::builder(url)
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .configure(|c| c.ping_interval = None)
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        go_tx.send(support::rss()).unwrap();
        let (sent, at, peak, mut stream, chunk) = server.await.unwrap();
        assert!(
            peak <= BOUND,
            "resident memory grew by {} MiB with {} MiB unread (bound {} MiB)",
            peak >> 20,
            sent >> 20,
            BOUND >> 20
        );
        assert!(
            sent < FLOOD,
            "the whole flood went in: nothing held the server back"
        );
        // Now the application reads: every message arrives, none was dropped to keep the bound.
        // The server first completes the frame its last write cut through.
        let rest = (chunk.len() - at) % chunk.len();
        let writer = tokio::spawn(async move {
            stream
                .write_all(&chunk[chunk.len() - rest..])
                .await
                .unwrap();
            stream
        });
        let expected = (sent + rest) / one_len;
        let mut batch = Vec::new();
        let mut received = 0;
        while received < expected {
            let n = messages.recv_many(&mut batch, 1024).await;
            assert!(n > 0, "the stream ended after {received} of {expected}");
            for msg in batch.drain(..) {
                assert_eq!(msg, Message::binary(vec![0xA5; PAYLOAD]));
            }
            received += n;
        }
        assert_eq!(received, expected);
        let _stream = writer.await.unwrap();
        assert!(client.is_connected());
    })
    .await;
}
