//! Fan-out bench: 1 publisher, N subscribers (default 1,000) in one room, 128-byte payloads,
//! against the hub and, in the same run, against the tutorial-style baseline.
//!
//! Run: `cargo bench -p resocket-hub --bench fanout`. Scale with `FANOUT_SUBS`, `FANOUT_MSGS`
//! (messages per pass, default 1,500), `FANOUT_BATCH` (messages per round, default 50) and
//! `FANOUT_PASSES` (alternating passes per server, default 2).
//!
//! The publisher sends a round of messages back to back, then waits until every subscriber
//! has every message of the round; so both servers see the same closed-loop load and neither
//! can queue without bound. Each payload carries its send time; subscribers record the
//! publish-to-deliver latency of every message (p50, p99 and the maximum are printed; a
//! maximum near 40 ms is a delayed-ACK stall).

mod support;

use support::fanout::{env, hub_metrics, metric, run, Totals};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let subs = env("FANOUT_SUBS", 1000);
    let msgs = env("FANOUT_MSGS", 1500);
    let batch = env("FANOUT_BATCH", 50);
    let passes = env("FANOUT_PASSES", 2);
    println!(
        "fan-out: 1 publisher, {subs} subscribers, {msgs} messages of 128 B in rounds of {batch}, {passes} passes per server"
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

    // Passes alternate between the servers, so that a burst of load from elsewhere on the
    // machine does not land on one server only.
    let (mut hub_totals, mut base_totals) = (Totals::default(), Totals::default());
    // A short warm-up against each, not counted: first-use costs (allocator arenas, buffers
    // growing to size) belong to neither server's steady state.
    run(
        std::slice::from_ref(&hub_url),
        &hub_url,
        true,
        subs,
        batch * 4,
        batch,
    )
    .await;
    run(
        std::slice::from_ref(&base_url),
        &base_url,
        false,
        subs,
        batch * 4,
        batch,
    )
    .await;
    for pass in 1..=passes {
        let h = run(
            std::slice::from_ref(&hub_url),
            &hub_url,
            true,
            subs,
            msgs,
            batch,
        )
        .await;
        println!(
            "pass {pass} hub:      {:>12.0} deliveries/s",
            h.deliveries as f64 / h.elapsed.as_secs_f64()
        );
        hub_totals.add(h);
        let b = run(
            std::slice::from_ref(&base_url),
            &base_url,
            false,
            subs,
            msgs,
            batch,
        )
        .await;
        println!(
            "pass {pass} baseline: {:>12.0} deliveries/s",
            b.deliveries as f64 / b.elapsed.as_secs_f64()
        );
        base_totals.add(b);
    }
    let metrics = hub_metrics(&hub_url).await;
    let batches = metric(&metrics, "resocket_hub_write_batches_total");
    let out = metric(&metrics, "resocket_hub_messages_total{direction=\"out\"}");
    println!(
        "hub wrote {out} messages in {batches} flushes ({:.1} per flush)",
        out / batches.max(1.0)
    );
    println!("hub:      {}", hub_totals.line());
    println!("baseline: {}", base_totals.line());
    println!(
        "ratio hub/baseline: throughput {:.2}x (target >= 2x), p99 {:.2}x (target < 1x)",
        hub_totals.per_sec() / base_totals.per_sec(),
        hub_totals.percentile(0.99).as_secs_f64() / base_totals.percentile(0.99).as_secs_f64()
    );
}
