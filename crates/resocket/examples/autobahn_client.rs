//! The client's agent for Autobahn|Testsuite's fuzzing server: one connection per case, no
//! reconnect, every message echoed, then the reports updated.
//!
//! `scripts/autobahn` runs it (release build) against `wstest -m fuzzingserver`; by hand:
//! `cargo run --release -p resocket --example autobahn_client -- ws://127.0.0.1:9001`.

use resocket::{Client, Error};

const AGENT: &str = "resocket";

/// One connection to `url`, echoing every message until the server ends it.
async fn run(url: &str) -> Result<(), Error> {
    let (client, mut messages) = Client::builder(url)
        .no_reconnect()
        .configure(|config| {
            // The cases count the frames they see: no heartbeat of our own among them.
            config.ping_interval = None;
            // Case 9.1.6 echoes a 16 MiB message; the queue must take it whole.
            config.queue_max_bytes = 64 << 20;
        })
        .spawn()?;
    while let Some(msg) = messages.recv().await {
        if client.send(msg).await.is_err() {
            break;
        }
    }
    // Failing the connection is what many cases expect: the report judges it, not the agent.
    let _ = client.closed().await;
    Ok(())
}

/// The number of cases the server holds.
async fn case_count(base: &str) -> Result<u32, Error> {
    let (client, mut messages) = Client::builder(format!("{base}/getCaseCount"))
        .no_reconnect()
        .spawn()?;
    let count = messages
        .recv()
        .await
        .and_then(|msg| msg.to_text().ok()?.trim().parse().ok())
        .unwrap_or(0);
    let _ = client.closed().await;
    Ok(count)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let count = case_count(&base).await?;
    eprintln!("autobahn_client: {count} cases");
    for case in 1..=count {
        run(&format!("{base}/runCase?case={case}&agent={AGENT}")).await?;
    }
    run(&format!("{base}/updateReports?agent={AGENT}")).await
}
