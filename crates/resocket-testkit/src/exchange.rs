//! `Exchange`: a small exchange-style feed server that demands auth, for handshake tests and
//! examples.
//!
//! Protocol (JSON text frames):
//! - client `{"type":"auth","token":T}` → `{"type":"auth_ok"}`, or `{"type":"auth_error"}`
//!   followed by Close 4001 when `T` is wrong;
//! - client `{"type":"subscribe","channel":C}` → `{"type":"subscribed","channel":C}` (unless
//!   confirmations are off), and from then on `{"type":"tick","channel":C,"seq":N}` when ticks
//!   are on;
//! - server `{"type":"ping"}` on the app-ping schedule, answered by `{"type":"pong"}`;
//! - anything before auth → `{"type":"error","reason":"not authenticated"}`.
//!
//! Every frame the server reads is recorded as a [`ServerEvent`](crate::ServerEvent), so tests
//! can assert the order of what arrived. A Pong read while the auth reply is held back is
//! recorded as the text `__pong__`.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::{Behavior, Conn, Message};

/// Settings of the exchange-style server; turn them into a [`Behavior`] with
/// [`Exchange::behavior`].
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The token that authenticates.
    pub token: String,
    /// Reply `subscribed` to each subscribe (default true).
    pub confirm_subscriptions: bool,
    /// Before the auth reply, send an unrelated data frame and a Ping (default false).
    pub noise_before_auth_reply: bool,
    /// Hold the auth reply until this is notified (default none).
    pub auth_gate: Option<Arc<Notify>>,
    /// Send a tick on every subscribed channel this often (default none).
    pub ticks: Option<Duration>,
    /// Send `{"type":"ping"}` this often (default none).
    pub app_pings: Option<Duration>,
}

impl Exchange {
    /// A server that accepts `token`, confirms subscriptions, and sends nothing unasked.
    pub fn new(token: impl Into<String>) -> Self {
        Exchange {
            token: token.into(),
            confirm_subscriptions: true,
            noise_before_auth_reply: false,
            auth_gate: None,
            ticks: None,
            app_pings: None,
        }
    }

    /// The behavior that serves every connection this way.
    pub fn behavior(self) -> Behavior {
        let settings = Arc::new(self);
        Behavior::custom(move |conn| serve(conn, settings.clone()))
    }
}

fn text(value: Value) -> Message {
    Message::text(value.to_string())
}

async fn serve(mut conn: Conn, settings: Arc<Exchange>) {
    let mut authed = false;
    let mut channels: Vec<String> = Vec::new();
    let mut seq = 0u64;
    let far = Duration::from_secs(3600);
    let mut ticks = tokio::time::interval(settings.ticks.unwrap_or(far));
    let mut pings = tokio::time::interval(settings.app_pings.unwrap_or(far));
    ticks.tick().await;
    pings.tick().await;
    loop {
        tokio::select! {
            frame = conn.ws.next() => {
                let Some(Ok(msg)) = frame else { return };
                conn.record(&msg);
                if matches!(msg, Message::Close(_)) {
                    // tungstenite has queued the Close reply; flushing sends it.
                    let _ = conn.ws.flush().await;
                    continue;
                }
                let Ok(request) = msg.to_text().map(|t| serde_json::from_str::<Value>(t).unwrap_or(Value::Null)) else {
                    continue;
                };
                match request["type"].as_str() {
                    Some("auth") => {
                        if request["token"].as_str() != Some(settings.token.as_str()) {
                            let _ = conn.ws.send(text(json!({"type": "auth_error", "reason": "bad token"}))).await;
                            let _ = conn.ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                code: 4001u16.into(),
                                reason: "unauthorized".into(),
                            })).await;
                            continue;
                        }
                        if settings.noise_before_auth_reply {
                            let _ = conn.ws.send(text(json!({"type": "news", "text": "unrelated"}))).await;
                            let _ = conn.ws.send(Message::Ping("are you there".into())).await;
                        }
                        if let Some(gate) = &settings.auth_gate {
                            let opened = gate.notified();
                            tokio::pin!(opened);
                            loop {
                                tokio::select! {
                                    () = &mut opened => break,
                                    frame = conn.ws.next() => match frame {
                                        Some(Ok(Message::Pong(_))) => conn.record(&Message::text("__pong__")),
                                        Some(Ok(other)) => conn.record(&other),
                                        _ => return,
                                    },
                                }
                            }
                        }
                        authed = true;
                        let _ = conn.ws.send(text(json!({"type": "auth_ok"}))).await;
                    }
                    _ if !authed => {
                        let _ = conn.ws.send(text(json!({"type": "error", "reason": "not authenticated"}))).await;
                    }
                    Some("subscribe") => {
                        let channel = request["channel"].as_str().unwrap_or_default().to_owned();
                        if settings.confirm_subscriptions {
                            let _ = conn.ws.send(text(json!({"type": "subscribed", "channel": channel}))).await;
                        }
                        channels.push(channel);
                    }
                    Some("unsubscribe") => {
                        let channel = request["channel"].as_str().unwrap_or_default();
                        channels.retain(|c| c != channel);
                    }
                    _ => {}
                }
            }
            _ = ticks.tick(), if authed && !channels.is_empty() => {
                for channel in &channels {
                    seq += 1;
                    if conn.ws.feed(text(json!({"type": "tick", "channel": channel, "seq": seq}))).await.is_err() {
                        return;
                    }
                }
                if conn.ws.flush().await.is_err() {
                    return;
                }
            }
            _ = pings.tick(), if authed => {
                if conn.ws.send(text(json!({"type": "ping"}))).await.is_err() {
                    return;
                }
            }
        }
    }
}
