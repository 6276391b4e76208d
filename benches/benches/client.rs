//! Client benchmark: resocket beside raw tokio-tungstenite and peer crates (tokio-websockets,
//! stream-tungstenite), in the same process and run.
//!
//! Measures, on loopback (`127.0.0.1:0`), with a tokio multi-thread runtime of 2 workers:
//! - receive throughput (msgs/s, 64 B, 1 KiB, 16 KiB): a server bursts `n` messages (frames
//!   encoded once and written in large chunks, so it is not the bottleneck) and the clock runs
//!   until user code has taken all `n`: raw `WebSocketStream::next()` against resocket
//!   `Messages::recv` and `recv_many`, and the peers;
//! - the same at 1 KiB with user code that reads every payload byte (`recv+read 1024`), about
//!   2 µs of work per message, where the connection task and the user's task overlap;
//! - send throughput (msgs/s, 64 B, 1 KiB, 16 KiB): raw `send().await` per message (a flush
//!   each), raw `feed` + one `flush` per batch, resocket `client.send().await` per message, and
//!   the peers; the clock runs until the server has received all `n`;
//! - compressed receive (`recv json deflate 1024`): a 1 KiB JSON market-data feed, with
//!   permessage-deflate (`server_no_context_takeover`, frames compressed once by the server):
//!   msgs/s and bytes on the wire for resocket with compression, resocket without it (the same
//!   feed, uncompressed) and yawc with compression;
//! - echo round trip p50/p99 (64 B), one message in flight;
//! - time to recover after a server restart (p50/p99 over [`RESTARTS`] restarts): a connected
//!   client's server is stopped (every connection dropped), stays down for a while, and is
//!   restarted on the same port; the clock runs from the restart until user code has the
//!   greeting the server sends on each new connection. resocket with
//!   `ClientConfig::fast_reconnect()`, stream-tungstenite with `ClientConfig::fast_reconnect()`
//!   and `ExponentialBackoff::fast()`.
//!
//! Every contender gets its own server and connection; contenders of a case run interleaved,
//! round by round, and the median round is reported, with ratios against the targets from
//! `DESIGN.md` ("Hot paths"). Every round asserts that exactly `n` messages arrived.
//!
//! Run: `cargo bench -p resocket-benches --bench client`
//! Quick check: `RESOCKET_BENCH_SCALE=0.05 cargo bench -p resocket-benches --bench client`
//! Only some cases: `cargo bench -p resocket-benches --bench client -- recv echo` (substrings
//! of the case names: `recv 64`, `recv 1024`, `recv 16384`, `recv+read 1024`, `send 64`, `send 1024`,
//! `send 16384`, `recv json deflate 1024`, `echo 64`, `recover`, and the `limit …` cases below).
//!
//! The `limit …` cases hold resocket against the best its reference can do at each figure:
//! `limit send 16384` against raw per-message `send`, `limit send 64` against raw `feed` + one
//! `flush` per batch, `limit recv 64` against a bare TCP reader ([`raw_tcp`]).
//! `RESOCKET_BENCH_ONLY=<substring>` runs only the contenders of those cases whose name holds
//! it (for a profiler), and `RESOCKET_BENCH_WRITE_BUFFER=<bytes>` sets resocket's
//! `write_buffer_size` there.

use std::time::{Duration, Instant};

use bytes::Bytes;
use resocket_benches::{
    feed::{FeedServer, FEED_SIZE},
    measure, peer_stream_tungstenite, peer_tokio_websockets, peer_yawc, raw, raw_tcp,
    report::{Report, Target},
    resocket_client,
    server::{Mode, RestartableServer, Server, Tally},
    Consumer, Payload, Recover, RoundTrip, Throughput,
};

