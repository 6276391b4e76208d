//! The command line, declared with clap's derive API.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::exit;

/// A resilient WebSocket toolkit: client, hub server, chaos proxy, load tester and demo.
#[derive(Debug, Parser)]
#[command(
    name = "resocket",
    version,
    about,
    propagate_version = true,
    after_help = exit::TOP_HELP
)]
pub struct Cli {
    /// More logging on stderr (-v, -vv); RESOCKET_LOG overrides with a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
// Parsed once per process and matched once: boxing the larger settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to a WebSocket server and stay connected: stdin lines are sent, messages are
    /// printed on stdout, status goes to stderr.
    #[command(after_help = exit::CONNECT_HELP)]
    Connect(ConnectArgs),
    /// Run the hub, the pub/sub WebSocket server.
    #[command(after_help = exit::SERVE_HELP)]
    Serve(ServeArgs),
    /// Run a fault-injecting TCP proxy in front of any WebSocket server.
    #[command(after_help = exit::CHAOS_HELP)]
    Chaos(ChaosArgs),
    /// Load a WebSocket server with N connections and report throughput and latency.
    #[command(after_help = exit::BENCH_HELP)]
    Bench(BenchArgs),
    /// Show that nothing is lost: a hub, a proxy that keeps cutting connections, a publisher
    /// and subscribers, all in this process (--cluster: three hub nodes on a local Redis,
    /// restarted under traffic).
    #[command(after_help = exit::DEMO_HELP)]
    Demo(DemoArgs),
    /// Print the shell completion script for this command on stdout.
    #[command(after_help = exit::COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
}

/// `resocket connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The server's URL (ws:// or wss://). Several URLs are endpoints of one service, tried in
    /// turn: after a failed attempt or a dropped connection the next one is used.
    #[arg(value_name = "URL", required = true, num_args = 1..)]
    pub urls: Vec<String>,
    /// Extra upgrade header, as `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Sends `Authorization: Bearer TOKEN` with the upgrade.
    #[arg(long, env = "RESOCKET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A message sent after every (re)connect, before anything typed (repeatable): for
    /// subscribe or auth frames.
    #[arg(short, long = "subscribe", value_name = "MESSAGE")]
    pub subscribe: Vec<String>,
    /// Offer this subprotocol (repeatable).
    #[arg(long = "subprotocol")]
    pub subprotocols: Vec<String>,
    /// Heartbeat interval in seconds (0 turns heartbeats off).
    #[arg(long, default_value_t = 20.0)]
    pub ping_interval: f64,
    /// Print every message as a JSON line ({"type":"text","data":…}) instead of raw.
    #[arg(long)]
    pub json: bool,
    /// Trust this CA certificate (PEM file) besides the default roots.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Client certificate for mTLS (PEM file); needs --client-key.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Private key of --client-cert (PEM file).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Connect through this proxy: http://, https://, socks5:// or socks5h://, credentials
    /// in the URL. Without it, HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY apply.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Ignore the proxy environment variables.
    #[arg(long)]
    pub no_proxy_env: bool,
    /// Stop at the first failed connection instead of retrying (with several URLs: once each
    /// has failed once).
    #[arg(long)]
    pub exit_on_first_failure: bool,
    /// Give up (exit 1) after this many retries in a row; without it, retry for ever.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// After the end of input, how long to keep delivering the queued lines (through
    /// reconnects) before dropping them and exiting 3, in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub drain_timeout: Duration,
    /// Once the input is delivered, keep the connection open until no message has arrived for
    /// this long, in seconds, then close (0 closes at once). Many servers stop answering as soon
    /// as they receive a Close, so replies still on their way would be lost without it.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds)]
    pub linger: Duration,
}

/// A number of seconds, zero or more, with a fraction if wanted.
fn seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{value:?} is not a number of seconds (zero or more)"))
}

