//! Helpers shared by the hub's benches.
#![allow(dead_code)]

pub mod baseline;
pub mod fanout;
pub mod node;
pub mod upgrade;
