//! Application handshakes against a server that demands auth: auth, subscriptions, chains.

mod support;

use std::{sync::Arc, time::Duration};

use resocket::{
    chain_handshakers,
    handshake::{Auth, ChannelFormat, HandshakeError, Matcher, SendMessage, Subscribe},
    retry::{ExponentialBackoff, FixedDelay},
    Client, ConnectionEvent, ConnectionState, Error, Message,
};
use resocket_testkit::{within, Exchange, ServerEvent, TestServer};
use serde_json::Value;
use tokio::sync::Notify;

fn auth(token: &str) -> Auth {
    Auth::json_token(token)
        .success(Matcher::json_field("type", "auth_ok"))
        .failure(Matcher::json_field("type", "auth_error"))
}

fn json(msg: &Message) -> Value {
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

async fn next_json(server: &mut TestServer) -> Value {
    json(&server.next_message().await.1)
}

#[tokio::test]
async fn wrong_token_is_permanent_after_one_attempt() {
    within(20, "wrong token", async {
        let server = TestServer::start(Exchange::new("right").behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(auth("wrong"))
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        let Error::Handshake(failure) = &error else {
            panic!("{error:?}")
        };
        assert!(!failure.is_retryable(), "{failure}");
        assert!(
            failure.message().contains("credentials rejected"),
            "{failure}"
        );
        assert!(!error.is_retryable());
        assert_eq!(server.connections(), 1, "no retries");
    })
    .await;
}

#[tokio::test]
async fn ready_only_after_the_auth_reply() {
    within(20, "ready after auth", async {
        let gate = Arc::new(Notify::new());
        let mut exchange = Exchange::new("right");
        exchange.auth_gate = Some(gate.clone());
        let mut server = TestServer::start(exchange.behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(auth("right"))
            .spawn()
            .unwrap();
        assert_eq!(next_json(&mut server).await["type"], "auth");
        assert!(!client.is_connected());
        assert!(
            matches!(client.state(), ConnectionState::Handshaking),
            "{:?}",
            client.state()
        );
        gate.notify_one();
        client.ready().await.unwrap();
        assert!(client.is_connected());
    })
    .await;
}

#[tokio::test]
async fn ping_and_unrelated_frames_do_not_count_as_auth_success() {
    within(20, "noise during auth", async {
        let gate = Arc::new(Notify::new());
        let mut exchange = Exchange::new("right");
        exchange.auth_gate = Some(gate.clone());
        exchange.noise_before_auth_reply = true;
        let mut server = TestServer::start(exchange.behavior()).await;
        let (client, mut messages) = Client::builder(server.url())
            .handshake(auth("right"))
            .spawn()
            .unwrap();
        assert_eq!(next_json(&mut server).await["type"], "auth");
        // The client answered the server's Ping, so it has read both the news and the Ping.
        assert_eq!(server.next_message().await.1, Message::text("__pong__"));
        assert!(
            !client.is_connected(),
            "a Ping or an unrelated frame was taken as success"
        );
        gate.notify_one();
        client.ready().await.unwrap();
        let first = messages.recv().await.unwrap();
        assert_eq!(
            json(&first)["type"],
            "news",
            "the unrelated frame must still reach the user"
        );
    })
    .await;
}

#[tokio::test]
async fn token_with_quotes_and_backslashes_arrives_exact() {
    within(20, "escaping", async {
        let token = r#"a"b\c\"d"#;
        let mut server = TestServer::start(Exchange::new(token).behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(auth(token))
            .spawn()
            .unwrap();
        let request = next_json(&mut server).await;
        assert_eq!(request["token"], token);
        client.ready().await.unwrap();
        let templated = Auth::template(r#"{"type":"auth","token":"{token}"}"#, token);
        let mut server = TestServer::start(Exchange::new(token).behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(templated.success(Matcher::json_field("type", "auth_ok")))
            .spawn()
            .unwrap();
        assert_eq!(next_json(&mut server).await["token"], token);
        client.ready().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn subscribe_waits_for_its_confirmation() {
    within(20, "confirmed subscribe", async {
        let mut server = TestServer::start(Exchange::new("t").behavior()).await;
        let subscribe = Subscribe::new(ChannelFormat::json_type(), ["trades", "book"])
            .confirm(Matcher::json_field("type", "subscribed"));
        let (client, mut messages) = Client::builder(server.url())
            .handshake(chain_handshakers!(auth("t"), subscribe))
            .spawn()
            .unwrap();
        client.ready().await.unwrap();
        let order: Vec<Value> = vec![
            next_json(&mut server).await,
            next_json(&mut server).await,
            next_json(&mut server).await,
        ];
        assert_eq!(order[0]["type"], "auth");
        assert_eq!(
            (order[1]["channel"].as_str(), order[2]["channel"].as_str()),
            (Some("trades"), Some("book"))
        );
        // The confirmations were consumed by the handshake, not delivered.
        client
            .send(Message::text(r#"{"type":"noop"}"#))
            .await
            .unwrap();
        assert!(messages.try_recv().is_none());
    })
    .await;
}

#[tokio::test]
async fn missing_confirmation_times_out_and_is_retried_with_backoff() {
    within(20, "missing confirmation", async {
        let mut exchange = Exchange::new("t");
        exchange.confirm_subscriptions = false;
        let mut server = TestServer::start(exchange.behavior()).await;
        let subscribe = Subscribe::new(ChannelFormat::json_type(), ["trades"])
            .confirm(Matcher::json_field("type", "subscribed"))
            .timeout(Duration::from_millis(200));
        let (client, _messages) = Client::builder(server.url())
            .handshake(chain_handshakers!(auth("t"), subscribe))
            .configure(|c| {
                c.backoff =
                    ExponentialBackoff::new(Duration::from_millis(50), Duration::from_millis(100))
            })
            .spawn()
            .unwrap();
        let mut events = client.events();
        let reason = support::disconnect_reason(&mut events).await;
        let Error::Handshake(failure) = &reason else {
            panic!("{reason:?}")
        };
        assert!(failure.is_retryable());
        assert!(failure.to_string().contains("timed out"), "{failure}");
        assert_eq!(failure.step(), Some("step 2 (subscribe)"));
        assert!(matches!(
            events.recv().await.unwrap(),
            ConnectionEvent::BackingOff { .. }
        ));
        server.wait_connected().await;
        server.wait_connected().await;
        assert!(!client.is_connected());
    })
    .await;
}

#[tokio::test]
async fn restart_replays_auth_then_static_then_runtime_subscriptions_then_queued_messages() {
    within(30, "replay order", async {
        let mut server = TestServer::start(Exchange::new("t").behavior()).await;
        let addr = server.addr();
        let (client, _messages) = Client::builder(server.url())
            .handshake(chain_handshakers!(
                auth("t"),
                Subscribe::new(ChannelFormat::json_type(), ["static"])
                    .confirm(Matcher::json_field("type", "subscribed"))
            ))
            .channel_format(
                ChannelFormat::json_type().confirm(Matcher::json_field("type", "subscribed")),
            )
            .configure(support::quick_backoff(Duration::from_millis(100)))
            .spawn()
            .unwrap();
        let mut events = client.events();
        client.ready().await.unwrap();
        client.subscribe_channel("runtime").await.unwrap();
        let seen: Vec<Value> = vec![
            next_json(&mut server).await,
            next_json(&mut server).await,
            next_json(&mut server).await,
        ];
        assert_eq!(
            seen[2]["channel"], "runtime",
            "subscribed at once while Ready"
        );

        server.stop().await;
        support::disconnect_reason(&mut events).await;
        client
            .send(Message::text(r#"{"type":"user","n":1}"#))
            .await
            .unwrap();
        client
            .send(Message::text(r#"{"type":"user","n":2}"#))
            .await
            .unwrap();
        let mut server = TestServer::start_at(addr, Exchange::new("t").behavior())
            .await
            .unwrap();
        let mut order = Vec::new();
        for _ in 0..5 {
            let msg = next_json(&mut server).await;
            order.push(format!(
                "{}:{}",
                msg["type"].as_str().unwrap(),
                msg.get("channel")
                    .or(msg.get("n"))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ));
        }
        assert_eq!(
            order,
            [
                "auth:",
                "subscribe:\"static\"",
                "subscribe:\"runtime\"",
                "user:1",
                "user:2"
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn unsubscribed_channels_are_not_replayed() {
    within(20, "unsubscribe", async {
        let mut server = TestServer::start(Exchange::new("t").behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(auth("t"))
            .channel_format(ChannelFormat::json_type())
            .spawn()
            .unwrap();
        client.subscribe_channel("a").await.unwrap();
        client.subscribe_channel("b").await.unwrap();
        client.ready().await.unwrap();
        assert_eq!(next_json(&mut server).await["type"], "auth");
        assert_eq!(next_json(&mut server).await["channel"], "a");
        assert_eq!(next_json(&mut server).await["channel"], "b");
        client.unsubscribe_channel("a").await.unwrap();
        let msg = next_json(&mut server).await;
        assert_eq!(
            (msg["type"].as_str(), msg["channel"].as_str()),
            (Some("unsubscribe"), Some("a"))
        );
        let no_format = Client::builder(server.url()).spawn().unwrap().0;
        assert!(matches!(
            no_format.subscribe_channel("x").await,
            Err(Error::Config(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn chain_runs_in_order_and_names_the_failing_step() {
    within(20, "chain", async {
        let mut server = TestServer::start(Exchange::new("right").behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(chain_handshakers!(
                SendMessage::new(Message::text(r#"{"type":"hello"}"#)),
                auth("wrong")
            ))
            .spawn()
            .unwrap();
        assert_eq!(next_json(&mut server).await["type"], "hello");
        assert_eq!(next_json(&mut server).await["type"], "auth");
        let error = client.closed().await.unwrap_err();
        let Error::Handshake(failure) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(failure.step(), Some("step 2 (auth)"));
        assert!(
            failure
                .to_string()
                .starts_with("step 2 (auth): credentials rejected"),
            "{failure}"
        );
    })
    .await;
}

#[tokio::test]
async fn closure_handshake_can_fail_permanently() {
    within(20, "closure", async {
        let server = TestServer::start(Exchange::new("t").behavior()).await;
        let refuse = resocket::handshake::from_fn("custom", |io| {
            Box::pin(async move {
                io.send(Message::text(r#"{"type":"hello"}"#)).await?;
                let reply = io.recv().await?;
                Err(HandshakeError::permanent(format!(
                    "did not like {}",
                    reply.to_text().unwrap_or("")
                )))
            })
        });
        let (client, _messages) = Client::builder(server.url())
            .handshake(refuse)
            .spawn()
            .unwrap();
        let error = client.closed().await.unwrap_err();
        assert!(error.to_string().contains("handshake"), "{error}");
        assert_eq!(server.connections(), 1);
        let _ = server;
    })
    .await;
}

#[tokio::test]
async fn server_events_show_no_user_message_before_auth() {
    within(20, "queued before auth", async {
        let mut server = TestServer::start(Exchange::new("t").behavior()).await;
        let (client, _messages) = Client::builder(server.url())
            .handshake(auth("t"))
            .spawn()
            .unwrap();
        client
            .send(Message::text(r#"{"type":"early"}"#))
            .await
            .unwrap();
        assert_eq!(next_json(&mut server).await["type"], "auth");
        assert_eq!(next_json(&mut server).await["type"], "early");
        while let Some(event) = server.try_next_event() {
            assert!(!matches!(event, ServerEvent::Message { .. }), "{event:?}");
        }
        client.ready().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn frames_left_by_failing_handshakes_are_kept_within_the_bound_and_the_rest_counted() {
    within(30, "leftovers of failing handshakes", async {
        const CAPACITY: usize = 4;
        let server = TestServer::start(resocket_testkit::Behavior::Silent).await;
        // Every attempt leaves a frame for the user, then fails: no connection ever runs to
        // hand them over, so only the bound keeps them from piling up.
        let flaky = resocket::handshake::from_fn("flaky", |io| {
            Box::pin(async move {
                io.deliver_later(Message::text("left over"));
                Err(HandshakeError::retryable("not yet"))
            })
        });
        let (client, mut messages) = Client::builder(server.url())
            .handshake(flaky)
            .backoff(FixedDelay::new(Duration::from_millis(1)))
            .configure(|c| c.inbound_capacity = CAPACITY)
            .spawn()
            .unwrap();
        let mut events = client.events();
        support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Discarded { .. })
        })
        .await;
        client.close().await.unwrap();
        let mut received = 0u64;
        while let Some(msg) = messages.recv().await {
            assert_eq!(msg, Message::text("left over"));
            received += 1;
        }
        // The bound, and the leftovers of one more handshake beside it.
        assert!(received as usize <= CAPACITY + 1, "{received} held");
        let counters = client.snapshot().counters;
        assert!(counters.discarded > 0);
        assert_eq!(
            received + counters.discarded,
            counters.messages_in,
            "every frame is delivered or counted"
        );
    })
    .await;
}
