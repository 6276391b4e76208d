//! The frame layer against a server that writes raw bytes: frames that arrive in the same write
//! as the `101` response, fragments, pings, the close handshake, malformed frames, and frames
//! received with a connection's last read, which outlive it.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client, Error, Message};
use resocket_testkit::{raw_frame as frame, within};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

/// A client frame as the server read it: opcode and unmasked payload.
type ClientFrame = (u8, Vec<u8>);

/// Accepts connections on `127.0.0.1:0`. On the n-th (from 0) it answers the upgrade and writes
/// `script(n)` in the same `write_all`, then reports every client frame on the channel. With
/// `hang_up_on_close` it closes TCP once it has read the client's Close, as servers do.
/// The script of a server that sends `first` on the first connection and `rest` on every later
/// one.
fn first_then(first: Vec<u8>, rest: Vec<u8>) -> impl Fn(usize) -> Vec<u8> + Send + 'static {
    move |n| if n == 0 { first.clone() } else { rest.clone() }
}

/// A client of `url` that reconnects 10 ms after every disconnect.
fn retrying_client(url: String) -> (Client, resocket::Messages) {
    Client::builder(url)
        .backoff(FixedDelay::new(Duration::from_millis(10)))
        .spawn()
        .unwrap()
}

async fn raw_server(
    hang_up_on_close: bool,
    script: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> (String, mpsc::UnboundedReceiver<(usize, ClientFrame)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let bytes = script(n);
            tokio::spawn(serve(stream, n, bytes, hang_up_on_close, tx.clone()));
        }
    });
    (url, rx)
}

async fn serve(
    mut stream: TcpStream,
    n: usize,
    script: Vec<u8>,
    hang_up_on_close: bool,
    frames: mpsc::UnboundedSender<(usize, ClientFrame)>,
) {
    let Some(mut out) = support::read_upgrade(&mut stream).await else {
        return;
    };
    out.extend_from_slice(&script);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    while let Some(frame) = read_client_frame(&mut stream).await {
        let close = frame.0 == 0x8;
        let _ = frames.send((n, frame));
        if close && hang_up_on_close {
            return;
        }
    }
}

async fn read_client_frame(stream: &mut TcpStream) -> Option<ClientFrame> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.ok()?;
    assert_eq!(header[1] & 0x80, 0x80, "client frames are masked");
    let len = match header[1] & 0x7F {
        126 => u64::from(stream.read_u16().await.ok()?),
        127 => stream.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    stream.read_exact(&mut key).await.ok()?;
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await.ok()?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
    Some((header[0] & 0x0F, payload))
}

#[tokio::test]
async fn frames_in_the_upgrade_packet_fragments_pings_and_close_all_work() {
    within(20, "raw frames", async {
        let (url, mut frames) = raw_server(true, |_| {
            [
                frame(true, 0x2, b"first"),
                frame(false, 0x1, b"sec"),
                // A ping between two fragments: answered, never delivered.
                frame(true, 0x9, b"are you there"),
                frame(true, 0x0, "ond é".as_bytes()),
                frame(true, 0x8, &[0x0F, 0xA1, b'd', b'o', b'n', b'e']),
            ]
            .concat()
        })
        .await;
        let (client, mut messages) = Client::builder(url)
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        assert_eq!(
            messages.recv().await.unwrap(),
            Message::binary(&b"first"[..])
        );
        assert_eq!(messages.recv().await.unwrap(), Message::text("second é"));
        assert_eq!(
            frames.recv().await.unwrap(),
            (0, (0xA, b"are you there".to_vec())),
            "the ping is answered with its payload"
        );
        assert_eq!(
            frames.recv().await.unwrap(),
            (0, (0x8, vec![0x0F, 0xA1, b'd', b'o', b'n', b'e'])),
            "the server's Close is echoed"
        );
        assert_eq!(
            support::server_close(&mut events).await,
            (4001, "done".to_owned())
        );
    })
    .await;
}

#[tokio::test]
async fn malformed_frames_are_typed_errors_and_the_client_reconnects() {
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("masked frame", vec![0x82, 0x81, 1, 2, 3, 4, 5]),
        ("invalid UTF-8", frame(true, 0x1, &[b'o', b'k', 0xFF])),
        ("reserved bits", vec![0xC2, 0x01, 0]),
        ("unknown opcode", frame(true, 0x3, b"?")),
        ("continuation without a start", frame(true, 0x0, b"x")),
    ];
    for (what, bytes) in bad {
        within(20, what, async {
            // A good message first: it reaches the user although the frame after it ends the
            // connection.
            let first = [frame(true, 0x1, b"before"), bytes.clone()].concat();
            let script = first_then(first, frame(true, 0x1, b"after"));
            let (url, _frames) = raw_server(false, script).await;
            let (client, mut messages) = retrying_client(url);
            let mut events = client.events();
            let reason = support::disconnect_reason(&mut events).await;
            assert!(matches!(reason, Error::Protocol(_)), "{what}: {reason:?}");
            assert!(reason.is_retryable(), "{what}");
            assert_eq!(
                messages.recv().await.unwrap(),
                Message::text("before"),
                "{what}"
            );
            assert_eq!(
                messages.recv().await.unwrap(),
                Message::text("after"),
                "{what}"
            );
        })
        .await;
    }
}

