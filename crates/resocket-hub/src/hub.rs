//! The hub handle: shared state, the axum router, serving and graceful shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accept::Transport;
use crate::config::{HubBuilder, HubConfig};
use crate::engine::memory::MemoryEngine;
use crate::engine::redis::{RedisEngine, RedisSettings};
use crate::engine::{Engine as _, Listener};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::outbox::{Closing, Outbox};
use crate::registry::{Refused, Registry};
use crate::room::{Limits, Room};
use crate::token::Verifier;
use resocket::hub::protocol::close_code;

/// The pub/sub hub. Cheap to clone: every clone is the same hub.
///
/// ```no_run
/// # async fn run() -> resocket_hub::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// resocket_hub::Hub::builder().jwt_secret("a secret of sixteen bytes").serve(listener).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) shared: Arc<Shared>,
}

/// State shared by every connection and route.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    pub(crate) limits: Limits,
    pub(crate) verifier: Option<Verifier>,
    pub(crate) metrics: Arc<Metrics>,
    rooms: Arc<Registry>,
    /// Where rooms' offsets, history and dedupe live, and how other nodes hear of appends.
    engine: Backend,
    /// Revoked token ids and subjects, read on every token check, written on (re)load.
    revoked: RwLock<HashSet<String>>,
    /// The revocation file's entries, replaced whole on every reload of the file, apart from
    /// `revoked` so that a reload never undoes a revocation made through the API.
    revoked_file: RwLock<HashSet<String>>,
    /// `(sub, jti)` of every connection authenticated by a token, so a revocation reaches it.
    holders: Mutex<HashMap<u64, (String, Option<String>)>>,
    /// Every live connection's outbox, so shutdown can reach them all.
    connections: Mutex<HashMap<u64, Arc<Outbox>>>,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    /// `true` once shutdown starts; tasks and `serve` wait on it.
    shutdown_tx: watch::Sender<bool>,
    /// The number of live connections, for the drain to wait on.
    live_tx: watch::Sender<usize>,
    stats_started: AtomicBool,
    /// The address `serve` listens on, for the deep health check; unknown when mounted.
    local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// What this node's id is made of (see [`Hub::node_id`]).
    node_name: crate::nodes::NodeName,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Maps stay consistent through a panic elsewhere (each update is one call).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// Starts configuring a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::new()
    }

    pub(crate) fn new(config: HubConfig, verifier: Option<Verifier>) -> Result<Self> {
        let limits = Limits {
            history_len: config.history_len,
            history_age: config.history_age,
            history_bytes: config.history_bytes,
            dedupe_window: config.dedupe_window,
        };
        let revoked = RwLock::new(
            config
                .revoked
                .iter()
                .map(|id| crate::revocation::normalize(id))
                .collect(),
        );
        let rooms = Arc::new(Registry::new(
            config.max_rooms,
            config.max_rooms_per_client,
            config.history_budget,
        ));
        let metrics = Arc::new(Metrics::new(match config.redis {
            None => crate::metrics::EngineKind::Memory,
            Some(_) => crate::metrics::EngineKind::Redis,
        }));
        // The engine reaches the hub through the listener, which is pointed at it once built.
        let listener = Arc::new(HubListener::default());
        let engine = match &config.redis {
            None => Backend::Memory(MemoryEngine::new(rooms.clone(), limits, metrics.clone())),
            Some(redis) => {
                let settings = RedisSettings {
                    history_len: config.history_len,
                    history_age: config.history_age,
                    room_ttl: redis.room_ttl,
                    dedupe_ttl: redis.dedupe_ttl,
                    timeout: redis.timeout,
                };
                let client = crate::engine::redis::client(&redis.url)
                    .map_err(|reason| crate::error::Error::Redis { reason })?;
                let engine =
                    RedisEngine::start(client, settings, listener.clone(), metrics.clone())
                        .map_err(|reason| crate::error::Error::Redis { reason })?;
                Backend::Redis(Arc::new(engine))
            }
        };
        let node_name = crate::nodes::NodeName::new(config.node_id.clone());
        let hub = Hub {
            shared: Arc::new(Shared {
                config,
                limits,
                verifier,
                metrics,
                rooms,
                engine,
                revoked,
                revoked_file: RwLock::default(),
                holders: Mutex::default(),
                connections: Mutex::default(),
                next_conn: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                shutdown_tx: watch::channel(false).0,
                live_tx: watch::channel(0).0,
                stats_started: AtomicBool::new(false),
                local_addr: std::sync::OnceLock::new(),
                node_name,
            }),
        };
        let _ = listener.shared.set(Arc::downgrade(&hub.shared));
        Ok(hub)
    }

    /// The hub's routes (`/ws`, `/healthz`, `/metrics`, `/`), to serve or to mount in an
    /// existing axum app. Starts the `$stats` publisher and the `$nodes` announcements when
    /// called inside a Tokio runtime.
    ///
    /// The socket guards of [`serve`](Self::serve) (TCP_NODELAY, header-read timeout, upgrade
    /// deadline, cap on sockets not yet upgraded) are then your server's job. Set TCP_NODELAY
    /// at least, or read-only subscribers stall on delayed ACKs; with `axum::serve`:
    ///
    /// ```no_run
    /// # async fn run(hub: resocket_hub::Hub) -> std::io::Result<()> {
    /// use axum::serve::ListenerExt;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
    ///     .await?
    ///     .tap_io(|tcp| {
    ///         let _ = tcp.set_nodelay(true);
    ///     });
    /// axum::serve(listener, axum::Router::new().nest("/hub", hub.router())).await
    /// # }
    /// ```
    pub fn router(&self) -> axum::Router {
        if tokio::runtime::Handle::try_current().is_ok()
            && !self.shared.stats_started.swap(true, Relaxed)
        {
            tokio::spawn(crate::stats::run(self.clone()));
            tokio::spawn(crate::nodes::run(self.clone()));
            if let Some(path) = &self.shared.config.revocation_file {
                tokio::spawn(crate::revocation::watch(self.clone(), path.clone()));
            }
            if let Some(path) = &self.shared.config.jwt.jwks_file {
                tokio::spawn(crate::keys::watch_jwks(self.clone(), path.clone()));
            }
        }
        let app = crate::http::router(self.clone());
        if self.shared.config.admin_secret.is_some() {
            return app.merge(crate::revocation::admin_router(self.clone()));
        }
        app
    }

    /// Serves the hub on `listener` until Ctrl-C or SIGTERM, then shuts down gracefully.
    ///
    /// Every accepted socket gets TCP_NODELAY, and sockets not yet upgraded are bounded in
    /// number and time (see [`HubBuilder::upgrade_timeout`] and
    /// [`HubBuilder::max_pending_upgrades`]).
    ///
    /// # Errors
    ///
    /// An I/O error from the listener.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        self.serve_with_shutdown(listener, os_signal()).await
    }

    /// Serves the hub on `listener` until `signal` completes or [`shutdown`](Self::shutdown) is
    /// called, then closes every connection with 1001, lets queues drain for up to the
    /// configured time, and returns.
    ///
    /// # Errors
    ///
    /// An I/O error from the listener.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        if let Ok(addr) = listener.local_addr() {
            let _ = self.shared.local_addr.set(addr);
        }
        self.serve_on(listener, Transport::Plain, signal).await
    }

    /// Serves `wss://` on `listener` until Ctrl-C or SIGTERM; see
    /// [`serve_tls_with_shutdown`](Self::serve_tls_with_shutdown).
    ///
    /// # Errors
    ///
    /// An I/O error from the listener.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<()> {
        self.serve_tls_with_shutdown(listener, tls, os_signal())
            .await
    }

    /// Like [`serve_with_shutdown`](Self::serve_with_shutdown), serving `wss://` with these TLS
    /// settings (see [`server_config_from_pem`](crate::server_config_from_pem)). The TLS
    /// handshake counts towards the upgrade deadline. The deep health check then runs
    /// in-process, as for a mounted hub.
    ///
    /// # Errors
    ///
    /// An I/O error from the listener.
    pub async fn serve_tls_with_shutdown(
        self,
        listener: TcpListener,
        tls: std::sync::Arc<rustls::ServerConfig>,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        self.serve_on(listener, Transport::Tls(acceptor), signal)
            .await
    }

    async fn serve_on(
        self,
        listener: TcpListener,
        transport: Transport,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let app = self.router();
        let mut stop = self.shared.shutdown_tx.subscribe();
        let trigger = async {
            tokio::select! {
                () = signal => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            self.shutdown();
        };
        // The accept loop ends once shutdown starts, which `trigger` guarantees.
        tokio::join!(
            trigger,
            crate::accept::serve(self.shared.clone(), listener, transport, app)
        );
        self.drained().await;
        Ok(())
    }

    /// Starts a graceful shutdown: refuses new connections and asks every connection to drain
    /// its queue and close with 1001. [`serve`](Self::serve) returns once they are gone.
    pub fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Relaxed) {
            return;
        }
        tracing::info!("hub shutting down");
        self.shared.shutdown_tx.send_replace(true);
        for outbox in lock(&self.shared.connections).values() {
            outbox.close(Closing {
                code: close_code::GOING_AWAY,
                reason: "hub shutting down",
                drain: true,
            });
        }
    }

    /// Waits for every connection to close: up to the drain time politely, then by force.
    async fn drained(&self) {
        let mut live = self.shared.live_tx.subscribe();
        let drain = self.shared.config.shutdown_drain;
        if tokio::time::timeout(drain, live.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::warn!(
                left = *live.borrow(),
                "drain time over, dropping connections"
            );
            for outbox in lock(&self.shared.connections).values() {
                outbox.close(Closing {
                    code: close_code::GOING_AWAY,
                    reason: "hub shutting down",
                    drain: false,
                });
            }
            // Writers give up a stuck write at once when aborted; this only bounds the wait.
            let _ = tokio::time::timeout(Duration::from_secs(2), live.wait_for(|n| *n == 0)).await;
        }
    }

    /// Revokes tokens whose `jti` or `sub` equals `id` (or, written `jti:<id>` or `sub:<id>`,
    /// only the token id or only the subject), while serving. Connections holding such a token
    /// get `error{code:"revoked"}` and are closed with 1008.
    pub fn revoke(&self, id: impl Into<String>) {
        self.revoke_all([id.into()]);
    }

    /// Revokes several entries at once, as [`revoke`](Self::revoke) does.
    ///
    /// With the Redis engine the entries are also added to the shared deny-list, in the
    /// background, so that every node closes the token's connections.
    pub(crate) fn revoke_all(&self, ids: impl IntoIterator<Item = String>) {
        let ids: Vec<String> = ids
            .into_iter()
            .map(|id| crate::revocation::normalize(&id))
            .collect();
        self.shared.write_revoked().extend(ids.iter().cloned());
        self.shared.enforce_revocations();
        if let Backend::Redis(engine) = &self.shared.engine {
            let engine = engine.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(error) = engine.revoke(&ids).await {
                        tracing::warn!(%error, "revocation not shared with other nodes");
                    }
                });
            }
        }
    }

    /// Replaces the deny-list (a reload), and closes connections whose token is now on it.
    /// Entries as in [`revoke`](Self::revoke). The revocation file's entries are kept apart and
    /// stay in force. With the Redis engine this replaces this node's list only: the shared
    /// list grows through [`revoke`](Self::revoke), and a node reads it again whenever it
    /// reconnects to Redis.
    pub fn set_revoked(&self, ids: impl IntoIterator<Item = String>) {
        *self.shared.write_revoked() = ids
            .into_iter()
            .map(|id| crate::revocation::normalize(&id))
            .collect();
        self.shared.enforce_revocations();
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Relaxed)
    }

    /// The number of open WebSocket connections.
    pub fn connections(&self) -> usize {
        *self.shared.live_tx.borrow()
    }
}

