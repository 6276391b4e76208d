//! `wss://` with rustls and a private CA.

#![cfg(feature = "__rustls-tls")]

use resocket::{Client, Message};
use resocket_testkit::{within, Behavior, TestPki, TestServer};

#[tokio::test]
async fn wss_with_a_custom_ca_round_trips() {
    within(20, "wss", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let (client, mut messages) = Client::builder(server.url())
            .add_root_certificate_pem(pki.ca_pem())
            .connect()
            .unwrap();
        client.send(Message::text("over tls")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("over tls"));
    })
    .await;
}

#[tokio::test]
async fn unknown_ca_is_a_certificate_error_that_is_not_retried() {
    within(20, "bad cert", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let (client, _messages) = Client::builder(server.url()).connect().unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(error.is_certificate(), "{error:?}");
        assert!(!error.is_retryable());
    })
    .await;
}

#[tokio::test]
async fn danger_accept_invalid_certs_connects() {
    within(20, "insecure", async {
        let server =
            TestServer::start_tls(Behavior::Echo, TestPki::untrusted_server_config()).await;
        let (client, mut messages) = Client::builder(server.url())
            .danger_accept_invalid_certs(true)
            .connect()
            .unwrap();
        client.send(Message::text("x")).await.unwrap();
        assert_eq!(messages.recv().await.unwrap(), Message::text("x"));
    })
    .await;
}
