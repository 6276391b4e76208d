//! TLS settings on the builder, the choice of backend, and the connector built from them.
//!
//! Every setting is stored on its own and combined only in `build()`, so adding a CA never
//! drops a client identity (or the reverse), and a combination that cannot work (a custom
//! rustls config plus extra roots, two identities) is an error instead of a silent override.

use std::{fmt, io};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::MaybeTlsStream;

#[cfg(feature = "__rustls-tls")]
use std::sync::Arc;

use crate::{
    error::{ConfigError, TlsError},
    ClientBuilder, Error,
};

/// Which TLS library secures `wss://` connections (and `https://` proxies).
///
/// The default is [`TlsBackend::Rustls`] when a rustls feature is enabled, and
/// [`TlsBackend::NativeTls`] when only `native-tls` is. Choosing a backend that is not compiled
/// in makes `build()` fail with [`ConfigError::Tls`](crate::error::ConfigError::Tls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsBackend {
    /// rustls with the ring crypto provider (features `rustls-tls-webpki-roots`,
    /// `rustls-tls-native-roots`).
    Rustls,
    /// The platform's TLS library through native-tls (features `native-tls`,
    /// `native-tls-vendored`).
    NativeTls,
}

impl TlsBackend {
    /// The backend used when none is chosen: rustls first, then native-tls.
    fn compiled_default() -> Option<TlsBackend> {
        if cfg!(feature = "__rustls-tls") {
            Some(TlsBackend::Rustls)
        } else if cfg!(feature = "native-tls") {
            Some(TlsBackend::NativeTls)
        } else {
            None
        }
    }

    fn is_compiled(self) -> bool {
        match self {
            TlsBackend::Rustls => cfg!(feature = "__rustls-tls"),
            TlsBackend::NativeTls => cfg!(feature = "native-tls"),
        }
    }

    fn feature(self) -> &'static str {
        match self {
            TlsBackend::Rustls => "rustls-tls-webpki-roots` or `rustls-tls-native-roots",
            TlsBackend::NativeTls => "native-tls",
        }
    }
}

/// A client certificate with its key, as given to the builder.
#[derive(Clone)]
// A build without TLS still accepts the setting (the builder API does not change with
// features) but never reads it.
#[cfg_attr(
    not(any(feature = "__rustls-tls", feature = "native-tls")),
    allow(dead_code)
)]
pub(crate) enum Identity {
    /// Certificate chain PEM (leaf first) and PKCS#8, PKCS#1 or SEC1 private key PEM.
    Pem { cert: Vec<u8>, key: Vec<u8> },
    /// A PKCS#12 archive (DER) and its password; native-tls only.
    #[cfg(feature = "native-tls")]
    Pkcs12 { der: Vec<u8>, password: String },
}

/// TLS options collected by the builder.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) extra_roots_pem: Vec<Vec<u8>>,
    /// More than one is a configuration error, reported by `build()`.
    pub(crate) identities: Vec<Identity>,
    pub(crate) danger_accept_invalid_certs: bool,
    pub(crate) server_name: Option<String>,
    pub(crate) backend: Option<TlsBackend>,
    #[cfg(feature = "__rustls-tls")]
    pub(crate) rustls_config: Option<Arc<rustls::ClientConfig>>,
    #[cfg(feature = "native-tls")]
    pub(crate) native_connector: Option<native_tls::TlsConnector>,
}

impl TlsOptions {
    fn has_custom_rustls(&self) -> bool {
        #[cfg(feature = "__rustls-tls")]
        return self.rustls_config.is_some();
        #[cfg(not(feature = "__rustls-tls"))]
        return false;
    }

    fn has_custom_native(&self) -> bool {
        #[cfg(feature = "native-tls")]
        return self.native_connector.is_some();
        #[cfg(not(feature = "native-tls"))]
        return false;
    }

    fn has_pkcs12(&self) -> bool {
        #[cfg(feature = "native-tls")]
        return self
            .identities
            .iter()
            .any(|i| matches!(i, Identity::Pkcs12 { .. }));
        #[cfg(not(feature = "native-tls"))]
        return false;
    }

    /// The backend these options ask for: an explicit choice, else the one a custom connector
    /// belongs to, else the compiled default.
    fn chosen_backend(&self) -> Option<TlsBackend> {
        self.backend.or_else(|| {
            if self.has_custom_native() || (self.has_pkcs12() && !self.has_custom_rustls()) {
                Some(TlsBackend::NativeTls)
            } else if self.has_custom_rustls() {
                Some(TlsBackend::Rustls)
            } else {
                TlsBackend::compiled_default()
            }
        })
    }

