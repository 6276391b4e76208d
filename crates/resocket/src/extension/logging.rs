//! `LoggingExtension`: lifecycle and traffic through `tracing`, with UTF-8-safe truncation.

use std::time::Duration;

use tracing::Level;

use super::{truncate_utf8, Extension, ExtensionContext, Verdict};
use crate::{ConnectionState, Error, Message};

/// Logs lifecycle events at its level and message payloads at `trace` (or at its level when
/// `log_payloads` is on), truncated on a character boundary.
#[derive(Debug, Clone)]
pub struct LoggingExtension {
    level: Level,
    prefix: String,
    max_payload: usize,
    log_payloads: bool,
}

impl Default for LoggingExtension {
    fn default() -> Self {
        LoggingExtension {
            level: Level::INFO,
            prefix: "resocket".into(),
            max_payload: 256,
            log_payloads: false,
        }
    }
}

impl LoggingExtension {
    /// Lifecycle at `info`, payloads at `trace`, 256 bytes of payload at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// The level for lifecycle lines (default `info`).
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// A prefix for every line, to tell several clients apart (default `resocket`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most payload bytes per line (default 256); longer payloads are cut on a character
    /// boundary and marked with `…`.
    pub fn max_payload(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    /// Logs payloads at the extension's level instead of `trace`.
    pub fn log_payloads(mut self, on: bool) -> Self {
        self.log_payloads = on;
        self
    }

    /// The text a payload is logged as.
    pub fn render(&self, msg: &Message) -> String {
        match msg {
            Message::Text(text) => {
                let cut = truncate_utf8(text.as_str(), self.max_payload);
                if cut.len() < text.len() {
                    format!("{cut}…")
                } else {
                    cut.to_owned()
                }
            }
            Message::Binary(bytes) => format!("<{} bytes>", bytes.len()),
            other => format!("<{other:?}>"),
        }
    }

    fn line(&self, level: Level, text: std::fmt::Arguments<'_>) {
        let prefix = self.prefix.as_str();
        match level {
            Level::ERROR => tracing::error!(target: "resocket", "{prefix}: {text}"),
            Level::WARN => tracing::warn!(target: "resocket", "{prefix}: {text}"),
            Level::INFO => tracing::info!(target: "resocket", "{prefix}: {text}"),
            Level::DEBUG => tracing::debug!(target: "resocket", "{prefix}: {text}"),
            _ => tracing::trace!(target: "resocket", "{prefix}: {text}"),
        }
    }

    fn payload_level(&self) -> Level {
        if self.log_payloads {
            self.level
        } else {
            Level::TRACE
        }
    }
}

impl Extension for LoggingExtension {
    fn on_state(&self, state: &ConnectionState, _ctx: &ExtensionContext) {
        self.line(self.level, format_args!("state {state:?}"));
    }

    fn on_reconnect_scheduled(&self, delay: Duration, attempt: u32, _ctx: &ExtensionContext) {
        self.line(self.level, format_args!("attempt {attempt} in {delay:?}"));
    }

    fn on_error(&self, error: &Error, _ctx: &ExtensionContext) {
        self.line(Level::WARN, format_args!("error: {error}"));
    }

    fn on_message_in(&self, msg: &Message, _ctx: &ExtensionContext) -> Verdict {
        if tracing::enabled!(target: "resocket", Level::TRACE) || self.log_payloads {
            self.line(
                self.payload_level(),
                format_args!("<- {}", self.render(msg)),
            );
        }
        Verdict::Keep
    }

    fn on_message_out(&self, msg: &Message, _ctx: &ExtensionContext) {
        if tracing::enabled!(target: "resocket", Level::TRACE) || self.log_payloads {
            self.line(
                self.payload_level(),
                format_args!("-> {}", self.render(msg)),
            );
        }
    }
}
