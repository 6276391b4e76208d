//! `resocket demo`: the promise, shown live.
//!
//! One process runs a hub, a chaos proxy that cuts every connection after a few hundred
//! milliseconds, one publisher and several subscribers, all on loopback through the proxy. The
//! publisher numbers its messages; each subscriber checks that it sees every number exactly once.
//! A status line shows cuts, reconnects, published, delivered, lost and duplicated; the summary
//! at the end decides the exit status: any loss or duplicate fails. `--cluster` runs the same
//! traffic over three hub nodes on one Redis while nodes and Redis restart (`demo/cluster.rs`).
//!
//! Both demos are the same steps: start the servers, [`Traffic::start`] the subscribers,
//! [`Traffic::publish`] for the duration, [`Traffic::finish`] (wait for every delivery, close),
//! then [`Outcome::report`].

mod cluster;
mod node;
mod redis;

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
    hub::{HubClient, PendingAck, RoomEvent},
    retry::ExponentialBackoff,
    Client,
};
use resocket_hub::Hub;
use resocket_testkit::FaultProxy;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::cli::DemoArgs;

const ROOM: &str = "demo";
/// How long a connection lives before the chaos proxy cuts it: a random time in this range.
const CUT_AFTER: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(600));
/// How long, once publishing stops, every subscriber gets to receive the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        return cluster::run(args).await;
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let (hub, hub_addr) = start_hub().await?;
    let proxy = Arc::new(chaos_proxy(hub_addr, seed).await);
    let url = format!("ws://{}/ws", proxy.addr());
    eprintln!(
        "[demo] hub on {hub_addr}, chaos proxy on {} cutting every connection after 200-600 ms (seed {seed})",
        proxy.addr()
    );

    let endpoints = |_: usize| vec![url.clone()];
    let traffic = Traffic::start(&args, 1, endpoints, endpoints).await?;
    let status = {
        let proxy = proxy.clone();
        traffic.show_status(move || format!("cuts {:>4}", proxy.cuts()))
    };
    let published = traffic.publish(&args).await;
    status.abort();
    let mut outcome = traffic.finish(published).await;
    outcome.cuts = proxy.cuts();
    drop(proxy);
    hub.shutdown();
    Ok(outcome.report(""))
}

/// The single-node demo's hub, on 127.0.0.1:0: anonymous, history long enough for any
/// reconnect, and no rate limit to speak of.
async fn start_hub() -> anyhow::Result<(Hub, std::net::SocketAddr)> {
    let hub = Hub::builder()
        .allow_anonymous(true)
        .anonymous_rooms(&["*"], &["*"])
        .history(1_000_000, Duration::from_secs(3600), 512 << 20)
        // The publisher re-sends its unacknowledged window after every cut: no rate limit here.
        .rate_limit(1_000_000, 1_000_000)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = hub.clone();
    tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, std::future::pending())
            .await
    });
    Ok((hub, addr))
}

/// A chaos proxy in front of `upstream` that cuts every connection after [`CUT_AFTER`].
async fn chaos_proxy(upstream: std::net::SocketAddr, seed: u64) -> FaultProxy {
    let proxy = FaultProxy::start(upstream).await;
    proxy.set_random_cuts(CUT_AFTER.0, CUT_AFTER.1, seed);
    proxy
}

/// A hub client for `urls` (tried in turn) that reconnects within a quarter second.
fn hub_client(urls: &[String]) -> anyhow::Result<HubClient> {
    Ok(
        HubClient::builder_with_endpoints(urls.iter().map(String::as_str))
            .configure(|b| {
                b.configure(|c| {
                    c.backoff = ExponentialBackoff::new(
                        Duration::from_millis(20),
                        Duration::from_millis(250),
                    )
                })
            })
            .spawn()?,
    )
}

/// What the subscribers and publishers counted, shared with the status line.
#[derive(Default)]
struct Tally {
    published: AtomicU64,
    acked: AtomicU64,
    /// Distinct messages delivered, over all subscribers.
    delivered: AtomicU64,
    /// Numbers a subscriber has not seen below the highest it has seen: lost, unless a late
    /// one still arrives (a publish re-sent after a storage outage may overtake another).
    missing: AtomicU64,
    duplicated: AtomicU64,
    /// Gaps the subscribers were told about.
    gaps: AtomicU64,
}

