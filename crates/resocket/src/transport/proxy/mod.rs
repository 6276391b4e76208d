//! Proxies: the settings on the builder, which proxy a target goes through, and the tunnel
//! through it.
//!
//! - `url.rs`: one proxy URL parsed (kind, address, credentials).
//! - `env.rs`: the `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` convention.
//! - `connect.rs`: the HTTP `CONNECT` handshake, over TCP or TLS to the proxy.
//! - `socks5.rs`: the SOCKS5 handshake, with username/password.
//!
//! Why these are written here rather than taken from a crate is told in the `transport`
//! module docs.

mod connect;
mod env;
mod socks5;
mod url;

use std::io;

use self::{
    env::NoProxy,
    socks5::SocksAddr,
    url::{Kind, Proxy},
};
use super::{connect_tcp, Target, TlsConnector, Wire};
use crate::{
    config::ClientConfig,
    error::{ConfigError, ProxyError},
    ClientBuilder, Error,
};

/// Proxy settings collected by the builder.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    explicit: Option<String>,
    credentials: Option<(String, String)>,
    no_proxy: Option<String>,
    ignore_env: bool,
}

/// Proxy settings on the builder.
impl ClientBuilder {
    /// Connects through this proxy, for `ws://` and `wss://` alike.
    ///
    /// `url` is `http://host:port` (HTTP `CONNECT`), `https://host:port` (`CONNECT` over TLS to
    /// the proxy, checked with the same roots as the server), `socks5://host:port` (SOCKS5,
    /// the name resolved here) or `socks5h://host:port` (SOCKS5, the name resolved by the
    /// proxy). Credentials may be given as `user:password@` (percent-encoded) or with
    /// [`proxy_credentials`](ClientBuilder::proxy_credentials). Without a scheme, `http` is
    /// meant; the default ports are 80, 443 and 1080. The URL is checked by `build()`.
    ///
    /// An explicit proxy takes precedence over the environment. Hosts listed by
    /// [`no_proxy`](ClientBuilder::no_proxy) (or by `NO_PROXY`, unless
    /// [`proxy_from_env`](ClientBuilder::proxy_from_env) is off) are still reached directly.
    /// Default: no explicit proxy.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.transport.proxy.explicit = Some(url.into());
        self
    }

    /// Authenticates to the proxy with these credentials: HTTP Basic for `CONNECT`, RFC 1929
    /// username/password for SOCKS5. They replace any in the proxy URL, and apply to a proxy
    /// taken from the environment too. Default: none.
    pub fn proxy_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.transport.proxy.credentials = Some((username.into(), password.into()));
        self
    }

    /// Reaches these hosts directly, never through a proxy: a `NO_PROXY`-style list such as
    /// `"localhost, 127.0.0.1, .internal.example, 10.0.0.0/8"` (a name matches itself and its
    /// subdomains; `*` matches everything). Replaces the `NO_PROXY` variable. Default: the
    /// `NO_PROXY` variable when reading the environment, else nothing.
    pub fn no_proxy(mut self, list: impl Into<String>) -> Self {
        self.transport.proxy.no_proxy = Some(list.into());
        self
    }

    /// Whether to follow the proxy environment convention: `HTTPS_PROXY` (or `https_proxy`)
    /// for `wss://`, `HTTP_PROXY` (or `http_proxy`) for `ws://`, `ALL_PROXY` (or `all_proxy`)
    /// for both when the former are unset, and `NO_PROXY` (or `no_proxy`) for exceptions. The
    /// environment is read once, by `build()`. Default: `true`.
    pub fn proxy_from_env(mut self, read: bool) -> Self {
        self.transport.proxy.ignore_env = !read;
        self
    }
}

impl Proxy {
    /// Opens a tunnel through this proxy to `target`.
    pub(crate) async fn tunnel(
        &self,
        target: &Target,
        config: &ClientConfig,
        tls: &TlsConnector,
    ) -> Result<Wire, Error> {
        let tcp = connect_tcp(&self.host, self.port, config)
            .await
            .map_err(|e| self.unreachable(e))?;
        match self.kind {
            Kind::Http => {
                let mut tcp = tcp;
                self.http_connect(&mut tcp, target).await?;
                Ok(Wire::Left(tcp))
            }
            Kind::Https => {
                // The proxy's certificate is checked against the proxy's own name, never the
                // server-name override, which is about the server.
                let mut tls = tls.wrap(tcp, &self.host).await?;
                self.http_connect(&mut tls, target).await?;
                Ok(Wire::Right(Box::new(tls)))
            }
            Kind::Socks5 { remote_dns } => {
                let address = if remote_dns {
                    SocksAddr::for_remote_dns(&target.host, target.port)
                } else {
                    SocksAddr::resolve(&target.host, target.port).await?
                };
                let mut tcp = tcp;
                self.socks5_connect(&mut tcp, &address).await?;
                Ok(Wire::Left(tcp))
            }
        }
    }

    /// Re-types a failure to reach the proxy (or to talk to it) as `Unreachable`.
    fn unreachable(&self, e: Error) -> Error {
        match e {
            Error::Io(source) | Error::Dns { source, .. } => {
                Error::Proxy(ProxyError::Unreachable {
                    proxy: self.authority(),
                    source,
                })
            }
            other => other,
        }
    }

