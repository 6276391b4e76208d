//! `FaultProxy` between a plain client and an echo `TestServer`.

mod common;

use std::time::{Duration, Instant};

use common::{connect, drain, next_data, try_connect, within, QUIET};
use futures_util::{SinkExt, StreamExt};
use resocket_testkit::{Behavior, Direction, FaultProxy, Message, TestServer};

async fn echo_behind_proxy() -> (TestServer, FaultProxy) {
    let server = TestServer::start(Behavior::Echo).await;
    let proxy = FaultProxy::start(server.addr()).await;
    (server, proxy)
}

#[tokio::test]
async fn proxy_forwards_both_directions() {
    within(async {
        let (mut server, proxy) = echo_behind_proxy().await;
        assert_eq!(proxy.url(), format!("ws://{}/", proxy.addr()));
        let mut ws = connect(proxy.addr()).await;
        ws.send(Message::text("via proxy")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("via proxy"));
        assert_eq!(server.next_message().await, (0, Message::text("via proxy")));
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.cuts(), 0);
    })
    .await;
}

#[tokio::test]
async fn cut_all_cuts_both_sides() {
    within(async {
        let (mut server, proxy) = echo_behind_proxy().await;
        let mut ws = connect(proxy.addr()).await;
        server.wait_connected().await;
        proxy.cut_all();

        let seen = drain(&mut ws).await;
        assert!(seen.iter().all(|m| m.is_err()), "got {seen:?}");
        assert_eq!(server.wait_closed().await, (0, None));
        assert_eq!(proxy.cuts(), 1);

        // Later connections are not affected.
        let mut ws = connect(proxy.addr()).await;
        ws.send(Message::text("again")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("again"));
    })
    .await;
}

#[tokio::test]
async fn set_refuse_refuses_new_connections() {
    within(async {
        let (mut server, proxy) = echo_behind_proxy().await;
        proxy.set_refuse(true);
        assert!(try_connect(proxy.addr()).await.is_err());
        assert_eq!(proxy.connections(), 1);
        assert_eq!(server.connections(), 0);

        proxy.set_refuse(false);
        let mut ws = connect(proxy.addr()).await;
        ws.send(Message::text("let in")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("let in"));
        assert_eq!(server.wait_connected().await.0, 0);
    })
    .await;
}

#[tokio::test]
async fn blackhole_stops_data_until_lifted() {
    within(async {
        let (mut server, proxy) = echo_behind_proxy().await;
        let mut ws = connect(proxy.addr()).await;
        server.wait_connected().await;

        proxy.set_blackhole(true);
        ws.send(Message::text("lost?")).await.unwrap();
        assert!(tokio::time::timeout(QUIET, ws.next()).await.is_err());
        assert!(server.try_next_event().is_none());

        proxy.set_blackhole(false);
        assert_eq!(next_data(&mut ws).await, Message::text("lost?"));
        assert_eq!(server.next_message().await, (0, Message::text("lost?")));
    })
    .await;
}

#[tokio::test]
async fn stall_stops_one_direction_only() {
    within(async {
        let (mut server, proxy) = echo_behind_proxy().await;
        let mut ws = connect(proxy.addr()).await;
        server.wait_connected().await;

        proxy.set_stall(Direction::ServerToClient, true);
        ws.send(Message::text("one way")).await.unwrap();
        // The server gets it; its echo is held back.
        assert_eq!(server.next_message().await, (0, Message::text("one way")));
        assert!(tokio::time::timeout(QUIET, ws.next()).await.is_err());

        proxy.set_stall(Direction::ServerToClient, false);
        assert_eq!(next_data(&mut ws).await, Message::text("one way"));
    })
    .await;
}

#[tokio::test]
async fn latency_delays_each_chunk() {
    within(async {
        const LATENCY: Duration = Duration::from_millis(100);
        let (_server, proxy) = echo_behind_proxy().await;
        let mut ws = connect(proxy.addr()).await;
        proxy.set_latency(LATENCY);

        let sent = Instant::now();
        ws.send(Message::text("slow")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("slow"));
        // One delay on the way in, one on the way out.
        assert!(sent.elapsed() >= 2 * LATENCY, "took {:?}", sent.elapsed());
    })
    .await;
}

#[tokio::test]
async fn random_cuts_end_connections_after_at_least_min() {
    within(async {
        const MIN: Duration = Duration::from_millis(20);
        let (mut server, proxy) = echo_behind_proxy().await;
        proxy.set_random_cuts(MIN, Duration::from_millis(80), 7);
        let started = Instant::now();
        let mut ws = connect(proxy.addr()).await;
        let seen = drain(&mut ws).await;
        assert!(
            started.elapsed() >= MIN,
            "cut after {:?}",
            started.elapsed()
        );
        assert!(seen.iter().all(|m| m.is_err()), "got {seen:?}");
        assert_eq!(server.wait_closed().await, (0, None));
        assert_eq!(proxy.cuts(), 1);

        proxy.clear_random_cuts();
        let mut ws = connect(proxy.addr()).await;
        ws.send(Message::text("kept")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("kept"));
    })
    .await;
}

#[tokio::test]
async fn stop_closes_proxied_connections() {
    within(async {
        let (_server, proxy) = echo_behind_proxy().await;
        let mut ws = connect(proxy.addr()).await;
        proxy.stop().await;
        let seen = drain(&mut ws).await;
        assert!(seen.iter().all(|m| m.is_err()), "got {seen:?}");
    })
    .await;
}

#[tokio::test]
async fn proxy_starts_without_its_upstream_and_forwards_once_it_is_up() {
    within(async {
        let upstream = resocket_testkit::closed_port().await;
        let proxy = FaultProxy::start(upstream).await;
        assert!(try_connect(proxy.addr()).await.is_err());
        assert_eq!(proxy.upstream_failures(), 1);

        let _server = TestServer::start_at(upstream, Behavior::Echo)
            .await
            .expect("bind the released port again");
        let mut ws = connect(proxy.addr()).await;
        ws.send(Message::text("up now")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("up now"));
        assert_eq!(proxy.upstream_failures(), 1);
    })
    .await;
}