/// Measured rounds per case, after one warm-up round; the median is reported.
const ROUNDS: usize = 5;
/// Messages per round at scale 1, chosen so that one round lasts 0.1–1 s on a 2-core machine
/// and the whole run stays under about three minutes.
const RECV_64: u64 = 1_000_000;
const RECV_1K: u64 = 250_000;
const RECV_16K: u64 = 40_000;
const RECV_READ_1K: u64 = 100_000;
const SEND_64: u64 = 500_000;
const SEND_1K: u64 = 200_000;
const SEND_16K: u64 = 40_000;
const LIMIT_SEND_64: u64 = 1_000_000;
const LIMIT_SEND_1K: u64 = 200_000;
const LIMIT_SEND_16K: u64 = 40_000;
const LIMIT_RECV_64: u64 = 1_000_000;
const RECV_JSON_DEFLATE: u64 = 250_000;
const ECHO: u64 = 20_000;
/// Measured server restarts, after one warm-up restart (not scaled).
const RESTARTS: usize = 20;
/// Messages the raw batched sender feeds before one flush.
const RAW_FEED_BATCH: usize = 256;
/// The `recv_many` limit: a page of user work per wake-up.
const RECV_MANY_LIMIT: usize = 1024;

struct Plan {
    scale: f64,
    filters: Vec<String>,
}

impl Plan {
    fn from_env() -> Plan {
        let scale = std::env::var("RESOCKET_BENCH_SCALE")
            .ok()
            .map(|s| s.parse::<f64>().expect("RESOCKET_BENCH_SCALE is a number"))
            .unwrap_or(1.0);
        assert!(scale > 0.0, "RESOCKET_BENCH_SCALE must be positive");
        // `cargo bench` passes `--bench`; anything else that is not a flag filters cases.
        let filters = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        Plan { scale, filters }
    }

    fn wants(&self, case: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| case.contains(f.as_str()))
    }

    fn n(&self, base: u64) -> u64 {
        ((base as f64 * self.scale) as u64).max(100)
    }
}

fn main() {
    let plan = Plan::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(&plan));
    report.print();
}

async fn run(plan: &Plan) -> Report {
    let mut report = Report::default();
    eprintln!(
        "scale {} ({} warm-up + {ROUNDS} measured rounds per case)",
        plan.scale, 1
    );
    for (size, base) in [(64, RECV_64), (1024, RECV_1K), (16384, RECV_16K)] {
        let case = format!("recv {size}");
        if plan.wants(&case) {
            let expect = Payload {
                size,
                consumer: Consumer::LengthOnly,
            };
            receive(&mut report, &case, expect, plan.n(base)).await;
        }
    }
    if plan.wants("recv+read 1024") {
        let expect = Payload {
            size: 1024,
            consumer: Consumer::ReadAll,
        };
        receive(&mut report, "recv+read 1024", expect, plan.n(RECV_READ_1K)).await;
    }
    for (size, base) in [(64, SEND_64), (1024, SEND_1K), (16384, SEND_16K)] {
        let case = format!("send {size}");
        if plan.wants(&case) {
            send(&mut report, &case, size, plan.n(base)).await;
        }
    }
    if plan.wants("recv json deflate 1024") {
        receive_compressed(
            &mut report,
            "recv json deflate 1024",
            plan.n(RECV_JSON_DEFLATE),
        )
        .await;
    }
    if plan.wants("echo 64") {
        echo(&mut report, "echo 64", 64, plan.n(ECHO)).await;
    }
    if plan.wants("recover") {
        recover(&mut report, "recover", RESTARTS).await;
    }
    limits(plan, &mut report).await;
    report
}

fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0xA5; size])
}

