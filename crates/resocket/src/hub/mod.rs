//! The resocket hub's wire protocol, shared by the hub server and the typed hub client.

pub mod protocol;
