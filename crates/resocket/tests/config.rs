//! Bad settings are refused by `build()` with typed errors, before anything is attempted.

use resocket::{error::ConfigError, Client, Error};

fn config_error(result: Result<(resocket::Client, resocket::Messages), Error>) -> ConfigError {
    match result {
        Err(Error::Config(e)) => e,
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(_) => panic!("expected a config error, got a client"),
    }
}

#[tokio::test]
async fn http_scheme_is_refused() {
    assert_eq!(
        config_error(Client::builder("http://example.com/").connect()),
        ConfigError::UnsupportedScheme("http".into())
    );
}

#[tokio::test]
async fn missing_host_is_refused() {
    assert_eq!(
        config_error(Client::builder("ws://:9000/path").connect()),
        ConfigError::MissingHost
    );
}

#[tokio::test]
async fn unparsable_url_is_refused() {
    assert!(matches!(
        config_error(Client::builder("not a url").connect()),
        ConfigError::InvalidUrl(_)
    ));
}

#[tokio::test]
async fn zero_capacities_are_refused() {
    assert_eq!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .configure(|c| c.queue_capacity = 0)
                .connect()
        ),
        ConfigError::Zero("queue_capacity")
    );
    assert_eq!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .configure(|c| c.inbound_capacity = 0)
                .connect()
        ),
        ConfigError::Zero("inbound_capacity")
    );
}

#[tokio::test]
async fn invalid_header_is_refused() {
    assert!(matches!(
        config_error(
            Client::builder("ws://127.0.0.1:1/")
                .header("bad header", "x")
                .connect()
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
