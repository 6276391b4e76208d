//! Hang guards for async tests: every test body runs under a deadline and fails loudly.

use std::{future::Future, time::Duration};

/// Runs `fut`, panicking with `what` if it takes longer than `secs` seconds.
///
/// The deadline is a hang guard, not a timing assertion: pick it generously.
///
/// # Panics
/// When the deadline passes.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released), for refused-connection
/// tests.
pub async fn closed_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr
}
