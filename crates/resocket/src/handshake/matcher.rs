//! `Matcher`: a user-supplied predicate that decides what a reply means.

use std::{fmt, sync::Arc};

use serde_json::Value;

use crate::Message;

/// Decides whether a received data frame is the reply a handshake step waits for.
///
/// Matchers are explicit on purpose: a reply counts as success or failure only because the user
/// said so, never because it happened to contain "error" or to be a Ping.
#[derive(Clone)]
pub struct Matcher {
    test: Arc<dyn Fn(&Message) -> bool + Send + Sync>,
    description: Arc<str>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({})", self.description)
    }
}

impl Matcher {
    /// Any predicate over the message.
    pub fn new(description: &str, test: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Self {
        Matcher {
            test: Arc::new(test),
            description: description.into(),
        }
    }

    /// A Text frame whose whole payload equals `text`.
    pub fn text(text: impl Into<String>) -> Self {
        let text = text.into();
        let description = format!("text == {text:?}");
        Matcher::new(&description, move |msg| {
            msg.to_text().ok() == Some(text.as_str())
        })
    }

    /// A Text frame that parses as JSON and whose field equals `expected`. `field` is a
    /// top-level key (`"type"`) or a JSON pointer (`"/result/status"`).
    pub fn json_field(field: &str, expected: impl Into<Value>) -> Self {
        let expected = expected.into();
        let pointer = if field.starts_with('/') {
            field.to_owned()
        } else {
            format!("/{field}")
        };
        let description = format!("json {pointer} == {expected}");
        Matcher::new(&description, move |msg| {
            json_of(msg).is_some_and(|v| v.pointer(&pointer) == Some(&expected))
        })
    }

    /// A Text frame that parses as JSON and has this field, whatever its value.
    pub fn json_has(field: &str) -> Self {
        let pointer = if field.starts_with('/') {
            field.to_owned()
        } else {
            format!("/{field}")
        };
        let description = format!("json has {pointer}");
        Matcher::new(&description, move |msg| {
            json_of(msg).is_some_and(|v| v.pointer(&pointer).is_some_and(|f| !f.is_null()))
        })
    }

    /// Matches when both match.
    pub fn and(self, other: Matcher) -> Self {
        let description = format!("({}) and ({})", self.description, other.description);
        Matcher::new(&description, move |msg| {
            self.matches(msg) && other.matches(msg)
        })
    }

    /// Whether `msg` matches.
    pub fn matches(&self, msg: &Message) -> bool {
        (self.test)(msg)
    }

    /// What it checks, for error messages.
    pub fn description(&self) -> &str {
        &self.description
    }
}

fn json_of(msg: &Message) -> Option<Value> {
    match msg {
        Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
        Message::Binary(bytes) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_checks_top_level_keys_and_pointers() {
        let ok = Matcher::json_field("type", "auth_ok");
        assert!(ok.matches(&Message::text(r#"{"type":"auth_ok"}"#)));
        assert!(!ok.matches(&Message::text(r#"{"type":"auth_failed"}"#)));
        assert!(!ok.matches(&Message::text("auth_ok")));
        assert!(!ok.matches(&Message::Ping(Default::default())));
        let nested = Matcher::json_field("/result/code", 0);
        assert!(nested.matches(&Message::text(r#"{"result":{"code":0}}"#)));
    }

    #[test]
    fn text_and_combinators() {
        let m = Matcher::text("ok").and(Matcher::new("short", |m| m.len() < 5));
        assert!(m.matches(&Message::text("ok")));
        assert!(!m.matches(&Message::text("ok!")));
        assert!(Matcher::json_has("id").matches(&Message::text(r#"{"id":3}"#)));
        assert!(!Matcher::json_has("id").matches(&Message::text(r#"{"id":null}"#)));
    }
}
