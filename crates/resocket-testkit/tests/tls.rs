//! `wss://` servers from `TestPki`, reached through `tokio_rustls::TlsConnector`.

mod common;

use std::sync::Arc;

use common::{next_data, within};
use futures_util::SinkExt;
use resocket_testkit::{Behavior, Message, TestPki, TestServer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::WebSocketStream;

fn client_builder(
    pki: &TestPki,
) -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).unwrap();
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
}

/// TLS to `server`, then the WebSocket upgrade; any failure is returned as a tungstenite error.
async fn connect_wss(
    server: &TestServer,
    config: ClientConfig,
) -> Result<WebSocketStream<TlsStream<TcpStream>>, tungstenite::Error> {
    let tcp = TcpStream::connect(server.addr()).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (ws, _response) = tokio_tungstenite::client_async(server.url(), tls).await?;
    Ok(ws)
}

#[tokio::test]
async fn tls_echo_with_the_pki_ca() {
    within(async {
        let pki = TestPki::new();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let mut server = TestServer::start_tls(Behavior::Echo, pki.server_config()).await;
        assert!(server.url().starts_with("wss://localhost:"));

        let mut ws = connect_wss(&server, client_builder(&pki).with_no_client_auth())
            .await
            .unwrap();
        ws.send(Message::text("secret")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("secret"));
        assert_eq!(server.next_message().await, (0, Message::text("secret")));
    })
    .await;
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused() {
    within(async {
        let pki = TestPki::new();
        let server =
            TestServer::start_tls(Behavior::Echo, TestPki::untrusted_server_config()).await;
        let result = connect_wss(&server, client_builder(&pki).with_no_client_auth()).await;
        let Err(tungstenite::Error::Io(error)) = result else {
            panic!("expected an I/O error, got {:?}", result.map(|_| ()));
        };
        let tls_error = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(tls_error, Some(rustls::Error::InvalidCertificate(_))),
            "got {error:?}"
        );
        assert_eq!(server.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn mtls_accepts_a_client_signed_by_the_ca_only() {
    within(async {
        let pki = TestPki::new();
        let mut server =
            TestServer::start_tls(Behavior::Echo, pki.server_config_requiring_client_auth()).await;

        let (cert_pem, key_pem) = pki.client_identity("alice");
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = client_builder(&pki)
            .with_client_auth_cert(certs, key)
            .unwrap();
        let mut ws = connect_wss(&server, config).await.unwrap();
        ws.send(Message::text("it is me")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("it is me"));
        assert_eq!(server.wait_connected().await.0, 0);

        let anonymous = client_builder(&pki).with_no_client_auth();
        assert!(connect_wss(&server, anonymous).await.is_err());
        assert_eq!(server.connections(), 1);
    })
    .await;
}
