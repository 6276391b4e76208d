//! Serving `wss://` directly: server settings from PEM files. The handshake itself runs in
//! each socket's own task, under the upgrade deadline (see `accept.rs`).

use std::sync::Arc;

use rustls::ServerConfig;

use crate::{Error, Result};

/// Server TLS settings from a PEM certificate chain and a PEM private key, with the ring
/// provider chosen explicitly and ALPN `http/1.1` (WebSockets upgrade over HTTP/1.1).
///
/// # Errors
/// [`Error::Tls`] when the PEM holds no certificate or no usable key.
pub fn server_config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("certificate PEM holds no certificate".into()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| Error::Tls(format!("key PEM: {e}")))?
        .ok_or_else(|| Error::Tls("key PEM holds no private key".into()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
