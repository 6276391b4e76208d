//! `MetricsExtension`: counters and a gauge through the `metrics` facade.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::{Extension, ExtensionContext, Verdict};
use crate::{ConnectionState, Error, Message};

/// Publishes `resocket_messages_in_total`, `resocket_messages_out_total`,
/// `resocket_connects_total`, `resocket_disconnects_total`, `resocket_errors_total`,
/// `resocket_reconnect_delay_seconds` and the gauge `resocket_connected`, labelled with
/// `client = name`.
///
/// The handles are taken from the recorder when the extension is created, so the per-message
/// cost is one atomic add: install the application's recorder first.
#[derive(Debug, Clone)]
pub struct MetricsExtension {
    messages_in: Counter,
    messages_out: Counter,
    connects: Counter,
    disconnects: Counter,
    errors: Counter,
    delay: Histogram,
    connected: Gauge,
}

impl MetricsExtension {
    /// Registers the figures, labelled with `client = name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        MetricsExtension {
            messages_in: metrics::counter!("resocket_messages_in_total", "client" => name.clone()),
            messages_out: metrics::counter!("resocket_messages_out_total", "client" => name.clone()),
            connects: metrics::counter!("resocket_connects_total", "client" => name.clone()),
            disconnects: metrics::counter!("resocket_disconnects_total", "client" => name.clone()),
            errors: metrics::counter!("resocket_errors_total", "client" => name.clone()),
            delay: metrics::histogram!("resocket_reconnect_delay_seconds", "client" => name.clone()),
            connected: metrics::gauge!("resocket_connected", "client" => name),
        }
    }
}

impl Extension for MetricsExtension {
    fn on_connect(&self, _reconnect: bool, _ctx: &ExtensionContext) {
        self.connects.increment(1);
    }

    fn on_state(&self, state: &ConnectionState, _ctx: &ExtensionContext) {
        self.connected.set(if state.is_ready() { 1.0 } else { 0.0 });
    }

    fn on_disconnect(&self, _reason: &Error, _ctx: &ExtensionContext) {
        self.disconnects.increment(1);
    }

    fn on_reconnect_scheduled(&self, delay: Duration, _attempt: u32, _ctx: &ExtensionContext) {
        self.delay.record(delay.as_secs_f64());
    }

    fn on_error(&self, _error: &Error, _ctx: &ExtensionContext) {
        self.errors.increment(1);
    }

    fn on_message_in(&self, _msg: &Message, _ctx: &ExtensionContext) -> Verdict {
        self.messages_in.increment(1);
        Verdict::Keep
    }

    fn on_message_out(&self, _msg: &Message, _ctx: &ExtensionContext) {
        self.messages_out.increment(1);
    }
}