    /// Rejects contradictions whatever the backend: two identities, two custom connectors.
    fn check_common(&self) -> Result<(), ConfigError> {
        if self.identities.len() > 1 {
            return Err(ConfigError::tls("more than one client identity was set"));
        }
        if self.has_custom_rustls() && self.has_custom_native() {
            return Err(ConfigError::tls(
                "both a rustls config and a native-tls connector were set",
            ));
        }
        Ok(())
    }

    /// Rejects combinations where one setting would silently replace another.
    fn check(&self, backend: TlsBackend) -> Result<(), ConfigError> {
        let reject = |msg: &str| Err(ConfigError::tls(msg));
        self.check_common()?;
        let custom = match backend {
            TlsBackend::Rustls if self.has_custom_native() => {
                return reject("a native-tls connector was set but the rustls backend was chosen")
            }
            TlsBackend::NativeTls if self.has_custom_rustls() => {
                return reject("a rustls config was set but the native-tls backend was chosen")
            }
            TlsBackend::Rustls if self.has_pkcs12() => {
                return reject("pkcs#12 identities need the native-tls backend; give rustls the certificate and key as pem")
            }
            TlsBackend::Rustls => self.has_custom_rustls(),
            TlsBackend::NativeTls => self.has_custom_native(),
        };
        let other_settings = !self.extra_roots_pem.is_empty()
            || !self.identities.is_empty()
            || self.danger_accept_invalid_certs;
        if custom && other_settings {
            return reject("a custom tls config replaces roots, identities and danger_accept_invalid_certs: set them on the config itself");
        }
        Ok(())
    }
}

/// TLS settings on the builder.
impl ClientBuilder {
    /// Trusts these extra root certificates (PEM, one or more) besides the default roots.
    ///
    /// May be called several times; every call adds. The roots are also trusted for an
    /// `https://` proxy.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.transport.tls.extra_roots_pem.push(pem.into());
        self
    }

    /// Presents this client certificate when the server asks for one (mutual TLS).
    ///
    /// `cert_pem` holds the certificate chain, leaf first; `key_pem` the private key (PKCS#8,
    /// or PKCS#1/SEC1 with rustls; native-tls wants PKCS#8). Works with both backends and with
    /// any roots. Setting a second identity (PEM or PKCS#12) makes `build()` fail rather than
    /// silently replace the first.
    pub fn client_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.transport.tls.identities.push(Identity::Pem {
            cert: cert_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// Presents the client certificate in this PKCS#12 archive (DER) when the server asks for
    /// one. native-tls only: choosing it selects the native-tls backend unless
    /// [`tls_backend`](ClientBuilder::tls_backend) says otherwise, in which case `build()` fails.
    #[cfg(feature = "native-tls")]
    pub fn client_identity_pkcs12(
        mut self,
        der: impl Into<Vec<u8>>,
        password: impl Into<String>,
    ) -> Self {
        self.transport.tls.identities.push(Identity::Pkcs12 {
            der: der.into(),
            password: password.into(),
        });
        self
    }

    /// Accepts any server certificate. Only for tests and local development: it turns off the
    /// protection TLS exists for. Default: `false`.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.transport.tls.danger_accept_invalid_certs = accept;
        self
    }

    /// Sends this name as SNI and checks the server certificate against it, instead of the
    /// URL's host. For servers reached by IP address or through an alias. Not used for an
    /// `https://` proxy, which is checked against its own host name. Default: the URL's host.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.transport.tls.server_name = Some(name.into());
        self
    }

    /// Chooses the TLS library. Default: rustls when compiled in, else native-tls.
    pub fn tls_backend(mut self, backend: TlsBackend) -> Self {
        self.transport.tls.backend = Some(backend);
        self
    }

    /// Uses a complete rustls configuration (and the rustls backend).
    ///
    /// The config replaces roots, identities and `danger_accept_invalid_certs`, so combining it
    /// with any of those makes `build()` fail. Its ALPN list is used as given.
    #[cfg(feature = "__rustls-tls")]
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.transport.tls.rustls_config = Some(config);
        self
    }

    /// Uses a complete native-tls connector (and the native-tls backend).
    ///
    /// Like [`rustls_config`](ClientBuilder::rustls_config), it replaces roots, identities and
    /// `danger_accept_invalid_certs`; combining them makes `build()` fail.
    #[cfg(feature = "native-tls")]
    pub fn native_tls_connector(mut self, connector: native_tls::TlsConnector) -> Self {
        self.transport.tls.native_connector = Some(connector);
        self
    }
}

/// The TLS settings, turned into a connector once at build time and shared by every attempt.
#[derive(Clone, Default)]
pub(crate) enum TlsConnector {
    /// No TLS is needed (a `ws://` target without an `https://` proxy).
    #[default]
    Off,
    #[cfg(feature = "__rustls-tls")]
    Rustls(Arc<rustls::ClientConfig>),
    #[cfg(feature = "native-tls")]
    Native(tokio_native_tls::TlsConnector),
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsConnector::Off => "TlsConnector::Off",
            #[cfg(feature = "__rustls-tls")]
            TlsConnector::Rustls(_) => "TlsConnector::Rustls",
            #[cfg(feature = "native-tls")]
            TlsConnector::Native(_) => "TlsConnector::Native",
        })
    }
}

