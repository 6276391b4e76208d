//! Negotiating permessage-deflate in the upgrade (RFC 7692, sections 5 and 7.1): the client's
//! offer and its check of the answer, and the server's choice among offers.
//!
//! The two roles treat a bad header differently, as the RFC asks: a client fails the upgrade on
//! a response it did not ask for or cannot honour, while a server skips an offer it cannot take
//! and answers the next one, or answers without the extension.

use http::HeaderValue;

use super::{
    header::{self, Element},
    Negotiated, WindowBits, EXTENSION_NAME,
};

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// What a client offers. The default offer is `permessage-deflate; client_max_window_bits`, as
/// browsers and Python `websockets` send it: compression both ways, any window the server asks
/// of the client, the server free to use 32 KiB windows and to keep its context.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientDeflateConfig {
    /// Offer permessage-deflate at all. Default: `true`.
    pub enabled: bool,
    /// Ask the server to reset its compressor after every message
    /// (`server_no_context_takeover`): less memory on both ends, less compression. A server
    /// that does not agree does not get the extension. Default: `false`.
    pub server_no_context_takeover: bool,
    /// Reset our compressor after every message, and say so (`client_no_context_takeover`).
    /// The server may also ask for it in its answer, and is then obeyed. Default: `false`.
    pub client_no_context_takeover: bool,
    /// The largest window the server may compress with (`server_max_window_bits=N`): it
    /// saves the server memory and costs compression. (Our inflater keeps a 32 KiB window
    /// whatever this says.) `None` does not offer the parameter, and the server may use 15.
    /// Default: `None`.
    pub server_max_window_bits: Option<WindowBits>,
    /// The largest window we compress with (`client_max_window_bits=N`). `None` offers the
    /// parameter without a value: any window the server asks for, 15 if it asks for none.
    /// Default: `None`.
    pub client_max_window_bits: Option<WindowBits>,
    /// The zlib compression level of outgoing messages, 0 (stored) to 9 (smallest, slowest);
    /// higher values are taken as 9. Default: 6.
    pub level: u8,
}

impl Default for ClientDeflateConfig {
    fn default() -> ClientDeflateConfig {
        ClientDeflateConfig {
            enabled: true,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            level: 6,
        }
    }
}

/// What a server accepts. With the defaults it accepts any valid offer on the client's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerDeflateConfig {
    /// Accept permessage-deflate at all. Default: `true`.
    pub enabled: bool,
    /// Reset our compressor after every message and tell the client
    /// (`server_no_context_takeover`) even when it did not ask: every message then compresses
    /// the same way on every connection with the same window, so a message sent to many
    /// clients can be compressed once. Default: `false`.
    pub server_no_context_takeover: bool,
    /// Require the client to reset its compressor after every message
    /// (`client_no_context_takeover`). Default: `false`.
    pub client_no_context_takeover: bool,
    /// The largest window we compress with; a smaller one the client asks for wins. `None`
    /// uses 15, or what the client asks for. Default: `None`.
    pub server_max_window_bits: Option<WindowBits>,
    /// The largest window the client may compress with (our inflater keeps a 32 KiB window
    /// whatever this says). It can only be asked of a client that offered
    /// `client_max_window_bits`; one that did not compresses with up to 15 bits. Default:
    /// `None` (the client's choice).
    pub client_max_window_bits: Option<WindowBits>,
    /// Compress with exactly `server_max_window_bits` (15 when `None`): an offer that asks for
    /// a smaller window is skipped, like an offer with an unknown parameter, instead of being
    /// answered with the smaller window. With `server_no_context_takeover`, every connection
    /// then takes the server's messages the same way, so a message sent to many clients is
    /// compressed once for all of them. Default: `false`.
    pub fixed_server_window: bool,
    /// The zlib compression level of outgoing messages, 0 (stored) to 9 (smallest, slowest);
    /// higher values are taken as 9. Default: 6.
    pub level: u8,
}