impl Shared {
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local_addr.get().copied()
    }

    /// This node's id (see [`Hub::node_id`]).
    pub(crate) fn node_id(&self) -> String {
        self.node_name.id(self.local_addr())
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Relaxed)
    }

    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Registers a connection; `None` at the connection cap or during shutdown.
    pub(crate) fn register(&self) -> Option<(u64, Arc<Outbox>)> {
        let mut conns = lock(&self.connections);
        if conns.len() >= self.config.max_connections || self.is_shutting_down() {
            return None;
        }
        let id = self.next_conn.fetch_add(1, Relaxed);
        let outbox = Arc::new(Outbox::new(self.config.outbound_queue_bytes));
        conns.insert(id, outbox.clone());
        let n = conns.len();
        drop(conns);
        self.live_tx.send_replace(n);
        self.metrics.connections.store(n as u64, Relaxed);
        self.metrics.connections_total.fetch_add(1, Relaxed);
        Some((id, outbox))
    }

    fn write_revoked(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<String>> {
        self.revoked.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a token with this subject and id is revoked.
    pub(crate) fn is_revoked(&self, sub: &str, jti: Option<&str>) -> bool {
        let read = |l: &RwLock<HashSet<String>>| {
            crate::revocation::names(&l.read().unwrap_or_else(|e| e.into_inner()), sub, jti)
        };
        read(&self.revoked) || read(&self.revoked_file)
    }

    /// Replaces the revocation file's entries, and closes connections whose token is now on
    /// them.
    pub(crate) fn set_file_revocations(&self, list: HashSet<String>) {
        *self.revoked_file.write().unwrap_or_else(|e| e.into_inner()) = list;
        self.enforce_revocations();
    }

    /// Records that connection `id` is authenticated by a token.
    pub(crate) fn hold(&self, id: u64, sub: &str, jti: Option<&str>) {
        lock(&self.holders).insert(id, (sub.to_string(), jti.map(str::to_string)));
    }

    /// Closes every connection whose token is revoked.
    fn enforce_revocations(&self) {
        let doomed: Vec<u64> = lock(&self.holders)
            .iter()
            .filter(|(_, (sub, jti))| self.is_revoked(sub, jti.as_deref()))
            .map(|(id, _)| *id)
            .collect();
        let conns = lock(&self.connections);
        for outbox in doomed.iter().filter_map(|id| conns.get(id)) {
            let frame = resocket::hub::protocol::ServerFrame::<()>::Error {
                code: resocket::hub::protocol::ErrorCode::Revoked,
                message: "token revoked".into(),
                reference: None,
            };
            outbox.push(crate::wire::Frame::json(&frame));
            outbox.close(Closing {
                code: close_code::POLICY,
                reason: "token revoked",
                drain: true,
            });
        }
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.holders).remove(&id);
        let mut conns = lock(&self.connections);
        conns.remove(&id);
        let n = conns.len();
        drop(conns);
        self.metrics.connections.store(n as u64, Relaxed);
        self.live_tx.send_replace(n);
    }

    /// The room named `name`, created if needed and charged to the client `creator` (`None`
    /// for the hub's own rooms); see [`Registry::room`].
    pub(crate) fn room(&self, name: &str, creator: Option<&str>) -> Result<Arc<Room>, Refused> {
        self.rooms.room(name, creator)
    }

    /// The number of rooms.
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Drops rooms that have neither subscribers nor history.
    pub(crate) fn retire_rooms(&self) {
        self.rooms.retire(&self.limits, &self.metrics, |name| {
            self.engine.unwatch(name)
        });
    }

    /// The Redis engine, when rooms live in Redis.
    pub(crate) fn redis(&self) -> Option<&RedisEngine> {
        match &self.engine {
            Backend::Redis(engine) => Some(engine),
            Backend::Memory(_) => None,
        }
    }

    /// Evicts the oldest history across rooms once all of it is over the history budget.
    pub(crate) fn enforce_history_budget(&self) {
        self.rooms.enforce_budget(&self.metrics);
    }
}