impl TlsConnector {
    /// Builds the connector; fails on unusable settings (a PEM with no certificate, settings
    /// that contradict each other, a backend that is not compiled in).
    pub(crate) fn build(options: &TlsOptions, needed: bool) -> Result<TlsConnector, ConfigError> {
        let Some(backend) = options.chosen_backend() else {
            options.check_common()?;
            return if needed {
                Err(ConfigError::TlsFeatureMissing)
            } else {
                Ok(TlsConnector::Off)
            };
        };
        options.check(backend)?;
        if !needed {
            return Ok(TlsConnector::Off);
        }
        if !backend.is_compiled() {
            return Err(ConfigError::tls(format!(
                "the {backend:?} backend is not compiled in: enable the `{}` feature",
                backend.feature()
            )));
        }
        match backend {
            #[cfg(feature = "__rustls-tls")]
            TlsBackend::Rustls => Ok(TlsConnector::Rustls(match &options.rustls_config {
                Some(custom) => custom.clone(),
                None => Arc::new(super::tls_rustls::client_config(options)?),
            })),
            #[cfg(feature = "native-tls")]
            TlsBackend::NativeTls => {
                Ok(TlsConnector::Native(super::tls_native::connector(options)?))
            }
            #[allow(unreachable_patterns)] // only reachable when a backend is not compiled in
            _ => Err(ConfigError::TlsFeatureMissing),
        }
    }

    /// Runs the TLS handshake over `stream`, checking the certificate against `name`.
    #[cfg_attr(
        not(any(feature = "__rustls-tls", feature = "native-tls")),
        allow(unused_variables)
    )]
    pub(crate) async fn wrap<S>(&self, stream: S, name: &str) -> Result<MaybeTlsStream<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match self {
            TlsConnector::Off => Err(Error::Config(ConfigError::TlsFeatureMissing)),
            #[cfg(feature = "__rustls-tls")]
            TlsConnector::Rustls(config) => {
                super::tls_rustls::wrap(config.clone(), stream, name).await
            }
            #[cfg(feature = "native-tls")]
            TlsConnector::Native(connector) => {
                super::tls_native::wrap(connector, stream, name).await
            }
        }
    }
}

/// Recognises an I/O error read after the handshake that is really the server rejecting our
/// certificate (see [`upgrade_error`](super::upgrade_error)); hands anything else back.
pub(crate) fn classify_late_io(e: io::Error) -> Result<TlsError, io::Error> {
    #[cfg(feature = "__rustls-tls")]
    let e = match super::tls_rustls::classify_late_io(e) {
        Ok(certificate) => return Ok(certificate),
        Err(other) => other,
    };
    #[cfg(feature = "native-tls")]
    let e = match super::tls_native::classify_late_io(e) {
        Ok(certificate) => return Ok(certificate),
        Err(other) => other,
    };
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_identity() -> Identity {
        Identity::Pem {
            cert: b"cert".to_vec(),
            key: b"key".to_vec(),
        }
    }

    #[test]
    fn two_identities_are_rejected_not_overwritten() {
        let options = TlsOptions {
            identities: vec![pem_identity(), pem_identity()],
            ..TlsOptions::default()
        };
        let error = TlsConnector::build(&options, false).unwrap_err();
        assert!(error.to_string().contains("more than one client identity"));
    }

    #[test]
    fn a_ws_only_build_needs_no_backend() {
        assert!(matches!(
            TlsConnector::build(&TlsOptions::default(), false),
            Ok(TlsConnector::Off)
        ));
    }

    #[cfg(feature = "__rustls-tls")]
    #[test]
    fn a_custom_rustls_config_does_not_swallow_extra_roots() {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let options = TlsOptions {
            rustls_config: Some(Arc::new(config)),
            extra_roots_pem: vec![b"pem".to_vec()],
            ..TlsOptions::default()
        };
        let error = TlsConnector::build(&options, true).unwrap_err();
        assert!(error.to_string().contains("custom tls config"), "{error}");
    }

    #[test]
    fn a_backend_that_is_not_compiled_in_names_its_feature() {
        for backend in [TlsBackend::Rustls, TlsBackend::NativeTls] {
            if backend.is_compiled() {
                continue;
            }
            let options = TlsOptions {
                backend: Some(backend),
                ..TlsOptions::default()
            };
            let error = TlsConnector::build(&options, true).unwrap_err();
            assert!(error.to_string().contains("feature"), "{error}");
        }
    }
}
