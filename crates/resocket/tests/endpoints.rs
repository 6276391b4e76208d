//! Several endpoints: failing over, failing back, one backoff across them, permanent failures,
//! and the request factory composing with the rotation.

mod support;

use std::{sync::Arc, time::Duration};

use resocket::Events;
use resocket::{
    error::ConfigError,
    retry::{ExponentialBackoff, Jitter},
    Client, ConnectionEvent, Error, Message,
};
use resocket_testkit::{closed_port, within, Behavior, ServerEvent, TestServer};

/// A backoff without jitter, so the delays in events can be asserted exactly.
fn steady(base_ms: u64) -> ExponentialBackoff {
    ExponentialBackoff::new(Duration::from_millis(base_ms), Duration::from_secs(10))
        .with_jitter(Jitter::None)
}

/// The next `Connecting` event's attempt and endpoint.
async fn next_attempt(events: &mut Events) -> (u32, Arc<str>) {
    match support::wait_event(events, |e| matches!(e, ConnectionEvent::Connecting { .. })).await {
        ConnectionEvent::Connecting {
            attempt, endpoint, ..
        } => (attempt, endpoint),
        _ => unreachable!("filtered above"),
    }
}

#[tokio::test]
async fn fails_over_past_a_dead_endpoint_and_back_when_the_live_one_dies() {
    within(30, "fail over and back", async {
        let first = closed_port().await;
        let first_url = format!("ws://{first}/");
        let mut second = TestServer::start(Behavior::Silent).await;
        let (client, _messages, supervisor) =
            Client::builder_with_endpoints([first_url.clone(), second.url()])
                .configure(|c| c.backoff = steady(20))
                .build()
                .unwrap();
        let mut events = client.events();
        tokio::spawn(supervisor.run());

        assert_eq!(
            next_attempt(&mut events).await,
            (1, first_url.as_str().into())
        );
        let refused = support::disconnect_reason(&mut events).await;
        assert_eq!(
            refused.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{refused:?}"
        );
        assert_eq!(next_attempt(&mut events).await, (2, second.url().into()));
        client.ready().await.unwrap();
        assert_eq!(client.snapshot().endpoint.as_deref(), Some(&*second.url()));
        client.send(Message::text("to the second")).await.unwrap();
        assert_eq!(
            second.next_message().await.1,
            Message::text("to the second")
        );

        // The first comes up, the second goes away: the client moves back to the first.
        let mut first = TestServer::start_at(first, Behavior::Silent).await.unwrap();
        second.stop().await;
        support::disconnect_reason(&mut events).await;
        assert!(!client.is_connected());
        client.send(Message::text("to the first")).await.unwrap();
        let (attempt, endpoint) = next_attempt(&mut events).await;
        assert_eq!(&*endpoint, first_url, "attempt {attempt} after the drop");
        assert_eq!(first.next_message().await.1, Message::text("to the first"));
        client.ready().await.unwrap();
        let snapshot = client.snapshot();
        assert_eq!(snapshot.endpoint.as_deref(), Some(first_url.as_str()));
        assert_eq!(snapshot.reconnects, 1);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_backoff_keeps_growing_across_endpoints() {
    within(30, "backoff across endpoints", async {
        let urls = [
            format!("ws://{}/", closed_port().await),
            format!("ws://{}/", closed_port().await),
        ];
        let (client, _messages, supervisor) = Client::builder_with_endpoints(urls.clone())
            .configure(|c| c.backoff = steady(5))
            .build()
            .unwrap();
        let mut events = client.events();
        tokio::spawn(supervisor.run());

        let mut attempts = Vec::new();
        let mut delays = Vec::new();
        while delays.len() < 5 {
            match events.recv().await.unwrap() {
                ConnectionEvent::Connecting {
                    attempt, endpoint, ..
                } => attempts.push((attempt, endpoint.to_string())),
                ConnectionEvent::BackingOff { delay, .. } => delays.push(delay),
                _ => {}
            }
        }
        let expected: Vec<(u32, String)> = (1..=5)
            .map(|n| (n, urls[(n as usize - 1) % 2].clone()))
            .collect();
        assert_eq!(
            attempts, expected,
            "attempts alternate, their count goes on"
        );
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80].map(Duration::from_millis),
            "moving to another endpoint does not reset the backoff"
        );
        drop(client);
    })
    .await;
}

#[tokio::test]
async fn a_permanent_failure_on_one_endpoint_moves_on_to_the_next() {
    within(20, "404 on one node", async {
        let misconfigured = TestServer::start(Behavior::Reject {
            status: 404,
            headers: Vec::new(),
            body: "no such path".into(),
        })
        .await;
        let healthy = TestServer::start(Behavior::Silent).await;
        let (client, _messages) =
            Client::builder_with_endpoints([misconfigured.url(), healthy.url()])
                .configure(|c| c.backoff = steady(10))
                .spawn()
                .unwrap();
        client.ready().await.unwrap();
        assert_eq!(client.snapshot().endpoint.as_deref(), Some(&*healthy.url()));
        assert_eq!(misconfigured.connections(), 1);
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_permanent_failure_on_every_endpoint_ends_the_client_after_one_attempt_each() {
    within(20, "401 everywhere", async {
        let reject = || Behavior::Reject {
            status: 401,
            headers: Vec::new(),
            body: "bad token".into(),
        };
        let a = TestServer::start(reject()).await;
        let b = TestServer::start(reject()).await;
        let (client, _messages) = Client::builder_with_endpoints([a.url(), b.url()])
            .configure(|c| c.backoff = steady(10))
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert_eq!(
            error.http_status().map(|s| s.as_u16()),
            Some(401),
            "{error:?}"
        );
        assert_eq!((a.connections(), b.connections()), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn exit_on_first_failure_tries_every_endpoint_once() {
    within(20, "first round", async {
        let dead = format!("ws://{}/", closed_port().await);
        let live = TestServer::start(Behavior::Silent).await;
        let (client, _messages) = Client::builder(dead.as_str())
            .endpoint(live.url())
            .configure(|c| {
                c.exit_on_first_failure = true;
                c.backoff = steady(10);
            })
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        client.close().await.unwrap();

        let (client, _messages, supervisor) = Client::builder_with_endpoints([dead.clone(), dead])
            .configure(|c| {
                c.exit_on_first_failure = true;
                c.backoff = steady(10);
            })
            .build()
            .unwrap();
        let mut events = client.events();
        let error = supervisor.run().await.unwrap_err();
        assert_eq!(error.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        let mut attempts = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let ConnectionEvent::Connecting { attempt, .. } = event {
                attempts.push(attempt);
            }
        }
        assert_eq!(attempts, [1, 2], "one attempt on each of two endpoints");
    })
    .await;
}

#[tokio::test]
async fn the_request_factory_builds_on_each_attempts_endpoint() {
    within(20, "factory with endpoints", async {
        let dead = format!("ws://{}/first", closed_port().await);
        let mut live = TestServer::start(Behavior::Silent).await;
        let live_url = format!("{}second", live.url());
        let (client, _messages) = Client::builder_with_endpoints([dead, live_url])
            .configure(|c| c.backoff = steady(10))
            .request_factory(|ctx| {
                let mut request = ctx.endpoint.clone();
                let value = format!("{}@{}", ctx.attempt, ctx.index);
                request
                    .headers_mut()
                    .insert("x-attempt", value.parse().unwrap());
                Ok(request)
            })
            .spawn()
            .unwrap();
        let request = loop {
            if let ServerEvent::Connected { request, .. } = live.next_event().await {
                break request;
            }
        };
        assert_eq!(request.uri().path(), "/second");
        assert_eq!(request.headers()["x-attempt"], "2@1");
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn every_endpoint_is_validated_before_anything_starts() {
    within(10, "validation", async {
        let error = Client::builder_with_endpoints(["ws://127.0.0.1:1/", "http://example.com/"])
            .spawn()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(ConfigError::UnsupportedScheme(s)) if s == "http"),
            "{error:?}"
        );
        let error = Client::builder("ws://127.0.0.1:1/")
            .endpoint("wss://")
            .spawn()
            .unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let error = Client::builder_with_endpoints(Vec::<String>::new())
            .spawn()
            .unwrap_err();
        assert!(
            matches!(error, Error::Config(ConfigError::Missing("endpoints"))),
            "{error:?}"
        );
    })
    .await;
}