    fn io_failed(&self, e: io::Error) -> Error {
        self.unreachable(Error::io(e))
    }
}

fn protocol(what: &str) -> Error {
    Error::Proxy(ProxyError::Protocol(what.to_owned()))
}

/// Which proxy each kind of target goes through, decided once at build time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    ws: Option<Proxy>,
    wss: Option<Proxy>,
    bypass: NoProxy,
}

impl Routes {
    /// Resolves the builder's settings and, unless turned off, the environment (through
    /// `lookup`, so tests need not touch the process environment).
    pub(crate) fn build(
        options: &ProxyOptions,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Routes, ConfigError> {
        let found = if options.ignore_env {
            env::EnvProxies::default()
        } else {
            env::read(lookup)
        };
        let with_credentials = |mut proxy: Proxy| -> Result<Proxy, ConfigError> {
            if let Some(credentials) = &options.credentials {
                proxy.auth = Some(credentials.clone());
            }
            if let (Kind::Socks5 { .. }, Some((user, pass))) = (proxy.kind, &proxy.auth) {
                socks5::auth_request(user, pass)?;
            }
            Ok(proxy)
        };
        let (ws, wss) = match &options.explicit {
            Some(url) => {
                let proxy = Proxy::parse(url)?;
                let proxy = with_credentials(proxy)?;
                (Some(proxy.clone()), Some(proxy))
            }
            None => {
                let from_var = |var: Option<env::Var>| -> Result<Option<Proxy>, ConfigError> {
                    var.map(|var| {
                        Proxy::parse(&var.value)
                            .map_err(|source| ConfigError::Proxy {
                                variable: Some(var.name),
                                source,
                            })
                            .and_then(with_credentials)
                    })
                    .transpose()
                };
                (from_var(found.ws)?, from_var(found.wss)?)
            }
        };
        let bypass = match (&options.no_proxy, found.no_proxy) {
            (Some(list), _) => NoProxy::parse(list),
            (None, Some(var)) => NoProxy::parse(&var.value),
            (None, None) => NoProxy::default(),
        };
        Ok(Routes { ws, wss, bypass })
    }

    /// Whether a route needs TLS to its proxy.
    pub(crate) fn needs_tls(&self) -> bool {
        [&self.ws, &self.wss]
            .into_iter()
            .flatten()
            .any(|p| p.kind == Kind::Https)
    }

    /// The proxy for this target, or `None` to connect directly.
    pub(crate) fn for_target(&self, target: &Target) -> Option<&Proxy> {
        let proxy = if target.tls { &self.wss } else { &self.ws };
        proxy
            .as_ref()
            .filter(|_| !self.bypass.matches(&target.host))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn target(host: &str, port: u16, tls: bool) -> Target {
        Target {
            host: host.into(),
            port,
            tls,
        }
    }

    fn routes(options: ProxyOptions, pairs: &[(&str, &str)]) -> Result<Routes, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Routes::build(&options, move |name| map.get(name).cloned())
    }

    #[test]
    fn env_proxies_route_by_scheme_and_no_proxy_bypasses() {
        let r = routes(
            ProxyOptions::default(),
            &[
                ("HTTPS_PROXY", "http://secure:3128"),
                ("HTTP_PROXY", "socks5h://plain:1080"),
                ("NO_PROXY", "localhost,.internal"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.for_target(&target("feed.example", 443, true))
                .unwrap()
                .host,
            "secure"
        );
        assert_eq!(
            r.for_target(&target("feed.example", 80, false))
                .unwrap()
                .host,
            "plain"
        );
        assert!(r.for_target(&target("localhost", 80, false)).is_none());
        assert!(r.for_target(&target("api.internal", 443, true)).is_none());
    }

    #[test]
    fn the_environment_can_be_ignored() {
        let options = ProxyOptions {
            ignore_env: true,
            ..ProxyOptions::default()
        };
        let r = routes(options, &[("ALL_PROXY", "http://p:1")]).unwrap();
        assert!(r.for_target(&target("x", 80, false)).is_none());
    }

    #[test]
    fn explicit_proxy_wins_and_builder_no_proxy_replaces_the_variable() {
        let options = ProxyOptions {
            explicit: Some("socks5://explicit:1080".into()),
            credentials: Some(("u".into(), "p".into())),
            no_proxy: Some("only.this".into()),
            ignore_env: false,
        };
        let r = routes(
            options,
            &[
                ("HTTPS_PROXY", "http://env:1"),
                ("NO_PROXY", "feed.example"),
            ],
        )
        .unwrap();
        let p = r.for_target(&target("feed.example", 443, true)).unwrap();
        assert_eq!(p.host, "explicit");
        assert_eq!(p.auth, Some(("u".into(), "p".into())));
        assert!(r.for_target(&target("only.this", 443, true)).is_none());
    }

    #[test]
    fn a_bad_proxy_variable_is_a_config_error_naming_it() {
        let error = routes(ProxyOptions::default(), &[("https_proxy", "ftp://x")]).unwrap_err();
        assert!(error.to_string().contains("https_proxy"), "{error}");
        let r = routes(ProxyOptions::default(), &[("ALL_PROXY", "https://p")]).unwrap();
        assert!(r.needs_tls());
    }
}