async fn receive(report: &mut Report, case: &str, expect: Payload, n: u64) {
    eprintln!("{case}: {n} messages per round");
    let size = expect.size;
    let mut servers = Vec::new();
    let mut cases: Vec<Box<dyn Throughput>> = Vec::new();

    let server = Server::start(Mode::Burst(payload(size))).await;
    cases.push(Box::new(
        raw::Receiver::connect(server.addr(), expect).await,
    ));
    servers.push(server);

    for style in [
        resocket_client::RecvStyle::One,
        resocket_client::RecvStyle::Many(RECV_MANY_LIMIT),
    ] {
        let server = Server::start(Mode::Burst(payload(size))).await;
        let receiver = resocket_client::Receiver::connect(server.addr(), expect, style).await;
        cases.push(Box::new(receiver));
        servers.push(server);
    }

    let server = Server::start(Mode::Burst(payload(size))).await;
    let receiver = peer_tokio_websockets::Receiver::connect(server.addr(), expect).await;
    cases.push(Box::new(receiver));
    servers.push(server);

    let server = Server::start(Mode::Burst(payload(size))).await;
    let receiver = peer_stream_tungstenite::Receiver::connect(server.addr(), expect, n).await;
    cases.push(Box::new(receiver));
    servers.push(server);

    let rates = measure::throughput(&mut cases, n, n / 4, ROUNDS).await;
    let case = format!("{case} B");
    // DESIGN.md's target is the library's own cost: user code that only checks the length.
    let target = match expect.consumer {
        Consumer::LengthOnly => Target::AtLeast(0.9),
        Consumer::ReadAll => Target::None,
    };
    let raw = report.throughput(&case, "raw tokio-tungstenite `next()`", size, &rates[0]);
    let one = report.throughput(&case, "resocket `recv()`", size, &rates[1]);
    let many = report.throughput(&case, "resocket `recv_many()`", size, &rates[2]);
    report.throughput(&case, "tokio-websockets `next()`", size, &rates[3]);
    let stream = report.throughput(
        &case,
        "stream-tungstenite `subscribe()` + `recv()`",
        size,
        &rates[4],
    );
    report.ratio(
        &format!("{case}: resocket recv_many / raw"),
        many.median / raw.median,
        target,
    );
    report.ratio(
        &format!("{case}: resocket recv / raw"),
        one.median / raw.median,
        target,
    );
    report.ratio(
        &format!("{case}: resocket recv_many / stream-tungstenite"),
        many.median / stream.median,
        Target::None,
    );
    report.ratio(
        &format!("{case}: resocket recv / stream-tungstenite"),
        one.median / stream.median,
        Target::None,
    );
}

async fn send(report: &mut Report, case: &str, size: usize, n: u64) {
    eprintln!("{case}: {n} messages per round");
    let mut servers = Vec::new();
    let mut cases: Vec<Box<dyn Throughput>> = Vec::new();

    for style in [
        raw::SendStyle::PerMessage,
        raw::SendStyle::Batched(RAW_FEED_BATCH),
    ] {
        let tally = std::sync::Arc::new(Tally::default());
        let server = Server::start(Mode::Sink(tally.clone())).await;
        let sender = raw::Sender::connect(server.addr(), payload(size), tally, style).await;
        cases.push(Box::new(sender));
        servers.push(server);
    }

    let tally = std::sync::Arc::new(Tally::default());
    let server = Server::start(Mode::Sink(tally.clone())).await;
    let sender = resocket_client::Sender::connect(server.addr(), payload(size), tally).await;
    cases.push(Box::new(sender));
    servers.push(server);

    let tally = std::sync::Arc::new(Tally::default());
    let server = Server::start(Mode::Sink(tally.clone())).await;
    let sender = peer_tokio_websockets::Sender::connect(
        server.addr(),
        payload(size),
        tally,
        raw::SendStyle::PerMessage,
    )
    .await;
    cases.push(Box::new(sender));
    servers.push(server);

    let tally = std::sync::Arc::new(Tally::default());
    let server = Server::start(Mode::Sink(tally.clone())).await;
    let sender =
        peer_stream_tungstenite::Sender::connect(server.addr(), payload(size), tally).await;
    cases.push(Box::new(sender));
    servers.push(server);

    let rates = measure::throughput(&mut cases, n, n / 4, ROUNDS).await;
    let case = format!("send {size} B");
    let per_msg = report.throughput(&case, "raw `send().await` per message", size, &rates[0]);
    let feed = report.throughput(
        &case,
        &format!("raw `feed` + `flush` per {RAW_FEED_BATCH}"),
        size,
        &rates[1],
    );
    let ours = report.throughput(&case, "resocket `send().await`", size, &rates[2]);
    report.throughput(
        &case,
        "tokio-websockets `send().await` per message",
        size,
        &rates[3],
    );
    let stream = report.throughput(
        &case,
        "stream-tungstenite `send_async().await` per message",
        size,
        &rates[4],
    );
    report.ratio(
        &format!("{case}: resocket / raw send"),
        ours.median / per_msg.median,
        Target::AtLeast(2.0),
    );
    report.ratio(
        &format!("{case}: resocket / raw feed+flush"),
        ours.median / feed.median,
        Target::None,
    );
    report.ratio(
        &format!("{case}: resocket / stream-tungstenite"),
        ours.median / stream.median,
        Target::None,
    );
}