/// `resocket serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file, in sections as in `hub.example.toml`. Relative paths
    /// in it are relative to the file.
    #[arg(long, env = "RESOCKET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML, in the config file's sections, and exit
    /// (jwt_secret and admin_secret are printed as "<redacted>").
    #[arg(long)]
    pub print_config: bool,
    /// The hub's settings: each is a flag, a `RESOCKET_*` variable and a key of the config file.
    #[command(flatten)]
    pub settings: ServeSettings,
    /// Which settings the command line or the environment gave (filled in after parsing).
    #[arg(skip)]
    pub given: crate::serve_config::Given,
}

/// The hub's settings, in the config file's sections.
///
/// Each field is one setting, declared once: its name is the arg id and the file's key (so the
/// file layer can tell which settings the command line gave), its `long` the flag, its `env` the
/// variable, its `default_value` the default. A secret is marked `hide_env_values`, which also
/// redacts it in `--print-config`.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct ServeSettings {
    /// `[listen]`.
    #[command(flatten, next_help_heading = "Listen ([listen] in the config file)")]
    pub listen: ListenSettings,
    /// `[tls]`.
    #[command(flatten, next_help_heading = "TLS ([tls])")]
    pub tls: TlsSettings,
    /// `[auth]`.
    #[command(flatten, next_help_heading = "Auth ([auth])")]
    pub auth: AuthSettings,
    /// `[limits]`.
    #[command(flatten, next_help_heading = "Limits ([limits])")]
    pub limits: LimitsSettings,
    /// `[history]`.
    #[command(flatten, next_help_heading = "History ([history])")]
    pub history: HistorySettings,
    /// `[engine]`.
    #[command(flatten, next_help_heading = "Engine ([engine])")]
    pub engine: EngineSettings,
}

/// `[listen]`: where the hub listens.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct ListenSettings {
    /// Address to listen on.
    #[arg(
        long = "listen",
        env = "RESOCKET_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub address: SocketAddr,
}

/// `[tls]`: serve wss:// instead of ws://.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct TlsSettings {
    /// Serve wss:// with this certificate chain (PEM file); needs --tls-key. The two may come
    /// from different places (a flag, a variable, the config file).
    #[arg(long = "tls-cert", env = "RESOCKET_TLS_CERT", value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM file).
    #[arg(long = "tls-key", env = "RESOCKET_TLS_KEY", value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// `[auth]`: who may connect, and to which rooms.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct AuthSettings {
    /// HS256 secret for client tokens (at least 16 bytes).
    #[arg(
        long,
        env = "RESOCKET_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// Public key client tokens may be signed with: a PEM file holding an RSA, P-256, P-384 or
    /// Ed25519 public key (repeatable).
    #[arg(
        long = "jwt-public-key",
        env = "RESOCKET_JWT_PUBLIC_KEY",
        value_name = "PEM"
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_public_keys: Vec<PathBuf>,
    /// JWKS file of token keys (an identity provider's `jwks_uri` document), reread when it
    /// changes, so keys rotate without a restart.
    #[arg(long, env = "RESOCKET_JWKS", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
    /// Accepted token issuer: tokens must carry an `iss` equal to one (repeatable or
    /// comma-separated; default: `iss` is not checked).
    #[arg(
        long = "jwt-issuer",
        env = "RESOCKET_JWT_ISSUER",
        value_name = "ISS",
        value_delimiter = ','
    )]
    pub jwt_issuers: Vec<String>,
    /// Accepted token audience: tokens must carry an `aud` naming one (repeatable or
    /// comma-separated; default: `aud` is not checked).
    #[arg(
        long = "jwt-audience",
        env = "RESOCKET_JWT_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ','
    )]
    pub jwt_audiences: Vec<String>,
    /// The only token algorithms accepted, comma-separated, like RS256,ES256 (default: HS256
    /// and every RSA, ECDSA and EdDSA algorithm).
    #[arg(
        long = "jwt-algorithms",
        env = "RESOCKET_JWT_ALGORITHMS",
        value_name = "ALG",
        value_delimiter = ',',
        value_parser = jwt_algorithm
    )]
    pub jwt_algorithms: Vec<String>,
    /// Seconds of clock skew tolerated on a token's `exp` and `nbf` (default 0).
    #[arg(long, env = "RESOCKET_JWT_LEEWAY", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_leeway: Option<u64>,
    /// Allow clients without a token (on the rooms of --anonymous-room); `--allow-anonymous`
    /// alone means true.
    #[arg(
        long,
        env = "RESOCKET_ALLOW_ANONYMOUS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_anonymous: bool,
    /// Room pattern anonymous clients may subscribe and publish to (repeatable).
    #[arg(long = "anonymous-room", value_name = "PATTERN", default_value = "*")]
    pub anonymous_rooms: Vec<String>,
    /// Allowed Origin (repeatable); without any, only pages served by the hub itself.
    #[arg(
        long = "allow-origin",
        env = "RESOCKET_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,
    /// Deny-list file, reread when it changes: one `jti:<id>` or `sub:<id>` per line.
    #[arg(long, env = "RESOCKET_REVOKED", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<PathBuf>,
    /// Enables POST /admin/revoke for requests with `Authorization: Bearer <this secret>`
    /// (at least 16 bytes).
    #[arg(
        long,
        env = "RESOCKET_ADMIN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_secret: Option<String>,
}

