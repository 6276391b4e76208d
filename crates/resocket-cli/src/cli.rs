//! The command line, declared with clap's derive API.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

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
    /// and subscribers, all in this process.
    #[command(after_help = exit::DEMO_HELP)]
    Demo(DemoArgs),
}

/// `resocket connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The server's URL (ws:// or wss://).
    pub url: String,
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
    /// Stop at the first failed connection instead of retrying.
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
    /// Address to listen on.
    #[arg(long, env = "RESOCKET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// HS256 secret for client tokens (at least 16 bytes).
    #[arg(long, env = "RESOCKET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Allow clients without a token (on the rooms of --anonymous-rooms).
    #[arg(long, env = "RESOCKET_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Room pattern anonymous clients may subscribe and publish to (repeatable, default "*").
    #[arg(long = "anonymous-room", value_name = "PATTERN")]
    pub anonymous_rooms: Vec<String>,
    /// Allowed Origin (repeatable); without any, only pages served by the hub itself.
    #[arg(
        long = "allow-origin",
        env = "RESOCKET_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub origins: Vec<String>,
    /// Largest accepted frame, in bytes.
    #[arg(long, env = "RESOCKET_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Per-connection rate limit, frames per second.
    #[arg(long, env = "RESOCKET_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Messages of history kept per room (default 1000; the per-room age and byte bounds stay
    /// at 5 minutes and 4 MiB).
    #[arg(long, env = "RESOCKET_HISTORY")]
    pub history: Option<usize>,
    /// Bytes all rooms' history may hold together, like 256M (default 256 MiB); the oldest
    /// history across rooms is dropped first.
    #[arg(long, env = "RESOCKET_HISTORY_BUDGET", value_name = "BYTES", value_parser = parse_bytes)]
    pub history_budget: Option<usize>,
    /// Most rooms one client (token subject or anonymous id) may have created and alive
    /// (default 1000).
    #[arg(long, env = "RESOCKET_MAX_ROOMS_PER_CLIENT", value_name = "N")]
    pub max_rooms_per_client: Option<usize>,
    /// Deny-list file, reread when it changes: one `jti:<id>` or `sub:<id>` per line.
    #[arg(long, env = "RESOCKET_REVOKED", value_name = "FILE")]
    pub revoked: Option<PathBuf>,
    /// Enables POST /admin/revoke for requests with `Authorization: Bearer <this secret>`
    /// (at least 16 bytes).
    #[arg(long, env = "RESOCKET_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,
    /// Most connections at once.
    #[arg(long, env = "RESOCKET_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send its request headers (default 5).
    #[arg(long, env = "RESOCKET_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds from accept to the WebSocket upgrade, TLS included (default 10).
    #[arg(long, env = "RESOCKET_UPGRADE_TIMEOUT", value_name = "SECS")]
    pub upgrade_timeout: Option<u64>,
    /// Most sockets accepted but not yet upgraded (default 1024).
    #[arg(long, env = "RESOCKET_MAX_PENDING_UPGRADES")]
    pub max_pending_upgrades: Option<usize>,
    /// Seconds a closing connection may wait for its socket to take the Close frame (default 10).
    #[arg(long, env = "RESOCKET_CLOSE_TIMEOUT", value_name = "SECS")]
    pub close_timeout: Option<u64>,
    /// Keep rooms in Redis, so several `serve` processes share rooms, history, offsets and
    /// revocations: `redis://host:6379`, `rediss://…` or `redis+unix:///path/redis.sock`.
    /// Default: in this process.
    #[arg(
        long,
        env = "RESOCKET_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,
    /// Serve wss:// with this certificate chain (PEM file); needs --tls-key.
    #[arg(
        long,
        env = "RESOCKET_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM file).
    #[arg(
        long,
        env = "RESOCKET_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
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
    /// Messages per second the publisher sends.
    #[arg(short, long, default_value_t = 500)]
    pub rate: u64,
    /// Seed for the proxy's cuts (random if not given).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Parses a byte count with an optional binary suffix: `65536`, `64K`, `256M`, `1G`.
fn parse_bytes(text: &str) -> Result<usize, String> {
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
