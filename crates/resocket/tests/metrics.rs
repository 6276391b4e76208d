//! `MetricsExtension` publishes through whatever `metrics` recorder the application installed.

#![cfg(feature = "metrics")]

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, atomic::Ordering::Relaxed, Arc, Mutex},
};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use resocket::{extension::MetricsExtension, Client, Message};
use resocket_testkit::{within, Behavior, TestServer};

/// Counters and gauges as plain atomics, by metric name.
#[derive(Default)]
struct Recorded(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Recorded {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        self.0
            .lock()
            .unwrap()
            .entry(key.name().to_owned())
            .or_default()
            .clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map(|c| c.load(Relaxed))
            .unwrap_or(0)
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test]
async fn traffic_and_lifecycle_reach_the_recorder() {
    within(20, "metrics", async {
        let recorded = Recorded::default();
        let extension = metrics::with_local_recorder(&recorded, || MetricsExtension::new("feed"));
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = Client::builder(server.url())
            .extension(extension)
            .spawn()
            .unwrap();
        for i in 0..3 {
            client.send(Message::text(i.to_string())).await.unwrap();
            messages.recv().await.unwrap();
        }
        assert_eq!(recorded.get("resocket_messages_out_total"), 3);
        assert_eq!(recorded.get("resocket_messages_in_total"), 3);
        assert_eq!(recorded.get("resocket_connects_total"), 1);
        assert_eq!(f64::from_bits(recorded.get("resocket_connected")), 1.0);
    })
    .await;
}
