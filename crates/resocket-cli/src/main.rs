//! The `resocket` command.
fn main() {}
