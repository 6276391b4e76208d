//! Sockets before their upgrade: clients that never finish their request are closed at the
//! header-read timeout or the upgrade deadline, and the number of such sockets is capped, while
//! real clients still get in.

mod common;

use std::time::Duration;

use common::{guard, read_to_close, stalled_request, TestHub};
use futures_util::future::join_all;
use resocket_hub::{Hub, HubBuilder};

const STALLED: usize = 200;

/// Holds [`STALLED`] sockets with unfinished headers, checks a real client still connects
/// meanwhile, then that every stalled socket is closed by the hub.
async fn stalled_sockets_are_closed_while_clients_get_in(builder: HubBuilder) {
    let hub = TestHub::start(builder.allow_anonymous(true)).await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        stalled.push(stalled_request(hub.addr).await);
    }
    // A hang guard, not a timing goal: without it a locked-out client would wait forever.
    let ws = tokio::time::timeout(Duration::from_secs(1), hub.raw_anon())
        .await
        .expect("a real client connects while the stalled sockets are held");
    drop(ws);
    join_all(stalled.iter_mut().map(read_to_close)).await;
    assert_eq!(
        hub.metric("resocket_hub_rejected_upgrades_total{reason=\"timeout\"}")
            .await,
        STALLED as f64
    );
}

#[tokio::test]
async fn stalled_headers_are_closed_at_the_header_read_timeout() {
    guard(30, async {
        stalled_sockets_are_closed_while_clients_get_in(
            Hub::builder()
                .header_read_timeout(Duration::from_millis(1500))
                .upgrade_timeout(Duration::from_secs(600)),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn stalled_headers_are_closed_at_the_upgrade_deadline() {
    guard(30, async {
        stalled_sockets_are_closed_while_clients_get_in(
            Hub::builder()
                .header_read_timeout(Duration::from_secs(600))
                .upgrade_timeout(Duration::from_millis(1500)),
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn sockets_beyond_the_pending_cap_are_closed_at_once() {
    guard(30, async {
        const CAP: usize = 10;
        // Deadlines far beyond the hang guard: only the cap can close a socket here.
        let hub = TestHub::start(
            Hub::builder()
                .allow_anonymous(true)
                .header_read_timeout(Duration::from_secs(600))
                .upgrade_timeout(Duration::from_secs(600))
                .max_pending_upgrades(CAP),
        )
        .await;
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(stalled_request(hub.addr).await);
        }
        // The hub accepts in connection order, so every socket past the cap is the one refused.
        let mut beyond = Vec::new();
        for _ in 0..3 * CAP {
            beyond.push(stalled_request(hub.addr).await);
        }
        join_all(beyond.iter_mut().map(read_to_close)).await;
        // Once the stalled sockets go, their slots are free again.
        drop(held);
        loop {
            if let Ok(ws) = hub.raw(&[]).await {
                drop(ws);
                break;
            }
            tokio::task::yield_now().await;
        }
        let (_, metrics) = common::http_get(hub.addr, "/metrics").await;
        let refused = common::metric(
            &metrics,
            "resocket_hub_rejected_upgrades_total{reason=\"pending_cap\"}",
        );
        assert!(refused >= (3 * CAP) as f64, "{refused}");
    })
    .await;
}
