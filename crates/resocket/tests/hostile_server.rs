//! Servers that attack the client's memory bounds. Each test has its own binary so that the
//! process's resident memory, which the tests measure, is not shared with other tests.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client};
use resocket_testkit::{raw_frame, within};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::oneshot};

/// A server that floods Pings and never reads: every Ping asks for a Pong that cannot be
/// written. The client owes a bounded burst of Pongs and then only the latest, so its memory
/// must not follow the flood.
#[tokio::test]
async fn ping_flood_keeps_memory_bounded() {
    const FLOOD: usize = 400 << 20;
    const BOUND: usize = 16 << 20;
    within(120, "ping flood", async {
        // Largest control payload: most Pong bytes per Ping byte.
        let ping = raw_frame(true, 0x9, &[0x5A; 125]);
        let chunk: Vec<u8> = ping.repeat((4 << 20) / ping.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let (upgraded_tx, upgraded_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel::<usize>();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let response = support::read_upgrade(&mut stream).await.expect("upgrade");
            stream.write_all(&response).await.unwrap();
            upgraded_tx.send(()).unwrap();
            let baseline = go_rx.await.unwrap();
            let mut sent = 0;
            let mut peak = 0;
            while sent < FLOOD {
                // The client reads, or this write would block forever (the hang guard says so).
                stream.write_all(&chunk).await.unwrap();
                sent += chunk.len();
                peak = peak.max(support::rss().saturating_sub(baseline));
                // Stop early once the bound is broken: the old behaviour ran to gigabytes.
                if peak > BOUND {
                    break;
                }
            }
            (sent, peak, stream)
        });
        let (client, _messages) = Client::builder(url)
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .spawn()
            .unwrap();
        upgraded_rx.await.unwrap();
        client.ready().await.unwrap();
        go_tx.send(support::rss()).unwrap();
        let (sent, peak, _stream) = server.await.unwrap();
        assert!(
            peak <= BOUND,
            "resident memory grew by {} MiB after {} MiB of Pings (bound {} MiB)",
            peak >> 20,
            sent >> 20,
            BOUND >> 20
        );
        assert!(
            client.is_connected(),
            "a Ping flood is not a reason to drop the connection"
        );
    })
    .await;
}
