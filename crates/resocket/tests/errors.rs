//! How a client's end reads in its error: the cause behind "gave up", the no-reconnect
//! setting, and timeouts that say they are timeouts.

use std::time::Duration;

use resocket::{
    handshake::{Auth, Matcher},
    retry::NoRetry,
    Client, Error,
};
use resocket_testkit::{closed_port, within, Behavior, TestServer};

fn close_after_upgrade(code: u16, reason: &str) -> Behavior {
    Behavior::CloseAfterUpgrade {
        code,
        reason: reason.to_owned(),
    }
}

#[tokio::test]
async fn with_retries_off_the_servers_close_is_in_the_error_message() {
    within(20, "retries off, server close", async {
        let server = TestServer::start(close_after_upgrade(1000, "done for today")).await;
        let (client, _messages) = Client::builder(server.url())
            .backoff(NoRetry)
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(
            matches!(error, Error::RetriesExhausted { attempts: 1, .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains("1 attempt:")
                && shown.contains("1000")
                && shown.contains("done for today"),
            "the message names the cause: {shown:?}"
        );
        let Error::RetriesExhausted { last, .. } = &error else {
            unreachable!("checked above")
        };
        assert_eq!(u16::from(last.close_frame().unwrap().code), 1000);
        let source = std::error::Error::source(&error).expect("the last error is the source");
        assert_eq!(source.to_string(), last.to_string());
        assert_eq!(u16::from(error.close_frame().unwrap().code), 1000);
    })
    .await;
}

#[tokio::test]
async fn no_reconnect_ends_cleanly_on_a_normal_server_close() {
    within(20, "no reconnect, close 1000", async {
        let server = TestServer::start(close_after_upgrade(1000, "bye")).await;
        let (client, _messages) = Client::builder(server.url())
            .no_reconnect()
            .spawn()
            .unwrap();
        client.closed().await.unwrap();
        assert!(client.is_closed());
        assert_eq!(server.connections(), 1, "no second attempt");
        assert_eq!(
            client.snapshot().last_close.map(|f| u16::from(f.code)),
            Some(1000)
        );
    })
    .await;
}

#[tokio::test]
async fn no_reconnect_ends_with_the_reason_on_any_other_end() {
    within(20, "no reconnect, other ends", async {
        // 1011 is retried by default: without the setting this client would reconnect.
        let server = TestServer::start(close_after_upgrade(1011, "oops")).await;
        let (client, _messages) = Client::builder(server.url())
            .no_reconnect()
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(
            u16::from(error.close_frame().unwrap().code),
            1011,
            "{error:?}"
        );
        assert!(matches!(error, Error::ServerClosed { .. }), "{error:?}");
        assert_eq!(server.connections(), 1, "no second attempt");

        let server = TestServer::start(Behavior::DropAfterUpgrade).await;
        let (client, _messages) = Client::builder(server.url())
            .no_reconnect()
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(
            matches!(error, Error::Protocol(_) | Error::Io(_)),
            "{error:?}"
        );
        assert_eq!(server.connections(), 1, "no second attempt");

        let (client, _messages) = Client::builder(format!("ws://{}/", closed_port().await))
            .no_reconnect()
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(
            error.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_handshake_timeout_answers_is_timeout() {
    within(20, "handshake timeout", async {
        // The server never answers the auth message.
        let server = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(Auth::text("login").success(Matcher::text("ok")))
            .configure(|c| c.handshake_timeout = Duration::from_millis(200))
            .no_reconnect()
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(matches!(error, Error::Handshake(_)), "{error:?}");
        assert!(error.is_timeout(), "{error:?}");
        assert!(error.is_retryable());
    })
    .await;
}
