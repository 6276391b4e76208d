//! `resocket demo`: the promise, shown live.
//!
//! One process runs a hub, a chaos proxy that cuts every connection after a few hundred
//! milliseconds, one publisher and several subscribers, all on loopback through the proxy. The
//! publisher numbers its messages; each subscriber checks that it sees every number exactly once
//! and in order. A status line shows cuts, reconnects, published, delivered, lost and
//! duplicated; the summary at the end decides the exit status: any loss or duplicate fails.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use resocket::{
    hub::{HubClient, RoomEvent},
    retry::ExponentialBackoff,
};
use resocket_hub::Hub;
use resocket_testkit::FaultProxy;

use crate::cli::DemoArgs;

const ROOM: &str = "demo";

#[derive(Default)]
struct Tally {
    published: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let hub = Hub::builder()
        .allow_anonymous(true)
        .anonymous_rooms(&["*"], &["*"])
        .history(1_000_000, Duration::from_secs(3600), 512 << 20)
        // The publisher re-sends its unacknowledged window after every cut: no rate limit here.
        .rate_limit(1_000_000, 1_000_000)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_addr = listener.local_addr()?;
    let serving = hub.clone();
    tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, std::future::pending())
            .await
    });

    // Shared with the status line; dropping the last handle stops the proxy.
    let proxy = Arc::new(FaultProxy::start(hub_addr).await);
    proxy.set_random_cuts(Duration::from_millis(200), Duration::from_millis(600), seed);
    let url = format!("ws://{}/ws", proxy.addr());
    eprintln!("[demo] hub on {hub_addr}, chaos proxy on {} cutting every connection after 200-600 ms (seed {seed})", proxy.addr());

    let tally = Arc::new(Tally::default());
    let connect = || {
        HubClient::builder(&url)
            .configure(|b| {
                b.configure(|c| {
                    c.backoff = ExponentialBackoff::new(
                        Duration::from_millis(20),
                        Duration::from_millis(250),
                    )
                })
            })
            .spawn()
    };
    let mut subscribers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..args.subscribers {
        let hub_client = connect()?;
        let mut subscription =
            tokio::time::timeout(Duration::from_secs(20), hub_client.subscribe(ROOM))
                .await
                .context("subscribing timed out")??;
        let tally = tally.clone();
        subscribers.push(tokio::spawn(async move {
            let mut next = 0u64;
            while let Some(event) = subscription.recv().await {
                match event {
                    RoomEvent::Message(msg) => {
                        let n = msg
                            .decode::<serde_json::Value>()
                            .ok()
                            .and_then(|v| v["n"].as_u64())
                            .unwrap_or(u64::MAX);
                        if n < next {
                            tally.duplicated.fetch_add(1, Relaxed);
                        } else {
                            tally.lost.fetch_add(n - next, Relaxed);
                            tally.delivered.fetch_add(1, Relaxed);
                            next = n + 1;
                        }
                    }
                    RoomEvent::Gap(gap) => {
                        eprintln!("\n[demo] gap announced: {gap:?}");
                    }
                    _ => {}
                }
            }
            next
        }));
        clients.push(hub_client);
    }

    let publisher = connect()?;
    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let status = {
        let tally = tally.clone();
        let clients: Vec<_> = clients
            .iter()
            .chain(std::iter::once(&publisher))
            .map(|c| c.client().clone())
            .collect();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let reconnects: u64 = clients.iter().map(|c| c.snapshot().reconnects).sum();
                eprint!(
                    "\r[demo] {:>5.1}s  cuts {:>4}  reconnects {:>4}  published {:>7}  acked {:>7}  delivered {:>8}  lost {}  duplicated {}   ",
                    start.elapsed().as_secs_f64(),
                    proxy.cuts(),
                    reconnects,
                    tally.published.load(Relaxed),
                    tally.acked.load(Relaxed),
                    tally.delivered.load(Relaxed),
                    tally.lost.load(Relaxed),
                    tally.duplicated.load(Relaxed),
                );
                let _ = std::io::stderr().flush();
            }
        })
    };
    // Publish at a steady rate; every ack is awaited in the background, in order.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::unbounded_channel();
    let ack_task = {
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some(ack) = acks_rx.recv().await {
                match ack {
                    Ok(pending) => {
                        match tokio::time::timeout(Duration::from_secs(30), pending).await {
                            Ok(Ok(_offset)) => {
                                tally.acked.fetch_add(1, Relaxed);
                            }
                            _ => return false,
                        }
                    }
                    Err(()) => return false,
                }
            }
            true
        })
    };
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while n < due {
            let pending = publisher
                .start_publish(ROOM, &serde_json::json!({ "n": n }))
                .await
                .map_err(|_| ());
            let _ = acks_tx.send(pending);
            tally.published.fetch_add(1, Relaxed);
            n += 1;
        }
    }
    drop(acks_tx);
    let all_acked = ack_task.await.unwrap_or(false);

    // Wait until every subscriber has everything (or clearly never will).
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = n * args.subscribers as u64;
    while tally.delivered.load(Relaxed) + tally.lost.load(Relaxed) < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status.abort();
    let cuts = proxy.cuts();
    let reconnects: u64 = clients
        .iter()
        .chain(std::iter::once(&publisher))
        .map(|c| c.client().snapshot().reconnects)
        .sum();
    for client in clients.iter().chain(std::iter::once(&publisher)) {
        let _ = client.close().await;
    }
    drop(clients);
    for subscriber in subscribers {
        let _ = subscriber.await;
    }
    drop(proxy);
    hub.shutdown();

    let delivered = tally.delivered.load(Relaxed);
    let lost =
        tally.lost.load(Relaxed) + expected.saturating_sub(delivered + tally.lost.load(Relaxed));
    let duplicated = tally.duplicated.load(Relaxed);
    eprintln!();
    println!(
        "summary: published={n} acked={} delivered={delivered} expected={expected} lost={lost} duplicated={duplicated} cuts={cuts} reconnects={reconnects} subscribers={}",
        tally.acked.load(Relaxed),
        args.subscribers
    );
    let ok = lost == 0 && duplicated == 0 && all_acked && delivered == expected;
    println!(
        "{}",
        if ok {
            "result: nothing lost, nothing duplicated"
        } else {
            "result: FAILED"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
