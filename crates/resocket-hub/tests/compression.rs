//! permessage-deflate (RFC 7692) on the hub, and the upgrade the hub answers itself: one
//! compressed frame per message shared by every subscriber that negotiated it, the plain frame
//! for the others, offers the hub cannot take ending in no compression (never in a refused
//! upgrade), a compression bomb closed at the size limit, clients that each send one compressed
//! message and idle (no inflater kept), RSV1 where RFC 7692 forbids it, and Python `websockets`
//! with compression on as a subscriber.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use resocket_hub::Hub;
use resocket_proto::deflate::{Deflater, Inflater, Negotiated, Role};
use serde_json::{json, Value};

const OFFER: (&str, &str) = (
    "Sec-WebSocket-Extensions",
    "permessage-deflate; client_max_window_bits",
);

/// The `Sec-WebSocket-Extensions` line of a response head, lowercased, if any.
fn extensions(head: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.trim().to_ascii_lowercase())
}

/// What the hub agrees to: no context takeover on its side, the client's own terms.
fn hub_terms() -> Negotiated {
    Negotiated {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..Negotiated::default()
    }
}

/// Reads the next text frame of `raw`, inflating it when RSV1 is set; the JSON and whether it
/// was compressed.
async fn next_json(raw: &mut RawTcp, inflater: &mut Inflater) -> (Value, bool) {
    loop {
        let (first, payload) = raw.next_frame().await;
        match first & 0x0F {
            0x1 => {
                let compressed = first & 0x40 != 0;
                let text = if compressed {
                    let mut out = BytesMut::new();
                    inflater.inflate(&payload, true, &mut out).unwrap();
                    out.to_vec()
                } else {
                    payload
                };
                return (serde_json::from_slice(&text).unwrap(), compressed);
            }
            0x9 | 0xA => continue,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

async fn subscribe_raw(raw: &mut RawTcp, inflater: &mut Inflater, room: &str) {
    raw.send_text(&json!({"type": "subscribe", "room": room}).to_string())
        .await;
    let (reply, _) = next_json(raw, inflater).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

#[tokio::test]
async fn compressed_and_plain_subscribers_in_one_room_receive_the_same_messages() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        let (mut zipped, head) = RawTcp::upgrade_with(hub.addr, &[OFFER]).await;
        assert_eq!(
            extensions(&head).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "{head}"
        );
        let (mut plain, head) = RawTcp::upgrade_with(hub.addr, &[]).await;
        assert_eq!(extensions(&head), None, "{head}");
        let mut inflater = Inflater::new(Role::Client, &hub_terms(), None);
        subscribe_raw(&mut zipped, &mut inflater, "news").await;
        subscribe_raw(&mut plain, &mut inflater, "news").await;

        let mut publisher = hub.raw_anon().await;
        for i in 0..5 {
            let data = json!({"n": i, "text": "compress me ".repeat(20)});
            publish(&mut publisher, "news", &format!("p{i}"), data).await;
        }
        for i in 0..5 {
            let (a, a_compressed) = next_json(&mut zipped, &mut inflater).await;
            let (b, b_compressed) = next_json(&mut plain, &mut inflater).await;
            assert_eq!(a, b);
            assert_eq!(a["data"]["n"], i);
            assert!(a_compressed, "RSV1 on the compressed subscriber's frame");
            assert!(!b_compressed, "no RSV1 without the extension");
        }
    })
    .await;
}

#[tokio::test]
async fn offers_the_hub_cannot_take_mean_no_compression_never_a_failed_upgrade() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        for offer in [
            // A smaller window than the one the hub compresses every message with.
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; unknown_parameter",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
        ] {
            let (mut raw, head) =
                RawTcp::upgrade_with(hub.addr, &[("Sec-WebSocket-Extensions", offer)]).await;
            assert_eq!(extensions(&head), None, "{offer}: {head}");
            let mut inflater = Inflater::new(Role::Client, &hub_terms(), None);
            subscribe_raw(&mut raw, &mut inflater, "r").await;
        }
        // The first offer it can take wins.
        let (_, head) = RawTcp::upgrade_with(
            hub.addr,
            &[(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=9, \
                 permessage-deflate; server_max_window_bits=15; client_no_context_takeover",
            )],
        )
        .await;
        assert_eq!(
            extensions(&head).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=15"
            ),
            "{head}"
        );

        let off = TestHub::start(Hub::builder().allow_anonymous(true).compression(false)).await;
        let (_, head) = RawTcp::upgrade_with(off.addr, &[OFFER]).await;
        assert_eq!(extensions(&head), None, "compression off: {head}");
    })
    .await;
}

