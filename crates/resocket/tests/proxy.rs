//! Proxies, end to end through real proxy servers from Debian's packages: tinyproxy (HTTP
//! `CONNECT`), microsocks (SOCKS5) and stunnel (TLS in front of tinyproxy, for an `https://`
//! proxy). `scripts/deps/proxies.sh` installs them; a missing one fails the test, naming it.
//!
//! Every test but the one about the environment calls `proxy_from_env(false)`, because that
//! one sets the process environment, which all tests in this binary share.

mod support;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use resocket::Events;
use resocket::{
    error::{ProxyError, SocksReply},
    Client, ClientBuilder, ConnectionEvent, Error, Message,
};
use resocket_testkit::{closed_port, within, Behavior, TestServer};

const DEPS: &str = "scripts/deps/proxies.sh";

/// A proxy daemon running in the foreground as our child; killed (and its files removed) on
/// drop.
struct Daemon {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    command: Vec<String>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `command` (which must listen on `port`) and waits until the port accepts.
    fn start(name: &'static str, port: u16, dir: PathBuf, command: Vec<String>) -> Daemon {
        let mut daemon = Daemon {
            name,
            port,
            dir,
            command,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let binary = &self.command[0];
        assert!(
            which(binary),
            "{binary} is not installed: run {DEPS} (it installs {})",
            self.name
        );
        let out = fs::File::create(self.dir.join("stdout")).unwrap();
        let err = fs::File::create(self.dir.join("stderr")).unwrap();
        let child = Command::new(binary)
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (see {DEPS})", self.name));
        self.child = Some(child);
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited with {status} before listening: {}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {}: {}",
                self.name,
                self.port,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}{}", read("stdout"), read("stderr"), read("log"))
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the daemon and starts it again on the same port.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn which(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port nothing listens on right now, for a daemon to take.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A fresh directory for one daemon's config and logs.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "resocket-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// tinyproxy on a free port, with Basic credentials when given. Every request is logged
/// (`LogLevel Connect`), which is how the tests count them.
fn tinyproxy(credentials: Option<(&str, &str)>) -> Daemon {
    let port = free_port();
    let dir = temp_dir("tinyproxy");
    let mut config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 64\nLogLevel Connect\n\
         LogFile \"{}\"\n",
        path(&dir.join("log"))
    );
    if let Some((user, pass)) = credentials {
        config.push_str(&format!("BasicAuth {user} {pass}\n"));
    }
    let file = dir.join("tinyproxy.conf");
    fs::write(&file, config).unwrap();
    let command = vec!["tinyproxy".into(), "-d".into(), "-c".into(), path(&file)];
    Daemon::start("tinyproxy", port, dir, command)
}

/// How many `CONNECT` requests tinyproxy has received (the readiness probe sends none).
fn tinyproxy_connections(proxy: &Daemon) -> usize {
    fs::read_to_string(proxy.dir.join("log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Request (file descriptor") && l.contains("CONNECT "))
        .count()
}

/// microsocks on a free port, with a username and password when given.
fn microsocks(credentials: Option<(&str, &str)>) -> Daemon {
    let port = free_port();
    let mut command = vec![
        "microsocks".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    if let Some((user, pass)) = credentials {
        command.extend(["-u".into(), user.into(), "-P".into(), pass.into()]);
    }
    Daemon::start("microsocks", port, temp_dir("microsocks"), command)
}

/// microsocks in its own mount namespace whose `/etc/hosts` also names `name` as 127.0.0.1:
/// a name only the proxy can resolve.
fn microsocks_knowing(name: &str) -> Daemon {
    let port = free_port();
    let dir = temp_dir("microsocks-dns");
    let hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    fs::write(dir.join("hosts"), format!("{hosts}\n127.0.0.1 {name}\n")).unwrap();
    assert!(
        which("microsocks"),
        "microsocks is not installed: run {DEPS}"
    );
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec microsocks -i 127.0.0.1 -p {port}",
        path(&dir.join("hosts"))
    );
    let command = vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        script,
    ];
    Daemon::start(
        "microsocks (in a mount namespace: needs root)",
        port,
        dir,
        command,
    )
}

/// stunnel in front of `upstream`: TLS on its own port, with a certificate for `localhost`
/// signed by a fresh CA. Returns the daemon and the CA (PEM) to trust.
#[cfg(any(feature = "__rustls-tls", feature = "native-tls"))]
fn stunnel(upstream: u16) -> (Daemon, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "proxy test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();

    let port = free_port();
    let dir = temp_dir("stunnel");
    fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let config = format!(
        "foreground = yes\npid =\noutput = {log}\n[proxy]\naccept = 127.0.0.1:{port}\n\
         connect = 127.0.0.1:{upstream}\ncert = {cert}\nkey = {key}\n",
        log = path(&dir.join("log")),
        cert = path(&dir.join("cert.pem")),
        key = path(&dir.join("key.pem")),
    );
    let file = dir.join("stunnel.conf");
    fs::write(&file, config).unwrap();
    let command = vec!["stunnel4".into(), path(&file)];
    (Daemon::start("stunnel4", port, dir, command), ca.pem())
}

/// A client that ignores the environment and retries quickly.
fn builder(url: String) -> ClientBuilder {
    Client::builder(url)
        .proxy_from_env(false)
        .configure(support::quick_backoff(Duration::from_millis(200)))
}

async fn echo(client: &Client, messages: &mut resocket::Messages, text: &str) {
    client.send(Message::text(text)).await.unwrap();
    assert_eq!(messages.recv().await.unwrap(), Message::text(text));
}

async fn first_failure(events: &mut Events) -> Error {
    loop {
        match events.recv().await.expect("event stream ended") {
            ConnectionEvent::Disconnected { reason, .. } => return reason,
            ConnectionEvent::Ready { .. } => panic!("connected, expected a failure"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn http_connect_through_tinyproxy_with_credentials() {
    within(30, "tinyproxy with credentials", async {
        let proxy = tinyproxy(Some(("alice", "s3cret")));
        let server = TestServer::start(Behavior::Echo).await;
        // Credentials in the URL (percent-encoded) and from the builder both work.
        for builder in [
            builder(server.url()).proxy(format!("http://alice:s3cret@127.0.0.1:{}", proxy.port)),
            builder(server.url())
                .proxy(proxy.url("http"))
                .proxy_credentials("alice", "s3cret"),
        ] {
            let (client, mut messages) = builder.spawn().unwrap();
            echo(&client, &mut messages, "through tinyproxy").await;
            client.close().await.ok();
        }
        assert_eq!(tinyproxy_connections(&proxy), 2, "{}", proxy.output());
    })
    .await;
}

#[cfg(any(feature = "__rustls-tls", feature = "native-tls"))]
#[tokio::test]
async fn wss_through_tinyproxy_keeps_end_to_end_tls() {
    within(30, "wss through tinyproxy", async {
        let proxy = tinyproxy(None);
        let pki = resocket_testkit::TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let (client, mut messages) = builder(server.url())
            .proxy(proxy.url("http"))
            .add_root_certificate_pem(pki.ca_pem())
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "tls inside the tunnel").await;
        assert_eq!(tinyproxy_connections(&proxy), 1);
    })
    .await;
}

#[tokio::test]
async fn wrong_proxy_credentials_are_a_typed_error_that_is_not_retried() {
    within(30, "tinyproxy with wrong credentials", async {
        let proxy = tinyproxy(Some(("alice", "s3cret")));
        let server = TestServer::start(Behavior::Echo).await;
        for credentials in [Some(("alice", "wrong")), None] {
            let mut builder = builder(server.url()).proxy(proxy.url("http"));
            if let Some((user, pass)) = credentials {
                builder = builder.proxy_credentials(user, pass);
            }
            let (client, _messages) = builder.spawn().unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Proxy(ProxyError::AuthRejected { status: Some(s) })
                        if s == 401 || s == 407
                ),
                "{error:?}"
            );
            assert!(!error.is_retryable());
        }
        assert_eq!(server.connections(), 0, "the server was never reached");
        assert_eq!(
            tinyproxy_connections(&proxy),
            2,
            "one attempt each, no retries"
        );
    })
    .await;
}

#[tokio::test]
async fn no_proxy_match_bypasses_the_proxy() {
    within(30, "no_proxy bypass", async {
        let proxy = tinyproxy(None);
        let server = TestServer::start(Behavior::Echo).await;
        let url = format!("ws://127.0.0.1:{}/", server.addr().port());

        // Matched by NO_PROXY: straight to the server, tinyproxy sees nothing.
        let (client, mut messages) = builder(url.clone())
            .proxy(proxy.url("http"))
            .no_proxy("example.com, 127.0.0.0/8")
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "direct").await;
        client.close().await.ok();
        assert_eq!(tinyproxy_connections(&proxy), 0, "{}", proxy.output());

        // Not matched: through tinyproxy, which logs the connection.
        let (client, mut messages) = builder(url.clone())
            .proxy(proxy.url("http"))
            .no_proxy("example.com")
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "proxied").await;
        assert_eq!(tinyproxy_connections(&proxy), 1);

        // A proxy that does not even exist is not needed for a bypassed host.
        let dead = closed_port().await;
        let (client, mut messages) = builder(url)
            .proxy(format!("http://{dead}"))
            .no_proxy("127.0.0.1")
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "still direct").await;
    })
    .await;
}