#[tokio::test]
async fn a_server_that_closes_but_keeps_tcp_open_is_left_after_close_timeout() {
    within(20, "close without hang-up", async {
        let close = frame(true, 0x8, &[0x03, 0xE9]);
        let (url, mut frames) = raw_server(false, move |_| close.clone()).await;
        let (client, _messages) = Client::builder(url)
            .backoff(FixedDelay::new(Duration::from_secs(60)))
            .configure(|c| c.close_timeout = Duration::from_millis(200))
            .spawn()
            .unwrap();
        let mut events = client.events();
        assert_eq!(
            support::server_close(&mut events).await,
            (1001, String::new())
        );
        assert_eq!(frames.recv().await.unwrap(), (0, (0x8, vec![0x03, 0xE9])));
    })
    .await;
}

#[tokio::test]
async fn a_message_sent_after_the_servers_close_goes_out_on_the_next_connection() {
    within(20, "send after the server's Close", async {
        let close = frame(true, 0x8, &[0x03, 0xE9]);
        let (url, mut frames) = raw_server(false, first_then(close, Vec::new())).await;
        let (client, _messages) = Client::builder(url)
            .backoff(FixedDelay::new(Duration::from_millis(10)))
            .configure(|c| c.close_timeout = Duration::from_millis(300))
            .spawn()
            .unwrap();
        // The echoed Close proves the client has taken the server's Close in.
        assert_eq!(frames.recv().await.unwrap(), (0, (0x8, vec![0x03, 0xE9])));
        client.send(Message::text("late")).await.unwrap();
        assert_eq!(
            frames.recv().await.unwrap(),
            (1, (0x1, b"late".to_vec())),
            "written on the next connection, not lost on the closing one"
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_left_by_a_dead_connection_comes_before_the_next_handshakes_frames() {
    within(20, "batch across a reconnect", async {
        // Read in one pass with the frame that ends the connection: the batch is still the
        // client's, not yet the user's, when the next connection is made.
        let first = [b"0", b"1"].map(|t| frame(true, 0x1, t)).concat();
        let first = [first, frame(true, 0x3, b"?")].concat();
        let (url, _frames) = raw_server(false, first_then(first, Vec::new())).await;
        // Leaves a frame for the user on every connection, as a handshake that reads past its
        // reply does.
        let leftover = resocket::handshake::from_fn("leftover", |io| {
            Box::pin(async move {
                let attempt = io.context().attempt;
                io.deliver_later(Message::text(format!("handshake {attempt}")));
                Ok(())
            })
        });
        let (client, mut messages) = Client::builder(url)
            .handshake(leftover)
            .backoff(FixedDelay::new(Duration::from_millis(10)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        support::reconnected(&mut events).await;
        for expected in ["handshake 1", "0", "1", "handshake 2"] {
            assert_eq!(messages.recv().await.unwrap(), Message::text(expected));
        }
    })
    .await;
}

#[tokio::test]
async fn a_burst_before_the_servers_close_is_delivered_after_the_reconnect() {
    within(20, "burst, close, reconnect", async {
        let first = [b"0", b"1"].map(|t| frame(true, 0x1, t)).concat();
        let first = [first, frame(true, 0x8, &[0x03, 0xE9])].concat();
        let script = first_then(first, frame(true, 0x1, b"2"));
        let (url, _frames) = raw_server(true, script).await;
        let (client, mut messages) = retrying_client(url);
        let mut events = client.events();
        // The application reads only after the reconnect.
        support::reconnected(&mut events).await;
        for expected in ["0", "1", "2"] {
            assert_eq!(messages.recv().await.unwrap(), Message::text(expected));
        }
        assert_eq!(client.snapshot().counters.discarded, 0);
    })
    .await;
}

#[tokio::test]
async fn a_message_before_a_final_close_is_delivered_before_the_stream_ends() {
    within(60, "message before a policy close", async {
        // A server that says why, then closes with 1008 (not retried): the reason must reach
        // the application even when both arrive in one packet and the client ends at once.
        for round in 0..50 {
            let (url, _frames) = raw_server(true, |_| {
                let mut script = frame(true, 0x1, br#"{"type":"error","code":"revoked"}"#);
                script.extend(frame(true, 0x8, &[0x03, 0xF0, b'n', b'o']));
                script
            })
            .await;
            let (client, mut messages) = Client::builder(url).spawn().unwrap();
            assert_eq!(
                messages.recv().await,
                Some(Message::text(r#"{"type":"error","code":"revoked"}"#)),
                "round {round}"
            );
            assert_eq!(messages.recv().await, None, "round {round}");
            assert!(client.closed().await.is_err(), "1008 ends the client");
        }
    })
    .await;
}
