//! A private PKI made with rcgen at test time: a CA, server configs and client identities.

use std::fmt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names a server leaf is valid for.
const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A fresh certificate authority, and certificates signed by it.
///
/// Every `TestPki` is a different CA, so certificates of one are untrusted by another.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    /// Create a fresh CA.
    ///
    /// # Panics
    /// If key generation fails, which the ring backend does not do in practice.
    #[allow(clippy::new_without_default)] // every call makes a new CA: `default()` would hide that
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
        params
            .distinguished_name
            .push(DnType::CommonName, "resocket-testkit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        TestPki { ca }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A rustls server config with a leaf for `localhost` and `127.0.0.1` signed by the CA.
    ///
    /// ALPN is `http/1.1`; the crypto provider is ring, never a process-level default.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let (chain, key) = self.server_leaf();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the leaf matches its key");
        finish(config)
    }

    /// Like [`server_config`](TestPki::server_config), but requiring a client certificate
    /// signed by this CA (mTLS).
    pub fn server_config_requiring_client_auth(&self) -> Arc<ServerConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()).expect("the CA certificate parses");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("one trust anchor is enough");
        let (chain, key) = self.server_leaf();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("the leaf matches its key");
        finish(config)
    }

    /// A server identity for `localhost` and `127.0.0.1` signed by the CA, as PEM files would
    /// hold it: (certificate chain PEM, leaf first; private key PEM). For servers that load
    /// their certificate from files, such as `resocket serve --tls-cert`.
    pub fn server_identity_pem(&self) -> (String, String) {
        let key = KeyPair::generate().expect("generate a server key");
        let cert = leaf_params()
            .signed_by(&key, &self.ca)
            .expect("sign the server certificate");
        (
            format!("{}{}", cert.pem(), self.ca_pem()),
            key.serialize_pem(),
        )
    }

    /// A client identity signed by the CA: (certificate PEM, private key PEM).
    ///
    /// `name` becomes the common name, and the DNS subject alternative name when it is a valid
    /// DNS name.
    pub fn client_identity(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
        if let Ok(dns) = name.to_owned().try_into() {
            params.subject_alt_names.push(rcgen::SanType::DnsName(dns));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("generate a client key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign the client certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A server config with a self-signed leaf for `localhost` that no [`TestPki`] trusts, for
    /// bad-certificate tests.
    pub fn untrusted_server_config() -> Arc<ServerConfig> {
        let mut params = leaf_params();
        params.is_ca = IsCa::NoCa;
        let key = KeyPair::generate().expect("generate a server key");
        let cert = params.self_signed(&key).expect("self-sign the leaf");
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("the leaf matches its key");
        finish(config)
    }

    /// A fresh server leaf signed by the CA, with the chain a server presents.
    fn server_leaf(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let params = leaf_params();
        let key = KeyPair::generate().expect("generate a server key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign the server certificate");
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.ca_der()], key)
    }
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

/// Parameters of a server leaf for `localhost` and `127.0.0.1`.
fn leaf_params() -> CertificateParams {
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("valid server names");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

/// The ring provider, chosen explicitly so tests never depend on a process-level default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn finish(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