#[tokio::test]
async fn unreachable_proxy_is_typed_and_retried() {
    within(30, "unreachable proxy", async {
        let server = TestServer::start(Behavior::Echo).await;
        let dead = closed_port().await;
        let (client, _messages) = builder(server.url())
            .proxy(format!("socks5h://{dead}"))
            .spawn()
            .unwrap();
        let mut events = client.events();
        let error = first_failure(&mut events).await;
        assert!(
            matches!(error, Error::Proxy(ProxyError::Unreachable { .. })),
            "{error:?}"
        );
        assert!(error.is_retryable());
        support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Connecting { attempt: 2, .. })
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn socks5_through_microsocks_without_auth() {
    within(30, "microsocks without auth", async {
        let proxy = microsocks(None);
        let server = TestServer::start(Behavior::Echo).await;
        for scheme in ["socks5", "socks5h"] {
            let (client, mut messages) = builder(server.url())
                .proxy(proxy.url(scheme))
                .spawn()
                .unwrap();
            echo(&client, &mut messages, scheme).await;
            client.close().await.ok();
        }
    })
    .await;
}

#[tokio::test]
async fn socks5_through_microsocks_with_username_and_password() {
    within(30, "microsocks with auth", async {
        let proxy = microsocks(Some(("bob", "hunter2")));
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = builder(server.url())
            .proxy(format!("socks5h://bob:hunter2@127.0.0.1:{}", proxy.port))
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "authenticated").await;
        client.close().await.ok();

        for builder in [
            builder(server.url())
                .proxy(proxy.url("socks5h"))
                .proxy_credentials("bob", "wrong"),
            builder(server.url()).proxy(proxy.url("socks5h")),
        ] {
            let (client, _messages) = builder.spawn().unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Proxy(ProxyError::AuthRejected { status: None })
                ),
                "{error:?}"
            );
            assert!(!error.is_retryable());
        }
    })
    .await;
}

