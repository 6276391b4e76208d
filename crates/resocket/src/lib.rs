//! resocket: a WebSocket client that stays connected.

#[cfg(feature = "hub")]
pub mod hub;
