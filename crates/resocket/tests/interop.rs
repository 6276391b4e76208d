//! The client against two independent implementations of RFC 6455, Python `websockets` and Node
//! `ws`: frames of every length encoding both ways, a fragmented message, a server Ping, and a
//! server Close.
//!
//! `scripts/test` installs both into `.deps` (`scripts/deps/python-websockets.sh`,
//! `scripts/deps/node-ws.sh`); the servers are the test kit's `PeerServer`.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client, Message};
use resocket_testkit::{within, Peer, PeerServer};
use support::ask;

const PEERS: [Peer; 2] = Peer::ALL;

#[tokio::test]
async fn payloads_of_every_length_encoding_round_trip_through_both_peers() {
    for peer in PEERS {
        payloads_round_trip(peer).await;
    }
}

async fn payloads_round_trip(peer: Peer) {
    let server = PeerServer::start(peer);
    within(60, &format!("{peer:?} echo"), async {
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        for size in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let reply = ask(&client, &mut messages, Message::binary(payload.clone())).await;
            assert_eq!(
                reply,
                Message::binary(payload),
                "{peer:?}: binary of {size} bytes"
            );
        }
        support::echoes_long_text(&client, &mut messages, peer).await;
    })
    .await;
}

#[tokio::test]
async fn fragments_pings_and_close_from_both_peers() {
    for peer in PEERS {
        fragments_pings_and_close(peer).await;
    }
}

async fn fragments_pings_and_close(peer: Peer) {
    let server = PeerServer::start(peer);
    within(60, &format!("{peer:?} protocol"), async {
        let (client, mut messages) = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        let whole: String = (0..50)
            .map(|i| format!("{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let reply = ask(&client, &mut messages, Message::text("fragments:50")).await;
        assert_eq!(
            reply,
            Message::text(whole),
            "{peer:?}: 50 fragments, one message"
        );
        // The server waits for our Pong before it answers.
        let reply = ask(&client, &mut messages, Message::text("ping")).await;
        assert_eq!(reply, Message::text("pong:interop"), "{peer:?}");
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