#[tokio::test]
async fn socks5h_resolves_the_name_on_the_proxy_side() {
    within(30, "socks5h remote dns", async {
        const NAME: &str = "only-the-proxy-knows.test";
        let proxy = microsocks_knowing(NAME);
        let server = TestServer::start(Behavior::Echo).await;
        let url = format!("ws://{NAME}:{}/", server.addr().port());

        // Here the name does not resolve at all...
        assert!(tokio::net::lookup_host((NAME, 80)).await.is_err());

        // ...so socks5h works only because the proxy resolved it.
        let (client, mut messages) = builder(url.clone())
            .proxy(proxy.url("socks5h"))
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "resolved by the proxy").await;
        client.close().await.ok();

        // socks5 resolves locally, and fails on the name before talking to the proxy.
        let (client, _messages) = builder(url).proxy(proxy.url("socks5")).spawn().unwrap();
        let error = first_failure(&mut client.events()).await;
        assert!(matches!(error, Error::Dns { .. }), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn socks_refusal_carries_the_reply_code() {
    within(30, "socks refusal", async {
        let proxy = microsocks(None);
        let dead = closed_port().await;
        let (client, _messages) = builder(format!("ws://{dead}/"))
            .proxy(proxy.url("socks5"))
            .spawn()
            .unwrap();
        let error = first_failure(&mut client.events()).await;
        // microsocks answers a refused connect with a general failure or "connection refused".
        assert!(
            matches!(
                error,
                Error::Proxy(ProxyError::Socks(
                    SocksReply::ConnectionRefused | SocksReply::GeneralFailure
                ))
            ),
            "{error:?}"
        );
        assert!(error.is_retryable());
    })
    .await;
}

#[cfg(any(feature = "__rustls-tls", feature = "native-tls"))]
#[tokio::test]
async fn https_proxy_carries_connect_over_tls() {
    within(30, "https proxy via stunnel", async {
        let proxy = tinyproxy(Some(("alice", "s3cret")));
        let (tls_front, proxy_ca) = stunnel(proxy.port);
        let pki = resocket_testkit::TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let (client, mut messages) = builder(server.url())
            .proxy(format!("https://alice:s3cret@localhost:{}", tls_front.port))
            .add_root_certificate_pem(proxy_ca)
            .add_root_certificate_pem(pki.ca_pem())
            .spawn()
            .unwrap();
        echo(&client, &mut messages, "tls in tls").await;
        assert_eq!(tinyproxy_connections(&proxy), 1);
    })
    .await;
}

#[tokio::test]
async fn reconnects_through_the_proxy_after_the_proxy_restarts() {
    within(60, "proxy restart", async {
        let mut proxy = tinyproxy(Some(("alice", "s3cret")));
        let server = TestServer::start(Behavior::Echo).await;
        let (client, mut messages) = builder(server.url())
            .proxy(proxy.url("http"))
            .proxy_credentials("alice", "s3cret")
            .spawn()
            .unwrap();
        let mut events = client.events();
        echo(&client, &mut messages, "before").await;

        proxy.stop();
        support::wait_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Disconnected { .. })
        })
        .await;
        // While the proxy is down, attempts fail as unreachable and keep being retried.
        let error = first_failure(&mut events).await;
        assert!(
            matches!(error, Error::Proxy(ProxyError::Unreachable { .. })),
            "{error:?}"
        );

        proxy.restart();
        support::reconnected(&mut events).await;
        echo(&client, &mut messages, "after").await;
        assert!(tinyproxy_connections(&proxy) >= 1);
    })
    .await;
}

