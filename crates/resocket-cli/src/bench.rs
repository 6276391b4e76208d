//! `resocket bench`: N connections at a fixed total rate; throughput and a latency histogram.
//!
//! Each message carries its send time (microseconds since the start, as 16 hex digits, padded
//! to the requested size), so an echoing server lets the bench measure round trips without
//! any bookkeeping per message. Against a server that does not echo, throughput is still
//! reported and latency is simply absent.
//!
//! Losses decide the exit status (3, see [`crate::exit`]): messages refused by a full queue,
//! messages still queued (or unconfirmed) when the connections closed, and, from a server
//! that echoes, echoes that never came back.

use std::{
    io::Write as _,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use resocket::{Client, Message};

use crate::{cli::BenchArgs, exit};

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.connections == 0 || args.rate == 0 || args.duration <= 0.0 {
        bail!("connections, rate and duration must be greater than zero");
    }
    let size = args.size.max(16);
    let duration = Duration::from_secs_f64(args.duration);
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let per_connection = args.rate as f64 / args.connections as f64;

    let mut clients = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..args.connections {
        let (client, mut messages) = Client::builder(args.url.as_str())
            .configure(|c| c.exit_on_first_failure = true)
            .spawn()?;
        client.ready().await?;
        let counters = counters.clone();
        receivers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut batch = Vec::new();
            while messages.recv_many(&mut batch, 512).await > 0 {
                let now = start.elapsed().as_micros() as u64;
                for msg in batch.drain(..) {
                    counters.received.fetch_add(1, Relaxed);
                    if let Some(sent) = msg
                        .to_text()
                        .ok()
                        .and_then(|t| t.get(..16))
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                    {
                        latencies.push(now.saturating_sub(sent));
                    }
                }
            }
            latencies
        }));
        clients.push(client);
    }

    let senders: Vec<_> = clients
        .iter()
        .cloned()
        .map(|client| {
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                let mut sent = 0u64;
                let padding = "x".repeat(size - 16);
                while start.elapsed() < duration {
                    tick.tick().await;
                    let due = (start.elapsed().as_secs_f64() * per_connection) as u64;
                    while sent < due {
                        let stamp = start.elapsed().as_micros() as u64;
                        match client.try_send(Message::text(format!("{stamp:016x}{padding}"))) {
                            Ok(()) => counters.sent.fetch_add(1, Relaxed),
                            Err(_) => counters.refused.fetch_add(1, Relaxed),
                        };
                        sent += 1;
                    }
                }
            })
        })
        .collect();

    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let done = (start.elapsed().as_secs_f64() / duration.as_secs_f64()).min(1.0);
                let filled = (done * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>3.0}%  sent {}  received {}   ",
                    "=".repeat(filled),
                    " ".repeat(30 - filled),
                    done * 100.0,
                    counters.sent.load(Relaxed),
                    counters.received.load(Relaxed)
                );
                let _ = std::io::stderr().flush();
            }
        })
    };
    for sender in senders {
        sender.await?;
    }
    // Let the last echoes come back, then close everything.
    let sent = counters.sent.load(Relaxed);
    let settle = Instant::now();
    while counters.received.load(Relaxed) < sent && settle.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    progress.abort();
    let _ = progress.await;
    // The final state, whatever the last tick showed.
    eprintln!(
        "\r[{}] 100%  sent {}  received {}   ",
        "=".repeat(30),
        counters.sent.load(Relaxed),
        counters.received.load(Relaxed)
    );
    let mut unsent = 0;
    for client in &clients {
        client.close().await.ok();
        let counters = client.snapshot().counters;
        unsent += counters.dropped + counters.unconfirmed;
    }
    drop(clients);
    let mut latencies = Vec::new();
    for receiver in receivers {
        latencies.extend(receiver.await?);
    }
    report(&counters, elapsed, &mut latencies);
    let losses = Losses::count(&counters, unsent);
    println!("lost      {losses}");
    if losses.total() == 0 {
        return Ok(exit::code(exit::SUCCESS));
    }
    eprintln!(
        "error: {} message(s) lost or refused: {losses}",
        losses.total()
    );
    Ok(exit::code(exit::UNDELIVERED))
}

/// What did not make the round trip.
struct Losses {
    /// Refused by a full queue: never sent.
    refused: u64,
    /// Accepted by the queue, but dropped at the close or lost with a connection before their
    /// flush completed.
    unsent: u64,
    /// Sent, but never echoed; `None` when the server echoed nothing at all (a server that
    /// does not echo says nothing about loss).
    unechoed: Option<u64>,
}

impl Losses {
    fn count(counters: &Counters, unsent: u64) -> Losses {
        let sent = counters.sent.load(Relaxed);
        let received = counters.received.load(Relaxed);
        Losses {
            refused: counters.refused.load(Relaxed),
            unsent,
            unechoed: (received > 0).then(|| sent.saturating_sub(received)),
        }
    }

    /// Messages lost or refused, each counted once: an unsent message is also unechoed.
    fn total(&self) -> u64 {
        self.refused + self.unechoed.map_or(self.unsent, |e| e.max(self.unsent))
    }
}

impl std::fmt::Display for Losses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused by a full queue, {} unsent at the close",
            self.refused, self.unsent
        )?;
        match self.unechoed {
            Some(unechoed) => write!(f, ", {unechoed} never echoed"),
            None => Ok(()),
        }
    }
}

fn report(counters: &Counters, elapsed: f64, latencies: &mut [u64]) {
    let sent = counters.sent.load(Relaxed);
    let received = counters.received.load(Relaxed);
    println!(
        "sent      {sent} messages ({:.0}/s), {} refused by a full queue",
        sent as f64 / elapsed,
        counters.refused.load(Relaxed)
    );
    println!(
        "received  {received} messages ({:.0}/s)",
        received as f64 / elapsed
    );
    if latencies.is_empty() {
        println!("latency   none measured (the server did not echo)");
        return;
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "latency   p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        *latencies.last().unwrap_or(&0) as f64 / 1000.0
    );
    println!("histogram");
    let mut bucket_top = 100u64; // microseconds
    let mut start = 0;
    while start < latencies.len() {
        let end = latencies.partition_point(|&l| l < bucket_top);
        let count = end - start;
        let bar = "#".repeat(((count as f64 / latencies.len() as f64) * 50.0).ceil() as usize);
        println!(
            "  < {:>9.3} ms {:>9} {bar}",
            bucket_top as f64 / 1000.0,
            count
        );
        start = end;
        bucket_top *= 2;
    }
}
