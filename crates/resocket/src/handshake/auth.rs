//! `Auth`: send credentials, then wait for the reply the user's matchers recognise.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{with_timeout, HandshakeError, HandshakeIo, Handshaker, Matcher};
use crate::Message;

/// Authenticates after every upgrade.
///
/// The credentials message is plain text, JSON built with serde (so a token with quotes or
/// backslashes stays exact), or a template. With a `success` matcher, the step waits for a
/// reply that matches it; a reply matching `failure` ends the client with a permanent error;
/// replies matching neither are delivered to the user afterwards. Without matchers the
/// message is sent and the step succeeds at once.
///
/// ```
/// use resocket::handshake::{Auth, Matcher};
///
/// let auth = Auth::json_token("s3cr\"et")
///     .success(Matcher::json_field("type", "auth_ok"))
///     .failure(Matcher::json_field("type", "auth_error"));
/// # let _ = auth;
/// ```
#[derive(Debug, Clone)]
pub struct Auth {
    message: Message,
    success: Option<Matcher>,
    failure: Option<Matcher>,
    failure_is_permanent: bool,
    timeout: Option<Duration>,
}

impl Auth {
    /// Sends `message` as it is.
    pub fn message(message: Message) -> Self {
        Auth {
            message,
            success: None,
            failure: None,
            failure_is_permanent: true,
            timeout: None,
        }
    }

    /// Sends a plain text frame.
    pub fn text(text: impl Into<String>) -> Self {
        Auth::message(Message::text(text.into()))
    }

    /// Sends `{"type":"auth","token":TOKEN}`, serialized by serde.
    pub fn json_token(token: impl Into<String>) -> Self {
        Auth::json(serde_json::json!({ "type": "auth", "token": token.into() }))
    }

    /// Sends any JSON value, serialized by serde: for feeds with their own shape, such as
    /// `{"op":"login","args":[{"apiKey":…}]}`.
    pub fn json(value: Value) -> Self {
        Auth::message(Message::text(value.to_string()))
    }

    /// Sends `template` with every `{token}` replaced by `token` escaped as a JSON string body
    /// (without the surrounding quotes), so it is safe inside a quoted JSON field.
    pub fn template(template: &str, token: &str) -> Self {
        let quoted = Value::String(token.to_owned()).to_string();
        let escaped = &quoted[1..quoted.len() - 1];
        Auth::text(template.replace("{token}", escaped))
    }

    /// The reply that means success.
    pub fn success(mut self, matcher: Matcher) -> Self {
        self.success = Some(matcher);
        self
    }

    /// The reply that means the credentials were rejected.
    pub fn failure(mut self, matcher: Matcher) -> Self {
        self.failure = Some(matcher);
        self
    }

    /// Makes a `failure` reply retryable instead of permanent (for servers that reject while
    /// warming up).
    pub fn retry_on_failure(mut self) -> Self {
        self.failure_is_permanent = false;
        self
    }

    /// How long to wait for the reply; default: the client's `handshake_timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl Handshaker for Auth {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(async move {
            io.send(self.message.clone()).await?;
            let Some(success) = &self.success else {
                return Ok(());
            };
            let mut matchers = vec![success];
            matchers.extend(self.failure.as_ref());
            let (reply, index) = io.recv_matching(&matchers).await?;
            if index == 0 {
                return Ok(());
            }
            let what = format!(
                "credentials rejected: {}",
                truncate(reply.to_text().unwrap_or("<binary>"))
            );
            Err(if self.failure_is_permanent {
                HandshakeError::permanent(what)
            } else {
                HandshakeError::retryable(what)
            })
        })
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn name(&self) -> &str {
        "auth"
    }
}

/// Server replies can be long; errors keep the first 200 characters.
fn truncate(text: &str) -> &str {
    crate::extension::truncate_utf8(text, 200)
}

/// Applies a step's own timeout when it has one (used by chains).
pub(crate) async fn run_step(
    step: &dyn Handshaker,
    io: &mut HandshakeIo<'_>,
) -> Result<(), HandshakeError> {
    match step.timeout() {
        Some(limit) => with_timeout(limit, step.name(), step.handshake(io)).await,
        None => step.handshake(io).await,
    }
}