#[tokio::test]
async fn the_environment_convention_is_followed_and_can_be_ignored() {
    within(30, "proxy environment", async {
        let proxy = tinyproxy(None);
        let server = TestServer::start(Behavior::Echo).await;
        let dead = closed_port().await;
        let env_builder = || {
            Client::builder(server.url())
                .configure(support::quick_backoff(Duration::from_millis(200)))
        };
        // The only test here that touches the environment; the others ignore it.
        std::env::set_var("HTTP_PROXY", proxy.url("http"));
        std::env::remove_var("http_proxy");
        std::env::remove_var("ALL_PROXY");
        std::env::remove_var("all_proxy");
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");

        let (client, mut messages) = env_builder().spawn().unwrap();
        echo(&client, &mut messages, "via HTTP_PROXY").await;
        client.close().await.ok();
        assert_eq!(tinyproxy_connections(&proxy), 1);

        // NO_PROXY bypasses even a proxy that does not exist.
        std::env::set_var("HTTP_PROXY", format!("http://{dead}"));
        std::env::set_var("NO_PROXY", "127.0.0.1");
        let (client, mut messages) = env_builder().spawn().unwrap();
        echo(&client, &mut messages, "bypassed by NO_PROXY").await;
        client.close().await.ok();

        // And the whole environment can be ignored.
        std::env::remove_var("NO_PROXY");
        let (client, mut messages) = env_builder().proxy_from_env(false).spawn().unwrap();
        echo(&client, &mut messages, "environment ignored").await;
        client.close().await.ok();

        std::env::remove_var("HTTP_PROXY");
        assert_eq!(
            tinyproxy_connections(&proxy),
            1,
            "only the first went through it"
        );
    })
    .await;
}
