//! HTTP answers to the upgrade: which are retried, and how `Retry-After` is honoured.

mod support;

use std::time::Duration;

use resocket::{retry::FixedDelay, Client, ConnectionEvent};
use resocket_testkit::{within, Behavior, TestServer};
use support::reject;

#[tokio::test]
async fn http_403_on_upgrade_is_not_retried() {
    within(20, "403", async {
        let server = TestServer::start(reject(403, &[])).await;
        let (client, _messages) = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(error.http_status().map(|s| s.as_u16()), Some(403));
        assert!(!error.is_retryable());
        assert_eq!(
            error.http_response().unwrap().body.as_deref(),
            Some(&b"no"[..])
        );
        assert_eq!(server.connections(), 1, "exactly one attempt");
    })
    .await;
}

#[tokio::test]
async fn http_401_and_404_are_not_retried_either() {
    for status in [401, 404] {
        within(20, "4xx", async {
            let server = TestServer::start(reject(status, &[])).await;
            let (client, _messages) = Client::builder(server.url())
                .backoff(FixedDelay::new(Duration::from_millis(1)))
                .spawn()
                .unwrap();
            let error = client.closed().await.unwrap_err();
            assert_eq!(error.http_status().map(|s| s.as_u16()), Some(status));
            assert_eq!(server.connections(), 1);
        })
        .await;
    }
}

#[tokio::test]
async fn http_503_with_retry_after_is_retried_no_sooner() {
    within(20, "503", async {
        let mut server = TestServer::start(reject(503, &[("Retry-After", "1")])).await;
        let (client, _messages) = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        let (_, first) = server.wait_connected().await;
        server.set_behavior(Behavior::Silent);
        let delay = loop {
            if let ConnectionEvent::BackingOff { delay, .. } = events.recv().await.unwrap() {
                break delay;
            }
        };
        assert!(
            delay >= Duration::from_secs(1),
            "Retry-After ignored: {delay:?}"
        );
        let (_, second) = server.wait_connected().await;
        assert!(
            second - first >= Duration::from_secs(1),
            "retried after {:?}",
            second - first
        );
        client.ready().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_custom_classifier_overrides_the_policy() {
    within(20, "classifier", async {
        let mut server = TestServer::start(reject(403, &[])).await;
        let (client, _messages) = Client::builder(server.url())
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .retry_if(|e| e.http_status().is_some_and(|s| s == 403))
            .spawn()
            .unwrap();
        server.wait_connected().await;
        server.set_behavior(Behavior::Silent);
        client.ready().await.unwrap();
        assert!(server.connections() >= 2);
    })
    .await;
}
