//! Reading hub frames on the client: the envelope only, borrowed from the received text.
//!
//! `data` stays raw JSON (a borrowed [`RawValue`]), so any value the hub accepted reaches the
//! user byte for byte, including what a [`serde_json::Value`] cannot hold (nesting deeper than
//! serde_json's recursion limit, numbers beyond `f64`). Strings borrow from the frame unless
//! they contain escapes.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// `data` that may be any JSON value, `null` included (an `Option` would read `null` as absent).
#[derive(Debug, Default)]
pub(super) struct Data<'a>(pub(super) Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|v| Data(Some(v)))
    }
}

/// Every field any hub frame has; which ones are present depends on `type`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) room: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) epoch: Option<u64>,
    #[serde(default)]
    pub(super) offset: Option<u64>,
    #[serde(default)]
    pub(super) recovered: Option<bool>,
    #[serde(default)]
    pub(super) first: Option<u64>,
    #[serde(borrow, default)]
    pub(super) id: Option<Cow<'a, str>>,
    /// Kept as sent: a code this client does not know must not make the frame unreadable.
    #[serde(borrow, default)]
    pub(super) code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(rename = "ref", borrow, default)]
    pub(super) reference: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) exp: Option<u64>,
    #[serde(borrow, default)]
    pub(super) data: Data<'a>,
}

/// The least of a frame that a broken one may still tell: its room and offset.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Located<'a> {
    #[serde(borrow, default)]
    pub(super) room: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) offset: Option<u64>,
}

/// Parses a frame's envelope.
///
/// # Errors
/// When the text is not a JSON object with a string `type`, or a known field has the wrong
/// JSON type.
pub(super) fn parse(text: &str) -> Result<Envelope<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// The room and offset of a frame that [`parse`] refused, as far as they can be read.
pub(super) fn locate(text: &str) -> Option<(String, Option<u64>)> {
    let located: Located<'_> = serde_json::from_str(text).ok()?;
    Some((located.room?.into_owned(), located.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_stays_raw_whatever_it_holds() {
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        for data in [
            deep.as_str(),
            "1e999999",
            &"9".repeat(400),
            "null",
            r#"{"a":"\u00e9"}"#,
        ] {
            let text =
                format!(r#"{{"type":"message","room":"r","epoch":1,"offset":2,"data":{data}}}"#);
            let e = parse(&text).unwrap();
            assert_eq!(e.data.0.map(RawValue::get), Some(data));
            assert_eq!((e.offset, e.room.as_deref()), (Some(2), Some("r")));
        }
    }

    #[test]
    fn a_broken_frame_still_tells_its_room() {
        let text = r#"{"type":"message","room":"r","epoch":"x","offset":7,"data":1}"#;
        assert!(parse(text).is_err());
        assert_eq!(locate(text), Some(("r".to_owned(), Some(7))));
        assert_eq!(locate("not json"), None);
    }
}
