//! Malformed input gets an `error` frame with a code, and the connection stays usable where
//! the protocol allows it.

mod common;

use common::{closed, expect_error, guard, recv, send, subscribe, RawTcp, TestHub, Ws};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn expect_error_and_stay_usable(ws: &mut Ws, text: &str, code: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let err = recv(ws).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some(code)),
        "for {text}: {err}"
    );
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    subscribe(ws, "still-here", None).await;
}

#[tokio::test]
async fn invalid_json_is_an_error_frame() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        expect_error_and_stay_usable(&mut ws, "{not json", "invalid_json").await;
        expect_error_and_stay_usable(&mut ws, "[1,2]", "invalid_json").await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_type_is_an_error_frame() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        expect_error_and_stay_usable(&mut ws, r#"{"type":"teleport","room":"r"}"#, "unknown_type")
            .await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_field_is_an_error_frame_with_a_ref() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        send(&mut ws, json!({"type": "publish", "room": "r", "id": "m1"})).await;
        expect_error(&mut ws, "missing_field", "m1").await;
        expect_error_and_stay_usable(&mut ws, r#"{"room":"r"}"#, "missing_field").await;
    })
    .await;
}

#[tokio::test]
async fn a_wrong_field_type_is_an_error_frame() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        expect_error_and_stay_usable(
            &mut ws,
            r#"{"type":"subscribe","room":42}"#,
            "invalid_field",
        )
        .await;
        expect_error_and_stay_usable(
            &mut ws,
            r#"{"type":"subscribe","room":"r","since":"x"}"#,
            "invalid_field",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_binary_frame_is_an_error_frame() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        ws.send(Message::binary(b"{}".to_vec())).await.unwrap();
        assert_eq!(recv(&mut ws).await["code"], "binary_unsupported");
        subscribe(&mut ws, "r", None).await;
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_gets_an_error_frame_then_close_1007() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let mut ws = hub.raw_anon().await;
        let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        ws.send(Message::Frame(bad)).await.unwrap();
        let err = recv(&mut ws).await;
        assert_eq!(err["code"], "invalid_utf8", "{err}");
        // RFC 6455 requires failing the connection on invalid UTF-8 in a text frame.
        assert_eq!(closed(&mut ws).await.unwrap().code, 1007.into());
    })
    .await;
}

#[tokio::test]
async fn a_protocol_violation_closes_with_1002() {
    guard(10, async {
        use tokio::io::AsyncWriteExt;
        let hub = TestHub::anonymous().await;
        let violations: [&[u8]; 3] = [
            // A text frame with RSV1 set and no extension negotiated.
            &[0xC1, 0x80, 0, 0, 0, 0],
            // An unmasked frame from a client.
            &[0x81, 0x00],
            // A reserved opcode.
            &[0x83, 0x80, 0, 0, 0, 0],
        ];
        for bytes in violations {
            let mut raw = RawTcp::upgrade(hub.addr).await;
            raw.stream.write_all(bytes).await.unwrap();
            assert_eq!(raw.close_code_at_eof().await, Some(1002), "{bytes:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_message_in_a_flood_of_empty_fragments_is_still_read() {
    guard(60, async {
        let hub = TestHub::anonymous().await;
        let mut raw = RawTcp::upgrade(hub.addr).await;
        // One `subscribe` cut into 100,000 fragments, almost all of them empty, sent at once:
        // the hub takes them in one after another, never one call deeper per fragment.
        use tokio::io::AsyncWriteExt;
        let mut wire = vec![0x01, 0x80 | 10, 0, 0, 0, 0];
        wire.extend_from_slice(br#"{"type":"s"#);
        for _ in 0..100_000 {
            wire.extend_from_slice(&[0x00, 0x80, 0, 0, 0, 0]);
        }
        let rest = br#"ubscribe","room":"f"}"#;
        wire.extend_from_slice(&[0x80, 0x80 | rest.len() as u8, 0, 0, 0, 0]);
        wire.extend_from_slice(rest);
        raw.stream.write_all(&wire).await.unwrap();
        let (first, payload) = raw.next_frame().await;
        assert_eq!(first, 0x81);
        let reply: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(reply["type"], "subscribed", "{reply}");
    })
    .await;
}