impl Default for ServerDeflateConfig {
    fn default() -> ServerDeflateConfig {
        ServerDeflateConfig {
            enabled: true,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            fixed_server_window: false,
            level: 6,
        }
    }
}

/// Why a client fails the upgrade on the server's `Sec-WebSocket-Extensions` (RFC 7692,
/// section 5: a response the client cannot accept fails the WebSocket connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The header does not follow the `Sec-WebSocket-Extensions` grammar.
    #[error("malformed sec-websocket-extensions header")]
    Malformed,
    /// The server accepted an extension the client did not offer.
    #[error("server accepted extension {0:?}, which was not offered")]
    NotOffered(String),
    /// permessage-deflate was accepted twice.
    #[error("server accepted permessage-deflate more than once")]
    DuplicateExtension,
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice (section 7.1: that makes the offer or response invalid).
    #[error("permessage-deflate parameter {0} given twice")]
    DuplicateParameter(&'static str),
    /// A value outside what the parameter allows: window bits other than `8` to `15` without
    /// leading zeroes, or a value on a parameter that takes none.
    #[error("invalid value {value:?} for permessage-deflate parameter {parameter}")]
    InvalidValue {
        /// The parameter's name.
        parameter: &'static str,
        /// The value as sent (empty for a parameter sent without one that needs one).
        value: String,
    },
    /// The answer lacks a parameter the offer needs answered: `server_no_context_takeover` or
    /// `server_max_window_bits` when the client offered it.
    #[error("permessage-deflate response lacks {0}")]
    MissingParameter(&'static str),
    /// The answer sets a window larger than the client offered.
    #[error(
        "permessage-deflate response sets {parameter}={answered}, above the offered {offered}"
    )]
    WindowTooLarge {
        /// The parameter's name.
        parameter: &'static str,
        /// The largest window the client offered.
        offered: WindowBits,
        /// The window in the answer.
        answered: WindowBits,
    },
}

/// The value of the client's `Sec-WebSocket-Extensions` request header, or `None` when `cfg`
/// is disabled (send no header).
pub fn offer(cfg: &ClientDeflateConfig) -> Option<HeaderValue> {
    if !cfg.enabled {
        return None;
    }
    let mut value = String::from(EXTENSION_NAME);
    if cfg.server_no_context_takeover {
        push_param(&mut value, SERVER_NO_CONTEXT_TAKEOVER, None);
    }
    if cfg.client_no_context_takeover {
        push_param(&mut value, CLIENT_NO_CONTEXT_TAKEOVER, None);
    }
    if let Some(bits) = cfg.server_max_window_bits {
        push_param(&mut value, SERVER_MAX_WINDOW_BITS, Some(bits));
    }
    push_param(
        &mut value,
        CLIENT_MAX_WINDOW_BITS,
        cfg.client_max_window_bits,
    );
    Some(HeaderValue::try_from(value).expect("tokens and digits are valid header bytes"))
}

/// Checks the server's `Sec-WebSocket-Extensions` response headers (all of them, in order)
/// against the offer `cfg` made: `Ok(None)` when the server did not accept permessage-deflate
/// (the connection goes on uncompressed), `Ok(Some(_))` with what applies when it did.
///
/// # Errors
///
/// Any [`NegotiationError`]: an extension that was not offered, permessage-deflate twice, a
/// malformed, unknown, duplicate or out-of-range parameter, or an answer that does not honour
/// the offer. RFC 7692 requires the client to fail the connection on each.
pub fn accept_response<'a, I>(
    cfg: &ClientDeflateConfig,
    headers: I,
) -> Result<Option<Negotiated>, NegotiationError>
where
    I: IntoIterator<Item = &'a HeaderValue>,
{
    let mut accepted = None;
    for value in headers {
        let value = value.to_str().map_err(|_| NegotiationError::Malformed)?;
        for element in header::elements(value) {
            let element = element.map_err(|_| NegotiationError::Malformed)?;
            if !cfg.enabled || !element.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                return Err(NegotiationError::NotOffered(element.name.to_owned()));
            }
            if accepted.is_some() {
                return Err(NegotiationError::DuplicateExtension);
            }
            accepted = Some(Params::parse(&element)?);
        }
    }
    accepted.map(|params| params.honour(cfg)).transpose()
}