/// What one subscriber has seen of one publisher's numbers.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    /// One past the highest number seen.
    high: u64,
}

impl Seen {
    /// Records `n`; false when it was seen before.
    fn insert(&mut self, n: u64, tally: &Tally) -> bool {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        if n >= self.high {
            tally.missing.fetch_add(n - self.high, Relaxed);
            self.high = n + 1;
        } else {
            tally.missing.fetch_sub(1, Relaxed);
        }
        true
    }
}

/// The demo's clients: subscribers checking what they receive, publishers numbering what they
/// send, and the acks being counted.
struct Traffic {
    tally: Arc<Tally>,
    subscribers: Vec<HubClient>,
    readers: Vec<JoinHandle<()>>,
    publishers: Vec<HubClient>,
    started: Instant,
}

impl Traffic {
    /// Connects `args.subscribers` subscribers (subscriber `i` to `subscriber_urls(i)`) and
    /// `publishers` publishers (publisher `p` to `publisher_urls(p)`), and subscribes.
    async fn start(
        args: &DemoArgs,
        publishers: usize,
        subscriber_urls: impl Fn(usize) -> Vec<String>,
        publisher_urls: impl Fn(usize) -> Vec<String>,
    ) -> anyhow::Result<Traffic> {
        let tally = Arc::new(Tally::default());
        let mut subscribers = Vec::new();
        let mut readers = Vec::new();
        for i in 0..args.subscribers {
            let client = hub_client(&subscriber_urls(i))?;
            let subscription =
                tokio::time::timeout(Duration::from_secs(20), client.subscribe(ROOM))
                    .await
                    .context("subscribing timed out")??;
            readers.push(tokio::spawn(check_deliveries(
                subscription,
                publishers,
                tally.clone(),
            )));
            subscribers.push(client);
        }
        let publishers = (0..publishers)
            .map(|p| hub_client(&publisher_urls(p)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Traffic {
            tally,
            subscribers,
            readers,
            publishers,
            started: Instant::now(),
        })
    }

    fn clients(&self) -> Vec<Client> {
        self.subscribers
            .iter()
            .chain(&self.publishers)
            .map(|c| c.client().clone())
            .collect()
    }

    /// Redraws the status line every quarter second, with `extra` (the servers' side) first;
    /// abort the task to stop it.
    fn show_status(&self, extra: impl Fn() -> String + Send + 'static) -> JoinHandle<()> {
        let tally = self.tally.clone();
        let clients = self.clients();
        let started = self.started;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let reconnects: u64 = clients.iter().map(|c| c.snapshot().reconnects).sum();
                eprint!(
                    "\r[demo] {:>5.1}s  {}  reconnects {:>4}  published {:>7}  acked {:>7}  delivered {:>8}  lost {}  duplicated {}   ",
                    started.elapsed().as_secs_f64(),
                    extra(),
                    reconnects,
                    tally.published.load(Relaxed),
                    tally.acked.load(Relaxed),
                    tally.delivered.load(Relaxed),
                    tally.missing.load(Relaxed),
                    tally.duplicated.load(Relaxed),
                );
                let _ = std::io::stderr().flush();
            }
        })
    }

    /// Publishes `args.rate` messages a second, spread over the publishers, for
    /// `args.duration` seconds; acks are awaited in the background.
    async fn publish(&self, args: &DemoArgs) -> PublishOutcome {
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let acks = tokio::spawn(count_acks(acks_rx, self.tally.clone()));
        let duration = Duration::from_secs_f64(args.duration);
        let publishers = self.publishers.len() as u64;
        let mut n = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while self.started.elapsed() < duration {
            tick.tick().await;
            let due = (self.started.elapsed().as_secs_f64() * args.rate as f64) as u64;
            while n < due {
                // Publisher `p` numbers its own messages 0, 1, 2, …
                let (p, seq) = (n % publishers, n / publishers);
                let pending = self.publishers[p as usize]
                    .start_publish(ROOM, &serde_json::json!({ "p": p, "n": seq }))
                    .await
                    .map_err(|_| ());
                let _ = acks_tx.send(pending);
                self.tally.published.fetch_add(1, Relaxed);
                n += 1;
            }
        }
        drop(acks_tx);
        PublishOutcome {
            published: n,
            all_acked: acks.await.unwrap_or(false),
        }
    }

    /// Waits until every subscriber has every message (or clearly never will), closes the
    /// clients and counts what happened.
    async fn finish(self, published: PublishOutcome) -> Outcome {
        let expected = published.published * self.subscribers.len() as u64;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.tally.delivered.load(Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let subscribers = self.subscribers.len() as u64;
        let reconnects = self.clients().iter().map(|c| c.snapshot().reconnects).sum();
        for client in self.subscribers.iter().chain(&self.publishers) {
            let _ = client.close().await;
        }
        drop(self.subscribers);
        for reader in self.readers {
            let _ = reader.await;
        }
        let tally = &self.tally;
        let delivered = tally.delivered.load(Relaxed);
        Outcome {
            published: published.published,
            acked: tally.acked.load(Relaxed),
            all_acked: published.all_acked,
            delivered,
            expected,
            lost: expected.saturating_sub(delivered),
            duplicated: tally.duplicated.load(Relaxed),
            gaps: tally.gaps.load(Relaxed),
            reconnects,
            cuts: 0,
            subscribers,
        }
    }
}

