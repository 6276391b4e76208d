//! Fan-out bench: 1 publisher, N subscribers (default 1,000) in one room, 128-byte payloads,
//! against the hub and, in the same run, against the tutorial-style baseline and a Node `ws`
//! broadcast server (`support/node_broadcast.js`), each without compression and then with
//! permessage-deflate (the tutorial server cannot compress: n/a).
//!
//! Run: `cargo bench -p resocket-hub --bench fanout`. Scale with `FANOUT_SUBS`, `FANOUT_MSGS`
//! (messages per pass, default 1,500), `FANOUT_BATCH` (messages per round, default 50) and
//! `FANOUT_PASSES` (alternating passes per server, default 2); `FANOUT_MODES` picks the modes
//! (`plain,deflate` by default). Node needs `scripts/deps/node-ws.sh`; without it the Node
//! rows are n/a.
//!
//! With compression, the subscribers offer `permessage-deflate; client_max_window_bits` (as
//! resocket and browsers do) and inflate every compressed frame with resocket-proto's
//! client-role `Inflater`; without it they offer nothing. The same subscriber code runs in both
//! modes and against every server. A server that does not take the offer gets n/a in the
//! compressed mode rather than an uncompressed figure under the wrong name.
//!
//! The publisher sends a round of messages back to back, then waits until every subscriber
//! has every message of the round; so both servers see the same closed-loop load and neither
//! can queue without bound. Each payload carries its send time; subscribers record the
//! publish-to-deliver latency of every message (p50, p99 and the maximum are printed; a
//! maximum near 40 ms is a delayed-ACK stall).

mod support;

use support::fanout::{env, hub_metrics, metric, run, Kind, Totals};
use tokio::net::TcpListener;

/// A server under test, with its figures per mode.
struct Contender {
    name: &'static str,
    kind: Kind,
    /// Its URL per mode (`[plain, deflate]`); `Err` says why it is n/a in that mode.
    urls: [Result<String, String>; 2],
    totals: [Option<Totals>; 2],
}

#[tokio::main]
async fn main() {
    let subs = env("FANOUT_SUBS", 1000);
    let msgs = env("FANOUT_MSGS", 1500);
    let batch = env("FANOUT_BATCH", 50);
    let passes = env("FANOUT_PASSES", 2);
    let modes = std::env::var("FANOUT_MODES").unwrap_or_else(|_| "plain,deflate".into());
    let modes: Vec<bool> = [false, true]
        .into_iter()
        .filter(|&deflate| modes.contains(if deflate { "deflate" } else { "plain" }))
        .collect();
    println!(
        "fan-out: 1 publisher, {subs} subscribers, {msgs} messages of 128 B in rounds of {batch}, {passes} passes per server and mode"
    );

    let hub = resocket_hub::Hub::builder()
        .allow_anonymous(true)
        .rate_limit(1_000_000, 1_000_000)
        .max_connections(subs + 100)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(
        hub.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(support::baseline::serve(listener));

    // One Node process per mode: permessage-deflate is a server option in `ws`.
    let nodes = [
        support::node::NodeServer::start(false),
        support::node::NodeServer::start(true),
    ];
    let node_url = |i: usize| match &nodes[i] {
        Ok(node) => Ok(node.url.clone()),
        Err(e) => Err(e.clone()),
    };
    let mut contenders = [
        Contender {
            name: "hub",
            kind: Kind::Hub,
            urls: [Ok(hub_url.clone()), Ok(hub_url.clone())],
            totals: [None, None],
        },
        Contender {
            name: "tutorial",
            kind: Kind::Tutorial,
            urls: [Ok(base_url), Err("axum's WebSocket cannot compress".into())],
            totals: [None, None],
        },
        Contender {
            name: "node ws",
            kind: Kind::Node,
            urls: [node_url(0), node_url(1)],
            totals: [None, None],
        },
    ];

    for &deflate in &modes {
        let mode = usize::from(deflate);
        let label = if deflate { "deflate" } else { "plain" };
        // A short warm-up against each, not counted: first-use costs (allocator arenas,
        // buffers growing to size, Node's JIT) belong to no server's steady state. It also
        // finds out whether the server takes the offer.
        for c in &mut contenders {
            let Ok(url) = &c.urls[mode] else { continue };
            match run(
                std::slice::from_ref(url),
                url,
                c.kind,
                deflate,
                subs,
                batch * 4,
                batch,
            )
            .await
            {
                Some(_) => c.totals[mode] = Some(Totals::default()),
                None => {
                    c.urls[mode] = Err("did not negotiate permessage-deflate".into());
                }
            }
        }
        // Passes alternate between the servers, so that a burst of load from elsewhere on
        // the machine does not land on one server only.
        for pass in 1..=passes {
            for c in &mut contenders {
                let (Ok(url), Some(totals)) = (&c.urls[mode], &mut c.totals[mode]) else {
                    continue;
                };
                let p = run(
                    std::slice::from_ref(url),
                    url,
                    c.kind,
                    deflate,
                    subs,
                    msgs,
                    batch,
                )
                .await
                .expect("negotiated in the warm-up");
                println!(
                    "pass {pass} {label:<7} {:<9} {:>12.0} deliveries/s",
                    c.name,
                    p.deliveries as f64 / p.elapsed.as_secs_f64()
                );
                totals.add(p);
            }
        }
    }

    let metrics = hub_metrics(&hub_url).await;
    let batches = metric(&metrics, "resocket_hub_write_batches_total");
    let out = metric(&metrics, "resocket_hub_messages_total{direction=\"out\"}");
    println!(
        "hub wrote {out} messages in {batches} flushes ({:.1} per flush)",
        out / batches.max(1.0)
    );
    for &deflate in &modes {
        let mode = usize::from(deflate);
        let label = if deflate { "deflate" } else { "plain" };
        for c in &mut contenders {
            match (&c.urls[mode], &mut c.totals[mode]) {
                (Ok(_), Some(totals)) => println!("{label:<7} {:<9} {}", c.name, totals.line()),
                (why, _) => println!(
                    "{label:<7} {:<9} n/a ({})",
                    c.name,
                    why.as_ref().err().map_or("not run", String::as_str)
                ),
            }
        }
    }
    println!();
    println!("| mode | hub deliveries/s | tutorial deliveries/s | node ws deliveries/s | hub/tutorial | hub/node |");
    println!("|---|---|---|---|---|---|");
    for &deflate in &modes {
        let mode = usize::from(deflate);
        let rate = |i: usize| contenders[i].totals[mode].as_ref().map(Totals::per_sec);
        let cell = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.0}"));
        let ratio = |a: Option<f64>, b: Option<f64>, target: &str| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}× ({target})", a / b),
            _ => "n/a".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            if deflate {
                "permessage-deflate"
            } else {
                "no compression"
            },
            cell(rate(0)),
            cell(rate(1)),
            cell(rate(2)),
            ratio(rate(0), rate(1), "target ≥ 3×"),
            ratio(rate(0), rate(2), "target > 1×"),
        );
    }
    let mut p99 = |i: usize, mode: usize| {
        contenders[i].totals[mode]
            .as_mut()
            .map(|t| t.percentile(0.99).as_secs_f64())
    };
    if let (Some(h), Some(b)) = (p99(0, 0), p99(1, 0)) {
        println!(
            "p99 hub/tutorial, no compression: {:.2}× (target < 1×)",
            h / b
        );
    }
}
