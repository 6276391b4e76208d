//! permessage-deflate (RFC 7692) end to end: negotiated with Python `websockets` and Node `ws`
//! (both compress by default in the test kit's `PeerServer`), messages of several sizes both
//! ways and a fragmented compressed message, and a server that does not take the offer.

mod support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use resocket::{Client, Error, Message, NegotiationError};
use resocket_testkit::{within, Behavior, Peer, PeerServer, TestServer};
use support::ask;
use tokio::{io::AsyncWriteExt, net::TcpListener};

/// Compressible (repeating) and incompressible (pseudo-random) payloads of `size` bytes.
fn payloads(size: usize) -> [Vec<u8>; 2] {
    let repeating = (0..size).map(|i| b"abcdefgh"[i % 8]).collect();
    let mut x: u32 = 0x9E37_79B9;
    let random = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    [repeating, random]
}

#[tokio::test]
async fn compression_is_negotiated_with_both_peers_and_messages_round_trip() {
    for peer in Peer::ALL {
        let server = PeerServer::start(peer);
        within(60, &format!("{peer:?} compressed echo"), async {
            let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
            client.ready().await.unwrap();
            let negotiated = client.snapshot().compression;
            assert!(negotiated.is_some(), "{peer:?} takes the default offer");
            for size in [0usize, 1, 100, 1023, 1024, 5_000, 70_000, 1 << 20] {
                for payload in payloads(size) {
                    let reply = ask(&client, &mut messages, Message::binary(payload.clone())).await;
                    assert_eq!(reply, Message::binary(payload), "{peer:?}: {size} bytes");
                }
            }
            support::echoes_long_text(&client, &mut messages, peer).await;
            // A fragmented message: compressed by Python (RSV1 on its first frame only); Node
            // sends parts this small uncompressed.
            let whole: Vec<String> = (0..50).map(|i| i.to_string()).collect();
            let reply = ask(&client, &mut messages, Message::text("fragments:50")).await;
            assert_eq!(reply, Message::text(whole.join(",")), "{peer:?}: fragments");
            assert_eq!(client.snapshot().compression, negotiated);
            client.close().await.unwrap();
        })
        .await;
    }
}

#[tokio::test]
async fn compression_turned_off_sends_no_offer_and_peers_go_uncompressed() {
    for peer in Peer::ALL {
        let server = PeerServer::start(peer);
        within(60, &format!("{peer:?} uncompressed"), async {
            let (client, mut messages) = Client::builder(server.url())
                .configure(|c| c.compression.enabled = false)
                .spawn()
                .unwrap();
            client.ready().await.unwrap();
            assert_eq!(client.snapshot().compression, None, "{peer:?}");
            let payload = payloads(70_000)[0].clone();
            let reply = ask(&client, &mut messages, Message::binary(payload.clone())).await;
            assert_eq!(reply, Message::binary(payload), "{peer:?}");
            client.close().await.unwrap();
        })
        .await;
    }
}

#[tokio::test]
async fn a_server_that_answers_without_the_extension_gives_an_uncompressed_connection() {
    within(30, "no extension in the answer", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        client.ready().await.unwrap();
        assert_eq!(client.snapshot().compression, None);
        for payload in payloads(70_000) {
            let reply = ask(&client, &mut messages, Message::binary(payload.clone())).await;
            assert_eq!(reply, Message::binary(payload));
        }
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_answer_the_offer_does_not_allow_fails_the_upgrade_without_retrying() {
    within(30, "bad extension answer", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let upgrades = Arc::new(AtomicUsize::new(0));
        let counted = upgrades.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(response) = support::read_upgrade(&mut stream).await else {
                    continue;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8(response).unwrap();
                let head = head.trim_end_matches("\r\n");
                let response = format!(
                    "{head}\r\nSec-WebSocket-Extensions: permessage-deflate; x_unknown\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes()).await;
                // Held open: the client must be the one to give up.
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut [0u8; 64]).await;
                });
            }
        });
        let (client, _messages) = Client::builder(url).spawn().unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Negotiation(NegotiationError::UnknownParameter(p)) if p == "x_unknown"
            ),
            "{error:?}"
        );
        assert!(!error.is_retryable());
        assert_eq!(upgrades.load(Ordering::SeqCst), 1, "not retried");
    })
    .await;
}
