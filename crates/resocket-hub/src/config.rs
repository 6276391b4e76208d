//! The hub's settings, each with its default, and the builder that checks them.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::hub::Hub;

/// Which browser origins may open a WebSocket.
///
/// Requests without an `Origin` header (non-browser clients) are always let through: the
/// header exists to stop other sites' pages from riding a user's browser, and a non-browser
/// client can send any origin it likes anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Only pages served by this hub: the `Origin`'s host must equal the `Host` header. Default.
    SameHost,
    /// Only these exact origins (`scheme://host[:port]`), plus the hub's own host.
    List(Vec<String>),
    /// Any origin. Only for hubs behind another origin check.
    Any,
}

/// The hub's settings. Build one with [`Hub::builder`].
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub(crate) jwt_secret: Option<Vec<u8>>,
    pub(crate) token_leeway: Duration,
    pub(crate) jwt: crate::keys::JwtSettings,
    pub(crate) revoked: Vec<String>,
    pub(crate) revocation_file: Option<std::path::PathBuf>,
    pub(crate) admin_secret: Option<Vec<u8>>,
    pub(crate) allow_anonymous: bool,
    pub(crate) anonymous_subscribe: Vec<String>,
    pub(crate) anonymous_publish: Vec<String>,
    pub(crate) origins: OriginPolicy,
    pub(crate) max_message_size: usize,
    pub(crate) rate_per_sec: u32,
    pub(crate) rate_burst: u32,
    pub(crate) outbound_queue_bytes: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) auth_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_rooms: usize,
    pub(crate) max_rooms_per_client: usize,
    pub(crate) history_len: usize,
    pub(crate) history_age: Duration,
    pub(crate) history_bytes: usize,
    pub(crate) history_budget: usize,
    pub(crate) dedupe_window: usize,
    pub(crate) shutdown_drain: Duration,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) stats_interval: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) upgrade_timeout: Duration,
    pub(crate) max_pending_upgrades: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) compression: bool,
    pub(crate) redis: Option<RedisConfig>,
    pub(crate) node_id: Option<String>,
}

/// The Redis engine's settings; see [`HubBuilder::redis`].
#[derive(Debug, Clone)]
pub(crate) struct RedisConfig {
    pub(crate) url: String,
    pub(crate) dedupe_ttl: Duration,
    pub(crate) room_ttl: Duration,
    pub(crate) timeout: Duration,
}

impl RedisConfig {
    fn new(url: String) -> Self {
        RedisConfig {
            url,
            dedupe_ttl: Duration::from_secs(600),
            room_ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(2),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            jwt_secret: None,
            token_leeway: Duration::ZERO,
            jwt: crate::keys::JwtSettings::default(),
            revoked: Vec::new(),
            revocation_file: None,
            admin_secret: None,
            allow_anonymous: false,
            anonymous_subscribe: vec!["*".into()],
            anonymous_publish: vec!["*".into()],
            origins: OriginPolicy::SameHost,
            max_message_size: 64 * 1024,
            rate_per_sec: 100,
            rate_burst: 200,
            outbound_queue_bytes: 1024 * 1024,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            auth_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_subscriptions: 100,
            max_rooms: 10_000,
            max_rooms_per_client: 1000,
            history_len: 1000,
            history_age: Duration::from_secs(300),
            history_bytes: 4 * 1024 * 1024,
            history_budget: 256 * 1024 * 1024,
            dedupe_window: 1000,
            shutdown_drain: Duration::from_secs(5),
            read_buffer_size: 4 * 1024,
            write_buffer_size: 32 * 1024,
            stats_interval: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(5),
            upgrade_timeout: Duration::from_secs(10),
            max_pending_upgrades: 1024,
            close_timeout: Duration::from_secs(10),
            compression: true,
            redis: None,
            node_id: None,
        }
    }
}

/// Configures a [`Hub`]. Every setting has a default; [`build`](Self::build) checks them.
#[derive(Debug, Default)]
#[must_use]
pub struct HubBuilder {
    config: HubConfig,
}

impl HubBuilder {
    pub(crate) fn new() -> Self {
        HubBuilder::default()
    }

    /// The HS256 secret that tokens are signed with. Default: none, so no HMAC token is
    /// accepted.
    pub fn jwt_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.jwt_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Clock skew tolerated on a token's `exp` and `nbf`. Default: 0. It applies at connect
    /// time and on live connections alike: a connection whose token reaches `exp` plus this
    /// leeway without a `refresh` gets `error{code:"token_expired"}` and Close 1008.
    pub fn token_leeway(mut self, leeway: Duration) -> Self {
        self.config.token_leeway = leeway;
        self
    }