/// The JSON feed, compressed and not: every contender has its own [`FeedServer`], which
/// compresses when the client offers permessage-deflate and counts what it writes.
async fn receive_compressed(report: &mut Report, case: &str, n: u64) {
    eprintln!("{case}: {n} messages per round");
    let expect = Payload {
        size: FEED_SIZE,
        consumer: Consumer::LengthOnly,
    };
    let servers = [
        FeedServer::start().await,
        FeedServer::start().await,
        FeedServer::start().await,
    ];
    eprintln!(
        "{case}: the feed compresses {:.2}× (wire bytes, frame headers included)",
        servers[0].ratio()
    );
    let compressed = resocket_client::Receiver::connect_with(
        servers[0].addr(),
        expect,
        resocket_client::RecvStyle::One,
        resocket::ClientConfig::default(),
    )
    .await;
    assert!(
        compressed.compression().is_some(),
        "resocket negotiated deflate"
    );
    let mut config = resocket::ClientConfig::default();
    config.compression.enabled = false;
    let plain = resocket_client::Receiver::connect_with(
        servers[1].addr(),
        expect,
        resocket_client::RecvStyle::One,
        config,
    )
    .await;
    assert!(plain.compression().is_none(), "resocket offered nothing");
    let mut cases: Vec<Box<dyn Throughput>> = vec![
        Box::new(compressed),
        Box::new(plain),
        Box::new(peer_yawc::Receiver::connect(servers[2].addr(), expect).await),
    ];
    let rates = measure::throughput(&mut cases, n, n / 4, ROUNDS).await;
    let case = format!("{case} B");
    let contenders = [
        "resocket `recv()`, deflate",
        "resocket `recv()`, no compression",
        "yawc 0.5 `next()`, deflate",
    ];
    let mut medians = Vec::new();
    for ((contender, rates), server) in contenders.iter().zip(&rates).zip(&servers) {
        medians.push(report.throughput(&case, contender, FEED_SIZE, rates).median);
        let (messages, bytes) = server.wire().totals();
        report.wire(&case, contender, bytes as f64 / messages as f64, FEED_SIZE);
    }
    report.ratio(
        &format!("{case}: resocket deflate / yawc deflate"),
        medians[0] / medians[2],
        Target::AtLeast(1.0),
    );
    report.ratio(
        &format!("{case}: resocket deflate / resocket uncompressed"),
        medians[0] / medians[1],
        Target::None,
    );
}

async fn echo(report: &mut Report, case: &str, size: usize, n: u64) {
    eprintln!("{case}: {n} round trips per round");
    let server = Server::start(Mode::Echo).await;
    let mut cases: Vec<Box<dyn RoundTrip>> = vec![
        Box::new(raw::Echo::connect(server.addr(), payload(size)).await),
        Box::new(resocket_client::Echo::connect(server.addr(), payload(size)).await),
        Box::new(peer_tokio_websockets::Echo::connect(server.addr(), payload(size)).await),
        Box::new(peer_stream_tungstenite::Echo::connect(server.addr(), payload(size)).await),
    ];
    let samples = measure::round_trips(&mut cases, n, n / 4, ROUNDS).await;
    let case = format!("echo {size} B");
    let raw = report.latency(&case, "raw tokio-tungstenite", &samples[0]);
    let ours = report.latency(&case, "resocket", &samples[1]);
    report.latency(&case, "tokio-websockets", &samples[2]);
    let stream = report.latency(&case, "stream-tungstenite", &samples[3]);
    report.ratio(
        &format!("{case}: resocket p50 / raw p50"),
        ratio(ours.p50, raw.p50),
        Target::AtMost(1.2),
    );
    report.ratio(
        &format!("{case}: resocket p99 / raw p99"),
        ratio(ours.p99, raw.p99),
        Target::None,
    );
    report.ratio(
        &format!("{case}: resocket p50 / stream-tungstenite p50"),
        ratio(ours.p50, stream.p50),
        Target::None,
    );
}

