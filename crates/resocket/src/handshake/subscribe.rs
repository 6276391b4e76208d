//! `Subscribe`, `SendMessage` and `ChannelFormat`: announcing what the client wants to receive.

use std::{fmt, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;

use super::{HandshakeError, HandshakeIo, Handshaker, Matcher};
use crate::Message;

type Format = Arc<dyn Fn(&[String]) -> Message + Send + Sync>;

/// How channel subscriptions are written on the wire, shared by the static [`Subscribe`] step
/// and the runtime set ([`Client::subscribe_channel`](crate::Client::subscribe_channel)).
///
/// ```
/// use resocket::{handshake::{ChannelFormat, Matcher}, Message};
///
/// let format = ChannelFormat::new(|channels| {
///     Message::text(serde_json::json!({"op": "subscribe", "args": channels}).to_string())
/// })
/// .unsubscribe(|channels| {
///     Message::text(serde_json::json!({"op": "unsubscribe", "args": channels}).to_string())
/// })
/// .confirm(Matcher::json_field("event", "subscribed"));
/// # let _ = format;
/// ```
#[derive(Clone)]
pub struct ChannelFormat {
    subscribe: Format,
    unsubscribe: Option<Format>,
    confirm: Option<Matcher>,
    batched: bool,
    timeout: Option<Duration>,
}

impl fmt::Debug for ChannelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelFormat")
            .field("batched", &self.batched)
            .field("confirm", &self.confirm)
            .finish_non_exhaustive()
    }
}

impl ChannelFormat {
    /// `subscribe(channels)` builds the message for one channel (or, when batched, for all).
    pub fn new(subscribe: impl Fn(&[String]) -> Message + Send + Sync + 'static) -> Self {
        ChannelFormat {
            subscribe: Arc::new(subscribe),
            unsubscribe: None,
            confirm: None,
            batched: false,
            timeout: None,
        }
    }

    /// `{"type":"subscribe","channel":NAME}`, one message per channel.
    pub fn json_type() -> Self {
        ChannelFormat::new(|channels| {
            Message::text(
                serde_json::json!({"type": "subscribe", "channel": channels[0]}).to_string(),
            )
        })
        .unsubscribe(|channels| {
            Message::text(
                serde_json::json!({"type": "unsubscribe", "channel": channels[0]}).to_string(),
            )
        })
    }

    /// How to write an unsubscribe; without it `unsubscribe_channel` only stops the replay.
    pub fn unsubscribe(
        mut self,
        unsubscribe: impl Fn(&[String]) -> Message + Send + Sync + 'static,
    ) -> Self {
        self.unsubscribe = Some(Arc::new(unsubscribe));
        self
    }

    /// Waits, after each subscribe message, for a reply matching `confirm` (replayed
    /// subscriptions only; runtime subscriptions do not block the connection).
    pub fn confirm(mut self, confirm: Matcher) -> Self {
        self.confirm = Some(confirm);
        self
    }

    /// Sends all channels in one message instead of one message each.
    pub fn batched(mut self) -> Self {
        self.batched = true;
        self
    }

    /// How long a confirmed subscribe may take; default: the client's `handshake_timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The step timeout, when one was set.
    pub(crate) fn step_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The messages that subscribe to `channels`.
    pub(crate) fn subscribe_messages(&self, channels: &[String]) -> Vec<Message> {
        if channels.is_empty() {
            Vec::new()
        } else if self.batched {
            vec![(self.subscribe)(channels)]
        } else {
            channels
                .iter()
                .map(|c| (self.subscribe)(std::slice::from_ref(c)))
                .collect()
        }
    }

    /// The message that unsubscribes from `channel`, if the format has one.
    pub(crate) fn unsubscribe_message(&self, channel: &str) -> Option<Message> {
        self.unsubscribe.as_ref().map(|f| f(&[channel.to_owned()]))
    }

    /// Sends the subscriptions and waits for each confirmation.
    pub(crate) async fn run(
        &self,
        io: &mut HandshakeIo<'_>,
        channels: &[String],
    ) -> Result<(), HandshakeError> {
        for msg in self.subscribe_messages(channels) {
            io.send(msg).await?;
            if let Some(confirm) = &self.confirm {
                io.recv_matching(&[confirm]).await?;
            }
        }
        Ok(())
    }
}

/// Subscribes to a fixed list of channels after every upgrade.
#[derive(Debug, Clone)]
pub struct Subscribe {
    format: ChannelFormat,
    channels: Vec<String>,
}

impl Subscribe {
    /// Subscribes to `channels`, written by `format`.
    pub fn new<I, S>(format: ChannelFormat, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscribe {
            format,
            channels: channels.into_iter().map(Into::into).collect(),
        }
    }

    /// Sends one prepared message (a subscription that is not about channel names).
    pub fn message(message: Message) -> Self {
        Subscribe::new(
            ChannelFormat::new(move |_| message.clone()).batched(),
            ["*"],
        )
    }

    /// Waits for a reply matching `confirm` after each subscribe message.
    pub fn confirm(mut self, confirm: Matcher) -> Self {
        self.format = self.format.confirm(confirm);
        self
    }

    /// How long the whole step may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.format = self.format.timeout(timeout);
        self
    }
}

impl Handshaker for Subscribe {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(self.format.run(io, &self.channels))
    }

    fn timeout(&self) -> Option<Duration> {
        self.format.timeout
    }

    fn name(&self) -> &str {
        "subscribe"
    }
}

/// Sends one message after every upgrade (a hello, a client id), expecting no reply.
#[derive(Debug, Clone)]
pub struct SendMessage(Message);

impl SendMessage {
    /// Sends `message`.
    pub fn new(message: impl Into<Message>) -> Self {
        SendMessage(message.into())
    }
}

impl Handshaker for SendMessage {
    fn handshake<'a>(
        &'a self,
        io: &'a mut HandshakeIo<'_>,
    ) -> BoxFuture<'a, Result<(), HandshakeError>> {
        Box::pin(io.send(self.0.clone()))
    }

    fn name(&self) -> &str {
        "send"
    }
}
