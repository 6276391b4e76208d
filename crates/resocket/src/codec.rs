//! The frame layer: `resocket-proto`'s codec, in the client role, with the client's limits,
//! and the permessage-deflate offer and its answer from the upgrade.

pub(crate) use resocket_proto::{Incoming, WsStream};

use http::{header::SEC_WEBSOCKET_EXTENSIONS, HeaderMap};
use resocket_proto::deflate::{self, ClientDeflateConfig};

use crate::{config::ClientConfig, error::Error};

impl From<&ClientConfig> for resocket_proto::Config {
    fn from(config: &ClientConfig) -> resocket_proto::Config {
        resocket_proto::Config {
            max_message_size: config.max_message_size,
            max_frame_size: config.max_frame_size,
            read_buffer_size: config.read_buffer_size,
            write_buffer_size: config.write_buffer_size,
            compression_level: config.compression.level,
            ..resocket_proto::Config::client()
        }
    }
}

/// Adds the permessage-deflate offer to an upgrade request, unless compression is off or the
/// caller set `Sec-WebSocket-Extensions` already (then the caller's header stands alone).
pub(crate) fn add_offer(config: &ClientConfig, headers: &mut HeaderMap) {
    if headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) {
        return;
    }
    if let Some(value) = deflate::offer(&config.compression) {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
    }
}

/// What the request as sent offered: the configured offer when it carries exactly that, and
/// nothing otherwise (compression off, or a `Sec-WebSocket-Extensions` header of the caller's).
pub(crate) fn offered(config: &ClientConfig, request: &HeaderMap) -> ClientDeflateConfig {
    let mut offered = config.compression.clone();
    offered.enabled = offered.enabled
        && deflate::offer(&config.compression).as_ref() == request.get(SEC_WEBSOCKET_EXTENSIONS)
        && request.get_all(SEC_WEBSOCKET_EXTENSIONS).iter().count() == 1;
    offered
}

/// The codec's settings for a connection whose upgrade was answered with `response`'s
/// headers, after `offered`.
///
/// # Errors
///
/// [`Error::Negotiation`] when the server's `Sec-WebSocket-Extensions` is not an answer the
/// offer allows (RFC 7692, section 5: the client fails the connection).
pub(crate) fn codec_config(
    config: &ClientConfig,
    offered: &ClientDeflateConfig,
    response: &HeaderMap,
) -> Result<resocket_proto::Config, Error> {
    let compression = deflate::accept_response(offered, response.get_all(SEC_WEBSOCKET_EXTENSIONS))
        .map_err(Error::Negotiation)?;
    Ok(resocket_proto::Config {
        compression,
        ..config.into()
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_default_config_offers_permessage_deflate() {
        let config = ClientConfig::default();
        let mut headers = HeaderMap::new();
        add_offer(&config, &mut headers);
        assert_eq!(
            headers[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; client_max_window_bits"
        );
        assert!(offered(&config, &headers).enabled);
    }

    #[test]
    fn a_callers_extensions_header_replaces_the_offer_and_any_answer_fails() {
        let config = ClientConfig::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("x-custom"),
        );
        add_offer(&config, &mut headers);
        assert_eq!(headers[SEC_WEBSOCKET_EXTENSIONS], "x-custom");
        let offered = offered(&config, &headers);
        assert!(!offered.enabled);
        let mut response = HeaderMap::new();
        let plain = codec_config(&config, &offered, &response).unwrap();
        assert_eq!(plain.compression, None);
        response.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate"),
        );
        let err = codec_config(&config, &offered, &response).unwrap_err();
        assert!(matches!(err, Error::Negotiation(_)), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[test]
    fn compression_off_sends_no_offer() {
        let mut config = ClientConfig::default();
        config.compression.enabled = false;
        let mut headers = HeaderMap::new();
        add_offer(&config, &mut headers);
        assert!(headers.is_empty());
        assert!(!offered(&config, &headers).enabled);
    }

    #[test]
    fn an_accepted_offer_reaches_the_codec() {
        let config = ClientConfig::default();
        let mut response = HeaderMap::new();
        response.insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; server_no_context_takeover"),
        );
        let codec = codec_config(&config, &config.compression, &response).unwrap();
        let negotiated = codec.compression.expect("negotiated");
        assert!(negotiated.server_no_context_takeover);
        assert_eq!(codec.compression_level, 6);
    }
}
