//! `/healthz`, `/metrics` and the dashboard's static files.

mod common;

use common::{guard, http_get, metric, HubClient, TestHub};
use std::time::Duration;

use resocket_hub::Hub;
use serde_json::json;

#[tokio::test]
async fn healthz_answers_ok_until_shutdown() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        assert_eq!(
            http_get(hub.addr, "/healthz").await,
            (200, "ok\n".to_string())
        );
        hub.hub.shutdown();
        hub.task.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    guard(10, async {
        // No `$stats` snapshots during the test, so every figure below is the test's own.
        let builder = Hub::builder()
            .allow_anonymous(true)
            .stats_interval(Duration::from_secs(3600));
        let hub = TestHub::start(builder).await;
        let (status, before) = http_get(hub.addr, "/metrics").await;
        assert_eq!(status, 200);
        // Every sample line is `series value` with a float value.
        for line in before
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(
                series.starts_with("resocket_hub_") || series.starts_with("process_"),
                "{line}"
            );
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
        }
        assert_eq!(metric(&before, "resocket_hub_publishes_total"), 0.0);

        let mut a = HubClient::connect(&hub, &[]).await;
        let mut b = HubClient::connect(&hub, &[]).await;
        b.subscribe("m", None).await;
        a.publish("m", "1", json!({"n": 1})).await;
        b.message().await;
        b.subscribe("m", Some(0)).await;

        let (_, after) = http_get(hub.addr, "/metrics").await;
        assert_eq!(metric(&after, "resocket_hub_connections"), 2.0);
        assert_eq!(metric(&after, "resocket_hub_publishes_total"), 1.0);
        assert_eq!(metric(&after, "resocket_hub_acks_total"), 1.0);
        assert_eq!(
            metric(&after, "resocket_hub_recoveries_total{result=\"full\"}"),
            1.0
        );
        assert_eq!(metric(&after, "resocket_hub_history_messages"), 1.0);
        assert!(metric(&after, "resocket_hub_messages_total{direction=\"in\"}") >= 3.0);
        assert!(metric(&after, "resocket_hub_messages_total{direction=\"out\"}") >= 4.0);
        assert!(metric(&after, "resocket_hub_bytes_total{direction=\"out\"}") > 0.0);
        assert!(metric(&after, "process_resident_memory_bytes") > 0.0);
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_files_are_served() {
    guard(10, async {
        let hub = TestHub::anonymous().await;
        let (status, html) = http_get(hub.addr, "/").await;
        assert_eq!(status, 200);
        assert!(html.contains(r#"id="connections""#));
        assert!(
            html.contains("$stats"),
            "the script is inlined into the page"
        );
        let (status, js) = http_get(hub.addr, "/app.js").await;
        assert_eq!(status, 200);
        assert!(js.contains("$stats"));
    })
    .await;
}

#[tokio::test]
async fn the_router_can_be_mounted_in_another_axum_app() {
    guard(10, async {
        let hub = Hub::builder().allow_anonymous(true).build().unwrap();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "the user's own app" }))
            .nest("/hub", hub.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        assert_eq!(http_get(addr, "/").await.1, "the user's own app");
        assert_eq!(http_get(addr, "/hub/healthz").await.1, "ok\n");
        let mut ws = common::raw_connect(&format!("ws://{addr}/hub/ws"), &[])
            .await
            .unwrap();
        common::subscribe(&mut ws, "mounted", None).await;
        common::send(
            &mut ws,
            json!({"type": "publish", "room": "mounted", "id": "1", "data": 1}),
        )
        .await;
        // The subscriber is the publisher: it gets its own message (fanned out first) and the ack.
        let (a, b) = (common::recv(&mut ws).await, common::recv(&mut ws).await);
        assert_eq!(
            (a["type"].as_str(), a["offset"].as_u64()),
            (Some("message"), Some(1))
        );
        assert_eq!(
            (b["type"].as_str(), b["offset"].as_u64()),
            (Some("ack"), Some(1))
        );
        hub.shutdown();
    })
    .await;
}

#[tokio::test]
async fn deep_healthz_proves_a_websocket_round_trip() {
    guard(10, async {
        // Tokens only: the check must mint its own.
        let hub = TestHub::with_tokens().await;
        assert_eq!(
            http_get(hub.addr, "/healthz?deep=1").await,
            (200, "ok (websocket round trip)\n".to_string())
        );
        assert_eq!(
            hub.metric("resocket_hub_connections_total").await,
            1.0,
            "it really connected"
        );

        // Mounted, the hub does not know its address and says what it proved instead.
        let hub = Hub::builder().allow_anonymous(true).build().unwrap();
        let app = axum::Router::new().nest("/hub", hub.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        assert_eq!(
            http_get(addr, "/hub/healthz?deep=1").await,
            (200, "ok (in-process round trip)\n".to_string())
        );
    })
    .await;
}
