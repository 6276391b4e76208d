//! The resocket hub: a pub/sub WebSocket server.
