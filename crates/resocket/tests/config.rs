//! Bad settings are refused by `build()` with typed errors, before anything is attempted.

use resocket::{
    error::{ConfigError, ProxySettingError, TlsSettingError},
    Client, Error,
};
use tokio_tungstenite::tungstenite;

fn config_error(result: Result<(resocket::Client, resocket::Messages), Error>) -> ConfigError {
    match result {
        Err(Error::Config(e)) => e,
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(_) => panic!("expected a config error, got a client"),
    }
}

/// The configuration error of a client whose only proxy setting is `proxy`.
fn proxy_error(proxy: &str) -> ConfigError {
    config_error(
        Client::builder("ws://127.0.0.1:1/")
            .proxy(proxy)
            .proxy_from_env(false)
            .spawn(),
    )
}

#[tokio::test]
async fn http_scheme_is_refused() {
    assert!(matches!(
        config_error(Client::builder("http://example.com/").spawn()),
        ConfigError::UnsupportedScheme(s) if s == "http"
    ));
}

#[tokio::test]
async fn missing_host_is_refused() {
    assert!(matches!(
        config_error(Client::builder("ws://:9000/path").spawn()),
        ConfigError::MissingHost
    ));
}

#[tokio::test]
async fn unparsable_url_is_refused() {
    assert!(matches!(
        config_error(Client::builder("not a url").spawn()),
        ConfigError::InvalidUrl(_)
    ));
}

/// Every config error that another library caused keeps that library's error, typed.
#[tokio::test]
async fn url_proxy_and_tls_errors_keep_their_typed_source() {
    let error = config_error(Client::builder("not a url").spawn());
    let ConfigError::InvalidUrl(parser) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(
            **parser,
            tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_)
        ),
        "{parser:?}"
    );
    assert!(std::error::Error::source(&error).is_some());

    let error = proxy_error("socks4://proxy:1080");
    assert!(
        matches!(
            &error,
            ConfigError::Proxy {
                variable: None,
                source: ProxySettingError::UnsupportedScheme(s),
            } if s == "socks4"
        ),
        "{error:?}"
    );
    let error = proxy_error("http://pro xy:8080");
    assert!(
        matches!(
            &error,
            ConfigError::Proxy {
                source: ProxySettingError::InvalidUrl(_),
                ..
            }
        ),
        "{error:?}"
    );

    let broken = b"-----BEGIN CERTIFICATE-----\n%%% not base64 %%%\n-----END CERTIFICATE-----\n";
    let error = config_error(
        Client::builder("wss://127.0.0.1:1/")
            .add_root_certificate_pem(broken.to_vec())
            .spawn(),
    );
    assert!(
        matches!(
            &error,
            ConfigError::Tls {
                source: Some(TlsSettingError::Pem(_)),
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn zero_capacities_are_refused() {
    assert!(matches!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .configure(|c| c.queue_capacity = 0)
                .spawn()
        ),
        ConfigError::Zero("queue_capacity")
    ));
    assert!(matches!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .configure(|c| c.inbound_capacity = 0)
                .spawn()
        ),
        ConfigError::Zero("inbound_capacity")
    ));
}

#[tokio::test]
async fn invalid_header_is_refused() {
    assert!(matches!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .header("bad header", "x")
                .spawn()
        ),
        ConfigError::InvalidHeader(_)
    ));
}

#[tokio::test]
async fn presets_differ_from_the_default() {
    let fast = resocket::ClientConfig::fast_reconnect();
    let stable = resocket::ClientConfig::stable_connection();
    assert!(fast.ping_interval < stable.ping_interval);
    assert!(fast.connect_timeout < stable.connect_timeout);
}

#[tokio::test]
async fn a_control_frame_as_heartbeat_message_is_refused() {
    use resocket::Message;
    for message in [
        Message::Close(None),
        Message::Ping(Default::default()),
        Message::Pong(Default::default()),
    ] {
        let built = Client::builder("ws://127.0.0.1:9/")
            .configure(|c| c.heartbeat_message = Some(message.clone()))
            .spawn();
        assert!(
            matches!(
                config_error(built),
                ConfigError::NotData("heartbeat_message")
            ),
            "{message:?}"
        );
    }
    let text = Client::builder("ws://127.0.0.1:9/")
        .configure(|c| c.heartbeat_message = Some(Message::text(r#"{"op":"ping"}"#)))
        .spawn();
    assert!(text.is_ok(), "a text heartbeat is fine");
}
