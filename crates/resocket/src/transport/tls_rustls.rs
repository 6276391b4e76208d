//! The rustls backend, with an explicitly chosen crypto provider (ring), so no process-level
//! default is ever needed and the "no CryptoProvider installed" panic cannot happen.

use std::{io, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::MaybeTlsStream;

use super::tls::{Identity, TlsOptions};
use crate::{
    error::{ConfigError, TlsError},
    Error,
};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client config from the builder's settings: roots (or the insecure verifier),
/// then the client identity, then ALPN.
pub(super) fn client_config(options: &TlsOptions) -> Result<ClientConfig, ConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::tls_caused_by("protocol versions rejected", e))?;
    let builder = if options.danger_accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
    } else {
        builder.with_root_certificates(roots(options)?)
    };
    let mut config = match options.identities.first() {
        None => builder.with_no_client_auth(),
        Some(Identity::Pem { cert, key }) => {
            let (chain, key) = identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::tls_caused_by("client identity rejected", e))?
        }
        #[cfg(feature = "native-tls")]
        Some(Identity::Pkcs12 { .. }) => {
            // `TlsOptions::check` refuses this combination before we get here.
            return Err(ConfigError::tls(
                "pkcs#12 identities need the native-tls backend",
            ));
        }
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
        let certs = certs(pem, "root certificate")?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ConfigError::tls_caused_by("root certificate rejected", e))?;
        }
    }
    Ok(roots)
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::tls_caused_by(format!("bad {what} pem"), e))?;
    if certs.is_empty() {
        return Err(ConfigError::tls(format!("{what} pem holds no certificate")));
    }
    Ok(certs)
}

fn identity(
    cert: &[u8],
    key: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let chain = certs(cert, "client certificate")?;
    let key = rustls_pemfile::private_key(&mut &key[..])
        .map_err(|e| ConfigError::tls_caused_by("bad client key pem", e))?
        .ok_or_else(|| ConfigError::tls("client key pem holds no private key"))?;
    Ok((chain, key))
}

/// The TLS handshake over any stream (TCP, or a tunnel through a proxy).
pub(super) async fn wrap<S>(
    config: Arc<ClientConfig>,
    stream: S,
    host: &str,
) -> Result<MaybeTlsStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Tls(TlsError::InvalidServerName(host.to_owned())))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector.connect(name, stream).await {
        Ok(tls) => Ok(MaybeTlsStream::Rustls(tls)),
        Err(e) => Err(classify(e)),
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether rustls reports a certificate problem: ours rejected by the server, or the server's
/// rejected by us.
fn is_certificate(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::CertificateUnknown
                    | rustls::AlertDescription::CertificateExpired
                    | rustls::AlertDescription::CertificateRevoked
                    | rustls::AlertDescription::UnsupportedCertificate
            )
    )
}

/// Splits certificate failures (permanent) from other handshake failures (retried).
fn classify(e: io::Error) -> Error {
    match rustls_error(&e) {
        Some(r) if is_certificate(r) => Error::Tls(TlsError::Certificate(Arc::new(e))),
        Some(_) => Error::Tls(TlsError::Handshake(Arc::new(e))),
        None => Error::io(e),
    }
}

/// A certificate alert read after the handshake (TLS 1.3 client authentication).
///
/// Once our handshake is done, what the server still checks is our certificate chain and our
/// signature over the handshake; a `decrypt_error` alert then means a signature in our chain
/// did not verify (an identity from another CA with the same name), so it counts as a
/// certificate rejection too.
pub(super) fn classify_late_io(e: io::Error) -> Result<TlsError, io::Error> {
    match rustls_error(&e) {
        Some(r)
            if is_certificate(r)
                || matches!(
                    r,
                    rustls::Error::AlertReceived(rustls::AlertDescription::DecryptError)
                ) =>
        {
            Ok(TlsError::Certificate(Arc::new(e)))
        }
        _ => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Combining real roots and identities is covered by `tests/tls.rs`, where rcgen is.
    #[test]
    fn a_pem_without_a_certificate_is_rejected() {
        let options = TlsOptions {
            extra_roots_pem: vec![b"not a pem".to_vec()],
            ..TlsOptions::default()
        };
        let error = client_config(&options).unwrap_err();
        assert!(
            error.to_string().contains("holds no certificate"),
            "{error}"
        );
    }

    #[test]
    fn alpn_is_http_1_1() {
        let config = client_config(&TlsOptions::default()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
