//! `wss://` on every compiled TLS backend: private CAs, mutual TLS, the insecure mode, custom
//! configs and the server-name override; and the clear error of a build without TLS.

use resocket::{Client, ClientBuilder, Message, TlsBackend};
use resocket_testkit::{within, Behavior, TestPki, TestServer};

/// The backends this build has; every test runs on each.
fn backends() -> Vec<TlsBackend> {
    let mut all = Vec::new();
    if cfg!(feature = "__rustls-tls") {
        all.push(TlsBackend::Rustls);
    }
    if cfg!(feature = "native-tls") {
        all.push(TlsBackend::NativeTls);
    }
    all
}

/// A client that gives up after the first failure, so a test sees the first error as is.
fn builder(url: String, backend: TlsBackend) -> ClientBuilder {
    Client::builder(url)
        .tls_backend(backend)
        .proxy_from_env(false)
}

async fn round_trip(builder: ClientBuilder, what: &str) {
    let (client, mut messages) = builder.spawn().unwrap();
    client.send(Message::text(what)).await.unwrap();
    assert_eq!(messages.recv().await.unwrap(), Message::text(what));
    client.close().await.ok();
}

#[tokio::test]
async fn wss_with_a_custom_ca_round_trips() {
    within(30, "wss with a private ca", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        for backend in backends() {
            let builder = builder(server.url(), backend).add_root_certificate_pem(pki.ca_pem());
            round_trip(builder, &format!("over {backend:?}")).await;
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_ca_is_a_certificate_error_that_is_not_retried() {
    within(30, "bad cert", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        for backend in backends() {
            let (client, _messages) = builder(server.url(), backend).spawn().unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(error.is_certificate(), "{backend:?}: {error:?}");
            assert!(!error.is_retryable(), "{backend:?}");
        }
        // The default policy gave up at once: one TLS handshake per backend, no retries.
        assert_eq!(server.connections(), 0, "no upgrade got through");
    })
    .await;
}

#[tokio::test]
async fn danger_accept_invalid_certs_connects() {
    within(30, "insecure", async {
        let server =
            TestServer::start_tls(Behavior::Echo, TestPki::untrusted_server_config()).await;
        for backend in backends() {
            let builder = builder(server.url(), backend).danger_accept_invalid_certs(true);
            round_trip(builder, "x").await;
        }
    })
    .await;
}

#[tokio::test]
async fn client_certificate_with_extra_ca_connects_to_an_mtls_server() {
    within(30, "mtls with identity", async {
        let pki = TestPki::new();
        let server =
            TestServer::start_tls(Behavior::Echo, pki.server_config_requiring_client_auth()).await;
        let (cert, key) = pki.client_identity("client.test");
        for backend in backends() {
            // Roots and identity together: neither may replace the other.
            let builder = builder(server.url(), backend)
                .client_identity_pem(cert.clone(), key.clone())
                .add_root_certificate_pem(pki.ca_pem());
            round_trip(builder, "mutual").await;
        }
    })
    .await;
}

#[tokio::test]
async fn mtls_server_refuses_a_client_without_identity() {
    within(30, "mtls without identity", async {
        let pki = TestPki::new();
        let server =
            TestServer::start_tls(Behavior::Echo, pki.server_config_requiring_client_auth()).await;
        for backend in backends() {
            let (client, _messages) = builder(server.url(), backend)
                .add_root_certificate_pem(pki.ca_pem())
                .spawn()
                .unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(error.is_certificate(), "{backend:?}: {error:?}");
            assert!(!error.is_retryable());
            assert!(!client.is_connected());
        }
        assert_eq!(server.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn an_identity_signed_by_another_ca_is_refused() {
    within(30, "mtls with a foreign identity", async {
        let pki = TestPki::new();
        let server =
            TestServer::start_tls(Behavior::Echo, pki.server_config_requiring_client_auth()).await;
        let (cert, key) = TestPki::new().client_identity("stranger.test");
        for backend in backends() {
            let (client, _messages) = builder(server.url(), backend)
                .add_root_certificate_pem(pki.ca_pem())
                .client_identity_pem(cert.clone(), key.clone())
                .spawn()
                .unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(error.is_certificate(), "{backend:?}: {error:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_server_name_override_is_what_gets_checked() {
    within(30, "sni override", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let by_ip = format!("wss://127.0.0.1:{}/", server.addr().port());
        for backend in backends() {
            // The leaf is valid for `localhost`: overriding the name to it works...
            let builder = builder(by_ip.clone(), backend)
                .add_root_certificate_pem(pki.ca_pem())
                .tls_server_name("localhost");
            round_trip(builder, "named").await;
            // ...and to a name the leaf lacks fails, although the URL's IP is in the leaf.
            let (client, _messages) = builder_for_wrong_name(&by_ip, backend, &pki)
                .spawn()
                .unwrap();
            let error = client.closed().await.unwrap_err();
            assert!(error.is_certificate(), "{backend:?}: {error:?}");
        }
    })
    .await;
}

fn builder_for_wrong_name(url: &str, backend: TlsBackend, pki: &TestPki) -> ClientBuilder {
    builder(url.to_owned(), backend)
        .add_root_certificate_pem(pki.ca_pem())
        .tls_server_name("not-in-the-leaf.test")
}

#[tokio::test]
async fn two_identities_are_refused_by_connect() {
    within(10, "two identities", async {
        let pki = TestPki::new();
        let (cert, key) = pki.client_identity("a");
        let result = Client::builder("wss://localhost:1/")
            .client_identity_pem(cert.clone(), key.clone())
            .client_identity_pem(cert, key)
            .spawn();
        let error = result.expect_err("two identities must be refused");
        assert!(
            error.to_string().contains("invalid configuration"),
            "{error}"
        );
    })
    .await;
}

#[cfg(feature = "__rustls-tls")]
#[tokio::test]
async fn a_custom_rustls_config_is_used_as_given() {
    use std::sync::Arc;

    within(30, "custom rustls config", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let mut roots = resocket::rustls::RootCertStore::empty();
        roots.add(pki.ca_der()).unwrap();
        let config = resocket::rustls::ClientConfig::builder_with_provider(Arc::new(
            resocket::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let config = Arc::new(config);
        round_trip(
            Client::builder(server.url()).rustls_config(config.clone()),
            "custom",
        )
        .await;

        // Extra roots next to a whole config would be ignored: refused instead.
        let refused = Client::builder(server.url())
            .rustls_config(config)
            .add_root_certificate_pem(pki.ca_pem())
            .spawn();
        assert!(refused.is_err());
    })
    .await;
}

#[cfg(feature = "native-tls")]
#[tokio::test]
async fn a_custom_native_tls_connector_is_used_as_given() {
    within(30, "custom native-tls connector", async {
        let pki = TestPki::new();
        let server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        let ca = resocket::native_tls::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
        let connector = resocket::native_tls::TlsConnector::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        round_trip(
            Client::builder(server.url()).native_tls_connector(connector),
            "native custom",
        )
        .await;
    })
    .await;
}

#[cfg(not(any(feature = "__rustls-tls", feature = "native-tls")))]
#[tokio::test]
async fn wss_without_a_tls_feature_is_refused_naming_the_feature() {
    let error = Client::builder("wss://localhost:1/")
        .spawn()
        .expect_err("no tls compiled in");
    let text = error.to_string();
    assert!(text.contains("rustls-tls-webpki-roots"), "{text}");
    assert!(text.contains("native-tls"), "{text}");
}
