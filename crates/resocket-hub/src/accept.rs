//! Accepting sockets: TCP_NODELAY on every one, a cap on sockets not yet upgraded, and the
//! header-read and upgrade deadlines that stop a client which never finishes its request from
//! holding a socket (slowloris).
//!
//! A socket counts as pending from `accept` until its HTTP connection ends or hands the stream
//! over to a WebSocket (the `101`). TLS handshakes run inside that window, in the socket's own
//! task, so one slow handshake never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::hub::Shared;
use crate::metrics::Rejection;

/// How the accepted TCP stream carries HTTP.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Plain `http://` / `ws://`.
    Plain,
    /// `https://` / `wss://`, terminated here.
    Tls(TlsAcceptor),
}

/// Accepts one connection and turns Nagle's algorithm off on it.
///
/// Fan-out writes a batch in more than one `write` when it outgrows the write buffer; with
/// Nagle on, the second write waits for the peer's delayed ACK (40 ms on Linux), which turns a
/// read-only subscriber's stream into a series of stalls.
///
/// # Errors
/// The listener's accept error (typically `EMFILE`).
pub(crate) async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (tcp, peer) = listener.accept().await?;
    if let Err(error) = tcp.set_nodelay(true) {
        // The socket still works, only with the delayed-ACK stalls described above.
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    Ok((tcp, peer))
}

/// Serves `app` on `listener` until the hub starts shutting down, then waits (up to the upgrade
/// deadline) for the sockets still pending to finish.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    app: Router,
) {
    let cfg = &shared.config;
    let cap = cfg.max_pending_upgrades;
    let pending = Arc::new(Semaphore::new(cap));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout);
    let mut stop = shared.shutdown_rx();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = stopping(&mut stop) => break,
            accepted = accept(&listener) => match accepted {
                Ok(accepted) => accepted,
                // One client's reset before accept says nothing about the next: no pause, or
                // a stream of resets would slow everyone's accepts down.
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Typically EMFILE: pause instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Refused at once rather than left in the backlog: the kernel would go on completing
        // handshakes for the attacker, and a refused client learns it now, not after a timeout.
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            shared.metrics.reject(Rejection::PendingCap);
            tracing::debug!(%peer, cap, "too many sockets pending upgrade, closing");
            continue;
        };
        let socket = Socket {
            shared: shared.clone(),
            deadline: Instant::now() + cfg.upgrade_timeout,
            http: http.clone(),
            app: app.clone(),
            stop: stop.clone(),
            _permit: permit,
        };
        tokio::spawn(socket.run(tcp, peer, transport.clone()));
    }
    drop(listener);
    // Pending sockets were told to finish their request and close; the deadline bounds them.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(cfg.upgrade_timeout, pending.acquire_many(all)).await;
}

/// An accept error that concerns one client only.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Resolves once the hub starts shutting down (at once if it already has).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The sender lives in the hub, which outlives every serve loop; an error cannot happen.
    let _ = stop.wait_for(|s| *s).await;
}

/// One accepted socket until it is upgraded or closed. Holds its slot under the pending cap.
struct Socket {
    shared: Arc<Shared>,
    /// Accept time plus the upgrade timeout: by then the `101` must be out.
    deadline: Instant,
    http: http1::Builder,
    app: Router,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Socket {
    async fn run(self, tcp: TcpStream, peer: SocketAddr, transport: Transport) {
        match transport {
            Transport::Plain => self.http(tcp, peer).await,
            Transport::Tls(acceptor) => {
                match tokio::time::timeout_at(self.deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => self.http(tls, peer).await,
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                    Err(_) => {
                        self.shared.metrics.reject(Rejection::Timeout);
                        tracing::debug!(%peer, "tls handshake timed out");
                    }
                }
            }
        }
    }

    /// Serves HTTP/1.1 until the connection ends or is upgraded (hyper's upgradeable
    /// connection resolves once the `101` is written and the stream handed to the WebSocket).
    async fn http<I>(mut self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app.clone());
        let mut conn = pin!(self
            .http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades());
        let mut told = false;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(error) = res {
                        if error.is_timeout() {
                            self.shared.metrics.reject(Rejection::Timeout);
                        }
                        tracing::debug!(%peer, %error, "http connection ended");
                    }
                    return;
                }
                () = tokio::time::sleep_until(self.deadline) => {
                    self.shared.metrics.reject(Rejection::Timeout);
                    tracing::debug!(%peer, "no upgrade before the deadline, closing");
                    return;
                }
                () = stopping(&mut self.stop), if !told => {
                    told = true;
                    // Finishes a request in flight, then closes; an idle socket closes now.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (accepted, _) = tokio::time::timeout(Duration::from_secs(10), accept(&listener))
            .await
            .expect("accepted in time")
            .unwrap();
        assert!(accepted.nodelay().unwrap());
        drop(client.await.unwrap().unwrap());
    }
}
