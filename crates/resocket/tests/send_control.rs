//! What `send` accepts: Text and Binary only; control frames are refused and handed back;
//! `close_with` takes only codes an endpoint may send (`CloseCode`) and checks its reason
//! before doing anything.

use std::time::Duration;

use resocket::{error::CloseFrameError, Client, CloseCode, CloseFrame, Error, Message};
use resocket_testkit::{within, Behavior, TestServer};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;

#[tokio::test]
async fn control_frames_sent_through_the_queue_are_refused_and_handed_back() {
    within(20, "control frames through send", async {
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).spawn().unwrap();
        client.ready().await.unwrap();
        let close = Message::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "done".into(),
        }));
        let refused = [
            close,
            Message::Ping(b"p".to_vec().into()),
            Message::Pong(b"p".to_vec().into()),
            Message::Frame(Frame::ping(b"raw".to_vec())),
        ];
        for msg in refused {
            let err = client.send(msg.clone()).await.unwrap_err();
            assert!(err.is_unsupported(), "send {msg:?}: {err}");
            assert_eq!(err.into_inner(), msg);
            let err = client.try_send(msg.clone()).unwrap_err();
            assert!(err.is_unsupported(), "try_send {msg:?}: {err}");
            let err = client
                .send_timeout(msg.clone(), Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(err.is_unsupported(), "send_timeout {msg:?}: {err}");
        }
        // The connection is untouched: the same one echoes.
        client.send(Message::text("still here")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("still here"));
        assert_eq!(server.connections(), 1, "no reconnect");
        assert_eq!(client.snapshot().reconnects, 0);
    })
    .await;
}

#[test]
fn close_codes_an_endpoint_may_not_send_cannot_be_made() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, u16::MAX] {
        assert_eq!(
            CloseCode::new(code),
            Err(CloseFrameError::Code(code)),
            "{code}"
        );
        assert_eq!(CloseCode::try_from(code), Err(CloseFrameError::Code(code)));
    }
    assert_eq!(
        CloseCode::registered(4000),
        Err(CloseFrameError::Code(4000))
    );
    assert_eq!(CloseCode::private(3999), Err(CloseFrameError::Code(3999)));
    assert_eq!(CloseCode::private(5000), Err(CloseFrameError::Code(5000)));
}

#[tokio::test]
async fn close_with_refuses_long_reasons_and_stays_open() {
    within(20, "close_with checks", async {
        let mut server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url()).connect().await.unwrap();
        let code = CloseCode::private(4000).unwrap();
        let err = client.close_with(code, &"x".repeat(124)).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidCloseFrame(CloseFrameError::ReasonTooLong(124))
            ),
            "{err:?}"
        );
        assert!(client.is_connected(), "a refused close_with does nothing");
        assert!(!client.is_closing());
        client.send(Message::text("ping")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("ping"));
        let registered = CloseCode::registered(3000).unwrap();
        client
            .close_with(registered, &"y".repeat(123))
            .await
            .unwrap();
        let (_, frame) = server.wait_closed().await;
        let frame = frame.expect("a Close frame");
        assert_eq!(u16::from(frame.code), 3000);
        assert_eq!(registered, frame.code);
        assert_eq!(frame.reason.len(), 123);
    })
    .await;
}