/// What [`Traffic::publish`] did.
struct PublishOutcome {
    published: u64,
    all_acked: bool,
}

/// One subscriber's check: every publisher's numbers, each once.
async fn check_deliveries(
    mut subscription: resocket::hub::Subscription,
    publishers: usize,
    tally: Arc<Tally>,
) {
    let mut seen: Vec<Seen> = (0..publishers).map(|_| Seen::default()).collect();
    while let Some(event) = subscription.recv().await {
        match event {
            RoomEvent::Message(msg) => {
                let value = msg.decode::<serde_json::Value>().ok();
                let number = |key: &str| value.as_ref().and_then(|v| v[key].as_u64());
                let (Some(p), Some(n)) = (number("p"), number("n")) else {
                    continue;
                };
                let Some(seen) = seen.get_mut(p as usize) else {
                    continue;
                };
                if seen.insert(n, &tally) {
                    tally.delivered.fetch_add(1, Relaxed);
                } else {
                    tally.duplicated.fetch_add(1, Relaxed);
                }
            }
            RoomEvent::Gap(gap) => {
                tally.gaps.fetch_add(1, Relaxed);
                eprintln!("\n[demo] gap announced: {gap:?}");
            }
            _ => {}
        }
    }
}

/// Counts acks in publish order; false once one fails or takes more than 30 s.
async fn count_acks(
    mut acks_rx: mpsc::UnboundedReceiver<Result<PendingAck, ()>>,
    tally: Arc<Tally>,
) -> bool {
    while let Some(ack) = acks_rx.recv().await {
        let Ok(pending) = ack else { return false };
        match tokio::time::timeout(Duration::from_secs(30), pending).await {
            Ok(Ok(_offset)) => {
                tally.acked.fetch_add(1, Relaxed);
            }
            _ => return false,
        }
    }
    true
}

/// The end of a demo run, for the summary.
struct Outcome {
    published: u64,
    acked: u64,
    all_acked: bool,
    delivered: u64,
    expected: u64,
    lost: u64,
    duplicated: u64,
    gaps: u64,
    reconnects: u64,
    cuts: usize,
    subscribers: u64,
}

impl Outcome {
    /// Prints the summary (with `extra` fields after the common ones) and the verdict; any
    /// loss, duplicate or missing ack fails.
    fn report(&self, extra: &str) -> ExitCode {
        eprintln!();
        println!(
            "summary: published={} acked={} delivered={} expected={} lost={} duplicated={} gaps={} cuts={} reconnects={} subscribers={}{extra}",
            self.published,
            self.acked,
            self.delivered,
            self.expected,
            self.lost,
            self.duplicated,
            self.gaps,
            self.cuts,
            self.reconnects,
            self.subscribers,
        );
        let ok = self.lost == 0
            && self.duplicated == 0
            && self.all_acked
            && self.delivered == self.expected;
        if ok {
            println!("result: nothing lost, nothing duplicated");
            ExitCode::SUCCESS
        } else {
            println!("result: FAILED");
            ExitCode::FAILURE
        }
    }
}
