//! Helpers shared by the CLI crate's integration tests.

// Each test file uses a different part of this module.
#[allow(dead_code)]
mod binary;

use std::net::SocketAddr;

use resocket_hub::Hub;

#[allow(unused_imports)]
pub use binary::{output, resocket};

/// Serves `hub` on 127.0.0.1:0 in the background until the test ends; returns its address.
#[allow(dead_code)]
pub async fn serve(hub: Hub) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move {
        hub.serve_with_shutdown(listener, std::future::pending())
            .await
    });
    addr
}
