//! The hub-wide history budget: all rooms' history together stays within it, and what it
//! evicts is reported as lost, never replayed as if whole.
//!
//! The RSS test has this binary to itself, so that no other test's allocations move the figure.

mod common;

use common::{guard, recv, send, subscribe, PublishWindow, TestHub};
use resocket_hub::Hub;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn history_across_many_rooms_stays_within_the_budget() {
    guard(60, async {
        const BUDGET: usize = 4 * 1024 * 1024;
        const MSG: usize = 16 * 1024;
        const ROOMS: usize = 256;
        // Ten times the budget, spread so thinly that no room reaches its own bounds.
        let count = 10 * BUDGET / MSG;
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .rate_limit(100_000, 100_000)
                .history_budget(BUDGET),
        )
        .await;
        let mut publisher = PublishWindow::new(hub.raw_anon().await, count);
        let payload = "x".repeat(MSG - 100);
        let frame = |i: usize| {
            Message::text(format!(
                r#"{{"type":"publish","room":"r{}","id":"{i}","data":"{payload}"}}"#,
                i % ROOMS
            ))
        };
        // A first round warms up the connection's buffers before the baseline is taken.
        for i in 0..16 {
            publisher.send(frame(count + i)).await;
        }
        publisher.settle().await;
        let before = resocket_hub::rss_bytes().expect("Linux /proc");
        let mut peak = before;
        for i in 0..count - 16 {
            publisher.send(frame(i)).await;
            if i % 16 == 0 {
                peak = peak.max(resocket_hub::rss_bytes().unwrap());
            }
        }
        publisher.finish().await;
        peak = peak.max(resocket_hub::rss_bytes().unwrap());

        let growth = peak.saturating_sub(before);
        eprintln!("rss before {} MiB, peak {} MiB", before >> 20, peak >> 20);
        assert!(
            growth < (BUDGET + 12 * 1024 * 1024) as u64,
            "RSS grew by {} MiB for a {} MiB budget",
            growth >> 20,
            BUDGET >> 20
        );
        let (_, m) = common::http_get(hub.addr, "/metrics").await;
        assert!(common::metric(&m, "resocket_hub_history_bytes") <= BUDGET as f64);
        assert!(common::metric(&m, "resocket_hub_history_evicted_total") > 0.0);
    })
    .await;
}

#[tokio::test]
async fn history_evicted_for_the_budget_is_not_recovered() {
    guard(20, async {
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .rate_limit(100_000, 100_000)
                .history_budget(64 * 1024),
        )
        .await;
        // A subscriber keeps the quiet room alive (and its epoch), whatever its history holds.
        let mut watcher = hub.raw_anon().await;
        let epoch = subscribe(&mut watcher, "quiet", None).await["epoch"].clone();
        let mut publisher = hub.raw_anon().await;
        for i in 0..3 {
            common::publish(&mut publisher, "quiet", &format!("q{i}"), json!(i)).await;
        }
        // A busy room publishes past the budget; the quiet room's messages are the oldest.
        for i in 0..100 {
            common::publish(
                &mut publisher,
                "busy",
                &i.to_string(),
                json!("x".repeat(1024)),
            )
            .await;
        }
        let mut late = hub.raw_anon().await;
        send(
            &mut late,
            json!({"type": "subscribe", "room": "quiet", "since": 0, "epoch": epoch}),
        )
        .await;
        let reply = recv(&mut late).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        assert_eq!(reply["offset"], 3);
        assert_eq!(reply["recovered"], false, "{reply}");
        // Up to date is still a full recovery: nothing after offset 3 was lost.
        let mut current = hub.raw_anon().await;
        send(
            &mut current,
            json!({"type": "subscribe", "room": "quiet", "since": 3, "epoch": epoch}),
        )
        .await;
        assert_eq!(recv(&mut current).await["recovered"], true);
    })
    .await;
}
