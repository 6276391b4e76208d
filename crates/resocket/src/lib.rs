//! resocket.
