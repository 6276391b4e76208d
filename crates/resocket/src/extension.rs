//! Extensions: observe and shape a client's traffic and lifecycle.
//!
//! An [`Extension`] gets lifecycle hooks and a say over every data message in and out. The
//! list is fixed at build time and shared as an immutable slice, so calling the hooks takes no
//! lock; with no extension registered the hot path pays one length check per batch.
//! Built-ins: [`LoggingExtension`], [`StatusViewer`], [`AdvancedStatusViewer`], and with the
//! `metrics` feature, `MetricsExtension`.

use std::{sync::Arc, time::Duration};

use crate::{queue::QueueTx, state::Stats, ConnectionState, Error, Message, SendError};

mod logging;
#[cfg(feature = "metrics")]
mod metrics;
mod status;

pub use logging::LoggingExtension;
#[cfg(feature = "metrics")]
pub use metrics::MetricsExtension;
pub use status::{AdvancedStatusViewer, Status as ViewerStatus, StatusViewer, Transition};

/// What to do with an inbound message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Deliver it as it is.
    Keep,
    /// Deliver this instead.
    Replace(Message),
    /// Do not deliver it.
    Drop,
}

/// What an extension can do and see from inside a hook.
#[derive(Debug, Clone)]
pub struct ExtensionContext {
    queue: QueueTx,
    stats: Arc<Stats>,
}

impl ExtensionContext {
    /// Queues a message, as [`Client::try_send`](crate::Client::try_send) does (for example a
    /// reply to an application-level ping).
    ///
    /// # Errors
    /// As `try_send`: the message comes back inside.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<(), SendError<Message>> {
        self.queue.try_send(msg.into())
    }

    /// Whether the client is `Ready`.
    pub fn is_connected(&self) -> bool {
        self.stats.is_ready()
    }
}

/// Hooks into a client. Every method has a default that does nothing, so an extension
/// implements only what it needs. Hooks run on the client's task: keep them quick and never
/// block.
pub trait Extension: Send + Sync + 'static {
    /// The client became `Ready` (after the handshake). `reconnect` is false the first time.
    fn on_connect(&self, reconnect: bool, ctx: &ExtensionContext) {
        let _ = (reconnect, ctx);
    }

    /// A connection ended or an attempt failed.
    fn on_disconnect(&self, reason: &Error, ctx: &ExtensionContext) {
        let _ = (reason, ctx);
    }

    /// The next attempt is scheduled after `delay`.
    fn on_reconnect_scheduled(&self, delay: Duration, attempt: u32, ctx: &ExtensionContext) {
        let _ = (delay, attempt, ctx);
    }

    /// A state change (every transition of the lifecycle).
    fn on_state(&self, state: &ConnectionState, ctx: &ExtensionContext) {
        let _ = (state, ctx);
    }

    /// An error: a failed attempt, a dropped connection, or the permanent failure.
    fn on_error(&self, error: &Error, ctx: &ExtensionContext) {
        let _ = (error, ctx);
    }

    /// A data message arrived; decide whether the user sees it.
    fn on_message_in(&self, msg: &Message, ctx: &ExtensionContext) -> Verdict {
        let _ = (msg, ctx);
        Verdict::Keep
    }

    /// A data message is about to be written.
    fn on_message_out(&self, msg: &Message, ctx: &ExtensionContext) {
        let _ = (msg, ctx);
    }
}

/// The registered extensions: an immutable list shared without locks.
#[derive(Clone)]
pub(crate) struct Extensions {
    list: Arc<[Arc<dyn Extension>]>,
    ctx: ExtensionContext,
}

impl Extensions {
    pub(crate) fn new(list: Vec<Arc<dyn Extension>>, queue: QueueTx, stats: Arc<Stats>) -> Self {
        Extensions {
            list: list.into(),
            ctx: ExtensionContext { queue, stats },
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn each(&self, hook: impl Fn(&dyn Extension, &ExtensionContext)) {
        for ext in self.list.iter() {
            hook(ext.as_ref(), &self.ctx);
        }
    }

    /// Runs every `on_message_in` in registration order; `None` means dropped.
    pub(crate) fn inbound(&self, msg: Message) -> Option<Message> {
        let mut msg = msg;
        for ext in self.list.iter() {
            match ext.on_message_in(&msg, &self.ctx) {
                Verdict::Keep => {}
                Verdict::Replace(other) => msg = other,
                Verdict::Drop => return None,
            }
        }
        Some(msg)
    }

    pub(crate) fn outbound(&self, msg: &Message) {
        for ext in self.list.iter() {
            ext.on_message_out(msg, &self.ctx);
        }
    }
}

/// The longest prefix of `text` with at most `max` bytes that ends on a character boundary,
/// so truncating CJK or emoji text never splits a character (and never panics).
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate_utf8;

    #[test]
    fn truncation_respects_character_boundaries() {
        let text = "価格🚀データ";
        for max in 0..=text.len() + 2 {
            let cut = truncate_utf8(text, max);
            assert!(cut.len() <= max && text.starts_with(cut));
        }
        assert_eq!(truncate_utf8("価格", 4), "価");
        assert_eq!(truncate_utf8("🚀", 3), "");
    }
}
