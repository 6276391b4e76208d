//! `StatusViewer` and `AdvancedStatusViewer`: a handle that keeps reporting after registration.
//!
//! The viewer's state sits behind a `Mutex` that only lifecycle hooks touch (a few times per
//! connection, never per message), so the hot path stays lock-free.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Extension, ExtensionContext};
use crate::{ConnectionState, Error};

/// What a viewer knows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The latest state.
    pub state: ConnectionState,
    /// Whether the client is `Ready`.
    pub connected: bool,
    /// How many times it became `Ready`.
    pub connections: u64,
    /// Re-establishments (connections after the first).
    pub reconnects: u64,
    /// When the current connection became `Ready`.
    pub connected_since: Option<Instant>,
    /// The latest error.
    pub last_error: Option<String>,
}

impl Status {
    /// How long the current connection has been up.
    pub fn uptime(&self) -> Option<Duration> {
        self.connected_since.map(|t| t.elapsed())
    }
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: ConnectionState::Idle,
            connected: false,
            connections: 0,
            reconnects: 0,
            connected_since: None,
            last_error: None,
        }
    }
}

/// One recorded transition.
#[derive(Debug, Clone)]
pub struct Transition {
    /// When it happened.
    pub at: Instant,
    /// The state entered.
    pub state: ConnectionState,
}

#[derive(Debug, Default)]
struct Inner {
    status: Status,
    history: VecDeque<Transition>,
}

/// A cloneable view of a client's status; register a clone, keep one to read.
///
/// ```
/// use resocket::extension::StatusViewer;
/// let viewer = StatusViewer::new();
/// let builder = resocket::Client::builder("ws://127.0.0.1:1/").extension(viewer.clone());
/// assert!(!viewer.status().connected);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StatusViewer {
    inner: Arc<Mutex<Inner>>,
    history_len: usize,
}

impl StatusViewer {
    /// A viewer without history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Whether the client is `Ready`.
    pub fn is_connected(&self) -> bool {
        self.lock().status.connected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in another hook must not blind the viewer: the data stays consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Extension for StatusViewer {
    fn on_state(&self, state: &ConnectionState, _ctx: &ExtensionContext) {
        let mut inner = self.lock();
        let status = &mut inner.status;
        status.state = state.clone();
        status.connected = state.is_ready();
        if state.is_ready() {
            status.connections += 1;
            status.reconnects = status.connections - 1;
            status.connected_since = Some(Instant::now());
        } else {
            status.connected_since = None;
        }
        if self.history_len > 0 {
            if inner.history.len() == self.history_len {
                inner.history.pop_front();
            }
            inner.history.push_back(Transition {
                at: Instant::now(),
                state: state.clone(),
            });
        }
    }

    fn on_error(&self, error: &Error, _ctx: &ExtensionContext) {
        self.lock().status.last_error = Some(error.to_string());
    }
}

/// A [`StatusViewer`] that also keeps a bounded history of transitions.
#[derive(Debug, Clone)]
pub struct AdvancedStatusViewer {
    viewer: StatusViewer,
}

impl AdvancedStatusViewer {
    /// Keeps the last `history` transitions.
    pub fn new(history: usize) -> Self {
        AdvancedStatusViewer {
            viewer: StatusViewer {
                inner: Default::default(),
                history_len: history.max(1),
            },
        }
    }

    /// The latest status (uptime, connection count, last error).
    pub fn status(&self) -> Status {
        self.viewer.status()
    }

    /// The recorded transitions, oldest first.
    pub fn history(&self) -> Vec<Transition> {
        self.viewer.lock().history.iter().cloned().collect()
    }
}

impl Extension for AdvancedStatusViewer {
    fn on_state(&self, state: &ConnectionState, ctx: &ExtensionContext) {
        self.viewer.on_state(state, ctx);
    }

    fn on_error(&self, error: &Error, ctx: &ExtensionContext) {
        self.viewer.on_error(error, ctx);
    }
}
