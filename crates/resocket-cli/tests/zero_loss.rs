//! Zero loss end to end: hub clients through a proxy that keeps cutting their connections.

mod support;

use std::time::Duration;

use resocket::hub::{Gap, HubClient, RoomEvent};
use resocket_hub::Hub;
use resocket_testkit::{within, FaultProxy};

/// Serves a hub with anonymous access on 127.0.0.1:0; returns it and its address.
async fn hub(history: usize) -> (Hub, std::net::SocketAddr) {
    let hub = Hub::builder()
        .allow_anonymous(true)
        .anonymous_rooms(&["*"], &["*"])
        .history(history, Duration::from_secs(3600), 256 << 20)
        .rate_limit(1_000_000, 1_000_000)
        .build()
        .unwrap();
    let addr = support::serve(hub.clone()).await;
    (hub, addr)
}

/// A client of `url` that reconnects within milliseconds.
fn client(url: &str) -> HubClient {
    support::cluster::spawn_fast(HubClient::builder(url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_survive_constant_cuts_exactly_once_and_in_order() {
    within(180, "chaos", async {
        const COUNT: u64 = 10_000;
        let (_hub, addr) = hub(1_000_000).await;
        let proxy = FaultProxy::start(addr).await;
        proxy.set_random_cuts(Duration::from_millis(100), Duration::from_millis(500), 42);
        let url = format!("ws://{}/ws", proxy.addr());

        let mut readers = Vec::new();
        for _ in 0..3 {
            let subscriber = client(&url);
            let mut room = subscriber.subscribe("chaos").await.unwrap();
            readers.push(tokio::spawn(async move {
                let mut next = 0u64;
                while next < COUNT {
                    match room.recv().await.expect("stream ended") {
                        RoomEvent::Message(msg) => {
                            assert_eq!(
                                msg.decode::<serde_json::Value>().unwrap()["n"],
                                next,
                                "lost, duplicated or reordered"
                            );
                            next += 1;
                        }
                        RoomEvent::Gap(gap) => panic!("history covers everything, yet: {gap:?}"),
                        _ => {}
                    }
                }
                drop(subscriber);
                next
            }));
        }

        let publisher = client(&url);
        let mut acks = Vec::with_capacity(COUNT as usize);
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        for n in 0..COUNT {
            if n % 10 == 0 {
                // About 2,000 messages a second, so the run spans many connection lifetimes.
                pace.tick().await;
            }
            acks.push(
                publisher
                    .start_publish("chaos", &serde_json::json!({ "n": n }))
                    .await
                    .unwrap(),
            );
        }
        let mut offsets = Vec::with_capacity(acks.len());
        for ack in acks {
            offsets.push(ack.await.expect("every publish is acknowledged"));
        }
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "offsets follow publish order"
        );
        for reader in readers {
            assert_eq!(reader.await.unwrap(), COUNT);
        }
        let cuts = proxy.cuts();
        println!("survived {cuts} connection cuts");
        assert!(
            cuts > 20,
            "only {cuts} cuts: the run did not exercise reconnects enough"
        );
    })
    .await;
}

#[tokio::test]
async fn history_shorter_than_the_outage_yields_a_gap() {
    within(60, "gap", async {
        let (_hub, addr) = hub(10).await;
        let proxy = FaultProxy::start(addr).await;
        let subscriber = client(&format!("ws://{}/ws", proxy.addr()));
        let publisher = client(&format!("ws://{addr}/ws"));
        let mut room = subscriber.subscribe("news").await.unwrap();
        publisher
            .publish("news", &serde_json::json!({ "n": 0 }))
            .await
            .unwrap();
        let RoomEvent::Message(first) = room.recv().await.unwrap() else {
            panic!("expected a message")
        };
        assert_eq!(first.decode::<serde_json::Value>().unwrap()["n"], 0);

        // An outage longer than the history: 50 messages while the subscriber is away.
        proxy.set_refuse(true);
        proxy.cut_all();
        let mut status = subscriber.client().status();
        status.wait_for(|s| !s.state.is_ready()).await.unwrap();
        for n in 1..=50 {
            publisher
                .publish("news", &serde_json::json!({ "n": n }))
                .await
                .unwrap();
        }
        proxy.set_refuse(false);

        let RoomEvent::Gap(gap) = room.recv().await.unwrap() else {
            panic!("expected a gap first")
        };
        assert_eq!(
            gap,
            Gap {
                room: "news".into(),
                from: first.offset + 1,
                resumes_at: Some(first.offset + 41),
                epoch_changed: false
            }
        );
        for n in 41..=50 {
            let RoomEvent::Message(msg) = room.recv().await.unwrap() else {
                panic!("expected messages after the gap")
            };
            assert_eq!(msg.decode::<serde_json::Value>().unwrap()["n"], n);
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_subscription_is_an_error() {
    within(30, "forbidden", async {
        let hub = Hub::builder()
            .allow_anonymous(true)
            .anonymous_rooms(&["public.*"], &[])
            .build()
            .unwrap();
        let addr = support::serve(hub).await;
        let client = client(&format!("ws://{addr}/ws"));
        let refused = client.subscribe("private").await.unwrap_err();
        assert!(
            matches!(refused, resocket::hub::HubError::Refused { .. }),
            "{refused:?}"
        );
        let refused = client.publish("public.news", &1).await.unwrap_err();
        assert!(
            matches!(refused, resocket::hub::HubError::Refused { .. }),
            "{refused:?}"
        );
        client.subscribe("public.news").await.unwrap();
    })
    .await;
}