#[tokio::test]
async fn the_checks_before_the_upgrade_answer_with_http_statuses() {
    guard(20, async {
        let hub = TestHub::with_tokens().await;
        let status = |r: Result<Ws, tokio_tungstenite::tungstenite::Error>| match r {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
        };
        let bad_token = hub.raw(&[("authorization", "Bearer nope"), OFFER]).await;
        assert_eq!(status(bad_token), 401);
        let origin = hub
            .raw(&[("origin", "https://elsewhere.example"), OFFER])
            .await;
        assert_eq!(status(origin), 403);
        // Not an upgrade at all.
        let (code, _) = http_get(hub.addr, "/ws").await;
        assert_eq!(code, 426);
    })
    .await;
}

#[tokio::test]
async fn a_compression_bomb_is_closed_with_1009_and_memory_stays_bounded() {
    guard(30, async {
        // 64 KiB messages at most (the default); each bomb inflates to 32 MiB.
        let hub = TestHub::anonymous().await;
        let bomb = {
            let zeros = vec![0u8; 32 << 20];
            let mut out = Vec::new();
            let negotiated = Negotiated::default();
            Deflater::new(Role::Client, &negotiated, 9)
                .compress(&zeros, &mut out)
                .unwrap();
            out
        };
        assert!(bomb.len() < 60 << 10, "one frame under the limit");
        let before = resocket_hub::rss_bytes().unwrap_or(0);
        for _ in 0..8 {
            let (mut raw, head) = RawTcp::upgrade_with(hub.addr, &[OFFER]).await;
            assert!(extensions(&head).is_some(), "{head}");
            // A compressed text message: FIN, RSV1, opcode 1.
            raw.send_frame(0xC1, &bomb).await;
            assert_eq!(raw.close_code_at_eof().await, Some(1009));
        }
        let grown = resocket_hub::rss_bytes()
            .unwrap_or(0)
            .saturating_sub(before);
        // Eight 32 MiB messages inflated would be 256 MiB; each stops at 64 KiB.
        assert!(grown < 24 << 20, "RSS grew {grown} bytes");
    })
    .await;
}

#[tokio::test]
async fn clients_that_each_send_one_compressed_message_leave_no_inflater_behind() {
    guard(120, async {
        let hub = TestHub::anonymous().await;
        // The same compressed `subscribe` for every client: without context takeover, each
        // message is a stream of its own.
        let subscribe = {
            let text = json!({"type": "subscribe", "room": "idle"}).to_string();
            let mut out = Vec::new();
            Deflater::new(Role::Client, &hub_terms(), 6)
                .compress(text.as_bytes(), &mut out)
                .unwrap();
            out
        };
        let mut inflater = Inflater::new(Role::Client, &hub_terms(), None);
        let mut clients = Vec::new();
        let mut connect = async || {
            let (mut raw, head) = RawTcp::upgrade_with(hub.addr, &[OFFER]).await;
            assert!(extensions(&head).is_some(), "{head}");
            raw.send_frame(0xC1, &subscribe).await;
            let (reply, _) = next_json(&mut raw, &mut inflater).await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
            raw
        };
        // Both ends of every connection are in this process: two descriptors each.
        let files = resocket_testkit::raise_open_file_limit().unwrap_or(u64::MAX);
        let n = (files.saturating_sub(512) / 2).min(1000) as usize;
        assert!(
            n >= 200,
            "too few open files allowed for this test: {n} connections"
        );
        // The first connections pay for runtime and allocator growth.
        for _ in 0..50 {
            clients.push(connect().await);
        }
        let before = resocket_hub::rss_bytes().unwrap_or(0);
        // One after the other, so an inflater let go is reused by the next connection, and only
        // inflaters kept by idle connections add up.
        for _ in 0..n {
            clients.push(connect().await);
        }
        let grown = resocket_hub::rss_bytes()
            .unwrap_or(0)
            .saturating_sub(before);
        // An inflater and its buffer are about 34 KiB; an idle connection without them, both
        // ends counted, under 8 KiB.
        let bound = n * (16 << 10);
        assert!(
            grown < bound as u64,
            "RSS grew {grown} bytes for {n} idle connections (bound {bound})"
        );
        assert_eq!(hub.hub.connections(), clients.len());
    })
    .await;
}

