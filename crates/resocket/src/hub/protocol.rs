//! Frame types of the hub protocol (`resocket.v1`).