/// The server's choice among the client's `Sec-WebSocket-Extensions` request headers (all of
/// them, in order): the first permessage-deflate offer it can accept, what applies, and the
/// value of the response header. `None` when `cfg` is disabled or no offer is acceptable; an
/// offer with an unknown, duplicate or invalid parameter is skipped, never an error (RFC 7692,
/// section 5).
pub fn answer<'a, I>(cfg: &ServerDeflateConfig, offers: I) -> Option<(Negotiated, HeaderValue)>
where
    I: IntoIterator<Item = &'a HeaderValue>,
{
    if !cfg.enabled {
        return None;
    }
    offers
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(header::elements)
        .filter_map(Result::ok)
        .filter(|element| element.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .filter_map(|element| Params::parse(&element).ok())
        .find(|offer| offer.fits(cfg))
        .map(|offer| offer.answer(cfg))
}

/// The permessage-deflate parameters of one offer or response, each checked on its own.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<WindowBits>,
    /// `Some(None)`: present without a value, which only an offer may do.
    client_max_window_bits: Option<Option<WindowBits>>,
}

impl Params {
    /// Validity as section 7.1 defines it: known names, each at most once, flags without a
    /// value, window bits `8` to `15` written without leading zeroes.
    fn parse(element: &Element<'_>) -> Result<Params, NegotiationError> {
        let mut params = Params::default();
        let mut seen = [false; 4];
        for param in &element.params {
            let (index, name) = [
                SERVER_NO_CONTEXT_TAKEOVER,
                CLIENT_NO_CONTEXT_TAKEOVER,
                SERVER_MAX_WINDOW_BITS,
                CLIENT_MAX_WINDOW_BITS,
            ]
            .into_iter()
            .enumerate()
            .find(|(_, known)| param.name.eq_ignore_ascii_case(known))
            .ok_or_else(|| NegotiationError::UnknownParameter(param.name.to_owned()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(NegotiationError::DuplicateParameter(name));
            }
            let value = param.value.as_deref();
            let invalid = || NegotiationError::InvalidValue {
                parameter: name,
                value: value.unwrap_or_default().to_owned(),
            };
            match index {
                0 | 1 => {
                    if value.is_some() {
                        return Err(invalid());
                    }
                    if index == 0 {
                        params.server_no_context_takeover = true;
                    } else {
                        params.client_no_context_takeover = true;
                    }
                }
                2 => {
                    let bits = value.and_then(parse_window_bits).ok_or_else(invalid)?;
                    params.server_max_window_bits = Some(bits);
                }
                _ => {
                    let bits = value
                        .map(|value| parse_window_bits(value).ok_or_else(invalid))
                        .transpose()?;
                    params.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok(params)
    }

    /// The client's side: what this response means for the offer `cfg` made.
    fn honour(self, cfg: &ClientDeflateConfig) -> Result<Negotiated, NegotiationError> {
        if cfg.server_no_context_takeover && !self.server_no_context_takeover {
            return Err(NegotiationError::MissingParameter(
                SERVER_NO_CONTEXT_TAKEOVER,
            ));
        }
        let server_max_window_bits = match (cfg.server_max_window_bits, self.server_max_window_bits)
        {
            (None, answered) => answered.unwrap_or_default(),
            (Some(_), None) => {
                return Err(NegotiationError::MissingParameter(SERVER_MAX_WINDOW_BITS))
            }
            (Some(offered), Some(answered)) if answered > offered => {
                return Err(NegotiationError::WindowTooLarge {
                    parameter: SERVER_MAX_WINDOW_BITS,
                    offered,
                    answered,
                })
            }
            (Some(_), Some(answered)) => answered,
        };
        // Always offered, so an answer may carry it, but only with a value.
        let client_max_window_bits = match self.client_max_window_bits {
            None => cfg.client_max_window_bits.unwrap_or_default(),
            Some(None) => {
                return Err(NegotiationError::InvalidValue {
                    parameter: CLIENT_MAX_WINDOW_BITS,
                    value: String::new(),
                })
            }
            Some(Some(answered)) => match cfg.client_max_window_bits {
                Some(offered) if answered > offered => {
                    return Err(NegotiationError::WindowTooLarge {
                        parameter: CLIENT_MAX_WINDOW_BITS,
                        offered,
                        answered,
                    })
                }
                _ => answered,
            },
        };
        Ok(Negotiated {
            // Section 7.1.1.1: the server may reset its context even when not asked.
            server_no_context_takeover: self.server_no_context_takeover,
            // Section 7.1.1.2: the server may ask this of the client, which then must.
            client_no_context_takeover: cfg.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }

    /// Whether the server can take this (valid) offer: with a fixed window, the offer must
    /// allow that window.
    fn fits(&self, cfg: &ServerDeflateConfig) -> bool {
        let ours = cfg.server_max_window_bits.unwrap_or_default();
        !cfg.fixed_server_window
            || self
                .server_max_window_bits
                .is_none_or(|asked| asked >= ours)
    }

    /// The server's side: what it agrees to for this (valid) offer, and the response header.
    fn answer(self, cfg: &ServerDeflateConfig) -> (Negotiated, HeaderValue) {
        let server_max_window_bits = match (self.server_max_window_bits, cfg.server_max_window_bits)
        {
            (Some(asked), Some(ours)) => Some(asked.min(ours)),
            (asked, ours) => asked.or(ours),
        };
        // Section 7.1.2.2: without the parameter in the offer, the client may not support a
        // smaller window, so nothing can be asked of it.
        let client_max_window_bits = match (self.client_max_window_bits, cfg.client_max_window_bits)
        {
            (None, _) | (Some(None), None) => None,
            (Some(Some(offered)), Some(ours)) => Some(offered.min(ours)),
            (Some(offered), ours) => offered.or(ours),
        };
        let negotiated = Negotiated {
            server_no_context_takeover: self.server_no_context_takeover
                || cfg.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover
                || cfg.client_no_context_takeover,
            server_max_window_bits: server_max_window_bits.unwrap_or_default(),
            client_max_window_bits: client_max_window_bits.unwrap_or_default(),
        };
        let mut value = String::from(EXTENSION_NAME);
        if negotiated.server_no_context_takeover {
            push_param(&mut value, SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if negotiated.client_no_context_takeover {
            push_param(&mut value, CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if let Some(bits) = server_max_window_bits {
            push_param(&mut value, SERVER_MAX_WINDOW_BITS, Some(bits));
        }
        if let Some(bits) = client_max_window_bits {
            push_param(&mut value, CLIENT_MAX_WINDOW_BITS, Some(bits));
        }
        let value = HeaderValue::try_from(value).expect("tokens and digits are valid header bytes");
        (negotiated, value)
    }
}

/// `8` to `15`; section 7.1.2 rules out leading zeroes, signs and anything else.
fn parse_window_bits(value: &str) -> Option<WindowBits> {
    match value.as_bytes() {
        [digit @ b'8'..=b'9'] => WindowBits::new(digit - b'0'),
        [b'1', digit @ b'0'..=b'5'] => WindowBits::new(10 + digit - b'0'),
        _ => None,
    }
}

fn push_param(header: &mut String, name: &str, value: Option<WindowBits>) {
    header.push_str("; ");
    header.push_str(name);
    if let Some(bits) = value {
        header.push('=');
        header.push_str(&bits.to_string());
    }
}

#[cfg(test)]
mod tests;
