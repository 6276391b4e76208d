//! The in-process WebSocket server: listening, upgrading, the live-connection registry and events.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::either::Either;

use crate::behavior::{self, Behavior, Command, Link};
use crate::tasks::{self, Tasks};

/// How long [`TestServer::start_at`] keeps retrying a busy port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two bind attempts on a busy port.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// Something that happened on a [`TestServer`].
///
/// Every connection that produces `Connected` later produces exactly one `Closed`, except
/// [`Behavior::Unresponsive`] and frozen connections, which never end before the server stops.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent {
    /// An upgrade completed (or, for [`Behavior::Reject`], the request was answered).
    Connected {
        /// Connection id: 0, 1, 2, ... in the order the upgrades completed.
        conn: usize,
        /// When the upgrade completed.
        at: Instant,
        /// The upgrade request (headers, uri).
        request: http::Request<()>,
    },
    /// A data frame (Text or Binary) the client sent.
    Message {
        /// Connection id.
        conn: usize,
        /// The frame.
        msg: Message,
    },
    /// A Ping from the client (tungstenite answers it automatically).
    Ping {
        /// Connection id.
        conn: usize,
        /// Ping payload.
        payload: bytes::Bytes,
    },
    /// The connection ended.
    Closed {
        /// Connection id.
        conn: usize,
        /// The Close frame the client sent, `None` if the TCP dropped without one.
        frame: Option<CloseFrame>,
    },
}

/// A WebSocket server on `127.0.0.1` that misbehaves on command.
///
/// Dropping it stops it too (its tasks are aborted), without waiting for the port to be released.
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    events_rx: mpsc::UnboundedReceiver<ServerEvent>,
    accept_task: Option<JoinHandle<()>>,
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    behavior: Mutex<Behavior>,
    /// Live connections that take commands. Its lock also orders id allocation with insertion,
    /// so a connection counted by `connections()` is already reachable by `send_all`.
    registry: Mutex<HashMap<usize, mpsc::UnboundedSender<Command>>>,
    connections: AtomicUsize,
    events_tx: mpsc::UnboundedSender<ServerEvent>,
    tasks: Mutex<Tasks>,
}

impl TestServer {
    /// Bind `127.0.0.1:0` and serve every connection with `behavior`.
    ///
    /// # Panics
    /// If the loopback address cannot be bound.
    pub async fn start(behavior: Behavior) -> TestServer {
        Self::start_at(loopback(), behavior)
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Bind a given address, for instance to restart a server on the same port after
    /// [`stop`](TestServer::stop).
    ///
    /// `SO_REUSEADDR` is set, and a busy port is retried for up to 5 s.
    ///
    /// # Errors
    /// The bind error, if the address is still unavailable after 5 s.
    pub async fn start_at(addr: SocketAddr, behavior: Behavior) -> io::Result<TestServer> {
        let listener = bind(addr).await?;
        Ok(Self::spawn(listener, behavior, None))
    }

    /// Like [`start`](TestServer::start), but every accepted TCP stream is wrapped in TLS using
    /// `tls`; [`url`](TestServer::url) then is `wss://localhost:PORT/`.
    ///
    /// # Panics
    /// If the loopback address cannot be bound.
    pub async fn start_tls(behavior: Behavior, tls: Arc<rustls::ServerConfig>) -> TestServer {
        Self::start_tls_at(loopback(), behavior, tls)
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Like [`start_at`](TestServer::start_at), with TLS as in
    /// [`start_tls`](TestServer::start_tls).
    ///
    /// # Errors
    /// The bind error, if the address is still unavailable after 5 s.
    pub async fn start_tls_at(
        addr: SocketAddr,
        behavior: Behavior,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<TestServer> {
        let listener = bind(addr).await?;
        Ok(Self::spawn(
            listener,
            behavior,
            Some(TlsAcceptor::from(tls)),
        ))
    }

    fn spawn(listener: TcpListener, behavior: Behavior, tls: Option<TlsAcceptor>) -> TestServer {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            registry: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            events_tx,
            tasks: Mutex::new(Tasks::default()),
        });
        let tls_on = tls.is_some();
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tls));
        TestServer {
            addr,
            tls: tls_on,
            shared,
            events_rx,
            accept_task: Some(accept_task),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/`, or `wss://localhost:PORT/` with TLS.
    pub fn url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}/", self.addr.port())
        } else {
            format!("ws://{}/", self.addr)
        }
    }

    /// Number of connections accepted so far: upgrades completed, plus requests answered under
    /// [`Behavior::Reject`].
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Serve connections accepted from now on with `behavior`; live connections keep theirs.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Wait for the next event. Events are queued from the moment the server starts; none is lost.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is removed only when this returns it.
    pub async fn next_event(&mut self) -> ServerEvent {
        self.events_rx
            .recv()
            .await
            .expect("the server holds its own event sender")
    }

    /// The next event if one is already queued.
    pub fn try_next_event(&mut self) -> Option<ServerEvent> {
        self.events_rx.try_recv().ok()
    }

    /// Skip events until a [`ServerEvent::Message`]; return its connection id and message.
    pub async fn next_message(&mut self) -> (usize, Message) {
        loop {
            if let ServerEvent::Message { conn, msg } = self.next_event().await {
                return (conn, msg);
            }
        }
    }

    /// Skip events until a [`ServerEvent::Connected`]; return its connection id and time.
    pub async fn wait_connected(&mut self) -> (usize, Instant) {
        loop {
            if let ServerEvent::Connected { conn, at, .. } = self.next_event().await {
                return (conn, at);
            }
        }
    }

    /// Skip events until a [`ServerEvent::Closed`]; return its connection id and Close frame.
    pub async fn wait_closed(&mut self) -> (usize, Option<CloseFrame>) {
        loop {
            if let ServerEvent::Closed { conn, frame } = self.next_event().await {
                return (conn, frame);
            }
        }
    }

    /// Send `msg` to every live connection.
    ///
    /// Reaches the connections whose behavior reads commands: Echo, Silent, Burst and
    /// CloseAfterUpgrade. Delivery is asynchronous: this returns once the order is queued.
    pub fn send_all(&self, msg: Message) {
        self.broadcast(|| Command::Send(msg.clone()));
    }

    /// Send a Close frame with this code and reason to every live connection, then complete the
    /// close handshake.
    pub fn close_all(&self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        self.broadcast(|| Command::Close(frame.clone()));
    }

    /// Make every live connection stop reading and writing, with TCP left open: a dead peer that
    /// never sent FIN.
    ///
    /// A frozen connection stays so until the server stops, and never produces a `Closed` event.
    pub fn freeze_all(&self) {
        self.broadcast(|| Command::Freeze);
    }

    fn broadcast(&self, command: impl Fn() -> Command) {
        for tx in lock(&self.shared.registry).values() {
            // A closed channel is a connection that just ended: nothing left to order.
            let _ = tx.send(command());
        }
    }

    /// Stop listening and drop every live connection abruptly (TCP closed, no Close frame).
    ///
    /// Returns once the listener and every connection socket are closed, so the port can be
    /// bound again (see [`start_at`](TestServer::start_at)).
    pub async fn stop(mut self) {
        tasks::stop(&mut self.accept_task, &self.shared.tasks).await;
        lock(&self.shared.registry).clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        tasks::abort(&mut self.accept_task, &self.shared.tasks);
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// A server-side stream: `Left`, plain TCP; `Right`, TLS over TCP.
///
/// tokio-util's `Either` forwards every `AsyncRead` / `AsyncWrite` method to the side it
/// holds, with one `match` per call.
pub type ServerStream = Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// Lock a mutex, ignoring poisoning: the data is plain bookkeeping that a panic cannot corrupt.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `127.0.0.1:0`.
pub(crate) fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Bind with `SO_REUSEADDR`, retrying a busy port for up to [`REBIND_TIMEOUT`].
async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match try_bind(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(REBIND_PAUSE).await;
            }
            result => return result,
        }
    }
}