/// The hub's engine. The memory engine's rooms are the registry's, which the hub calls
/// directly (no await on the hot path); the Redis engine is awaited.
#[derive(Debug)]
enum Backend {
    Memory(MemoryEngine),
    Redis(Arc<RedisEngine>),
}

impl Backend {
    fn unwatch(&self, room: &str) {
        match self {
            Backend::Memory(e) => e.unwatch(room),
            Backend::Redis(e) => e.unwatch(room),
        }
    }
}

/// Hands what other nodes did to this hub's rooms and deny-list.
#[derive(Debug, Default)]
struct HubListener {
    shared: std::sync::OnceLock<std::sync::Weak<Shared>>,
}

impl Listener for HubListener {
    fn message(&self, room: &str, epoch: u64, offset: u64, frame: crate::wire::Frame) {
        let Some(shared) = self.shared.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        if let Some(r) = shared.rooms.get(room) {
            r.deliver(epoch, offset, frame, &shared.limits, &shared.metrics);
            shared.enforce_history_budget();
        }
    }

    fn revoked(&self, ids: HashSet<String>) {
        let Some(shared) = self.shared.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        shared
            .write_revoked()
            .extend(ids.iter().map(|id| crate::revocation::normalize(id)));
        shared.enforce_revocations();
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn os_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
