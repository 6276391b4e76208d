//! TCP connect (resolution, nodelay, keepalive) and TLS: everything below the WebSocket upgrade.

use std::{io, net::SocketAddr, sync::Arc};

use http::Uri;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

use crate::{config::ClientConfig, error::ConfigError, ClientBuilder, Error};

/// The socket a connection runs on: plain TCP or TLS over TCP.
pub type Socket = MaybeTlsStream<TcpStream>;

/// Where to connect, parsed once from the request URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

impl Target {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Target, ConfigError> {
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => return Err(ConfigError::UnsupportedScheme(other.to_owned())),
            None => return Err(ConfigError::InvalidUrl(format!("{uri} has no scheme"))),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::MissingHost)?;
        // `Uri::host` keeps the brackets of an IPv6 literal; the resolver wants them off.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if tls && !cfg!(feature = "__rustls-tls") {
            return Err(ConfigError::TlsFeatureMissing);
        }
        Ok(Target { host, port, tls })
    }
}

/// Resolves and connects, trying each resolved address in turn.
async fn connect_tcp(target: &Target, config: &ClientConfig) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Error::Dns {
            host: target.host.clone(),
            source: Arc::new(e),
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tune(&stream, config).map_err(Error::io)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(Error::io(last))
}

fn tune(stream: &TcpStream, config: &ClientConfig) -> io::Result<()> {
    stream.set_nodelay(config.tcp_nodelay)?;
    if let Some(idle) = config.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(idle);
        socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

/// Everything the builder collected about how to reach the server.
#[derive(Clone, Default)]
pub(crate) struct TransportOptions {
    pub(crate) tls: TlsOptions,
}

/// Opens sockets for every attempt: built once from [`TransportOptions`] at build time.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    tls: TlsConnector,
}

impl Connector {
    pub(crate) fn build(
        options: &TransportOptions,
        tls_needed: bool,
    ) -> Result<Connector, ConfigError> {
        Ok(Connector {
            tls: TlsConnector::build(&options.tls, tls_needed)?,
        })
    }

    /// TCP, then TLS when the target asks for it.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        config: &ClientConfig,
    ) -> Result<Socket, Error> {
        let stream = connect_tcp(target, config).await?;
        if !target.tls {
            return Ok(MaybeTlsStream::Plain(stream));
        }
        self.tls.wrap(stream, &target.host).await
    }
}

/// TLS settings on the builder.
impl ClientBuilder {
    /// Trusts these extra root certificates (PEM, one or more) besides the default roots.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.transport.tls.extra_roots_pem.push(pem.into());
        self
    }

    /// Accepts any server certificate. Only for tests and local development: it turns off the
    /// protection TLS exists for.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.transport.tls.danger_accept_invalid_certs = accept;
        self
    }

    /// Uses a complete rustls configuration, replacing every other TLS setting.
    #[cfg(feature = "__rustls-tls")]
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.transport.tls.rustls_config = Some(config);
        self
    }
}

/// The TLS settings, turned into a connector once at build time and shared by every attempt.
#[derive(Clone, Default)]
pub(crate) struct TlsConnector {
    #[cfg(feature = "__rustls-tls")]
    rustls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

/// TLS options collected by the builder.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) extra_roots_pem: Vec<Vec<u8>>,
    pub(crate) danger_accept_invalid_certs: bool,
    #[cfg(feature = "__rustls-tls")]
    pub(crate) rustls_config: Option<Arc<rustls::ClientConfig>>,
}

impl TlsConnector {
    /// Builds the connector; fails on unusable settings (a PEM with no certificate).
    #[cfg_attr(not(feature = "__rustls-tls"), allow(unused_variables))]
    pub(crate) fn build(options: &TlsOptions, needed: bool) -> Result<TlsConnector, ConfigError> {
        #[cfg(feature = "__rustls-tls")]
        {
            if !needed {
                return Ok(TlsConnector { rustls: None });
            }
            let config = match &options.rustls_config {
                Some(custom) => custom.clone(),
                None => Arc::new(rustls_tls::client_config(options)?),
            };
            Ok(TlsConnector {
                rustls: Some(config),
            })
        }
        #[cfg(not(feature = "__rustls-tls"))]
        {
            if needed {
                return Err(ConfigError::TlsFeatureMissing);
            }
            Ok(TlsConnector {})
        }
    }