    /// Adds a public key that tokens may be signed with: a PEM file holding an RSA, P-256,
    /// P-384 or Ed25519 public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`), read
    /// when the hub is built. Repeatable; a token is accepted if any key of its algorithm's
    /// family verifies it. Default: none.
    pub fn jwt_public_key(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.config.jwt.public_keys.push(pem_file.into());
        self
    }

    /// A JWKS file (`{"keys":[…]}`, as identity providers publish at their `jwks_uri`), read
    /// when the hub is built and reread within about a second of every change (its
    /// modification time or size) while serving, so keys rotate without a restart. A token
    /// whose header has a `kid` is checked against the keys with that `kid` (and keys without
    /// one); a key's `alg`, when present, is the only algorithm it is used with; keys with
    /// `"use":"enc"` are skipped. A rewrite that cannot be read or holds no usable key leaves
    /// the last keys in force. Default: none.
    pub fn jwks_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.jwt.jwks_file = Some(path.into());
        self
    }

    /// Adds an accepted issuer: once one is set, a token's `iss` must be present and equal one
    /// of them. Default: none, and `iss` is not checked.
    pub fn jwt_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.config.jwt.issuers.push(issuer.into());
        self
    }

    /// Adds an accepted audience: once one is set, a token's `aud` (a string or a list) must be
    /// present and name one of them. Default: none, and `aud` is not checked.
    pub fn jwt_audience(mut self, audience: impl Into<String>) -> Self {
        self.config.jwt.audiences.push(audience.into());
        self
    }

    /// The only algorithms a token's header may name. Default: HS256 and every public-key
    /// algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA). Each key verifies only
    /// its own family (the secret HMAC, an RSA key RS/PS, and so on), so a public key is never
    /// taken for an HMAC secret.
    pub fn jwt_algorithms(mut self, algorithms: &[crate::keys::JwtAlgorithm]) -> Self {
        self.config.jwt.algorithms = Some(algorithms.to_vec());
        self
    }

    /// Revokes tokens whose `jti` or `sub` equals `id`; written `jti:<id>` or `sub:<id>`, only
    /// the token id or only the subject. Default: nothing revoked. The list can be changed
    /// while serving with [`Hub::revoke`] and [`Hub::set_revoked`], a
    /// [`revocation_file`](Self::revocation_file) or the admin endpoint.
    pub fn revoke(mut self, id: impl Into<String>) -> Self {
        self.config.revoked.push(id.into());
        self
    }

    /// A deny-list file, read when the hub is built and reread within about a second of every
    /// change (its modification time or size) while serving. One entry per line: `jti:<id>`
    /// revokes the token with that id, `sub:<id>` every token of that subject, a bare `<id>`
    /// either; blank lines and `#` comments are skipped. Connections holding a token the file
    /// names get `error{code:"revoked"}` and Close 1008. If the file later disappears or
    /// cannot be read, its last entries stay in force. Default: none.
    pub fn revocation_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.revocation_file = Some(path.into());
        self
    }

    /// Enables `POST /admin/revoke`, for requests with `Authorization: Bearer <secret>`; the
    /// body holds deny-list entries as in [`revocation_file`](Self::revocation_file), each
    /// revoked as by [`Hub::revoke`]. Default: none, and the route does not exist.
    pub fn admin_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.admin_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Lets clients without a token in. Default: `false`.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config.allow_anonymous = allow;
        self
    }

    /// Room patterns anonymous clients may subscribe to and publish to. Default: `["*"]` each.
    pub fn anonymous_rooms(mut self, subscribe: &[&str], publish: &[&str]) -> Self {
        self.config.anonymous_subscribe = subscribe.iter().map(|s| s.to_string()).collect();
        self.config.anonymous_publish = publish.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Which browser origins may connect. Default: [`OriginPolicy::SameHost`].
    pub fn origins(mut self, policy: OriginPolicy) -> Self {
        self.config.origins = policy;
        self
    }

    /// Adds an allowed origin such as `https://app.example.com` (switches to a list).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        match &mut self.config.origins {
            OriginPolicy::List(list) => list.push(origin.into()),
            other => *other = OriginPolicy::List(vec![origin.into()]),
        }
        self
    }

    /// The largest frame or message a client may send, in bytes (a compressed message by its
    /// inflated size). Default: 64 KiB. Over it, the hub closes with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// The per-connection rate limit: a token bucket refilled at `per_sec` frames per second
    /// holding at most `burst`. Default: 100/s, burst 200. Over it, the hub closes with 4008.
    pub fn rate_limit(mut self, per_sec: u32, burst: u32) -> Self {
        self.config.rate_per_sec = per_sec;
        self.config.rate_burst = burst;
        self
    }

    /// The most bytes queued for one connection. Default: 1 MiB. Over it, the connection is a
    /// slow consumer: its queue is dropped and it is closed with 4009.
    pub fn outbound_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.outbound_queue_bytes = bytes;
        self
    }

    /// How often the hub pings each client. Default: 20 s.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// How long past a ping a silent client is kept. Default: 20 s. Then the hub closes with 4000.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.ping_timeout = timeout;
        self
    }

    /// How long a client without a token in its request has to send `auth`. Default: 10 s.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.config.auth_timeout = timeout;
        self
    }

    /// The most concurrent WebSocket connections. Default: 10,000. Over it, the hub closes the
    /// new connection with 1013.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// The most rooms one connection may subscribe to. Default: 100.
    pub fn max_subscriptions(mut self, max: usize) -> Self {
        self.config.max_subscriptions = max;
        self
    }

    /// The most rooms the hub holds at once, system (`$`) rooms included. Default: 10,000. Over
    /// it, subscribing or publishing to a new room gets `error{code:"too_many_rooms"}`. The
    /// hub's own `$stats` and `$healthz` rooms count but are never refused.
    pub fn max_rooms(mut self, max: usize) -> Self {
        self.config.max_rooms = max;
        self
    }

    /// The most rooms one client may have created and still alive (a room lives while it has
    /// subscribers or history). Default: 1000. The client is the token's `sub`, or an anonymous
    /// client's id (see `auth` in PROTOCOL.md). Over it, subscribing or publishing to a new
    /// room gets `error{code:"room_quota"}`; existing rooms stay open to it.
    pub fn max_rooms_per_client(mut self, max: usize) -> Self {
        self.config.max_rooms_per_client = max;
        self
    }

    /// Room history bounds: at most `len` messages, none older than `age`, at most `bytes`
    /// of frames, per room. Default: 1000 messages, 5 minutes, 4 MiB. All rooms together are
    /// bounded by [`history_budget`](Self::history_budget).
    pub fn history(mut self, len: usize, age: Duration, bytes: usize) -> Self {
        self.config.history_len = len;
        self.config.history_age = age;
        self.config.history_bytes = bytes;
        self
    }

    /// The most messages of history kept per room, leaving the age and byte bounds as they
    /// are. Default: 1000.
    pub fn history_len(mut self, len: usize) -> Self {
        self.config.history_len = len;
        self
    }

    /// The most bytes all rooms' history may hold together. Default: 256 MiB. Over it, the
    /// oldest messages across all rooms are dropped first, down to seven eighths of the budget;
    /// a later `since` before a room's oldest remaining offset gets `recovered: false`. Each
    /// message counts its frame's bytes plus about 100 bytes of bookkeeping.
    pub fn history_budget(mut self, bytes: usize) -> Self {
        self.config.history_budget = bytes;
        self
    }

    /// How many recent `(client, id)` publish keys each room remembers. Default: 1000.
    pub fn dedupe_window(mut self, len: usize) -> Self {
        self.config.dedupe_window = len;
        self
    }

    /// How long queues may drain on shutdown before connections are dropped. Default: 5 s.
    pub fn shutdown_drain(mut self, drain: Duration) -> Self {
        self.config.shutdown_drain = drain;
        self
    }

    /// The codec's per-connection read and write buffer sizes. Default: 4 KiB and 32 KiB. The
    /// read buffer starts at 4 KiB, grows to `read` during a burst of input, and is let go
    /// while the connection is idle: idle connections dominate memory. The write buffer is the
    /// size at which a batch is written out before its flush; it grows only on connections
    /// that receive traffic, and 32 KiB lets a typical batch go out in one syscall.
    pub fn socket_buffers(mut self, read: usize, write: usize) -> Self {
        self.config.read_buffer_size = read;
        self.config.write_buffer_size = write;
        self
    }

    /// Answers clients that offer permessage-deflate (RFC 7692). Default: `true`. The hub
    /// always answers with `server_no_context_takeover` and compresses with a 32 KiB window,
    /// so each published message is compressed once, when the first such subscriber needs it,
    /// and the same bytes go to every subscriber that negotiated compression (others get the
    /// plain frame; payloads under 64 bytes go plain to everyone). An offer that asks for a
    /// smaller server window gets no compression, never a refused connection. What a client
    /// sends compressed is inflated up to `max_message_size` (over it: close 1009).
    pub fn compression(mut self, enabled: bool) -> Self {
        self.config.compression = enabled;
        self
    }

    /// How often the `$stats` system room gets a snapshot. Default: 1 s.
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.config.stats_interval = interval;
        self
    }

    /// This node's id in `/metrics`, `$stats` and the `$nodes` room: 1 to 128 bytes without
    /// control characters. Default: `<host name>:<port>` from the host name and the port
    /// [`Hub::serve`] listens on, or `<host name>-<6 random hex digits>` where the port is not
    /// known (a mounted router, TLS). Give each node behind one Redis a distinct id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.config.node_id = Some(id.into());
        self
    }

    /// How long a client may take to send its request headers, on a new socket and between
    /// requests on a kept-alive one. Default: 5 s. Applies when the hub serves its own sockets
    /// ([`Hub::serve`] and the like), not to a mounted [`Hub::router`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_read_timeout = timeout;
        self
    }

    /// How long a socket may stay without being upgraded to a WebSocket, from `accept` to the
    /// `101` (TLS handshake and request included). Default: 10 s. Then it is closed, so a
    /// client that trickles its request (slowloris) cannot hold a socket; plain HTTP requests
    /// (`/healthz`, `/metrics`) on a kept-alive socket are bounded by it too. Applies when the
    /// hub serves its own sockets.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.config.upgrade_timeout = timeout;
        self
    }

    /// The most sockets accepted but not yet upgraded (TLS handshakes, requests being read,
    /// plain HTTP requests). Default: 1,024. Beyond it a new socket is closed at once, so
    /// stalled clients cannot use up the process's file descriptors. Applies when the hub
    /// serves its own sockets.
    pub fn max_pending_upgrades(mut self, max: usize) -> Self {
        self.config.max_pending_upgrades = max;
        self
    }

    /// How long a closing connection may wait to hand its Close frame to the socket before it
    /// is dropped. Default: 10 s. A slow consumer's socket is full when it is closed: the Close
    /// frame goes out behind what the client has not read yet, so a client that starts reading
    /// again within this time still learns why (4009) instead of seeing the connection end.
    /// The connection's subscriptions and queue are released before the wait.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Keeps rooms in Redis at `url` (`redis://host:port/db`, `rediss://…`, or
    /// `redis+unix:///path/to/socket`), so that several hub nodes serve the same rooms: offsets,
    /// history (a Redis Stream per room, trimmed by [`history`](Self::history)'s count and
    /// age), epochs and publish dedupe are shared, nodes fan out to each other through pub/sub,
    /// and [`Hub::revoke`] reaches every node. Default: none, rooms live in this process.
    ///
    /// With Redis, publish dedupe remembers a `(client, id)` for
    /// [`redis_dedupe_ttl`](Self::redis_dedupe_ttl) rather than a count, and the room cap,
    /// quotas and history budget count the rooms this node has subscribers in. A publish
    /// Redis cannot take gets `error{code:"unavailable"}`, never an ack. The hub must be built
    /// inside a Tokio runtime.
    ///
    /// Two or more comma-separated URLs (`redis://a:7000,redis://b:7000`) are seed nodes of a
    /// Redis Cluster: a room's keys share one hash slot, and nodes fan out through sharded
    /// pub/sub (Redis 7). One URL is always one server; nothing is probed at build time.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.config.redis = Some(RedisConfig::new(url.into()));
        self
    }

    /// How long the Redis engine remembers a publish's `(client, id)`. Default: 10 minutes.
    /// Needs [`redis`](Self::redis) first; otherwise ignored.
    pub fn redis_dedupe_ttl(mut self, ttl: Duration) -> Self {
        if let Some(r) = &mut self.config.redis {
            r.dedupe_ttl = ttl;
        }
        self
    }

    /// How long a room's Redis keys (offset counter, epoch, stream) outlive its last publish
    /// or subscribe; after it the room starts over with a new epoch. Default: 24 hours.
    /// Needs [`redis`](Self::redis) first; otherwise ignored.
    pub fn redis_room_ttl(mut self, ttl: Duration) -> Self {
        if let Some(r) = &mut self.config.redis {
            r.room_ttl = ttl;
        }
        self
    }

    /// The most one Redis operation may take before it counts as unavailable. Default: 2 s.
    /// Needs [`redis`](Self::redis) first; otherwise ignored.
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        if let Some(r) = &mut self.config.redis {
            r.timeout = timeout;
        }
        self
    }

    /// Checks the settings and makes the hub.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] names the first setting that is out of range;
    /// [`Error::RevocationFile`] says the revocation file cannot be read;
    /// [`Error::Redis`] that the Redis URL is malformed;
    /// [`Error::KeyFile`] that a public key or JWKS file cannot be used.
    pub fn build(self) -> Result<Hub> {
        let c = &self.config;
        let bad = |setting, reason| Err(Error::Config { setting, reason });
        if c.jwt_secret.is_none() && !c.jwt.has_keys() && !c.allow_anonymous {
            return bad(
                "jwt_secret",
                "set a secret, a public key or a JWKS file, or allow anonymous access",
            );
        }
        if c.jwt.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return bad("jwt_algorithms", "accept at least one algorithm");
        }
        if c.jwt_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return bad("jwt_secret", "use at least 16 bytes");
        }
        if c.admin_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return bad("admin_secret", "use at least 16 bytes");
        }
        if c.max_message_size < 256 {
            return bad("max_message_size", "must be at least 256 bytes");
        }
        if c.rate_per_sec == 0 || c.rate_burst == 0 {
            return bad("rate_limit", "rate and burst must be positive");
        }
        if c.outbound_queue_bytes < c.max_message_size {
            return bad(
                "outbound_queue_bytes",
                "must hold at least one maximum-size message",
            );
        }
        if c.ping_interval.is_zero() || c.ping_timeout.is_zero() || c.auth_timeout.is_zero() {
            return bad(
                "ping_interval",
                "ping interval, ping timeout and auth timeout must be positive",
            );
        }
        if c.max_connections == 0
            || c.max_subscriptions == 0
            || c.max_rooms == 0
            || c.max_rooms_per_client == 0
        {
            return bad(
                "max_connections",
                "connection, subscription and room caps must be positive",
            );
        }
        if c.history_len == 0 || c.history_age.is_zero() || c.history_bytes == 0 {
            return bad("history", "history bounds must be positive");
        }
        if c.history_budget < c.max_message_size {
            return bad(
                "history_budget",
                "must hold at least one maximum-size message",
            );
        }
        if c.dedupe_window == 0 {
            return bad("dedupe_window", "must be positive");
        }
        if c.read_buffer_size < 512 {
            return bad("socket_buffers", "read buffer must be at least 512 bytes");
        }
        if c.header_read_timeout.is_zero()
            || c.upgrade_timeout.is_zero()
            || c.close_timeout.is_zero()
        {
            return bad(
                "upgrade_timeout",
                "header read, upgrade and close timeouts must be positive",
            );
        }
        if c.max_pending_upgrades == 0 || c.max_pending_upgrades > 1 << 20 {
            return bad("max_pending_upgrades", "must be between 1 and 1,048,576");
        }
        if c.node_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return bad(
                "node_id",
                "must be 1 to 128 bytes without control characters",
            );
        }
        if c.stats_interval.is_zero() {
            return bad("stats_interval", "must be positive");
        }
        if let Some(r) = &c.redis {
            if r.dedupe_ttl.is_zero() || r.room_ttl.is_zero() || r.timeout.is_zero() {
                return bad("redis", "redis TTLs and timeout must be positive");
            }
            if tokio::runtime::Handle::try_current().is_err() {
                return bad("redis", "the hub must be built inside a Tokio runtime");
            }
        }
        let file_revocations = match &c.revocation_file {
            Some(path) => {
                Some(
                    crate::revocation::load(path).map_err(|source| Error::RevocationFile {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let verifier = crate::token::Verifier::from_config(c)?;
        if verifier.as_ref().is_some_and(|v| !v.can_verify_any()) {
            return bad(
                "jwt_algorithms",
                "no configured key can verify any of the accepted algorithms",
            );
        }
        let hub = Hub::new(self.config, verifier)?;
        if let Some(list) = file_revocations {
            hub.shared.set_file_revocations(list);
        }
        Ok(hub)
    }

    /// Builds the hub and serves it on `listener` until Ctrl-C or SIGTERM.
    ///
    /// # Errors
    ///
    /// A refused setting, or an I/O error from the listener.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<()> {
        self.build()?.serve(listener).await
    }
}
