//! The native-tls backend: the platform's TLS library (OpenSSL on Linux, Secure Transport on
//! macOS, SChannel on Windows), trusting the system store plus any extra roots.

use std::{io, sync::Arc};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::MaybeTlsStream;

use super::tls::{Identity, TlsOptions};
use crate::{
    error::{ConfigError, TlsError},
    Error,
};

/// Builds the connector from the builder's settings (or takes the custom one as given).
pub(super) fn connector(
    options: &TlsOptions,
) -> Result<tokio_native_tls::TlsConnector, ConfigError> {
    if let Some(custom) = &options.native_connector {
        return Ok(custom.clone().into());
    }
    let mut builder = native_tls::TlsConnector::builder();
    for pem in &options.extra_roots_pem {
        let certs = native_tls::Certificate::stack_from_pem(pem)
            .map_err(|e| ConfigError::tls_caused_by("bad root certificate pem", e))?;
        if certs.is_empty() {
            return Err(ConfigError::tls(
                "root certificate pem holds no certificate",
            ));
        }
        for cert in certs {
            builder.add_root_certificate(cert);
        }
    }
    if let Some(identity) = options.identities.first() {
        let identity = match identity {
            Identity::Pem { cert, key } => native_tls::Identity::from_pkcs8(cert, key),
            Identity::Pkcs12 { der, password } => native_tls::Identity::from_pkcs12(der, password),
        }
        .map_err(|e| ConfigError::tls_caused_by("client identity rejected", e))?;
        builder.identity(identity);
    }
    builder.danger_accept_invalid_certs(options.danger_accept_invalid_certs);
    builder.request_alpns(&["http/1.1"]);
    builder
        .build()
        .map(Into::into)
        .map_err(|e| ConfigError::tls_caused_by("native-tls connector rejected", e))
}

/// The TLS handshake over any stream (TCP, or a tunnel through a proxy).
pub(super) async fn wrap<S>(
    connector: &tokio_native_tls::TlsConnector,
    stream: S,
    host: &str,
) -> Result<MaybeTlsStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match connector.connect(host, stream).await {
        Ok(tls) => Ok(MaybeTlsStream::NativeTls(tls)),
        Err(e) => Err(classify(e)),
    }
}

/// Whether a native-tls failure is about a certificate.
///
/// native-tls exposes no typed verification result on any platform (OpenSSL's
/// `X509VerifyResult` and the alert codes stay inside its private error type), so its message is
/// the only evidence. Every backend names the certificate in it ("certificate verify failed",
/// "alert certificate required", "the certificate chain was issued by an authority that is not
/// trusted").
fn mentions_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("unknown ca") {
            return true;
        }
        next = e.source();
    }
    false
}

/// Splits certificate failures (permanent) from other handshake failures (retried).
fn classify(e: native_tls::Error) -> Error {
    let certificate = mentions_certificate(&e);
    let e = Arc::new(io::Error::other(e));
    if certificate {
        Error::Tls(TlsError::Certificate(e))
    } else {
        Error::Tls(TlsError::Handshake(e))
    }
}

/// A certificate alert read after the handshake (TLS 1.3 client authentication); as with
/// rustls, a `decrypt error` alert at that point is about our certificate chain.
pub(super) fn classify_late_io(e: io::Error) -> Result<TlsError, io::Error> {
    // Only OpenSSL's own errors count: a plain reset also lands here and must stay an I/O error.
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.source().is_some() || inner.to_string().contains("alert"));
    match e.get_ref() {
        Some(inner)
            if is_tls
                && (mentions_certificate(inner)
                    || inner.to_string().contains("alert decrypt error")) =>
        {
            Ok(TlsError::Certificate(Arc::new(e)))
        }
        _ => Err(e),
    }
}
