//! Helpers shared by the client's integration tests. They name resocket's own types, so they
//! cannot live in the test kit (which resocket's tests depend on) without a dependency cycle.

#![allow(dead_code)] // each test binary uses its own subset

use resocket::{ConnectionEvent, Error};
use tokio::sync::broadcast;

/// Waits for the first event that `pred` accepts.
pub async fn wait_event(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    mut pred: impl FnMut(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    loop {
        let event = events.recv().await.expect("event stream ended");
        if pred(&event) {
            return event;
        }
    }
}

/// Waits for the next `Disconnected` event and returns its reason.
pub async fn disconnect_reason(events: &mut broadcast::Receiver<ConnectionEvent>) -> Error {
    match wait_event(events, |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await
    {
        ConnectionEvent::Disconnected { reason, .. } => reason,
        _ => unreachable!("filtered above"),
    }
}

/// Waits for the next `Disconnected` event, whose reason must be the server's Close frame, and
/// returns its code and reason.
pub async fn server_close(events: &mut broadcast::Receiver<ConnectionEvent>) -> (u16, String) {
    let reason = disconnect_reason(events).await;
    let close = reason
        .close_frame()
        .unwrap_or_else(|| panic!("the server's Close is the reason, got {reason:?}"));
    (u16::from(close.code), close.reason.as_str().to_owned())
}