#[tokio::test]
async fn rsv1_on_a_control_or_continuation_frame_is_a_protocol_error() {
    guard(20, async {
        let hub = TestHub::anonymous().await;
        // A compressed Ping.
        let (mut raw, _) = RawTcp::upgrade_with(hub.addr, &[OFFER]).await;
        raw.send_frame(0xC9, b"").await;
        assert_eq!(raw.close_code_at_eof().await, Some(1002));
        // A compressed first fragment, then a continuation with RSV1 again.
        let mut deflater = Deflater::new(Role::Client, &Negotiated::default(), 6);
        let mut payload = Vec::new();
        deflater
            .compress(b"{\"type\":\"x\"}", &mut payload)
            .unwrap();
        let (first, rest) = payload.split_at(payload.len() / 2);
        let (mut raw, _) = RawTcp::upgrade_with(hub.addr, &[OFFER]).await;
        raw.send_frame(0x41, first).await;
        raw.send_frame(0xC0, rest).await;
        assert_eq!(raw.close_code_at_eof().await, Some(1002));
    })
    .await;
}

#[tokio::test]
async fn python_websockets_with_compression_receives_published_messages() {
    guard(60, async {
        let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/python");
        assert!(
            deps.join("websockets").exists(),
            "Python websockets not found at {}: run scripts/deps/python-websockets.sh",
            deps.display()
        );
        let hub = TestHub::anonymous().await;
        // Subscribes with websockets' default offer (permessage-deflate), prints the
        // negotiated extensions, then every message's data until it has three.
        let script = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main():
    async with connect(sys.argv[1], subprotocols=["resocket.v1"]) as ws:
        print("extensions", [type(e).__name__ for e in ws.protocol.extensions], flush=True)
        await ws.send(json.dumps({"type": "subscribe", "room": "py"}))
        seen = 0
        while seen < 3:
            frame = json.loads(await ws.recv())
            if frame["type"] == "subscribed":
                print("subscribed", flush=True)
            elif frame["type"] == "message":
                print("data", json.dumps(frame["data"]), flush=True)
                seen += 1

asyncio.run(main())
"#;
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(hub.url())
            .env("PYTHONPATH", &deps)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        assert_eq!(line(&mut lines).await, "extensions ['PerMessageDeflate']");
        assert_eq!(line(&mut lines).await, "subscribed");
        let mut publisher = hub.raw_anon().await;
        let mut sent = Vec::new();
        for i in 0..3 {
            let data = json!({"i": i, "pad": "x".repeat(200 * (i + 1))});
            publish(&mut publisher, "py", &format!("m{i}"), data.clone()).await;
            sent.push(data);
        }
        for data in sent {
            let text = line(&mut lines).await;
            let got: Value = serde_json::from_str(text.strip_prefix("data ").unwrap()).unwrap();
            assert_eq!(got, data);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("python exits")
            .unwrap();
        assert!(status.success());
    })
    .await;
}

async fn line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> String {
    lines
        .next_line()
        .await
        .unwrap()
        .expect("a line from python")
}
