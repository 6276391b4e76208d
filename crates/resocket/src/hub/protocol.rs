//! Frame types of the hub protocol (`resocket.v1`).
//!
//! Every frame is one JSON object in one WebSocket text frame, with a `type` field naming it.
//! [`ClientFrame`] is what a client sends, [`ServerFrame`] what the hub sends. Both are generic
//! over the type of the opaque `data` payload: the default is [`serde_json::Value`], while the
//! hub and [`HubClient`](super::HubClient) keep `data` as raw JSON, so a payload is never
//! re-encoded and any JSON the hub accepted (however deep, whatever its numbers) passes through.
//! The full specification, with an example of every frame, is `crates/resocket-hub/PROTOCOL.md`.

use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol that a client asks for and the hub selects.
pub const SUBPROTOCOL: &str = "resocket.v1";

/// A frame sent by a client to the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientFrame<D = serde_json::Value> {
    /// Authenticates the connection when no token came with the upgrade request.
    Auth {
        /// An HS256 JWT; absent for anonymous access.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The client id used for publish dedupe by anonymous clients (tokens use `sub`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
        /// A secret the anonymous client chose (16 to 256 bytes) and keeps for its lifetime. The
        /// hub derives the dedupe id from `client` and `secret` together, so only the holder of
        /// the secret resumes that id; without one, `client` is scoped to the connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// Subscribes to a room, optionally replaying what was missed after offset `since`.
    Subscribe {
        /// The room name.
        room: String,
        /// The last offset this client has seen; the hub replays every later one it still has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// The epoch `since` belongs to; a different current epoch means nothing is recoverable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Stops a subscription.
    Unsubscribe {
        /// The room name.
        room: String,
    },
    /// Publishes `data` to a room. The hub answers with [`ServerFrame::Ack`].
    Publish {
        /// The room name.
        room: String,
        /// The client's message id; a repeated id from the same client is applied once.
        id: String,
        /// Any JSON value, delivered as is.
        data: D,
    },
    /// Replaces the connection's token before it expires. The hub answers with
    /// [`ServerFrame::Refreshed`]; a token for another `sub` is refused with
    /// [`ErrorCode::Forbidden`], an invalid one with [`ErrorCode::Unauthorized`] and Close 1008.
    Refresh {
        /// The fresh HS256 JWT, for the same `sub` as the connection's token.
        token: String,
    },
}

/// A frame sent by the hub to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerFrame<D = serde_json::Value> {
    /// Confirms a subscription. Replayed messages, if any, follow it immediately.
    Subscribed {
        /// The room name.
        room: String,
        /// The room's epoch; it changes whenever the room's history was lost.
        epoch: u64,
        /// The room's newest offset when the subscription started (0 before any message).
        offset: u64,
        /// Whether every message after the requested `since` is replayed. `true` without `since`.
        recovered: bool,
        /// The first offset replayed, when a replay was asked for. When `recovered` is `false`,
        /// this is the oldest offset the hub still had: offsets `since+1 .. first-1` are lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first: Option<u64>,
    },
    /// A message published to a room this client subscribes to.
    Message {
        /// The room name.
        room: String,
        /// The room's epoch.
        epoch: u64,
        /// The message's offset in the room, one more than the previous message's.
        offset: u64,
        /// The published JSON value, unchanged.
        data: D,
    },
    /// Acknowledges a publish.
    Ack {
        /// The publish frame's `id`.
        id: String,
        /// The offset the message got (the original offset for a repeated id).
        offset: u64,
    },
    /// Reports a problem with a frame or the connection.
    Error {
        /// A stable machine-readable code, see [`ErrorCode`].
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
        /// The `id` of the offending publish, or the room of the offending (un)subscribe.
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    /// Confirms a `refresh`: the connection now holds the new token's permissions and expiry.
    Refreshed {
        /// The new token's expiry, in seconds since the Unix epoch.
        exp: u64,
    },
}

/// The `code` of an `error` frame.
///
/// New codes may be added to the protocol: a code this client does not know reads as
/// [`ErrorCode::Unknown`] (the frame still parses, so the publish or subscribe it refers to is
/// still answered), and [`HubError::Refused`](super::HubError::Refused) keeps the code as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not a JSON object).
    InvalidJson,
    /// A text frame is not valid UTF-8; the hub closes with 1007 after this frame.
    InvalidUtf8,
    /// The frame's `type` is not one of the client frames.
    UnknownType,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type or an invalid value.
    InvalidField,
    /// The protocol is JSON text frames; binary frames are refused.
    BinaryUnsupported,
    /// The token is missing, malformed, badly signed, revoked or expired.
    Unauthorized,
    /// The token does not allow this room for this operation.
    Forbidden,
    /// An `auth` frame came after the connection was already authenticated.
    AlreadyAuthenticated,
    /// An `unsubscribe` named a room the connection does not subscribe to.
    NotSubscribed,
    /// The connection reached its subscription limit.
    TooManySubscriptions,
    /// The hub reached its room limit; the room does not exist yet and cannot be created.
    TooManyRooms,
    /// The connection's token was revoked; the hub closes with 1008 after this frame.
    Revoked,
    /// The client already holds as many rooms it created as the hub allows one client.
    RoomQuota,
    /// The connection's token expired and no `refresh` replaced it in time; the hub closes with
    /// 1008 after this frame.
    TokenExpired,
    /// The frame is larger than the hub's maximum message size (the hub closes with 1009).
    TooBig,
    /// The connection sent frames faster than its rate limit (the hub closes with 4008).
    RateLimited,
    /// The hub is shutting down.
    ShuttingDown,
    /// The hub's storage (Redis) cannot be reached: the publish or subscribe did not happen,
    /// or its outcome is unknown. Retry with the same message id; it is applied once.
    Unavailable,
    /// A code this client does not know, from a newer hub. Serialized as `"unknown"`; the hub
    /// never sends it.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code this client knows, that is all but [`ErrorCode::Unknown`].
    const KNOWN: [ErrorCode; 19] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidUtf8,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
        ErrorCode::BinaryUnsupported,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::NotSubscribed,
        ErrorCode::TooManySubscriptions,
        ErrorCode::TooManyRooms,
        ErrorCode::Revoked,
        ErrorCode::RoomQuota,
        ErrorCode::TokenExpired,
        ErrorCode::TooBig,
        ErrorCode::RateLimited,
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
    ];

    /// The code for its wire name; [`ErrorCode::Unknown`] for a name this client does not know.
    pub fn from_wire(code: &str) -> ErrorCode {
        // Error frames are rare: a scan beats keeping a second table in step with `as_str`.
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or(ErrorCode::Unknown)
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Revoked => "revoked",
            ErrorCode::RoomQuota => "room_quota",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TooBig => "too_big",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// WebSocket close codes the hub uses, beside the standard 1000.
pub mod close_code {
    /// The hub is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame was not valid UTF-8 (RFC 6455).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Authentication failed or timed out, the token was revoked or expired, or the `Origin` is
    /// not allowed.
    pub const POLICY: u16 = 1008;
    /// A frame exceeded the maximum message size.
    pub const TOO_BIG: u16 = 1009;
    /// The hub is at its connection cap; retry later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The connection answered no ping within the ping timeout.
    pub const PING_TIMEOUT: u16 = 4000;
    /// The connection exceeded its rate limit.
    pub const RATE_LIMITED: u16 = 4008;
    /// The connection did not read fast enough: its outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4009;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_wire_names() {
        let f: ClientFrame = ClientFrame::Subscribe {
            room: "a".into(),
            since: Some(3),
            epoch: None,
        };
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(s, r#"{"type":"subscribe","room":"a","since":3}"#);
        assert_eq!(serde_json::from_str::<ClientFrame>(&s).unwrap(), f);

        let e: ServerFrame = ServerFrame::Error {
            code: ErrorCode::Forbidden,
            message: "no".into(),
            reference: Some("r".into()),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"type":"error","code":"forbidden","message":"no","ref":"r"}"#
        );
        assert_eq!(serde_json::from_str::<ServerFrame>(&s).unwrap(), e);

        let a: ClientFrame = ClientFrame::Auth {
            token: None,
            client: Some("c".into()),
            secret: Some("s".into()),
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(s, r#"{"type":"auth","client":"c","secret":"s"}"#);
        assert_eq!(serde_json::from_str::<ClientFrame>(&s).unwrap(), a);
        let r: ClientFrame = ClientFrame::Refresh { token: "t".into() };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"type":"refresh","token":"t"}"#);
        assert_eq!(serde_json::from_str::<ClientFrame>(&s).unwrap(), r);
        let r: ServerFrame = ServerFrame::Refreshed { exp: 17 };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"type":"refreshed","exp":17}"#);
        assert_eq!(serde_json::from_str::<ServerFrame>(&s).unwrap(), r);
    }

    #[test]
    fn every_known_code_reads_back_from_its_wire_name() {
        for code in ErrorCode::KNOWN {
            let wire = format!("\"{}\"", code.as_str());
            assert_eq!(serde_json::to_string(&code).unwrap(), wire);
            assert_eq!(serde_json::from_str::<ErrorCode>(&wire).unwrap(), code);
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
        }
    }

    #[test]
    fn an_error_frame_with_an_unknown_code_still_parses() {
        let text = r#"{"type":"error","code":"quota_exceeded_v9","message":"no","ref":"p-1"}"#;
        let frame: ServerFrame = serde_json::from_str(text).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Error {
                code: ErrorCode::Unknown,
                message: "no".into(),
                reference: Some("p-1".into()),
            }
        );
        assert_eq!(
            ErrorCode::from_wire("quota_exceeded_v9"),
            ErrorCode::Unknown
        );
    }

    #[test]
    fn error_code_strings_match_serde() {
        for c in [
            ErrorCode::InvalidJson,
            ErrorCode::TooManySubscriptions,
            ErrorCode::RoomQuota,
            ErrorCode::TokenExpired,
            ErrorCode::ShuttingDown,
            ErrorCode::Unavailable,
        ] {
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }
}
