//! Parsing of client frames, with an error code for every way a frame can be malformed.
//!
//! The typed [`ClientFrame`](resocket::hub::protocol::ClientFrame) cannot carry a borrowed
//! `RawValue` (serde buffers internally tagged enums, which loses the raw text), and its serde
//! errors do not say *which* rule a frame broke. So the hub reads a flat struct of optional
//! fields and checks the shape per `type` itself.

use resocket::hub::protocol::ErrorCode;
use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The longest room name, in bytes.
pub(crate) const MAX_ROOM_LEN: usize = 128;
/// The longest publish id, in bytes.
pub(crate) const MAX_ID_LEN: usize = 128;
/// The longest anonymous client name, in bytes.
pub(crate) const MAX_CLIENT_LEN: usize = 128;
/// The accepted lengths of an anonymous client's secret, in bytes: short enough to bound what
/// the hub hashes, long enough that it cannot be guessed through the dedupe replies.
pub(crate) const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// A well-formed client frame, borrowing from the received text.
#[derive(Debug)]
pub(crate) enum Inbound<'a> {
    Auth {
        token: Option<String>,
        client: Option<String>,
        secret: Option<String>,
    },
    Subscribe {
        room: String,
        since: Option<u64>,
        epoch: Option<u64>,
    },
    Unsubscribe {
        room: String,
    },
    Publish {
        room: String,
        id: String,
        data: &'a RawValue,
    },
    Refresh {
        token: String,
    },
}

/// Why a frame was refused: the code and message of the `error` frame, and its `ref`.
#[derive(Debug, PartialEq)]
pub(crate) struct FrameError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) reference: Option<String>,
}

impl FrameError {
    fn new(code: ErrorCode, message: impl Into<String>, reference: Option<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            reference,
        }
    }
}

/// `data` that may be any JSON value, `null` included (an `Option` would read `null` as absent).
#[derive(Debug, Default)]
struct Present<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Present<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|v| Present(Some(v)))
    }
}

#[derive(serde::Deserialize)]
struct Flat<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    id: Option<String>,
    since: Option<u64>,
    epoch: Option<u64>,
    token: Option<String>,
    client: Option<String>,
    secret: Option<String>,
    #[serde(borrow, default)]
    data: Present<'a>,
}

/// Parses one text frame.
pub(crate) fn parse(text: &str) -> Result<Inbound<'_>, FrameError> {
    let flat: Flat<'_> = serde_json::from_str(text).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidField,
            _ => ErrorCode::InvalidJson,
        };
        // A non-object at top level is a data error to serde, but to a client it is bad JSON.
        let code = if code == ErrorCode::InvalidField && !text.trim_start().starts_with('{') {
            ErrorCode::InvalidJson
        } else {
            code
        };
        FrameError::new(code, e.to_string(), None)
    })?;
    let reference = flat.id.clone().or_else(|| flat.room.clone());
    let missing = |field: &str| {
        FrameError::new(
            ErrorCode::MissingField,
            format!("missing field `{field}`"),
            reference.clone(),
        )
    };
    let kind = flat.kind.as_deref().ok_or_else(|| missing("type"))?;
    let frame = match kind {
        "auth" => Inbound::Auth {
            token: flat.token,
            client: flat.client,
            secret: flat.secret,
        },
        "subscribe" => Inbound::Subscribe {
            room: flat.room.ok_or_else(|| missing("room"))?,
            since: flat.since,
            epoch: flat.epoch,
        },
        "unsubscribe" => Inbound::Unsubscribe {
            room: flat.room.ok_or_else(|| missing("room"))?,
        },
        "publish" => Inbound::Publish {
            room: flat.room.ok_or_else(|| missing("room"))?,
            id: flat.id.ok_or_else(|| missing("id"))?,
            data: flat.data.0.ok_or_else(|| missing("data"))?,
        },
        "refresh" => Inbound::Refresh {
            token: flat.token.ok_or_else(|| missing("token"))?,
        },
        other => {
            return Err(FrameError::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown frame type `{}`",
                    other.chars().take(32).collect::<String>()
                ),
                reference,
            ))
        }
    };
    check_names(&frame).map_err(|m| FrameError::new(ErrorCode::InvalidField, m, reference))?;
    Ok(frame)
}

fn check_names(frame: &Inbound<'_>) -> Result<(), &'static str> {
    let room = match frame {
        Inbound::Subscribe { room, .. } | Inbound::Unsubscribe { room } => room,
        Inbound::Publish { room, id, .. } => {
            if id.is_empty() || id.len() > MAX_ID_LEN {
                return Err("`id` must be 1 to 128 bytes");
            }
            room
        }
        Inbound::Auth { client, secret, .. } => {
            if client
                .as_ref()
                .is_some_and(|c| c.is_empty() || c.len() > MAX_CLIENT_LEN)
            {
                return Err("`client` must be 1 to 128 bytes");
            }
            if secret
                .as_ref()
                .is_some_and(|s| !SECRET_LEN.contains(&s.len()))
            {
                return Err("`secret` must be 16 to 256 bytes");
            }
            return Ok(());
        }
        Inbound::Refresh { .. } => return Ok(()),
    };
    if room.is_empty() || room.len() > MAX_ROOM_LEN || room.chars().any(char::is_control) {
        return Err("`room` must be 1 to 128 bytes without control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse(text).unwrap_err().code
    }

    #[test]
    fn well_formed_frames_parse() {
        let p = parse(r#"{"type":"publish","room":"r","id":"1","data":{"a":[1,2]}}"#).unwrap();
        let Inbound::Publish { room, id, data } = p else {
            panic!("not a publish")
        };
        assert_eq!(
            (room.as_str(), id.as_str(), data.get()),
            ("r", "1", r#"{"a":[1,2]}"#)
        );
        let p = parse(r#"{"type":"publish","room":"r","id":"1","data":null}"#).unwrap();
        assert!(matches!(p, Inbound::Publish { data, .. } if data.get() == "null"));
        assert!(matches!(
            parse(r#"{"type":"subscribe","room":"r","since":4,"extra":true}"#).unwrap(),
            Inbound::Subscribe { room, since: Some(4), epoch: None } if room == "r"
        ));
    }

    #[test]
    fn each_malformation_has_its_code() {
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("[1]"), ErrorCode::InvalidJson);
        assert_eq!(code("42"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"nope"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"room":"r"}"#), ErrorCode::MissingField);
        assert_eq!(
            code(r#"{"type":"publish","room":"r","id":"1"}"#),
            ErrorCode::MissingField
        );
        assert_eq!(
            code(r#"{"type":"subscribe","room":5}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"subscribe","room":"r","since":-1}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"subscribe","room":""}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"auth","client":"c","secret":"short"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"type":"auth","client":""}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(code(r#"{"type":"refresh"}"#), ErrorCode::MissingField);
    }

    #[test]
    fn random_input_never_panics() {
        // A small property test: mutations of valid frames and random bytes must yield a frame
        // or an error, never a panic.
        let seeds = [
            r#"{"type":"publish","room":"r","id":"1","data":{"a":[1,"x\u00e9"]}}"#,
            r#"{"type":"subscribe","room":"news.a","since":18446744073709551615}"#,
            r#"{"type":"auth","token":"a.b.c","client":"me"}"#,
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"{}[]\":,\\ntrufalse0123456789.-eE typeroomdatasince\x00\xff";
        for _ in 0..20_000 {
            let mut bytes = seeds[rng.usize(..seeds.len())].as_bytes().to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..=bytes.len());
                match rng.u8(..3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, alphabet[rng.usize(..alphabet.len())]),
                    _ => bytes.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text);
        }
    }
}
