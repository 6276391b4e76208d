//! Graceful shutdown: queued messages drain, every client gets Close 1001, serving ends.

mod common;

use common::{closed, guard, subscribe, HubClient, TestHub};
use serde_json::json;

#[tokio::test]
async fn every_client_gets_1001_after_its_queue_drains() {
    guard(15, async {
        let hub = TestHub::anonymous().await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut ws = hub.raw_anon().await;
            subscribe(&mut ws, "news", None).await;
            clients.push(ws);
        }
        let mut publisher = HubClient::connect(&hub, &[]).await;
        publisher
            .publish("news", "last", json!("before shutdown"))
            .await;

        hub.hub.shutdown();
        for ws in &mut clients {
            let m = common::recv(ws).await;
            assert_eq!(
                m["data"], "before shutdown",
                "queued messages are delivered first"
            );
            assert_eq!(closed(ws).await.expect("a close frame").code, 1001.into());
        }
        // New connections are refused once shutdown began.
        assert!(hub.raw(&[]).await.is_err());
        hub.task.await.unwrap().expect("serve returns cleanly");
        assert_eq!(hub.hub.connections(), 0);
    })
    .await;
}
