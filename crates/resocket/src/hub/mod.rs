//! The resocket hub's wire protocol and a typed client for it.
//!
//! [`protocol`] holds the frame types shared with the hub server; [`HubClient`] is a
//! [`Client`](crate::Client) that speaks them, re-subscribes from the last offset after every
//! reconnect, reports lost history as an explicit [`Gap`], keeps a slow room from holding up
//! the others, renews expiring tokens from a token source, and re-sends unacknowledged
//! publishes with their ids, which the hub's dedupe turns into exactly-once delivery.

mod client;
mod envelope;
pub mod protocol;
mod session;
mod token;

pub use client::{
    Gap, HubClient, HubClientBuilder, HubError, PendingAck, RoomEvent, RoomMessage, Subscription,
};
