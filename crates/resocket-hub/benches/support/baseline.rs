//! The baseline: a broadcast server built the way the usual tutorial builds it.
//!
//! One `RwLock<HashMap<id, UnboundedSender>>`, one unbounded channel per connection, a `String`
//! clone per recipient, and a writer task that `send`s (writes and flushes) one message at a
//! time. A slow client grows its channel without bound; that is the tutorial's flaw the hub
//! fixes, and it is measured here only for speed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, RwLock};

type Users = Arc<RwLock<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Serves the baseline on `listener` at `/ws`.
pub async fn serve(listener: tokio::net::TcpListener) {
    let users = Users::default();
    let app = Router::new().route("/ws", get(upgrade)).with_state(users);
    axum::serve(listener, app).await.unwrap();
}

async fn upgrade(ws: WebSocketUpgrade, State(users): State<Users>) -> axum::response::Response {
    ws.on_upgrade(move |socket| user_connected(socket, users))
}

async fn user_connected(socket: WebSocket, users: Users) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (mut sender, mut receiver) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sender.send(msg).await.is_err() {
                break;
            }
        }
    });
    users.write().await.insert(id, tx);
    while let Some(Ok(msg)) = receiver.next().await {
        if let Message::Text(text) = msg {
            let text = text.to_string();
            for (&uid, tx) in users.read().await.iter() {
                if uid != id {
                    let _ = tx.send(Message::Text(text.clone().into()));
                }
            }
        }
    }
    users.write().await.remove(&id);
}
