//! The hub serving `wss://` itself, with a certificate loaded from PEM.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::guard;
use resocket::hub::{HubClient, RoomEvent};
use resocket_hub::{server_config_from_pem, Hub, HubBuilder};
use resocket_testkit::TestPki;

/// Serves a hub built from `builder` over TLS on `127.0.0.1:0`, with a server certificate from a
/// fresh test PKI; returns the PKI (for its CA) and the address.
async fn serve_tls(builder: HubBuilder) -> (TestPki, SocketAddr) {
    let pki = TestPki::new();
    let (cert, key) = pki.server_identity_pem();
    let tls = server_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let hub = builder.build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hub.serve_tls_with_shutdown(listener, tls, std::future::pending()));
    (pki, addr)
}

#[tokio::test]
async fn publish_and_subscribe_over_wss() {
    guard(20, async {
        let (pki, addr) = serve_tls(
            Hub::builder()
                .allow_anonymous(true)
                .anonymous_rooms(&["*"], &["*"]),
        )
        .await;
        let port = addr.port();

        // A client that does not shake hands must not hold up the others.
        let _stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();

        let url = format!("wss://localhost:{port}/ws");
        let connect = |url: &str| {
            HubClient::builder(url)
                .configure(|b| b.add_root_certificate_pem(pki.ca_pem()))
                .spawn()
                .unwrap()
        };
        let (subscriber, publisher) = (connect(&url), connect(&url));
        let mut room = subscriber.subscribe("secure").await.unwrap();
        let offset = publisher.publish("secure", &"over tls").await.unwrap();
        let Some(RoomEvent::Message(msg)) =
            tokio::time::timeout(Duration::from_secs(10), room.recv())
                .await
                .unwrap()
        else {
            panic!("expected the message")
        };
        assert_eq!((msg.offset, msg.raw()), (offset, r#""over tls""#));
    })
    .await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_at_the_upgrade_deadline() {
    guard(20, async {
        let (_pki, addr) = serve_tls(
            Hub::builder()
                .allow_anonymous(true)
                .upgrade_timeout(Duration::from_millis(500)),
        )
        .await;
        // Connected, but never a ClientHello.
        let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
        common::read_to_close(&mut stalled).await;
    })
    .await;
}

#[test]
fn pem_without_a_certificate_or_key_is_refused() {
    let pki = TestPki::new();
    let (cert, key) = pki.server_identity_pem();
    assert!(server_config_from_pem(b"", key.as_bytes()).is_err());
    assert!(server_config_from_pem(cert.as_bytes(), b"").is_err());
    assert!(server_config_from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
}