    #[cfg_attr(not(feature = "__rustls-tls"), allow(unused_variables))]
    async fn wrap(&self, stream: TcpStream, host: &str) -> Result<Socket, Error> {
        #[cfg(feature = "__rustls-tls")]
        {
            let config = self
                .rustls
                .clone()
                .ok_or(Error::Config(ConfigError::TlsFeatureMissing))?;
            rustls_tls::wrap(config, stream, host).await
        }
        #[cfg(not(feature = "__rustls-tls"))]
        {
            Err(Error::Config(ConfigError::TlsFeatureMissing))
        }
    }
}

#[cfg(feature = "__rustls-tls")]
mod rustls_tls {
    //! rustls with an explicitly chosen crypto provider (ring), so no process-level default is
    //! ever needed and the "no CryptoProvider installed" panic cannot happen.

    use std::sync::Arc;

    use rustls::{
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime},
        ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    };
    use tokio::net::TcpStream;
    use tokio_tungstenite::MaybeTlsStream;

    use super::{Socket, TlsOptions};
    use crate::{
        error::{ConfigError, TlsError},
        Error,
    };

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub(super) fn client_config(options: &TlsOptions) -> Result<ClientConfig, ConfigError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        let mut config = if options.danger_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(options)?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn roots(options: &TlsOptions) -> Result<RootCertStore, ConfigError> {
        let mut roots = RootCertStore::empty();
        #[cfg(feature = "rustls-tls-webpki-roots")]
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        #[cfg(feature = "rustls-tls-native-roots")]
        {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A broken system certificate should not make the others unusable.
                let _ = roots.add(cert);
            }
        }
        for pem in &options.extra_roots_pem {
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ConfigError::Tls(format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::Tls(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ConfigError::Tls(
                    "root certificate PEM holds no certificate".into(),
                ));
            }
        }
        Ok(roots)
    }

    pub(super) async fn wrap(
        config: Arc<ClientConfig>,
        stream: TcpStream,
        host: &str,
    ) -> Result<Socket, Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| Error::Tls(TlsError::InvalidServerName(host.to_owned())))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        match connector.connect(name, stream).await {
            Ok(tls) => Ok(MaybeTlsStream::Rustls(tls)),
            Err(e) => Err(classify(e)),
        }
    }

    /// Splits certificate failures (permanent) from other handshake failures (retried).
    fn classify(e: std::io::Error) -> Error {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let certificate = matches!(
            rustls_error,
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(
                        rustls::AlertDescription::BadCertificate
                            | rustls::AlertDescription::CertificateRequired
                            | rustls::AlertDescription::UnknownCA
                            | rustls::AlertDescription::CertificateUnknown
                    )
            )
        );
        if certificate {
            Error::Tls(TlsError::Certificate(Arc::new(e)))
        } else if rustls_error.is_some() {
            Error::Tls(TlsError::Handshake(Arc::new(e)))
        } else {
            Error::io(e)
        }
    }

    /// The verifier behind `danger_accept_invalid_certs`: signatures are still checked, the
    /// chain and name are not.
    #[derive(Debug)]
    struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCert {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_urls_are_typed() {
        let t = Target::from_uri(&"ws://example.com/feed".parse().unwrap()).unwrap();
        assert_eq!(
            t,
            Target {
                host: "example.com".into(),
                port: 80,
                tls: false
            }
        );
        let t = Target::from_uri(&"ws://[::1]:9000/".parse().unwrap()).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(matches!(
            Target::from_uri(&"http://example.com/".parse().unwrap()),
            Err(ConfigError::UnsupportedScheme(s)) if s == "http"
        ));
        assert!(matches!(
            Target::from_uri(&"/just/a/path".parse().unwrap()),
            Err(ConfigError::InvalidUrl(_))
        ));
    }
}