fn try_bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(error) => {
                // Typically EMFILE: pause instead of spinning.
                tracing::debug!(%error, "test server accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Nagle would only add latency to small test frames.
        let _ = tcp.set_nodelay(true);
        let behavior = lock(&shared.behavior).clone();
        let task = connection(tcp, behavior, Arc::clone(&shared), tls.clone());
        if !lock(&shared.tasks).spawn(task) {
            return;
        }
    }
}

/// One connection from TCP accept to its end.
async fn connection(
    tcp: TcpStream,
    behavior: Behavior,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let stream = match tls {
        None => ServerStream::Left(tcp),
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(stream) => ServerStream::Right(Box::new(stream)),
            Err(error) => {
                tracing::debug!(%error, "test server TLS handshake failed");
                return;
            }
        },
    };

    let rejection = match &behavior {
        Behavior::Reject {
            status,
            headers,
            body,
        } => Some(error_response(*status, headers, body)),
        _ => None,
    };
    let mut captured = None;
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        captured = Some(request.clone());
        match rejection {
            Some(rejection) => Err(rejection),
            None => Ok(response),
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async(stream, callback).await;

    let ws = match (upgrade, captured) {
        (Ok(ws), Some(request)) => Some((ws, request)),
        (Err(WsError::Http(_)), Some(request)) => {
            let id = shared.register(None);
            shared.emit(ServerEvent::Connected {
                conn: id,
                at: Instant::now(),
                request,
            });
            shared.emit(ServerEvent::Closed {
                conn: id,
                frame: None,
            });
            None
        }
        (Err(error), _) => {
            tracing::debug!(%error, "test server upgrade failed");
            None
        }
        (Ok(_), None) => unreachable!("the upgrade callback runs before the upgrade completes"),
    };
    let Some((ws, request)) = ws else { return };

    let (cmd_tx, cmd_rx) = if behavior.takes_commands() {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let id = shared.register(cmd_tx);
    shared.emit(ServerEvent::Connected {
        conn: id,
        at: Instant::now(),
        request: request.clone(),
    });
    let link = Link {
        id,
        request,
        events_tx: shared.events_tx.clone(),
        cmd_rx,
    };
    let frame = behavior::run(behavior, ws, link).await;
    lock(&shared.registry).remove(&id);
    shared.emit(ServerEvent::Closed { conn: id, frame });
}

impl Shared {
    /// Allocate the next connection id and, when given, make its command sender reachable.
    fn register(&self, cmd_tx: Option<mpsc::UnboundedSender<Command>>) -> usize {
        let mut registry = lock(&self.registry);
        let id = self.connections.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = cmd_tx {
            registry.insert(id, tx);
        }
        id
    }

    fn emit(&self, event: ServerEvent) {
        // The receiver lives in the handle; once it is gone nobody listens any more.
        let _ = self.events_tx.send(event);
    }
}

/// The HTTP answer for [`Behavior::Reject`].
///
/// # Panics
/// On an invalid status or header: a mistake in the test itself.
fn error_response(status: u16, headers: &[(String, String)], body: &str) -> ErrorResponse {
    let mut builder = http::Response::builder().status(status);
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("content-length") {
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
    }
    if !has("connection") {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Some(body.to_owned()))
        .expect("Behavior::Reject holds a valid status and headers")
}
