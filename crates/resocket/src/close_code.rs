//! `CloseCode`: a WebSocket close code the client may send, checked when it is made.
//!
//! RFC 6455 (7.4) lets an endpoint send 1000–1003 and 1007–1014 (assigned by the RFC and the
//! IANA registry), 3000–3999 (registered with IANA by libraries and frameworks) and 4000–4999
//! (private use). 1004, 1005, 1006 and 1015 only ever report a condition and are never sent;
//! everything else is unassigned. A [`CloseCode`] can only hold a code that may be sent, so
//! [`Client::close_with`](crate::Client::close_with) never fails on its code.

use std::fmt;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCode;

use crate::error::CloseFrameError;

/// A close code the client may send (RFC 6455, 7.4).
///
/// The codes the RFC and the IANA registry assign are constants ([`CloseCode::NORMAL`],
/// [`CloseCode::GOING_AWAY`], …). Others come from [`CloseCode::new`] (any sendable code),
/// [`CloseCode::registered`] (3000–3999) or [`CloseCode::private`] (4000–4999), which reject
/// the rest.
///
/// ```
/// use resocket::CloseCode;
///
/// assert_eq!(u16::from(CloseCode::NORMAL), 1000);
/// assert_eq!(CloseCode::private(4001).map(u16::from), Ok(4001));
/// assert!(CloseCode::new(1006).is_err()); // reserved: reports an abnormal close, never sent
/// assert!(CloseCode::private(3000).is_err()); // registered range, not private
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (shutting down, leaving a page).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the peer sent a kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: a message's payload was inconsistent with its type (invalid UTF-8 in Text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the server did not negotiate an extension the client needs.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: an unexpected condition prevented fulfilling the request.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (overloaded).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy got an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Any code an endpoint may send: 1000–1003, 1007–1014 or 3000–4999.
    ///
    /// # Errors
    /// [`CloseFrameError::Code`] for a reserved (1004–1006, 1015) or unassigned code.
    pub const fn new(code: u16) -> Result<CloseCode, CloseFrameError> {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(CloseCode(code)),
            _ => Err(CloseFrameError::Code(code)),
        }
    }

    /// A code from the range libraries and frameworks register with IANA: 3000–3999.
    ///
    /// # Errors
    /// [`CloseFrameError::Code`] for a code outside 3000–3999.
    pub const fn registered(code: u16) -> Result<CloseCode, CloseFrameError> {
        match code {
            3000..=3999 => Ok(CloseCode(code)),
            _ => Err(CloseFrameError::Code(code)),
        }
    }

    /// A code from the private-use range, whose meaning client and server agree on: 4000–4999.
    ///
    /// # Errors
    /// [`CloseFrameError::Code`] for a code outside 4000–4999.
    pub const fn private(code: u16) -> Result<CloseCode, CloseFrameError> {
        match code {
            4000..=4999 => Ok(CloseCode(code)),
            _ => Err(CloseFrameError::Code(code)),
        }
    }

    /// The code as a number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl Default for CloseCode {
    /// [`CloseCode::NORMAL`].
    fn default() -> Self {
        CloseCode::NORMAL
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = CloseFrameError;

    /// As [`CloseCode::new`].
    fn try_from(code: u16) -> Result<CloseCode, CloseFrameError> {
        CloseCode::new(code)
    }
}

/// The code as it goes into a [`CloseFrame`](crate::CloseFrame).
impl From<CloseCode> for WireCode {
    fn from(code: CloseCode) -> WireCode {
        WireCode::from(code.0)
    }
}

/// Compares with the code of a received [`CloseFrame`](crate::CloseFrame).
impl PartialEq<WireCode> for CloseCode {
    fn eq(&self, other: &WireCode) -> bool {
        self.0 == u16::from(*other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_an_endpoint_may_send_can_be_made() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999,
        ] {
            assert_eq!(CloseCode::new(code).map(u16::from), Ok(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(
                CloseCode::new(code),
                Err(CloseFrameError::Code(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn registered_and_private_codes_stay_in_their_ranges() {
        assert!(CloseCode::registered(3000).is_ok());
        assert!(CloseCode::registered(3999).is_ok());
        for code in [1000, 2999, 4000, 4999] {
            assert_eq!(
                CloseCode::registered(code),
                Err(CloseFrameError::Code(code))
            );
        }
        assert!(CloseCode::private(4000).is_ok());
        assert!(CloseCode::private(4999).is_ok());
        for code in [1000, 3999, 5000] {
            assert_eq!(CloseCode::private(code), Err(CloseFrameError::Code(code)));
        }
    }

    #[test]
    fn the_named_codes_are_the_rfc_numbers() {
        let named = [
            (CloseCode::NORMAL, 1000),
            (CloseCode::GOING_AWAY, 1001),
            (CloseCode::PROTOCOL_ERROR, 1002),
            (CloseCode::UNSUPPORTED_DATA, 1003),
            (CloseCode::INVALID_PAYLOAD, 1007),
            (CloseCode::POLICY_VIOLATION, 1008),
            (CloseCode::MESSAGE_TOO_BIG, 1009),
            (CloseCode::MANDATORY_EXTENSION, 1010),
            (CloseCode::INTERNAL_ERROR, 1011),
            (CloseCode::SERVICE_RESTART, 1012),
            (CloseCode::TRY_AGAIN_LATER, 1013),
            (CloseCode::BAD_GATEWAY, 1014),
        ];
        for (code, number) in named {
            assert_eq!(CloseCode::new(number), Ok(code));
            assert_eq!(code, WireCode::from(number));
        }
    }
}
