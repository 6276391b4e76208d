//! A server that answers the permessage-deflate offer and sends a decompression bomb: about
//! 1 MiB on the wire that inflates to 1 GiB. The client must stop inflating at
//! `max_message_size` and fail the connection with a typed error, its memory bounded. Its own
//! binary, so that the resident memory it measures is its own.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client, Error};
use resocket_proto::deflate::{Deflater, Negotiated};
use resocket_testkit::{raw_frame, within};
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::oneshot};
use tokio_tungstenite::tungstenite::{self, error::CapacityError};

/// A compressed message payload (RSV1 frame's content) that inflates to `mib` MiB of zeros.
fn bomb(mib: usize) -> Vec<u8> {
    let mut one = Vec::new();
    Deflater::new(resocket_proto::Role::Server, &Negotiated::default(), 9)
        .compress(&vec![0u8; 1 << 20], &mut one)
        .unwrap();
    // Each copy ends on a sync flush (its tail put back between copies) and refers back no
    // further than itself, so the copies chain into one stream.
    let mut chunk = one.clone();
    chunk.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut payload = chunk.repeat(mib - 1);
    payload.extend_from_slice(&one);
    payload
}

#[tokio::test]
async fn a_decompression_bomb_fails_the_connection_with_memory_bounded() {
    const LIMIT: usize = 16 << 20;
    const BOUND: usize = 64 << 20;
    within(120, "decompression bomb", async {
        let payload = bomb(1024);
        assert!(
            payload.len() < 4 << 20,
            "{} bytes on the wire",
            payload.len()
        );
        let mut frame = raw_frame(true, 0x2, &payload);
        frame[0] |= 0x40; // RSV1: compressed
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let response = support::read_upgrade(&mut stream).await.expect("upgrade");
            let head = String::from_utf8(response).unwrap();
            let head = head.trim_end_matches("\r\n");
            let response =
                format!("{head}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
            stream.write_all(response.as_bytes()).await.unwrap();
            go_rx.await.unwrap();
            // The client may hang up before it has read all of it.
            let _ = stream.write_all(&frame).await;
            stream
        });
        let (client, _messages) = Client::builder(url)
            .configure(|c| c.max_message_size = Some(LIMIT))
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        assert!(client.snapshot().compression.is_some());
        // Resets the peak (VmHWM) to the current resident memory.
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak resident memory");
        let baseline = support::rss();
        go_tx.send(()).unwrap();
        let reason = support::disconnect_reason(&mut events).await;
        let peak = support::peak_rss();
        let growth = peak.saturating_sub(baseline);
        assert!(
            matches!(
                &reason,
                Error::Protocol(e) if matches!(
                    **e,
                    tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                        max_size: LIMIT,
                        ..
                    })
                )
            ),
            "{reason:?}"
        );
        assert!(
            growth < BOUND,
            "resident memory grew by {} MiB for a {} MiB limit (bound {} MiB)",
            growth >> 20,
            LIMIT >> 20,
            BOUND >> 20
        );
        drop(server);
    })
    .await;
}