/// Restart `i` keeps the servers down this long: 50 ms to 430 ms in 20 ms steps, so that the
/// restarts land at different points of the backoff schedules instead of one lucky or unlucky
/// phase.
fn downtime(i: usize) -> Duration {
    Duration::from_millis(50 + 20 * (i % 20) as u64)
}

async fn recover(report: &mut Report, case: &str, restarts: usize) {
    eprintln!("{case}: {restarts} server restarts");
    let mut servers = [
        RestartableServer::start(Mode::Greet(payload(64))).await,
        RestartableServer::start(Mode::Greet(payload(64))).await,
    ];
    let mut samples = vec![Vec::with_capacity(restarts); servers.len()];
    // Restart 0 is a warm-up. Every restart gets fresh clients, connected and stable, so that
    // each sample is one restart after a healthy connection: resocket keeps escalating its
    // backoff across drops until a connection has lasted `stable_after` (5 s here), which
    // back-to-back restarts of one client would measure instead.
    for i in 0..=restarts {
        let clients: Vec<Box<dyn Recover>> = vec![
            Box::new(resocket_client::Recovering::connect(servers[0].addr()).await),
            Box::new(peer_stream_tungstenite::Recovering::connect(servers[1].addr()).await),
        ];
        for server in &mut servers {
            server.stop().await;
        }
        tokio::time::sleep(downtime(i)).await;
        let waiters: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_secs(10), client.greeting())
                        .await
                        .expect("the client recovered within 10 s")
                })
            })
            .collect();
        // Both servers come back together, in a rotating order.
        let mut restarted = [Instant::now(); 2];
        for k in 0..servers.len() {
            let j = (k + i) % servers.len();
            servers[j].restart();
            restarted[j] = Instant::now();
        }
        for (j, waiter) in waiters.into_iter().enumerate() {
            let at = waiter.await.expect("recover round panicked");
            if i > 0 {
                samples[j].push(at.duration_since(restarted[j]));
            }
        }
    }
    for s in &mut samples {
        s.sort_unstable();
    }
    let ours = report.latency(case, "resocket `fast_reconnect()`", &samples[0]);
    let stream = report.latency(
        case,
        "stream-tungstenite `fast_reconnect()` + `ExponentialBackoff::fast()`",
        &samples[1],
    );
    report.ratio(
        &format!("{case}: resocket p50 / stream-tungstenite p50"),
        ratio(ours.p50, stream.p50),
        Target::None,
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// One contender of a `limit …` case.
struct Contender {
    name: &'static str,
    case: Box<dyn Throughput>,
    _server: Server,
}

/// The `limit …` cases: resocket against the best its reference can do at that figure, each
/// with a goal of its own. Every contender is on its own server.
async fn limits(plan: &Plan, report: &mut Report) {
    let only = std::env::var("RESOCKET_BENCH_ONLY").ok();
    let keep = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let configs: Vec<resocket::ClientConfig> = match std::env::var("RESOCKET_BENCH_WRITE_BUFFER") {
        Ok(sizes) => sizes
            .split(',')
            .map(|size| {
                let mut config = resocket::ClientConfig::default();
                config.write_buffer_size =
                    size.parse().expect("RESOCKET_BENCH_WRITE_BUFFER: sizes");
                config
            })
            .collect(),
        Err(_) => vec![resocket::ClientConfig::default()],
    };
    let sends = [
        (
            64,
            LIMIT_SEND_64,
            raw::SendStyle::Batched(RAW_FEED_BATCH),
            0.9,
        ),
        (
            1024,
            LIMIT_SEND_1K,
            raw::SendStyle::Batched(RAW_FEED_BATCH),
            0.9,
        ),
        (16384, LIMIT_SEND_16K, raw::SendStyle::PerMessage, 1.3),
    ];
    for (size, base, style, goal) in sends {
        let case = format!("limit send {size}");
        if !plan.wants(&case) {
            continue;
        }
        let n = plan.n(base);
        eprintln!("{case}: {n} messages per round");
        let raw_name = match style {
            raw::SendStyle::PerMessage => "raw `send().await` per message",
            raw::SendStyle::Batched(_) => "raw `feed` + one `flush` per 256",
        };
        let mut contenders = Vec::new();
        if keep(raw_name) {
            let tally = std::sync::Arc::new(Tally::default());
            let server = Server::start(Mode::Sink(tally.clone())).await;
            let sender = raw::Sender::connect(server.addr(), payload(size), tally, style).await;
            contenders.push(Contender {
                name: raw_name,
                case: Box::new(sender),
                _server: server,
            });
        }
        for config in &configs {
            if !keep("resocket `send().await`") {
                continue;
            }
            let tally = std::sync::Arc::new(Tally::default());
            let server = Server::start(Mode::Sink(tally.clone())).await;
            let sender = resocket_client::Sender::connect_with(
                server.addr(),
                payload(size),
                tally,
                config.clone(),
            )
            .await;
            let name = if configs.len() == 1 {
                "resocket `send().await`".to_owned()
            } else {
                format!(
                    "resocket `send().await`, write buffer {}",
                    config.write_buffer_size
                )
            };
            contenders.push(Contender {
                name: name.leak(),
                case: Box::new(sender),
                _server: server,
            });
        }
        limit_report(report, &case, size, n, contenders, goal).await;
    }
    let case = "limit recv 64";
    if plan.wants(case) {
        let n = plan.n(LIMIT_RECV_64);
        eprintln!("{case}: {n} messages per round");
        let expect = Payload {
            size: 64,
            consumer: Consumer::LengthOnly,
        };
        let mut contenders = Vec::new();
        let name = "raw TCP reader (headers only)";
        if keep(name) {
            let server = Server::start(Mode::Burst(payload(64))).await;
            let receiver = raw_tcp::Receiver::connect(server.addr(), expect).await;
            contenders.push(Contender {
                name,
                case: Box::new(receiver),
                _server: server,
            });
        }
        let name = "resocket `recv()`";
        if keep(name) {
            let server = Server::start(Mode::Burst(payload(64))).await;
            let style = resocket_client::RecvStyle::One;
            let receiver = resocket_client::Receiver::connect(server.addr(), expect, style).await;
            contenders.push(Contender {
                name,
                case: Box::new(receiver),
                _server: server,
            });
        }
        limit_report(report, case, 64, n, contenders, 0.95).await;
    }
}

/// Runs a `limit …` case's contenders interleaved and reports them; the ratio of the last to
/// the first, with its goal, when both ran.
async fn limit_report(
    report: &mut Report,
    case: &str,
    size: usize,
    n: u64,
    contenders: Vec<Contender>,
    goal: f64,
) {
    let (names, mut cases): (Vec<_>, Vec<_>) = contenders
        .into_iter()
        .map(|c| ((c.name, c._server), c.case))
        .unzip();
    let rates = measure::throughput(&mut cases, n, n / 4, ROUNDS).await;
    let case = format!("{case} B");
    let medians: Vec<f64> = names
        .iter()
        .zip(&rates)
        .map(|((name, _), rates)| report.throughput(&case, name, size, rates).median)
        .collect();
    if let [reference, .., ours] = medians[..] {
        report.ratio(
            &format!("{case}: {} / {}", names[names.len() - 1].0, names[0].0),
            ours / reference,
            Target::AtLeast(goal),
        );
    }
}