/// `[limits]`: what one client, and all of them, may use.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct LimitsSettings {
    /// Largest accepted frame, in bytes.
    #[arg(
        long,
        env = "RESOCKET_MAX_MESSAGE_SIZE",
        value_name = "BYTES",
        default_value = "65536"
    )]
    pub max_message_size: usize,
    /// Per-connection rate limit, frames per second (bursts of twice as many).
    #[arg(
        long,
        env = "RESOCKET_RATE_LIMIT",
        value_name = "N",
        default_value = "100"
    )]
    pub rate_limit: u32,
    /// Most connections at once.
    #[arg(
        long,
        env = "RESOCKET_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "10000"
    )]
    pub max_connections: usize,
    /// Most rooms one client (token subject or anonymous id) may have created and alive.
    #[arg(
        long,
        env = "RESOCKET_MAX_ROOMS_PER_CLIENT",
        value_name = "N",
        default_value = "1000"
    )]
    pub max_rooms_per_client: usize,
    /// Seconds a client has to send its request headers.
    #[arg(
        long,
        env = "RESOCKET_HEADER_READ_TIMEOUT",
        value_name = "SECS",
        default_value = "5"
    )]
    pub header_read_timeout: u64,
    /// Seconds from accept to the WebSocket upgrade, TLS included.
    #[arg(
        long,
        env = "RESOCKET_UPGRADE_TIMEOUT",
        value_name = "SECS",
        default_value = "10"
    )]
    pub upgrade_timeout: u64,
    /// Most sockets accepted but not yet upgraded.
    #[arg(
        long,
        env = "RESOCKET_MAX_PENDING_UPGRADES",
        value_name = "N",
        default_value = "1024"
    )]
    pub max_pending_upgrades: usize,
    /// Seconds a closing connection may wait for its socket to take the Close frame.
    #[arg(
        long,
        env = "RESOCKET_CLOSE_TIMEOUT",
        value_name = "SECS",
        default_value = "10"
    )]
    pub close_timeout: u64,
    /// Answer permessage-deflate offers: each published message is compressed once and shared
    /// by every subscriber that asked for it.
    #[arg(
        long,
        env = "RESOCKET_COMPRESSION",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub compression: bool,
}

/// `[history]`: what rooms remember for clients that come back.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct HistorySettings {
    /// Messages of history kept per room (the per-room age and byte bounds stay at 5 minutes
    /// and 4 MiB).
    #[arg(
        long = "history",
        env = "RESOCKET_HISTORY",
        value_name = "N",
        default_value = "1000"
    )]
    pub len: usize,
    /// Bytes all rooms' history may hold together, like 256M; the oldest history across rooms
    /// is dropped first. In the config file, a number or a string like "256M".
    #[arg(
        long = "history-budget",
        env = "RESOCKET_HISTORY_BUDGET",
        value_name = "BYTES",
        value_parser = parse_bytes,
        default_value = "256M"
    )]
    #[serde(deserialize_with = "crate::serve_config::byte_count")]
    pub budget: usize,
}

/// `[engine]`: where rooms keep their history: in this process (the default), or in Redis.
#[derive(Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "crate::serve_config::defaults")]
pub struct EngineSettings {
    /// Keep rooms in Redis, so several `serve` processes share rooms, history, offsets and
    /// revocations: `redis://host:6379`, `rediss://…` or `redis+unix:///path/redis.sock`; two or
    /// more comma-separated URLs are seed nodes of a Redis Cluster. Default: in this process.
    /// Redacted by --print-config (it may hold a password).
    #[arg(
        long,
        env = "RESOCKET_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// This node's id in /metrics, `$stats` and the `$nodes` room (the dashboard's node list).
    /// Default: `<host name>:<port>`. Give each node on one Redis its own.
    #[arg(long, env = "RESOCKET_NODE_ID", value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// `resocket chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The server to forward to (ws://host:port/...).
    #[arg(long)]
    pub upstream: String,
    /// Cut each connection after a random lifetime, in milliseconds: `MIN-MAX`.
    #[arg(long, value_name = "MIN-MAX")]
    pub cut_after: Option<String>,
    /// Delay every forwarded chunk by this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub latency: Option<u64>,
    /// Black-hole all traffic (connections stay open) for `FOR` ms every `EVERY` ms: `EVERY/FOR`.
    #[arg(long, value_name = "EVERY/FOR")]
    pub blackhole: Option<String>,
    /// Stall server-to-client traffic for `FOR` ms every `EVERY` ms: `EVERY/FOR`.
    #[arg(long, value_name = "EVERY/FOR")]
    pub stall_down: Option<String>,
    /// Stall client-to-server traffic for `FOR` ms every `EVERY` ms: `EVERY/FOR`.
    #[arg(long, value_name = "EVERY/FOR")]
    pub stall_up: Option<String>,
    /// Refuse new connections for `FOR` ms every `EVERY` ms: `EVERY/FOR`.
    #[arg(long, value_name = "EVERY/FOR")]
    pub refuse: Option<String>,
    /// Seed for the random faults (random if not given; printed so a run can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `resocket bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The server to load; it should echo what it receives to measure latency.
    pub url: String,
    /// Connections.
    #[arg(short, long, default_value_t = 10)]
    pub connections: usize,
    /// Messages per second over all connections.
    #[arg(short, long, default_value_t = 1000)]
    pub rate: u64,
    /// Seconds to run.
    #[arg(short, long, default_value_t = 10.0)]
    pub duration: f64,
    /// Message size in bytes (at least 16).
    #[arg(short, long, default_value_t = 64)]
    pub size: usize,
}

/// `resocket demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds to publish for.
    #[arg(short, long, default_value_t = 20.0)]
    pub duration: f64,
    /// Subscribers.
    #[arg(short, long, default_value_t = 3)]
    pub subscribers: usize,
    /// Messages per second the publishers send, all together.
    #[arg(short, long, default_value_t = 500)]
    pub rate: u64,
    /// Seed for the proxy's cuts (random if not given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run three hub nodes on a local Redis instead of one hub, killing and restarting a node
    /// every few seconds and Redis once; needs `redis-server` on PATH. The subscribers and
    /// one publisher per node are spread over the nodes, each behind a chaos proxy.
    #[arg(long)]
    pub cluster: bool,
}

/// `resocket completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A token algorithm's name, checked and spelled as tokens carry it (`rs256` gives `RS256`); the
/// setting keeps the name, so the config file holds strings.
fn jwt_algorithm(name: &str) -> Result<String, String> {
    name.parse::<resocket_hub::JwtAlgorithm>()
        .map(|alg| alg.to_string())
        .map_err(|e| e.to_string())
}

/// Parses a byte count with an optional binary suffix: `65536`, `64K`, `256M`, `1G`.
pub(crate) fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['B', 'I']);
    let (number, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        _ => (digits, 0),
    };
    number
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is not a byte count like 65536, 64K, 256M or 1G"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("M").is_err());
    }
}
